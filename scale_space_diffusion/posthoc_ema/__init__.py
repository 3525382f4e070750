"""Post-hoc EMA (Karras et al. 2024, EDM2, Sec. 3): choose the EMA length after training.

``profiles`` is the math (power-function profiles and the least-squares reconstruction), ``callback`` the training
side (:class:`PowerEMA` keeps two power EMAs and saves snapshots), ``reconstruct`` and ``__main__`` the sampling side.
"""

from .callback import PowerEMA
from .profiles import Profile, gamma_to_sigma_rel, sigma_rel_to_gamma, solve_weights
from .reconstruct import read_index, reconstruct

__all__ = ["PowerEMA", "Profile", "gamma_to_sigma_rel", "read_index", "reconstruct", "sigma_rel_to_gamma",
           "solve_weights"]  # fmt: skip
