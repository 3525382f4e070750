"""What a model needs from its network, and how a network's constructor arguments are recorded.

Every network here is an ``nn.Module`` that satisfies :class:`DenoisingNetwork`; Flexi-UNets also take
``out_res``. ``config`` is the outermost constructor's bound arguments, saved in checkpoints so the network
can be rebuilt from the file alone (``type(net)(**net.config)``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

from torch import Tensor

F = TypeVar("F", bound=Callable[..., None])


@runtime_checkable
class DenoisingNetwork(Protocol):
    """forward(x (B,C,r,r), t (B,), labels (B,) | None) -> raw prediction (B,C_out,r',r')."""

    image_size: int  # R, the top resolution
    in_channels: int  # image channels
    num_classes: int | None  # class-conditional if set
    levels: list[int]  # UNet resolutions from the top: [R, R/2, ...]
    config: dict[str, Any]  # constructor arguments

    def __call__(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor: ...


def check_network(net: object) -> DenoisingNetwork:
    """``net`` if it satisfies :class:`DenoisingNetwork`; otherwise a TypeError that names what it lacks."""
    missing = [name for name in ("image_size", "in_channels", "num_classes", "levels", "config") if not hasattr(net, name)]
    if missing or not callable(net):
        raise TypeError(
            f"net is a {type(net).__name__}, which lacks the DenoisingNetwork attributes {missing}; use a UNet, "
            "FlexiUNet or SpectralUNet, or give your network these attributes"
        )
    return net  # type: ignore[return-value]


def records_config(init: F) -> F:
    """Decorate ``__init__`` so that ``self.config`` holds the bound arguments of the outermost constructor.

    A subclass's decorated ``__init__`` runs first and records; the base's, called through ``super()``, does not.
    Sequences are stored as lists, so the config is plain JSON-like data.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if "config" not in self.__dict__:  # the outermost decorated __init__; set before nn.Module.__init__
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            args_ = list(bound.arguments.items())[1:]  # without self
            self.__dict__["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in args_}
        init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
