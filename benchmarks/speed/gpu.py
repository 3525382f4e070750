"""``python -m benchmarks gpu``: DDPM, SSD-4L, SSD-2L (``configs/*_celeba64.yaml``) trained by a Lightning Trainer on
random data, on one GPU: img/s, CUDA syncs per step and their lines, peak memory, share of the measured bf16 matmul
peak, sampling ms/step, compiled rows; no row after ``--budget-s``. ``--dry-run``: the same on the CPU, tiny net."""

from __future__ import annotations

import dataclasses
import re
import time
import timeit
import warnings
from collections import Counter
from pathlib import Path

import torch

from ..machine import hardware
from ..output import cell, save_result as save, table

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"DDPM": ("ddpm_celeba64.yaml", None), "SSD-4L": ("ssd_celeba64.yaml", 4), "SSD-2L": ("ssd_celeba64.yaml", 2)}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run measures: the full GPU run, or the CPU dry run's tiny version of it."""

    device: str = "cuda"
    net: dict = dataclasses.field(default_factory=dict)  # overrides of the configs' network arguments
    batches: tuple[int, ...] = (32, 128)
    warmup: int = 10  # untimed training steps
    steps: int = 30  # timed training steps
    sync_steps: int = 3  # steps whose CUDA syncs are counted
    sample_images: int = 64
    sample_steps: int = 50
    matmul: int = 8192  # the bf16 peak's matmul size
    compile_mode: str | None = "reduce-overhead"  # the compiled rows' mode (one CUDA graph per path); None: none


DRY_RUN = Plan("cpu", dict(image_size=32, model_channels=8, channel_mult=[1, 1, 2, 2], num_res_blocks=1,
                           attention_resolutions=[8], num_heads=2), (2, 4), 1, 1, 1, 2, 2, 256, None)  # fmt: skip


def build(name: str, plan: Plan, torch_compile: str | None = None):
    """The model ``name`` from its config, with ``plan.net``'s overrides and no sample grids."""
    import yaml

    from scale_space_diffusion import DDPM, FlexiUNet, ScaleSpaceDiffusion, UNet
    from scale_space_diffusion.io.loading import build as from_config

    config, levels = MODELS[name]
    args = yaml.safe_load((ROOT / "configs" / config).read_text())["model"]["init_args"]
    hparams = {**args, "sampling": {**args["sampling"], "grid_size": 0, "grid_every_n_epochs": 0},
               "torch_compile": torch_compile or False, **({"num_levels": levels} if levels else {})}  # fmt: skip
    net = {**args["net"]["init_args"], **plan.net}
    return from_config(ScaleSpaceDiffusion if levels else DDPM, FlexiUNet if levels else UNet, net, hparams)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_row(name: str, precision: str, batch: int, plan: Plan, torch_compile: str | None, flops: dict) -> dict:
    """img/s over ``plan.steps`` steps after ``plan.warmup``, then the CUDA syncs of ``plan.sync_steps`` more steps
    (``flops``: a cache of the FLOPs per image by model name)."""
    import lightning as L

    from scale_space_diffusion.metrics.model_flops import training_flops_breakdown

    torch.manual_seed(0)
    model, cuda, stop, marks = build(name, plan, torch_compile), plan.device == "cuda", plan.warmup + plan.steps, {}
    n, r = batch * (stop + plan.sync_steps), model.image_size
    data = torch.utils.data.TensorDataset(torch.rand(n, model.channels, r, r) * 2 - 1, torch.zeros(n, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch, num_workers=2 if cuda else 0, pin_memory=cuda, drop_last=True)

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, *_) -> None:
            step = trainer.global_step
            if step in (1, plan.warmup, stop):  # the first step's end, then the timed steps' start and end
                sync(plan.device)
                marks[step] = time.perf_counter()
            if cuda and step in (stop, stop + plan.sync_steps):  # 1: warn on every sync, 0: off
                torch.cuda.set_sync_debug_mode(int(step == stop))

    trainer = L.Trainer(accelerator=plan.device, devices=1, precision=precision, max_steps=stop + plan.sync_steps,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[Clock()], default_root_dir="/tmp/ssd-gpu-bench")  # fmt: skip
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_start = time.perf_counter()
        trainer.fit(model, train_dataloaders=loader)
    seconds = marks[stop] - marks[plan.warmup]
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message).lower())
    if name not in flops and not torch_compile:
        flops[name] = training_flops_breakdown(model)["total_flops"]
    return {"model": name, "precision": precision, "batch": batch, "torch_compile": torch_compile,
            "img_per_s": batch * plan.steps / seconds, "ms_per_step": 1e3 * seconds / plan.steps,
            "first_step_s": marks[1] - fit_start, "train_gflops_per_image": flops.get(name, float("nan")) / 1e9,
            "syncs_per_step": sum(sites.values()) / plan.sync_steps if cuda else None,
            "sync_sites": dict(sites.most_common(8)),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}  # fmt: skip


def sample_row(name: str, autocast: bool, plan: Plan) -> dict:
    """ms per sampler step for ``plan.sample_images`` images (one batch), fp32 or under bf16 autocast."""
    from scale_space_diffusion import image_noise

    torch.manual_seed(0)
    model, steps = build(name, plan).to(plan.device).eval(), []
    with torch.autocast(plan.device, dtype=torch.bfloat16, enabled=autocast):
        for n in (2, plan.sample_steps):  # a short warm-up call, then the timed one
            steps.clear()
            sync(plan.device)
            start = time.perf_counter()
            model.sample(image_noise(0, torch.arange(plan.sample_images)), callback=steps.append,
                         sampling=dataclasses.replace(model.sampling, steps=n))  # fmt: skip
            sync(plan.device)
    return {"model": name, "bf16_autocast": autocast, "images": plan.sample_images, "steps": len(steps),
            "ms_per_step": 1e3 * (time.perf_counter() - start) / len(steps)}  # fmt: skip


def bf16_peak(plan: Plan, reps: int = 10) -> float:
    """FLOP/s of the fastest of ``reps`` bf16 (n, n) matmuls on the device, after a warm-up."""
    a = torch.randn(plan.matmul, plan.matmul, device=plan.device, dtype=torch.bfloat16)
    sync(plan.device)
    seconds = timeit.repeat(lambda: (a @ a, sync(plan.device)), number=1, repeat=reps + 1)[1:]
    return 2 * plan.matmul**3 / min(seconds)


def rows(plan: Plan, budget_s: float) -> tuple[list[dict], list[dict], list[str]]:
    """(training rows, sampling rows, the rows skipped past the budget: 0.6 of it for compiled rows)."""
    jobs = [("train", m, p, b, None) for m in MODELS for p in ("bf16-mixed", "32-true") for b in plan.batches]
    jobs += [("sample", m, a) for m in MODELS for a in (False, True)]
    if plan.compile_mode:
        jobs += [("train", m, "bf16-mixed", plan.batches[0], plan.compile_mode) for m in ("DDPM", "SSD-4L")]
    train, sample, skipped, flops, start = [], [], [], {}, time.perf_counter()
    for kind, *job in jobs:
        if time.perf_counter() - start > budget_s * (0.6 if kind == "train" and job[3] else 1):  # compiles take minutes
            skipped.append(" ".join(map(str, [kind, *job])))
        elif kind == "train":
            train.append(train_row(*job[:3], plan, job[3], flops))
        else:
            sample.append(sample_row(*job, plan))
        print(f"{kind} {job} done at {time.perf_counter() - start:.0f} s", flush=True)
    return train, sample, skipped


def markdown(res: dict) -> str:
    peak, sites = res["bf16_peak_tflops"], sum((Counter(r["sync_sites"]) for r in res["train"]), Counter())
    lines = [f"# GPU benchmark: {res['device_name']}{' (dry run)' if res['dry_run'] else ''}\n",
             f"Command: `{res['command']}`  ", f"torch {res['hardware']['torch']}, lightning {res['lightning']}; bf16 "
             f"peak measured {peak:.0f} TFLOP/s (matmul {res['plan']['matmul']}^3); wall time {res['seconds']:.0f} "
             "s.\n",
             "## Training (img/s after warm-up steps, Lightning Trainer)\n"]  # fmt: skip
    rows = [[r["model"], r["precision"], r["batch"], r["torch_compile"] or "no", f"{r['img_per_s']:.1f}",
             f"{r['ms_per_step']:.1f}", cell(r["syncs_per_step"], ".1f"), cell(r["peak_memory_gib"], ".2f"),
             f"{r['train_gflops_per_image']:.3g}", f"{r['img_per_s'] * r['train_gflops_per_image'] / 1e3 / peak:.1%}",
             f"{r['first_step_s']:.1f}"] for r in res["train"]]  # fmt: skip
    lines.append(table(["model", "precision", "batch", "compiled", "img/s", "ms/step", "syncs/step", "peak GiB",
                    "GFLOPs/img", "share of bf16 peak", "fit start to step 1, s"], rows))  # fmt: skip
    lines += [f"\n## Sampling ({res['plan']['sample_images']} images, one batch)\n"]
    rows = [[r["model"], "bf16" if r["bf16_autocast"] else "fp32", r["steps"], f"{r['ms_per_step']:.2f}"]
            for r in res["sample"]]  # fmt: skip
    lines.append(table(["model", "autocast", "steps", "ms/step"], rows))
    lines += ["\n## Where the syncs are (all rows, counted steps)\n"]
    lines += [f"- `{k}`: {v}" for k, v in sites.most_common(12)]
    lines += [f"\nNot run (past --budget-s): {', '.join(res['skipped'])}" if res["skipped"] else ""]
    return "\n".join(lines) + "\n"


def add_arguments(p) -> None:
    p.add_argument("--dry-run", action="store_true", help="tiny network, 1 step of each kind, on the CPU (tests)")
    p.add_argument("--budget-s", type=float, default=300, help="start no row after this many seconds (default 300)")
    p.add_argument("--out", type=Path, help="output folder (default benchmarks/speed/results/<device name>/)")


def run(args, argv: list[str]) -> dict:
    import lightning

    plan = DRY_RUN if args.dry_run else Plan()
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device; run `python -m benchmarks gpu` on a GPU machine, or pass --dry-run")
    torch.backends.cuda.matmul.allow_tf32 = False  # the user's default
    if plan.device == "cpu":
        torch.set_num_threads(1)  # the dry run checks the code path; on a shared CPU one thread avoids spin-waits
    start, peak = time.perf_counter(), bf16_peak(plan)
    train, sample, skipped = rows(plan, args.budget_s)
    name = torch.cuda.get_device_name(0) if plan.device == "cuda" else "cpu dry run"
    res = {"device_name": name, "dry_run": args.dry_run, "command": " ".join(["python -m benchmarks", *argv]),
           "hardware": hardware(), "lightning": lightning.__version__, "plan": dataclasses.asdict(plan),
           "bf16_peak_tflops": peak / 1e12, "train": train, "sample": sample, "skipped": skipped,
           "seconds": time.perf_counter() - start}  # fmt: skip
    out = args.out or Path(__file__).parent / "results" / re.sub(r"[^A-Za-z0-9.]+", "_", name)
    save(out, "gpu", res, markdown(res))
    return res
