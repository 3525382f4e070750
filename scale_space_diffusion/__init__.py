"""Cheap pixel diffusion on PyTorch Lightning: Scale Space Diffusion, Spectral Diffusion and DDPM.

Public names are imported lazily, so ``import scale_space_diffusion.schedule`` stays light.
"""

from importlib import import_module

_EXPORTS = {
    "DDPM": ".models.ddpm",
    "ScaleSpaceDiffusion": ".models.ssd",
    "SpectralDiffusion": ".models.spectral",
    "DiffusionModule": ".models.base",
    "ImageDataModule": ".data",
    "UNet": ".networks.unet",
    "FlexiUNet": ".networks.flexi_unet",
    "SpectralUNet": ".networks.spectral_unet",
    "NoiseSchedule": ".schedule",
    "ResolutionLadder": ".ladder",
    "Resize": ".degradation",
    "ScaleSpaceProcess": ".process",
    "DiffusionLoss": ".loss",
    "sample_ancestral": ".sampler",
    "sample_respaced": ".sampler",
    "SampleWriter": ".callbacks",
    "InterruptCheckpoint": ".callbacks",
    "EpochSampler": ".data_order",
    "count_flops": ".flops",
    "sampling_flops": ".model_flops",
    "training_flops": ".model_flops",
    "param_counts": ".model_flops",
    "load_model": ".models.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
