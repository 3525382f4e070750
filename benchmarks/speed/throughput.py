"""``python -m benchmarks.throughput`` (or ``python -m benchmarks throughput``): training and sampling speed, A/B.

Side A is a reference revision (default c666f5b, main before the speed work), side B this working tree; each runs in
its own worker process (``benchmarks/throughput_worker.py``, ``PYTHONPATH`` at that side's tree) and the two are
timed alternately (A B, then B A, ...) so that load on this shared machine hits both alike. Reported per
measurement: each side's median over repetitions and the paired speed-up A/B per repetition (median, min-max).

What is timed, per model (DDPM, SSD with the Flexi-UNet, SSD with ``unet_mode="full"``, the Spectral Diffusion
student with its teacher), at the authors' SSD configuration and at the demo one (configs/ssd_fmnist32.yaml):

- **train**: one optimisation step at batch 32 through the model's own loss (``loss_terms``; at c666f5b
  ``loss_fn(network, ...)`` plus ``auxiliary_loss``), backward and AdamW, per resolution path (r(t), r(t-1)) with
  a batch of t on that path; the whole ladder is the expectation over t (each path weighted by its share of t).
- **sample**: one ancestral reverse step (denoise, clip, exact posterior mean and noise) at batch 8 per sampler path
  (r(t), r(s)) of the respaced ladder; the whole ladder is each path's step time times its number of jumps
  (and, where cheap, the ladder timed end to end).

Both sides build the same networks with the same deterministic weights; their outputs are compared on every
sampling path before timing (``max_abs_diff``). Results: ``benchmarks/results/throughput/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from .ab import Series, Worker, load, median, paired, tree

RESULTS = Path(__file__).parent / "results" / "throughput"
CONFIGS = ("authors", "demo")
MODELS = ("ddpm", "ssd", "ssd_full", "sd")
OPTIONS = {  # per-side options (--options, --ref-options)
    "bf16": 'train and sample under torch.autocast("cpu", torch.bfloat16), as precision="bf16-mixed"',
    "channels_last": "model and inputs in torch.channels_last memory format",
    "compile": "model.net.compile() (what torch_compile=True does), compiled on the warm-up call",
    "fused_adamw": "the model's AdamW rebuilt with fused=True (a proposed configure_optimizers change)",
    "malloc": "glibc malloc keeps freed memory for reuse (what `ssd` does at start: cpu.retain_freed_memory)",
    "passive": "OMP_WAIT_POLICY=PASSIVE for the worker (idle OpenMP threads sleep instead of spinning)",
}
MODEL_NAMES = {"ddpm": "DDPM", "ssd": "SSD (flexi)", "ssd_full": "SSD (unet_mode=full)", "sd": "SD student"}


def case_spec(config: str, model: str, quick: bool) -> dict:
    tiny = config == "tiny"
    return {"config": config, "model": model, "batch": 4 if tiny else 32, "sample_batch": 2 if tiny else 8,
            "sample_steps": 10 if quick else 100}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n")[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ref", default="c666f5b", help="side A: a git revision, '.' (this working tree) or 'none'")
    p.add_argument("--ours", default=".", help="side B: '.' (this working tree, default) or a git revision")
    p.add_argument("--overlay", nargs="+", default=[], metavar="PATH",
                   help="side B: lay the working tree's copies of these paths over --ours (e.g. --ours HEAD --overlay "
                   "scale_space_diffusion/networks)")  # fmt: skip
    p.add_argument("--ref-options", default="", help=f"side A options, comma-separated: {', '.join(OPTIONS)}")
    p.add_argument("--options", default="", help="side B options (as --ref-options)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads of each worker (default 2)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=[*CONFIGS, "tiny"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--jobs", nargs="+", default=["train", "sample"], choices=["train", "sample", "ladder"],
                   help="ladder: also time the whole respaced ladder end to end (default only at the demo config)")  # fmt: skip
    p.add_argument("--reps", type=int, default=4, help="alternating repetitions (default 4)")
    p.add_argument("--target-s", type=float, default=0.6,
                   help="seconds each measurement aims at (iterations per repetition = target / one step, 1..10)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per measurement and side (default 1)")
    p.add_argument("--paths", nargs="+", help="only these paths, e.g. 16->16 8->8")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOPs count (on side B)")
    p.add_argument("--quick", action="store_true", help="tiny networks, 1 repetition, 10 sampler steps (tests)")
    p.add_argument("--name", help="result file stem (default: a timestamp)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"output folder (default {RESULTS})")


def _opts(text: str) -> list[str]:
    opts = [o.strip() for o in text.split(",") if o.strip()]
    bad = sorted(set(opts) - set(OPTIONS))
    if bad:
        raise SystemExit(f"error: unknown options {bad}; use {', '.join(OPTIONS)}")
    return opts


def _say(*parts) -> None:
    print(*parts, flush=True)


def measure_case(spec: dict, sides: dict[str, Worker], args) -> dict:
    key = f"{spec['config']}/{spec['model']}"
    start, load_before = time.perf_counter(), load()
    built = {s: w.ask(cmd="build", key=key, case=spec) for s, w in sides.items()}
    b = built.get("b") or built["a"]
    rec = {"case": spec, "params": b["params"], "train_paths": b["train_paths"], "sample_paths": b["sample_paths"],
           "load_before": load_before}  # fmt: skip
    if len(built) == 2:
        rec["same_weights"] = abs(built["a"]["param_sum"] - built["b"]["param_sum"]) <= 1e-9 * max(1.0, abs(b["param_sum"]))
        outs = {s: w.ask(cmd="check", key=key)["outputs"] for s, w in sides.items()}
        rec["max_abs_diff"] = {p: max(abs(x - y) for x, y in zip(outs["a"][p], outs["b"][p])) for p in outs["b"]}
    if not args.no_flops:
        rec["flops"] = (sides.get("b") or sides["a"]).ask(cmd="flops", key=key)
    jobs = []
    wanted = lambda p: args.paths is None or p in args.paths  # noqa: E731
    if "train" in args.jobs:
        jobs += [("train", p) for p in b["train_paths"] if wanted(p)]
    if "sample" in args.jobs:
        jobs += [("sample", p) for p in b["sample_paths"] if wanted(p)]
    if "ladder" in args.jobs or (spec["config"] in ("demo", "tiny") and "sample" in args.jobs and args.paths is None):
        jobs.append(("ladder", None))
    iters, first = {}, {}
    for job in jobs:  # warm-up: caches, allocator, compile; the first call's time is kept (compile cost)
        for s, w in sides.items():
            t = w.ask(cmd="time", key=key, job=job[0], path=job[1], iters=max(1, args.warmup))["wall"]
            first.setdefault(job, {})[s] = t[0]
        one = median(list(first[job].values()) if args.warmup <= 1 else [t[-1]])
        iters[job] = 1 if args.quick else max(1, min(10, round(args.target_s / max(one, 1e-6))))
    series = {job: Series() for job in jobs}
    cpu = {job: {"a": [], "b": []} for job in jobs}
    for rep in range(args.reps):
        for job in jobs:
            for s in ("a", "b") if rep % 2 == 0 else ("b", "a"):
                if s in sides:
                    r = sides[s].ask(cmd="time", key=key, job=job[0], path=job[1], iters=iters[job])
                    series[job].add(s, r["wall"])
                    cpu[job][s].append(sum(r["cpu"]) / max(sum(r["wall"]), 1e-9))
        _say(f"  {key} rep {rep + 1}/{args.reps} load {os.getloadavg()[0]:.2f}")
    for w in sides.values():
        w.ask(cmd="drop", key=key)
    rec["jobs"] = []
    for (job, path), s in series.items():
        row = {"job": job, "path": path, "iters": iters[(job, path)], "first_s": first[(job, path)], **paired(s.a, s.b),
               "a_reps": s.a, "b_reps": s.b, "cpu_per_wall": {k: median(v) if v else None for k, v in cpu[(job, path)].items()}}  # fmt: skip
        rec["jobs"].append(row)
    rec["summary"] = summarise(rec, series, spec)
    rec["load_after"], rec["seconds"] = load(), time.perf_counter() - start
    return rec


def summarise(rec: dict, series: dict, spec: dict) -> dict:
    """Whole-ladder numbers per repetition from the per-path medians, then paired across sides."""
    out = {}
    train = {p: s for (j, p), s in series.items() if j == "train"}
    sample = {p: s for (j, p), s in series.items() if j == "sample"}
    full_train = set(train) == set(rec["train_paths"])
    full_sample = set(sample) == set(rec["sample_paths"])

    def per_rep(side: str, weights: dict, times: dict, scale: float) -> list[float]:
        reps = min(len(getattr(s, side)) for s in times.values()) if times else 0
        return [scale * sum(weights[p] * getattr(times[p], side)[r] for p in times) for r in range(reps)]

    R = spec.get("image_size", 32 if spec["config"] != "tiny" else 16)
    top = f"{R}->{R}"
    if full_train and train:
        a = per_rep("a", rec["train_paths"], train, 1.0)
        b = per_rep("b", rec["train_paths"], train, 1.0)
        step = paired(a, b)
        out["train_step_s"] = step
        out["train_images_per_s"] = {"a": spec["batch"] / step["a_s"] if a else None,
                                     "b": spec["batch"] / step["b_s"] if b else None}  # fmt: skip
        if len(train) > 1 and top in train:  # the ladder's speed-up over its own 1-level (top path) step
            out["train_vs_1_level"] = {s: median([getattr(train[top], s)[r] / v for r, v in enumerate(vals)])
                                       for s, vals in (("a", a), ("b", b)) if vals}  # fmt: skip
            fl = rec.get("flops")
            if fl:
                out["train_vs_1_level"]["flops"] = fl["train"][top] / fl["train_total"]
    if full_sample and sample:
        a = per_rep("a", rec["sample_paths"], sample, 1.0 / spec["sample_batch"])
        b = per_rep("b", rec["sample_paths"], sample, 1.0 / spec["sample_batch"])
        out["sample_s_per_image"] = paired(a, b)
        n = spec["sample_steps"]
        if len(sample) > 1 and top in sample:
            out["sample_vs_1_level"] = {s: median([n * getattr(sample[top], s)[r] / spec["sample_batch"] / v
                                                   for r, v in enumerate(vals)])
                                        for s, vals in (("a", a), ("b", b)) if vals}  # fmt: skip
            fl = rec.get("flops")
            if fl:
                out["sample_vs_1_level"]["flops"] = n * fl["sample"][top] / fl["sample_total"]
    lad = next((s for (j, _), s in series.items() if j == "ladder"), None)
    if lad is not None:
        out["ladder_e2e_s_per_image"] = paired([x / spec["sample_batch"] for x in lad.a],
                                               [x / spec["sample_batch"] for x in lad.b])  # fmt: skip
    return out


def hardware(threads: int) -> dict:
    import torch

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return {"cpu_model": model, "cpu_cores": os.cpu_count(), "isa": isa, "threads": threads, "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip


def _f(x, fmt="{:.3g}") -> str:
    return "-" if x is None else fmt.format(x)


def _ms(x) -> str:
    return "-" if x is None else f"{1e3 * x:.1f}"


def _speed(d: dict) -> str:
    if d.get("speedup") is None:
        return "-"
    return f"**{d['speedup']:.2f}x** [{d['speedup_min']:.2f}-{d['speedup_max']:.2f}]"


def markdown(res: dict) -> str:
    a, b = res["sides"].get("a"), res["sides"]["b"]
    lines = [f"# Throughput: {res['name']}\n",
             f"Command: `{res['command']}`  ",
             f"A = {a['desc'] + (' ' + str(a['options']) if a['options'] else '') if a else '(none)'}  ",
             f"B = {b['desc']}{' ' + str(b['options']) if b['options'] else ''}  ",
             f"Machine: {res['hardware']['cpu_model']}, {res['hardware']['cpu_cores']} cores, ISA {res['hardware']['isa']}, "
             f"{res['hardware']['threads']} torch threads per side, torch {res['hardware']['torch']}.  ",
             f"Load average (1 min) before / after: {res['load_before']['load1']:.2f} / {res['load_after']['load1']:.2f}; "
             f"wall time {res['seconds']:.0f} s. Alternating A/B repetitions: {res['reps']}; times are medians of "
             "per-repetition medians; speed-up = A time / B time per repetition, median [min-max].\n"]  # fmt: skip
    lines += ["## Whole ladder\n",
              "| config | model | train img/s A | train img/s B | train speed-up | sample s/img A | sample s/img B | "
              "sample speed-up | outputs max abs diff |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in res["cases"]:
        s, spec = c["summary"], c["case"]
        ips = s.get("train_images_per_s", {})
        sam = s.get("sample_s_per_image", {})
        diff = max(c["max_abs_diff"].values()) if c.get("max_abs_diff") else None
        lines.append(f"| {spec['config']} | {MODEL_NAMES[spec['model']]} | {_f(ips.get('a'), '{:.1f}')} | "
                     f"{_f(ips.get('b'), '{:.1f}')} | {_speed(s.get('train_step_s', {}))} | {_f(sam.get('a_s'), '{:.4f}')} | "
                     f"{_f(sam.get('b_s'), '{:.4f}')} | {_speed(sam)} | {_f(diff, '{:.1e}')} |")  # fmt: skip
    ssd = [c for c in res["cases"] if c["summary"].get("train_vs_1_level") or c["summary"].get("sample_vs_1_level")]
    if ssd:
        lines += ["\n## Ladder speed-up over the same net's 1-level (top path) step, vs its FLOPs ratio\n",
                  "| config | model | train A | train B | train FLOPs ratio | sample A | sample B | sample FLOPs ratio |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in ssd:
            t, sm = c["summary"].get("train_vs_1_level", {}), c["summary"].get("sample_vs_1_level", {})
            lines.append(f"| {c['case']['config']} | {MODEL_NAMES[c['case']['model']]} | {_f(t.get('a'), '{:.2f}')} | "
                         f"{_f(t.get('b'), '{:.2f}')} | {_f(t.get('flops'), '{:.2f}')} | {_f(sm.get('a'), '{:.2f}')} | "
                         f"{_f(sm.get('b'), '{:.2f}')} | {_f(sm.get('flops'), '{:.2f}')} |")  # fmt: skip
    lines += ["\n## Per path\n",
              "ms per step (train: batch 32 forward+backward+AdamW; sample: one reverse step at batch 8; ladder: the whole "
              "respaced ladder at batch 8). weight: share of t (train) or jumps (sample).\n",
              "| config | model | job | path | weight | iters | A ms | B ms | speed-up | B first call ms | B GFLOP/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in res["cases"]:
        spec, fl = c["case"], c.get("flops") or {}
        for j in c["jobs"]:
            w = {"train": c["train_paths"], "sample": c["sample_paths"]}.get(j["job"], {}).get(j["path"])
            n = spec["batch"] if j["job"] == "train" else spec["sample_batch"]
            f = fl.get(j["job"], {}).get(j["path"]) if j["job"] in ("train", "sample") else None
            gfs = f * n / j["b_s"] / 1e9 if f and j["b_s"] else None
            lines.append(f"| {spec['config']} | {MODEL_NAMES[spec['model']]} | {j['job']} | {j['path'] or 'all'} | "
                         f"{_f(w, '{:.3g}')} | {j['iters']} | {_ms(j['a_s'])} | {_ms(j['b_s'])} | {_speed(j)} | "
                         f"{_ms(j['first_s'].get('b', j['first_s'].get('a')))} | {_f(gfs, '{:.1f}')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run(args, argv: list[str] | None = None) -> dict:
    configs = ["tiny"] if args.quick else args.configs
    if args.quick:
        args.reps = 1
    sides_spec = {}
    if args.ref.lower() != "none":
        sides_spec["a"] = (args.ref, _opts(args.ref_options))
    sides_spec["b"] = (args.ours, _opts(args.options))
    start, load_before = time.perf_counter(), load()
    sides, desc = {}, {}
    try:
        for s, (rev, opts) in sides_spec.items():
            source, d = tree(rev, args.overlay if s == "b" else [])
            desc[s] = {"rev": rev, "desc": d, "options": opts, "source": str(source)}
            sides[s] = Worker(s, source, args.threads, opts)
        cases = []
        for config in configs:
            for model in args.models:
                spec = case_spec(config, model, args.quick)
                _say(f"{spec['config']}/{spec['model']} ...")
                cases.append(measure_case(spec, sides, args))
    finally:
        for w in sides.values():
            w.close()
        for d in desc.values():
            if Path(d["source"]).name.startswith("ssd-throughput-overlay-"):
                shutil.rmtree(d["source"], ignore_errors=True)
    name = args.name or time.strftime("%Y%m%d-%H%M%S")
    argv = sys.argv[1:] if argv is None else argv
    res = {"name": name, "command": " ".join(["python -m benchmarks.throughput", *argv]),
           "sides": desc, "hardware": hardware(args.threads), "reps": args.reps, "load_before": load_before,
           "load_after": load(), "seconds": time.perf_counter() - start, "cases": cases}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    (args.out / f"{name}.md").write_text(markdown(res))
    _say((args.out / f"{name}.md").read_text())
    return res


def main(argv: list[str] | None = None) -> dict:
    return run(parser().parse_args(argv), argv)


if __name__ == "__main__":
    main()
