"""The raw network and the denoiser: two contracts that meet in :meth:`Parameterization.x0`.

    RawNetwork(x_t, t, out_res, labels) -> eps_hat or x0_hat at out_res   (what the loss trains)
    Denoiser(x_t, t, out_res, labels)   -> x0_hat at out_res              (what samplers call)

A :class:`Denoiser` holds a raw network, its parameterisation, the schedule and the guidance scale, so a sampler
needs nothing else: ``sample(Denoiser(NetworkCall(net), "eps", schedule), process, x)`` runs without Lightning.
Its output is float32 whatever autocast the network ran under (the sampler state stays in full precision, as EDM's
``EDMPrecond`` casts ``F_x``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .guidance import guided
from .parameterization import Parameterization, Prediction, RawNetwork
from .precision import upcast
from .schedule import NoiseSchedule


@dataclass(frozen=True)
class NetworkCall:
    """A :class:`~scale_space_diffusion.networks.contract.DenoisingNetwork` as a :class:`RawNetwork`: ``net(x_t, t,
    labels)``, with ``out_res=`` when the output resolution differs from the input's (Flexi-UNets)."""

    net: nn.Module

    def __call__(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
        if out_res != x_t.shape[-1]:
            return self.net(x_t, t, labels, out_res=out_res)
        return self.net(x_t, t, labels)


@dataclass(frozen=True)
class Denoiser:
    """x0_hat = D(x_t, t, out_res, labels): a raw network's output as the denoised estimate, with classifier-free
    guidance (G1) when ``guidance_scale`` != 1.

    Args:
        raw: the raw network (eps or x0 at out_res), e.g. ``NetworkCall(net)`` or a model's ``raw_network``.
        prediction: what ``raw`` outputs: "eps" or "x0" (or a :class:`Parameterization`).
        schedule: the noise schedule the network was trained with.
        guidance_scale: w of (G1); 1 is the conditional model as it is.
    """

    raw: RawNetwork
    prediction: Prediction | Parameterization
    schedule: NoiseSchedule
    guidance_scale: float = 1.0

    @property
    def parameterization(self) -> Parameterization:
        p = self.prediction
        return p if isinstance(p, Parameterization) else Parameterization(p)

    def _raw_fp32(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None) -> Tensor:
        return upcast(self.raw(x_t, t, out_res, labels))

    def __call__(self, x_t: Tensor, t: Tensor, out_res: int, labels: Tensor | None = None) -> Tensor:
        """x0_hat (B,C,out_res,out_res) float32 for x_t (B,C,r,r) and t (B,) on x_t's device."""
        raw = guided(self._raw_fp32, self.guidance_scale)(x_t, t, out_res, labels)
        return self.parameterization.x0(raw, x_t, t, self.schedule)
