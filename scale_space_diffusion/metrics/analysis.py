"""Frequency-bias analysis from Spectral Diffusion (arXiv 2211.17106): where do models lose detail?

    python -m scale_space_diffusion.analysis --ckpt outputs/ddpm_fmnist32/checkpoints/last.ckpt

1. The radially averaged power spectrum of samples against real images: a deficit at high
   frequencies is the bias the paper reports for small networks.
2. Blockiness and spectrum distance of the samples (:mod:`.sharpness`), printed beside real images'.
3. Band recovery over t: for real x_0, noise to x_t, denoise once and measure, per radial frequency
   band, how much of x_0's spectrum x0_hat has recovered:
   recovered(band, t) = 1 - ||FFT(x0_hat - x_0)||^2_band / ||FFT(x_0)||^2_band  (1 = fully recovered).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from .spectrum import radial_bins, radial_power_spectrum


def band_error(x0_hat: Tensor, x0: Tensor, num_bins: int = 16) -> Tensor:
    """Per-band recovered fraction 1 - E_band / P_band (num_bins,)."""
    bins = radial_bins(x0.shape[-1], num_bins).flatten()
    err = torch.fft.fft2((x0_hat - x0).double(), norm="ortho").abs().square().mean(dim=(0, 1)).flatten()
    ref = torch.fft.fft2(x0.double(), norm="ortho").abs().square().mean(dim=(0, 1)).flatten()
    e = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, err)
    p = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, ref)
    return 1 - e / p.clamp(min=1e-12)


@torch.no_grad()
def band_recovery(model, x0: Tensor, timesteps: list[int], num_bins: int = 16, seed: int = 0) -> Tensor:
    """(len(timesteps), num_bins): recovered fraction of each band of x_0 by one denoising step at t."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for t in timesteps:
        r = model.process.ladder.res(t)
        noise = torch.randn(len(x0), x0.shape[1], r, r, generator=g)
        tt = torch.full((len(x0),), t, dtype=torch.long)
        x_t = model.process.q_sample(x0, tt, noise)
        x0_hat = model.denoiser()(x_t, tt, model.process.ladder.res(t - 1)).clamp(-1, 1)
        if x0_hat.shape[-1] != x0.shape[-1]:  # SSD predicts at r(t-1): compare at full size
            x0_hat = torch.nn.functional.interpolate(x0_hat, size=x0.shape[-2:], mode="bilinear", antialias=True)
        rows.append(band_error(x0_hat, x0, num_bins))
    return torch.stack(rows)


def plot(real: Tensor, samples: Tensor, recovery: Tensor, timesteps: list[int], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bands = torch.arange(len(real)) + 0.5
    a.semilogy(bands, real, label="real images")
    a.semilogy(bands, samples, label="samples")
    a.set(xlabel="radial frequency band (0 = DC, right = Nyquist)", ylabel="power", title="Radially averaged spectrum")
    a.legend()
    im = b.imshow(recovery.T.numpy(), aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                  extent=(timesteps[0], timesteps[-1], 0, recovery.shape[1]))  # fmt: skip
    b.set(xlabel="timestep t", ylabel="frequency band", title="Recovered fraction of x0's spectrum by x0_hat")
    fig.colorbar(im, ax=b)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    from ..data import ImageDataModule
    from .sharpness import blockiness, spectrum_distance
    from ..diffusion.rng import image_noise
    from ..io.loading import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a checkpoint written by `ssd fit`")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=100, help="respaced sampler steps")
    p.add_argument("--out", default="outputs/analysis/frequency_bias.png")
    args = p.parse_args(argv)
    model = load_model(args.ckpt)
    size, channels = model.image_size, model.channels
    data = ImageDataModule(dataset=args.dataset, image_size=size, channels=channels)
    real = data.reference_images("test", args.num_samples).float() / 127.5 - 1
    samples = model.sample(image_noise(0, torch.arange(args.num_samples)), sampling=replace(model.sampling, steps=args.steps),
                           progress=True)
    timesteps = list(range(0, model.process.T, max(1, model.process.T // 50)))
    recovery = band_recovery(model, real, timesteps)
    out = plot(radial_power_spectrum(real), radial_power_spectrum(samples), recovery, timesteps, Path(args.out))
    print(f"Wrote {out}")
    print(f"blockiness (2x2 / 4x4 blocks; ~1 for natural images): samples {blockiness(samples, 2):.3f} / "
          f"{blockiness(samples, 4):.3f}, real {blockiness(real, 2):.3f} / {blockiness(real, 4):.3f}; spectrum "
          f"distance to real (RMS log10 power ratio over bands): {spectrum_distance(samples.clamp(-1, 1), real):.3f}")


if __name__ == "__main__":
    main()
