from .base import DiffusionModule
from .ddpm import DDPM
from .ssd import ScaleSpaceDiffusion

__all__ = ["DiffusionModule", "DDPM", "ScaleSpaceDiffusion"]
