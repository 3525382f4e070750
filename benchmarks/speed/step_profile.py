"""``python -m benchmarks profile``: a training step (``worker.Case``) under ``torch.profiler``, fp32 vs bf16 autocast:
ops' self CPU time by category, Amdahl's bound for bf16, and each matrix category's GFLOP/s against this machine's
ceiling (the faster of a large matmul and a 3x3 convolution, fp32 and bf16)."""

from __future__ import annotations

import platform
import time
import timeit
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from scale_space_diffusion.cpu import native_cpu_bf16
from scale_space_diffusion.metrics.flops import register_cpu_attention_flops
from scale_space_diffusion.networks.linear import linear

from ..output import table
from .throughput import RESULTS
from .worker import NETS, Case, case_spec

# (name, substrings of the aten op name), the first match wins. In fp32 on CPU the attention projections run as 1x1
# convolutions (networks/linear.py) and count as convolution; attention over <= 64 tokens is explicit bmm (matmul).
CATEGORIES = (
    ("convolution", ("convolution", "conv2d", "conv_depthwise")),
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("matmul", ("::mm", "::bmm", "::addmm", "::baddbmm", "::matmul", "::linear")),
    ("group norm", ("group_norm", "layer_norm")),
    ("optimizer", ("_foreach_", "_fused_adam")),
    ("dtype casts and copies", ("::to", "::_to_copy", "::copy_", "::clone", "::contiguous")),
    ("elementwise and other", ("",)),
)
MATRIX = ("convolution", "attention", "matmul")
EMULATED = {"reps": 1, "n": 256, "batch": 1}  # ceiling_gflops sizes for bf16 on a CPU that emulates it


def category(op: str) -> str:
    return next(name for name, keys in CATEGORIES if any(k in op for k in keys))


def ceiling_gflops(dtype: torch.dtype, reps: int = 5, n: int = 2048, batch: int = 32) -> dict[str, float]:
    """GFLOP/s, fastest of ``reps``: an (n, n) matmul by BLAS and by oneDNN, a 3x3 conv (batch, 256 -> 256, 32x32)."""
    a, x = torch.randn(n, n).to(dtype), torch.randn(batch, 256, 32, 32).to(dtype)
    w = torch.randn(256, 256, 3, 3).to(dtype)
    jobs = {"matmul": (lambda: a @ a, 2 * n**3), "matmul (oneDNN)": (lambda: linear(a, a), 2 * n**3),
            "conv3x3": (lambda: F.conv2d(x, w, padding=1), 2 * batch * 32 * 32 * 256 * 256 * 9)}  # fmt: skip
    with torch.no_grad():  # the first of reps + 1 calls is a warm-up
        return {k: f / min(timeit.repeat(fn, number=1, repeat=reps + 1)[1:]) / 1e9 for k, (fn, f) in jobs.items()}


def step_flops(config: str, model: str, path: str) -> dict[str, float]:
    """FLOPs of one fp32 training step on ``path`` by matrix category (precision does not change them)."""
    case, counter = Case(case_spec(config, model, quick=False), []), FlopCounterMode(display=False)
    register_cpu_attention_flops()
    with counter:
        case.train_step(path)
    flops = dict.fromkeys(MATRIX, 0.0)
    for op, n in counter.get_flop_counts()["Global"].items():
        if (name := category(op._qualified_op_name)) in flops:  # e.g. "aten::convolution_backward"
            flops[name] += n
    return flops


def profile_step(config: str, model: str, path: str, options: list[str], iters: int) -> dict[str, float]:
    """Milliseconds per training step on ``path`` by category (and "step": the wall-clock per step)."""
    case = Case(case_spec(config, model, quick=False), options)
    for _ in range(2):  # warm-up: oneDNN primitive caches, allocator
        case.train_step(path)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(iters):
            case.train_step(path)
        wall = time.perf_counter() - start
    ms, in_optimizer = {name: 0.0 for name, _ in CATEGORIES}, 0.0
    for e in prof.key_averages():
        ms[category(e.key)] += e.self_cpu_time_total / 1e3 / iters
        if e.key.startswith("Optimizer.step"):  # its children: AdamW's per-tensor element-wise ops on CPU
            in_optimizer += (e.cpu_time_total - e.self_cpu_time_total) / 1e3 / iters
    moved = min(in_optimizer, ms["elementwise and other"])  # counted as element-wise above; they are the optimizer
    ms["optimizer"], ms["elementwise and other"] = ms["optimizer"] + moved, ms["elementwise and other"] - moved
    return {**ms, "step": 1e3 * wall / iters}


def markdown(args, command: str, a: dict, b: dict, flops: dict, peak: dict, emulated: bool) -> str:
    prof_a, prof_b = (sum(v for k, v in d.items() if k != "step") for d in (a, b))
    mat_a, mat_b = sum(a[k] for k in MATRIX), sum(b[k] for k in MATRIX)
    k, rest, best = mat_a / mat_b, prof_a - mat_a, {d: max(peak[d].values()) for d in peak}
    times = [[c, f"{a[c]:.1f}", f"{a[c] / prof_a:.0%}", f"{b[c]:.1f}", f"{b[c] / prof_b:.0%}",
              f"{a[c] / b[c]:.2f}x" if b[c] > 0 else "n/a"] for c, _ in CATEGORIES]  # fmt: skip
    times.append(["**step (wall-clock)**", f"{a['step']:.1f}", "", f"{b['step']:.1f}", "",
                  f"**{a['step'] / b['step']:.2f}x**"])  # fmt: skip
    speed = []
    for c in MATRIX:
        ga, gb = (flops[c] / d[c] / 1e6 if d[c] else 0.0 for d in (a, b))  # FLOPs / ms -> GFLOP/s
        speed.append([c, f"{flops[c] / 1e9:.1f}", f"{ga:.0f}", f"{ga / best['fp32']:.0%}", f"{gb:.0f}",
                      f"{gb / best['bf16']:.0%}"])  # fmt: skip
    speed += [[f"ceiling: {c}", "", f"{peak['fp32'][c]:.0f}", "", f"{peak['bf16'][c]:.0f}", ""] for c in peak["fp32"]]
    lines = [f"# Training step profile: {args.config} config, {args.model}, path {args.path}, fp32 (A) vs bf16 "
             f"autocast (B)\n", f"Command: `{command}`  ", f"Machine: {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, oneDNN bf16 support: "
             f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}.\n"]  # fmt: skip
    lines.append(table(["category", "A ms/step", "A share", "B ms/step", "B share", "A/B"], times))
    lines.append(f"\nMatrix work (convolution, attention, matmul) is {mat_a / prof_a:.0%} of the fp32 step and runs "
                 f"{k:.2f}x faster under bf16. Amdahl: with everything else at its fp32 time, bf16 gives at most "
                 f"{prof_a / (rest + mat_a / k):.2f}x; with infinitely fast matrix work, {prof_a / rest:.2f}x."
                 + (f" 2x needs the matrix work {mat_a / (prof_a / 2 - rest):.2f}x faster and the rest unchanged."
                    if prof_a / 2 > rest else "") + " (Categories: self times summed over ops; the step row: "
                 "wall-clock per step under the profiler.)\n")  # fmt: skip
    lines.append("GFLOP/s against this machine's ceiling, the fastest of a 2048x2048 matmul (BLAS, oneDNN) and a large "
                 f"3x3 convolution (bf16/fp32: {best['bf16'] / best['fp32']:.2f}x)." + (" This CPU has no bf16 "
                 f"instructions: oneDNN emulates bf16, measured at {EMULATED['n']}x{EMULATED['n']} and batch "
                 f"{EMULATED['batch']}." if emulated else "") + "\n")  # fmt: skip
    lines.append(table(["category", "GFLOP/step", "A GFLOP/s", "A % of fp32 ceiling", "B GFLOP/s", "B % of bf16 ceiling"],
                   speed))
    return "\n".join(lines) + "\n"


def add_arguments(p) -> None:
    p.add_argument("--config", default="authors", choices=list(NETS))
    p.add_argument("--model", default="ddpm", choices=["ddpm", "ssd", "ssd_full", "sd"])
    p.add_argument("--path", default="32->32", help="the resolution path r(t)->r(t-1), e.g. 16->16 for SSD")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--out", type=Path, help=f"markdown file (default {RESULTS}/profile_<config>_<model>.md)")


def run(args, argv: list[str]) -> str:
    a, b = (profile_step(args.config, args.model, args.path, opts, args.iters) for opts in ([], ["bf16"]))
    emulated = not native_cpu_bf16()  # emulated bf16 runs ~1 GFLOP/s: a small ceiling reads the same, in seconds
    peak = {"fp32": ceiling_gflops(torch.float32)}
    peak["bf16"] = ceiling_gflops(torch.bfloat16, **(EMULATED if emulated else {}))
    command = " ".join(["python -m benchmarks", *argv])
    text = markdown(args, command, a, b, step_flops(args.config, args.model, args.path), peak, emulated)
    out = args.out or RESULTS / f"profile_{args.config}_{args.model}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return text
