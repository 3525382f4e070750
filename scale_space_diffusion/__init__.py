"""Cheap pixel diffusion on PyTorch Lightning: Scale Space Diffusion, Spectral Diffusion and DDPM.

Public names are imported lazily, so ``import scale_space_diffusion.diffusion.schedule`` stays light.
"""

from importlib import import_module

_EXPORTS = {
    "DDPM": ".models.ddpm",
    "ScaleSpaceDiffusion": ".models.ssd",
    "SpectralDiffusion": ".models.spectral",
    "DiffusionModule": ".models.base",
    "Optimization": ".models.settings",
    "Sampling": ".models.settings",
    "ImageDataModule": ".data.datamodule",
    "UNet": ".networks.unet",
    "FlexiUNet": ".networks.flexi_unet",
    "SpectralUNet": ".networks.spectral_unet",
    "NoiseSchedule": ".diffusion.schedule",
    "ResolutionLadder": ".diffusion.ladder",
    "Resize": ".diffusion.degradation",
    "ScaleSpaceProcess": ".diffusion.process",
    "DiffusionLoss": ".diffusion.loss",
    "Parameterization": ".diffusion.parameterization",
    "Denoiser": ".diffusion.denoiser",
    "NetworkCall": ".diffusion.denoiser",
    "image_noise": ".diffusion.rng",
    "sample_ancestral": ".diffusion.sampler",
    "sample_respaced": ".diffusion.sampler",
    "sample": ".diffusion.sampler",
    "sample_ddim": ".diffusion.sampler",
    "guided": ".diffusion.guidance",
    "drop_labels": ".diffusion.guidance",
    "SampleWriter": ".callbacks",
    "InterruptCheckpoint": ".callbacks",
    "RunLifecycle": ".callbacks",
    "EpochSampler": ".data.order",
    "count_flops": ".metrics.flops",
    "sampling_flops": ".metrics.model_flops",
    "training_flops": ".metrics.model_flops",
    "param_counts": ".metrics.model_flops",
    "load_model": ".io.loading",
    "from_pretrained": ".io.pretrained",
    "save_pretrained": ".io.pretrained",
    "export_checkpoint": ".io.pretrained",
    "AtomicCheckpointIO": ".io.checkpoint_io",
    "FIDCallback": ".metrics.fid_callback",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name == "__version__":  # read when asked: importlib.metadata costs 0.25 s of `ssd --help`
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("scale-space-diffusion")  # pyproject.toml's [project] version
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
