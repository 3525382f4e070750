"""What each preset trains, samples and scores (every run of a preset shares these numbers), and the runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

RUNS = {  # the suite's runs, in its order: name -> what it is
    "ddpm": "DDPM, eps-prediction, ADM UNet (the reference)",
    "ddpm_x0": "DDPM-x0: a DDPM with x0-prediction and min-SNR-5 weights (SSD with 1 level), same backbone",
    "ssd_convex": "SSD, 3 levels, convex-0.5 ladder, Flexi-UNet",
    "ssd_2l": "SSD, 2 levels, convex-0.5 ladder, Flexi-UNet (the SSD paper's 2-level row)",
    "ssd_equal": "SSD, 3 levels, equal ladder, Flexi-UNet",
    "ssd_full_unet": "SSD, 3 levels, convex-0.5, full UNet at every step (ablation)",
    "sd_distilled": "Spectral Diffusion: slim wavelet-gated UNet (x0, min-SNR-5), distilled from the better teacher",
    "sd_plain": "the same gated slim net, no teacher (+gating)",
    "sd_nogate_distilled": "slim UNet without gates, distilled (+spectral loss)",
    "sd_nogate": "slim UNet without gates, no teacher (plain slim)",
}
SD_ABLATION = {"plain slim": "sd_nogate", "+gating": "sd_plain", "+spectral loss": "sd_nogate_distilled",
               "full SD": "sd_distilled"}  # fmt: skip
PRECISIONS = ("32-true", "bf16-mixed")  # Lightning's names; bf16-mixed also samples under bf16 autocast


def recorded_preset(results: dict) -> dict:
    """The preset a results.json ran, with the fields it predates filled in as those results ran."""
    return {"precision": "32-true", "train_seed": None, "ema_lengths": [], "ema_samples": 0, **results["preset"]}


@dataclass(frozen=True)
class Preset:
    name: str
    dataset: str = "fashion_mnist"  # anything ImageDataModule takes: fashion_mnist, a local folder, a hub name
    image_size: int = 32  # Fashion-MNIST 28x28 padded to 32 (2 px of background)
    channels: int = 1
    timesteps: int = 1000  # T
    model_channels: int = 18  # DDPM, DDPM-x0, SSD: the narrowest width whose 1/3-width SD student has 8x fewer MACs
    slim_channels: int = 6  # Spectral Diffusion's slim student: 1/3 of the width, 8.7x fewer sampling MACs
    channel_mult: tuple[int, ...] = (1, 2, 2)  # three UNet levels: SSD's 3 ladder levels 32/16/8
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (8,)
    num_heads: int = 4
    steps: int = 1500  # optimisation steps, equal for every run
    batch_size: int = 32  # the same for every run, and for the images/s timing
    lr: float = 2e-3
    ema_decay: float = 0.995
    ema_start_step: int = 200
    warmup_steps: int = 20  # excluded from the training images/s timing
    checkpoints: tuple[float, ...] = (0.25, 0.5)  # fractions of `steps` scored besides the end of training
    budget_runs: tuple[str, ...] = ("ddpm_x0", "ssd_convex", "ssd_equal", "ssd_full_unet")  # on to DDPM's budget
    max_extend: float = 2.0  # a budget run trains at most this many times `steps`
    ema_lengths: tuple[float, ...] = (0.05, 0.10, 0.15, 0.20)  # post-hoc EMA sigma_rels tried besides ema_decay's
    ema_samples: int = 500  # images per EMA candidate, scored against the held-out validation split
    num_samples: int = 5000  # generated images per model at the end of training (the main table)
    curve_samples: int = 1000  # per checkpoint and per Pareto point (the first of them are the main samples)
    sampler: str = "ddim"  # the main sampler: "ddim" (eta = 0) or "ancestral"
    sample_steps: int = 10  # its steps (respaced; SSD adds its transitions)
    pareto_steps: tuple[int, ...] = (5, 10, 25)  # DDIM (eta = 0) step counts for FID vs sampling GFLOPs
    pareto_ancestral: tuple[int, ...] = ()  # ancestral step counts on the same plot
    sample_batch: int = 500
    resamples: int = 500  # bootstrap resamples per FID/KID interval
    classifier_epochs: int = 3
    max_data: int | None = None  # cap on each split (smoke test only)
    runs: tuple[str, ...] | None = None  # the runs `python -m benchmarks` trains (None: all; --only overrides)
    seed: int = 0  # data split, FID judge (classifier, reference rows, bootstrap) and, unless train_seed, the runs
    train_seed: int | None = None  # the runs' weights, batch order and sampling noise: a replicate under one judge
    precision: str = "32-true"  # Lightning's precision for training; "bf16-mixed" also samples under bf16 autocast

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not benchmarked; use one of {', '.join(PRECISIONS)}")

    @property
    def run_seed(self) -> int:
        return self.seed if self.train_seed is None else self.train_seed

    @property
    def low_sample(self) -> bool:
        """FID from fewer than 10k samples is biased upwards; such numbers only rank models within one run."""
        return self.num_samples < 10_000

    def as_dict(self) -> dict:
        return {**asdict(self), "low_sample": self.low_sample}


# standard: every run and ablation, 5000 samples each: 87 min on a 2-core Xeon (2026-12-07, 10 runs)
STANDARD = Preset("standard")
QUICK = replace(  # the four models the package compares, low-sample: 15 min on a 2-core Xeon (2026-12-07)
    STANDARD, name="quick", steps=800, ema_start_step=100, checkpoints=(0.5,), budget_runs=("ssd_convex",),
    max_extend=1.5, ema_samples=300, num_samples=1000, curve_samples=300, sample_batch=250, resamples=300,
    runs=("ddpm", "ddpm_x0", "ssd_convex", "sd_distilled"),
)  # fmt: skip
FULL = replace(  # GPU-sized: minutes to an hour on one GPU, days on CPU
    STANDARD, name="full", model_channels=64, slim_channels=20, steps=40_000, batch_size=128, lr=1e-3,
    ema_decay=0.9995, ema_start_step=2000, warmup_steps=50, ema_samples=1000, num_samples=10_000, curve_samples=5000,
    sample_steps=50,
    pareto_steps=(5, 10, 25, 50, 100), pareto_ancestral=(100, 250), sample_batch=1000, classifier_epochs=5,
)  # fmt: skip
SMOKE = replace(  # the test suite's end-to-end run: seconds, meaningless numbers
    STANDARD, image_size=16, name="smoke", timesteps=100, model_channels=8, slim_channels=4, num_heads=2, steps=4,
    batch_size=8, ema_decay=0.9, ema_start_step=0, warmup_steps=1, checkpoints=(0.5,), budget_runs=("ssd_convex",),
    ema_lengths=(0.1,), ema_samples=8, num_samples=8, curve_samples=6, sample_steps=4, pareto_steps=(),
    pareto_ancestral=(3,), sample_batch=8,
    resamples=20, classifier_epochs=1, max_data=96,
)  # fmt: skip
PRESETS = {p.name: p for p in (QUICK, STANDARD, FULL, SMOKE)}
