"""``python -m benchmarks gpu``: DDPM, SSD-4L, SSD-2L (``configs/*_celeba64.yaml``) trained by a Lightning Trainer on
random data, on one GPU: img/s, CUDA syncs per step and their lines, peak memory, share of the measured bf16 matmul
peak, sampling ms/step, compiled rows; no row after ``--budget-s``. ``--dry-run``: the same on the CPU, tiny net."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

from ..machine import hardware

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"
MODELS = {"DDPM": ("ddpm_celeba64.yaml", None), "SSD-4L": ("ssd_celeba64.yaml", 4), "SSD-2L": ("ssd_celeba64.yaml", 2)}
TINY = dict(image_size=32, model_channels=8, channel_mult=[1, 1, 2, 2], num_res_blocks=1, attention_resolutions=[8],
            num_heads=2)  # fmt: skip
PRECISIONS = ("bf16-mixed", "32-true")


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
    compile_mode: str | None = "reduce-overhead"  # the torch_compile rows' mode (one CUDA graph per path); None: none


DRY_RUN = Plan(device="cpu", net=TINY, batches=(2, 4), warmup=1, steps=1, sync_steps=1, sample_images=2,
               sample_steps=2, matmul=256, compile_mode=None)  # fmt: skip


def build(name: str, plan: Plan, torch_compile: str | None = None):
    """The model ``name`` from its config, with ``plan.net``'s overrides."""
    import yaml

    from scale_space_diffusion import DDPM, FlexiUNet, Optimization, Sampling, ScaleSpaceDiffusion, UNet

    config, levels = MODELS[name]
    args = dict(yaml.safe_load((ROOT / "configs" / config).read_text())["model"]["init_args"])
    net = (FlexiUNet if levels else UNet)(**{**args.pop("net")["init_args"], **plan.net})
    sampling = Sampling(**{**args.pop("sampling"), "grid_size": 0, "grid_every_n_epochs": 0})  # no grids at fit end
    args.update(optim=Optimization(**args.pop("optim")), sampling=sampling)
    if levels:
        args["num_levels"] = levels
    if torch_compile:
        args["torch_compile"] = torch_compile
    return (ScaleSpaceDiffusion if levels else DDPM)(net, **args)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_row(name: str, precision: str, batch: int, plan: Plan, torch_compile: str | None, flops: dict[str, float]) -> dict:
    """Train ``name`` warmup + steps + sync_steps steps: img/s over ``steps``, syncs over the last; ``flops``: a cache."""
    import lightning as L

    from scale_space_diffusion.metrics.model_flops import training_flops_breakdown

    torch.manual_seed(0)
    model = build(name, plan, torch_compile)
    n, size = batch * (plan.warmup + plan.steps + plan.sync_steps), model.image_size
    images, labels = torch.rand(n, model.channels, size, size) * 2 - 1, torch.zeros(n, dtype=torch.long)
    data = torch.utils.data.TensorDataset(images, labels)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, num_workers=2 if plan.device == "cuda" else 0,
                                         pin_memory=plan.device == "cuda", drop_last=True)  # fmt: skip
    start, stop, marks = plan.warmup, plan.warmup + plan.steps, {}
    debug = lambda mode: torch.cuda.set_sync_debug_mode(mode) if plan.device == "cuda" else None  # noqa: E731

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == start:
                sync(plan.device)
                marks["t0"] = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step in (1, stop):
                sync(plan.device)
                marks[trainer.global_step] = time.perf_counter()
            if trainer.global_step in (stop, stop + plan.sync_steps):  # count the syncs of sync_steps whole steps
                debug(int(trainer.global_step == stop))  # 1: warn on every sync

        def on_train_end(self, trainer, pl_module):
            debug(0)

    trainer = L.Trainer(accelerator=plan.device, devices=1, precision=precision, max_steps=stop + plan.sync_steps,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Clock()],
                        default_root_dir="/tmp/ssd-gpu-bench")  # fmt: skip
    if plan.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_start = time.perf_counter()
        trainer.fit(model, train_dataloaders=loader)
    seconds = marks[stop] - marks["t0"]
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message).lower())
    if name not in flops and not torch_compile:
        flops[name] = training_flops_breakdown(model)["total_flops"]
    return {"model": name, "precision": precision, "batch": batch, "torch_compile": torch_compile,
            "img_per_s": batch * plan.steps / seconds, "ms_per_step": 1e3 * seconds / plan.steps,
            "first_step_s": marks[1] - fit_start, "train_gflops_per_image": flops.get(name, float("nan")) / 1e9,
            "syncs_per_step": sum(sites.values()) / plan.sync_steps if plan.device == "cuda" else None,
            "sync_sites": dict(sites.most_common(8)),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if plan.device == "cuda" else None}  # fmt: skip


def sample_row(name: str, autocast: bool, plan: Plan) -> dict:
    """ms per sampler step for ``plan.sample_images`` images (one batch), fp32 or under bf16 autocast."""
    from scale_space_diffusion import image_noise

    torch.manual_seed(0)
    model = build(name, plan).to(plan.device).eval()
    idx, evaluations = torch.arange(plan.sample_images), []
    with torch.autocast(plan.device, dtype=torch.bfloat16, enabled=autocast):
        for steps in (2, plan.sample_steps):  # a short warm-up call, then the timed one
            evaluations.clear()
            sync(plan.device)
            t0 = time.perf_counter()
            model.sample(image_noise(0, idx), sampling=dataclasses.replace(model.sampling, steps=steps),
                         callback=evaluations.append)  # fmt: skip
            sync(plan.device)
            seconds = time.perf_counter() - t0
    return {"model": name, "bf16_autocast": autocast, "images": plan.sample_images, "steps": len(evaluations),
            "ms_per_step": 1e3 * seconds / len(evaluations)}


def bf16_peak(plan: Plan, reps: int = 10) -> float:
    """FLOP/s of the fastest of ``reps`` bf16 (n, n) matmuls on the device."""
    a = torch.randn(plan.matmul, plan.matmul, device=plan.device, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(reps + 1):  # the first is a warm-up
        sync(plan.device)
        t0 = time.perf_counter()
        a @ a
        sync(plan.device)
        best = min(best, time.perf_counter() - t0) if _ else best
    return 2 * plan.matmul**3 / best


def rows(plan: Plan, budget_s: float) -> tuple[list[dict], list[dict], list[str]]:
    """(training rows, sampling rows, the rows skipped past the budget)."""
    from scale_space_diffusion import DDPM

    jobs = [("train", m, p, b, None) for m in MODELS for p in PRECISIONS for b in plan.batches]
    jobs += [("sample", m, a) for m in MODELS for a in (False, True)]
    if plan.compile_mode and "torch_compile" in inspect.signature(DDPM).parameters:
        jobs += [("train", m, "bf16-mixed", plan.batches[0], plan.compile_mode) for m in ("DDPM", "SSD-4L")]
    train, sample, skipped, flops, start = [], [], [], {}, time.perf_counter()
    for kind, *job in jobs:
        if time.perf_counter() - start > budget_s * (0.6 if kind == "train" and job[3] else 1):  # compiling takes minutes
            skipped.append(" ".join(map(str, [kind, *job])))
        elif kind == "train":
            train.append(train_row(*job[:3], plan, job[3], flops))
        else:
            sample.append(sample_row(*job, plan))
        print(f"{kind} {job} done at {time.perf_counter() - start:.0f} s", flush=True)
    return train, sample, skipped


def markdown(res: dict) -> str:
    f = lambda x, fmt="{:.1f}": "-" if x is None else fmt.format(x)  # noqa: E731
    lines = [f"# GPU benchmark: {res['device_name']}{' (dry run)' if res['dry_run'] else ''}\n",
             f"Command: `{res['command']}`  ", f"torch {res['hardware']['torch']}, lightning {res['lightning']}; "
             f"bf16 peak measured {res['bf16_peak_tflops']:.0f} TFLOP/s (matmul {res['plan']['matmul']}^3); wall time "
             f"{res['seconds']:.0f} s.\n", "## Training (img/s after warm-up steps, Lightning Trainer)\n",
             "| model | precision | batch | compiled | img/s | ms/step | syncs/step | peak GiB | GFLOPs/img | "
             "share of bf16 peak | fit start to step 1, s |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["train"]:
        share = r["img_per_s"] * r["train_gflops_per_image"] * 1e9 / (1e12 * res["bf16_peak_tflops"])
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['torch_compile'] or 'no'} | "
                     f"{r['img_per_s']:.1f} | {r['ms_per_step']:.1f} | {f(r['syncs_per_step'])} | "
                     f"{f(r['peak_memory_gib'], '{:.2f}')} | {r['train_gflops_per_image']:.3g} | {share:.1%} | "
                     f"{f(r['first_step_s'])} |")  # fmt: skip
    lines += [f"\n## Sampling ({res['plan']['sample_images']} images, one batch)\n",
              "| model | autocast | steps | ms/step |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {'bf16' if r['bf16_autocast'] else 'fp32'} | {r['steps']} | {r['ms_per_step']:.2f} |"
              for r in res["sample"]]
    sites = Counter()
    for r in res["train"]:
        sites.update(r["sync_sites"])
    lines += ["\n## Where the syncs are (all rows, counted steps)\n"] + [f"- `{k}`: {v}" for k, v in sites.most_common(12)]
    return "\n".join(lines + [f"\nNot run (past --budget-s): {', '.join(res['skipped'])}" if res["skipped"] else ""]) + "\n"


def add_arguments(p) -> None:
    p.add_argument("--dry-run", action="store_true", help="tiny network, 1 step of each kind, on the CPU (tests)")
    p.add_argument("--budget-s", type=float, default=300, help="start no row after this many seconds (default 300)")
    p.add_argument("--out", type=Path, help=f"output folder (default {RESULTS}/<device name>/)")


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
    out = args.out or RESULTS / re.sub(r"[^A-Za-z0-9.]+", "_", name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(res, indent=1))
    (out / "gpu.md").write_text(markdown(res))
    print((out / "gpu.md").read_text())
    return res
