from .base import DiffusionModule
from .ddpm import DDPM
from .spectral import SpectralDiffusion
from .ssd import ScaleSpaceDiffusion

__all__ = ["DiffusionModule", "DDPM", "ScaleSpaceDiffusion", "SpectralDiffusion"]
