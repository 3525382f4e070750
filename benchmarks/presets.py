"""What each preset trains and samples. Every run of a preset shares these numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int = 32  # Fashion-MNIST 28x28 padded to 32 (2 px of background)
    timesteps: int = 1000  # T
    model_channels: int = 32  # DDPM and SSD backbone width (the same for both)
    slim_channels: int = 8  # Spectral Diffusion's slim net: 1/4 of the backbone width
    channel_mult: tuple[int, ...] = (1, 2, 2)  # three UNet levels: SSD's 3 ladder levels 32/16/8
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (8,)
    num_heads: int = 4
    steps: int = 10_000  # optimisation steps, equal for every run
    batch_size: int = 64  # the same for every run, and for the images/s timing
    lr: float = 1e-3
    ema_decay: float = 0.999
    ema_start_step: int = 1000
    warmup_steps: int = 50  # excluded from the training images/s timing
    num_samples: int = 10_000  # generated images per model for FID/KID
    sample_steps: int = 100  # respaced ancestral steps (SSD adds its transitions)
    sample_batch: int = 500
    classifier_epochs: int = 3
    max_data: int | None = None  # cap on each split (smoke test only)
    seed: int = 0

    @property
    def low_sample(self) -> bool:
        """FID from fewer than 10k samples is biased upwards; such numbers only rank models within one run."""
        return self.num_samples < 10_000

    def as_dict(self) -> dict:
        return {**asdict(self), "low_sample": self.low_sample}


FULL = Preset("full")  # hours on CPU, minutes to an hour on one GPU
QUICK = replace(  # the CPU default, ~20 min on 2 cores
    FULL, name="quick", model_channels=16, slim_channels=4, steps=400, batch_size=32, ema_decay=0.995,
    ema_start_step=100, warmup_steps=10, num_samples=300, sample_steps=50, sample_batch=100,
)  # fmt: skip
SMOKE = replace(  # the test suite's end-to-end run: seconds, meaningless numbers
    FULL, name="smoke", image_size=16, timesteps=100, model_channels=8, slim_channels=4, num_heads=2, steps=2,
    batch_size=8, ema_decay=0.9, ema_start_step=0, warmup_steps=1, num_samples=8, sample_steps=4, sample_batch=8,
    classifier_epochs=1, max_data=96,
)  # fmt: skip
PRESETS = {p.name: p for p in (QUICK, FULL, SMOKE)}
