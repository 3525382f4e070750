"""The shared LightningDataModule and its readers; knows nothing of models.

``python -m scale_space_diffusion.data`` prepares and caches a dataset (``make data``).
"""

from importlib import import_module

_EXPORTS = {"ImageDataModule": ".datamodule", "EpochSampler": ".order"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # lazy: `scale_space_diffusion.data.idx` does not import Lightning
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
