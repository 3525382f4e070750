"""``python -m benchmarks throughput``: CPU train/sample time per resolution path, side A (``--ref``, a revision)
against B (this tree), each in its own ``worker.py`` process, timed alternately (A B, B A, ...) on the same seeded
networks, whose outputs are compared first. Whole-ladder numbers weight the paths by their share of t or jumps."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from ..machine import hardware, load
from ..output import cell, save_result as save, table
from .worker import case_spec

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"
CONFIGS, MODELS = ("authors", "demo"), ("ddpm", "ssd", "ssd_full", "sd")
MODEL_NAMES = {"ddpm": "DDPM", "ssd": "SSD (flexi)", "ssd_full": "SSD (unet_mode=full)", "sd": "SD student"}
OPTIONS = ("bf16", "channels_last", "compile", "malloc")  # per side (--options, --ref-options): benchmarks/README.md
TARGET_S = 0.6  # seconds each measurement aims at: iterations per repetition = TARGET_S / one step, 1..10


def options(text: str) -> list[str]:
    opts = [o.strip() for o in text.split(",") if o.strip()]
    if bad := sorted(set(opts) - set(OPTIONS)):
        raise argparse.ArgumentTypeError(f"unknown options {bad}; use {', '.join(OPTIONS)}")
    return opts


def add_arguments(p) -> None:
    p.add_argument("--ref", default="050a661", help="side A: a git revision, '.' (this working tree) or 'none'")
    p.add_argument("--ref-options", type=options, default=[], help=f"side A, comma-separated: {', '.join(OPTIONS)}")
    p.add_argument("--options", type=options, default=[], help="side B options (as --ref-options)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads of each worker (default 2)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=[*CONFIGS, "tiny"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--reps", type=int, default=4, help="alternating repetitions (default 4)")
    p.add_argument("--jobs", nargs="+", default=["train", "sample"], choices=["train", "sample", "ladder"],
                   help="ladder: the whole respaced ladder end to end (always at the demo config)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny networks, 1 repetition, 10 sampler steps (tests)")
    p.add_argument("--name", help="result file stem (default: a timestamp)")
    p.add_argument("--out", type=Path, default=RESULTS)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def tree(rev: str) -> dict:
    """A side's source folder and description: "." is this working tree; a revision is exported to /tmp."""
    if rev == ".":
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "scale_space_diffusion")
        return {"source": str(ROOT), "desc": f"working tree at {git('rev-parse', '--short', 'HEAD')}"
                + (" + local changes" if dirty else "")}  # fmt: skip
    if not (sha := git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")):
        raise SystemExit(f"error: --ref {rev!r} is not a commit of this checkout; give a revision, '.' or 'none'")
    dest = Path(tempfile.gettempdir()) / f"ssd-throughput-{sha[:12]}"
    dest.mkdir(exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "scale_space_diffusion"], capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return {"source": str(dest), "desc": f"{sha[:7]} ({git('log', '-1', '--format=%s', sha)[:60]})"}


def start_worker(source: str, threads: int, options: list[str]) -> subprocess.Popen:
    """A ``worker.py`` process importing the package from ``source`` (its errors print to our stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__).with_name("worker.py")), source, str(threads), *options]
    pipe, cwd = subprocess.PIPE, tempfile.gettempdir()
    return subprocess.Popen(cmd, stdin=pipe, stdout=pipe, text=True, env=env, cwd=cwd)


def ask(worker: subprocess.Popen, **msg) -> dict:
    """Send one JSON line, read one back."""
    worker.stdin.write(json.dumps(msg) + "\n")
    worker.stdin.flush()
    if not (line := worker.stdout.readline()):
        raise RuntimeError(f"the worker of {worker.args[2]} exited with code {worker.wait()} (its error is above)")
    return json.loads(line)


def paired(a: list[float], b: list[float]) -> dict:
    """Medians of A and B (seconds) and the speed-up A/B paired per repetition: median, min, max (None without A)."""
    r = [x / y for x, y in zip(a, b)]
    return {"a_s": median(a) if a else None, "b_s": median(b) if b else None, "speedup": median(r) if r else None,
            "speedup_min": min(r, default=None), "speedup_max": max(r, default=None), "reps": len(r or a or b)}


def measure_case(spec: dict, sides: dict[str, subprocess.Popen], jobs: list[str], reps: int, quick: bool) -> dict:
    """Build, compare the outputs, warm up (the first call's time kept: the compile cost), then time alternately."""
    start, load_before = time.perf_counter(), load()
    built = {s: ask(w, case=spec, flops=s == "b") for s, w in sides.items()}
    b = built["b"]
    rec = {"case": spec, "params": b["params"], "train_paths": b["train_paths"], "sample_paths": b["sample_paths"],
           "load_before": load_before, "flops": b["flops"]}  # fmt: skip
    if "a" in built:
        rec["max_abs_diff"] = {p: max(abs(x - y) for x, y in zip(built["a"]["outputs"][p], ys))
                               for p, ys in b["outputs"].items()}  # fmt: skip
    todo = [(j, p) for j in ("train", "sample") if j in jobs for p in b[f"{j}_paths"]]
    todo += [("ladder", None)] if "ladder" in jobs or (spec["config"] in ("demo", "tiny") and "sample" in jobs) else []
    walls = lambda s, job, n: ask(sides[s], case=spec, job=job[0], path=job[1], iters=n)["wall"]  # noqa: E731
    first = {job: {s: walls(s, job, 1)[0] for s in sides} for job in todo}
    iters = {job: 1 if quick else max(1, min(10, round(TARGET_S / max(median(first[job].values()), 1e-6))))
             for job in todo}  # fmt: skip
    series = {job: {"a": [], "b": []} for job in todo}
    for rep in range(reps):
        for job in todo:
            for s in [s for s in ("ab" if rep % 2 == 0 else "ba") if s in sides]:
                series[job][s].append(median(walls(s, job, iters[job])))
        print(f"  {spec['config']}/{spec['model']} rep {rep + 1}/{reps} load {load():.2f}", flush=True)
    rec["jobs"] = [{"job": job, "path": path, "iters": iters[(job, path)], "first_s": first[(job, path)],
                    **paired(v["a"], v["b"]), "a_reps": v["a"], "b_reps": v["b"]} for (job, path), v in series.items()]
    rec["summary"] = summarise(rec, series, spec)
    rec["load_after"], rec["seconds"] = load(), time.perf_counter() - start
    return rec


def summarise(rec: dict, series: dict, spec: dict) -> dict:
    """Whole-ladder numbers per repetition from the per-path medians, paired across sides, and each ladder's speed-up
    over its own 1-level (top path) step next to the FLOPs ratio."""
    out, top, fl = {}, "32->32" if spec["config"] != "tiny" else "16->16", rec["flops"]
    for job, unit, n in (("train", 1.0, 1), ("sample", 1.0 / spec["sample_batch"], spec["sample_steps"])):
        weights, times = rec[f"{job}_paths"], {p: v for (j, p), v in series.items() if j == job}
        if not times or set(times) != set(weights):
            continue
        ladder = {}  # side -> per repetition, the paths' medians weighted by their shares
        for s in [s for s in "ab" if all(v[s] for v in times.values())]:
            per_rep = zip(*(v[s] for v in times.values()))
            ladder[s] = [unit * sum(weights[p] * x for p, x in zip(times, xs)) for xs in per_rep]
        step = paired(ladder.get("a", []), ladder.get("b", []))
        out["train_step_s" if job == "train" else "sample_s_per_image"] = step
        if job == "train":
            out["train_images_per_s"] = {s: spec["batch"] / step[f"{s}_s"] if step[f"{s}_s"] else None for s in "ab"}
        if len(times) > 1 and top in times:
            vs = {s: median(n * unit * x / y for x, y in zip(times[top][s], xs)) for s, xs in ladder.items()}
            out[f"{job}_vs_1_level"] = {**vs, "flops": n * fl[job][top] / fl[f"{job}_total"]}
    if lad := series.get(("ladder", None)):
        out["ladder_e2e_s_per_image"] = paired(*([x / spec["sample_batch"] for x in lad[s]] for s in "ab"))
    return out


def speedup(d: dict) -> str:
    """The paired speed-up: **median** [min-max]."""
    if d.get("speedup") is None:
        return "-"
    return f"**{d['speedup']:.2f}x** [{d['speedup_min']:.2f}-{d['speedup_max']:.2f}]"


def markdown(res: dict) -> str:
    hw, model = res["hardware"], lambda c: [c["case"]["config"], MODEL_NAMES[c["case"]["model"]]]  # noqa: E731
    side = lambda s: "(none)" if s is None else s["desc"] + (f" {s['options']}" if s["options"] else "")  # noqa: E731
    lines = [f"# Throughput: {res['name']}\n", f"Command: `{res['command']}`  ",
             f"A = {side(res['sides'].get('a'))}  ", f"B = {side(res['sides']['b'])}  ",
             f"Machine: {hw['cpu_model']}, {hw['cpu_cores']} cores, ISA {hw['isa']}, {res['threads']} torch threads "
             f"per side, torch {hw['torch']}.  ", f"Load average (1 min) before / after: {res['load_before']:.2f} / "
             f"{res['load_after']:.2f}; wall time {res['seconds']:.0f} s. Alternating A/B repetitions: {res['reps']}; "
             "times are medians of per-repetition medians; speed-up = A time / B time per repetition, median "
             "[min-max].\n", "## Whole ladder\n"]  # fmt: skip
    rows = []
    for c in res["cases"]:
        s, diff = c["summary"], max(c["max_abs_diff"].values()) if c.get("max_abs_diff") else None
        ips, sam = s.get("train_images_per_s", {}), s.get("sample_s_per_image", {})
        train = [cell(ips.get("a"), ".1f"), cell(ips.get("b"), ".1f"), speedup(s.get("train_step_s", {}))]
        rows.append(model(c) + train + [cell(sam.get("a_s"), ".4f"), cell(sam.get("b_s"), ".4f"), speedup(sam),
                                        cell(diff, ".1e")])
    lines.append(table(["config", "model", "train img/s A", "train img/s B", "train speed-up", "sample s/img A",
                    "sample s/img B", "sample speed-up", "outputs max abs diff"], rows))  # fmt: skip
    if vs := [c for c in res["cases"] if {"train_vs_1_level", "sample_vs_1_level"} & set(c["summary"])]:
        lines += ["\n## Ladder speed-up over the same net's 1-level (top path) step, vs its FLOPs ratio\n"]
        rows = [model(c) + [cell(c["summary"].get(f"{j}_vs_1_level", {}).get(k), ".2f") for j in ("train", "sample")
                            for k in ("a", "b", "flops")] for c in vs]  # fmt: skip
        lines.append(table(["config", "model", "train A", "train B", "train FLOPs ratio", "sample A", "sample B",
                        "sample FLOPs ratio"], rows))  # fmt: skip
    lines += ["\n## Per path\n", "ms per step (train: batch 32 forward+backward+AdamW; sample: one reverse step at "
              "batch 8; ladder: the whole respaced ladder at batch 8). weight: share of t (train) or jumps (sample).\n"]
    rows, ms = [], lambda x: cell(x and 1e3 * x, ".1f")  # noqa: E731
    for c in res["cases"]:
        for j in c["jobs"]:
            f = c["flops"][j["job"]].get(j["path"]) if j["job"] != "ladder" else None
            gfs = f * c["case"]["batch" if j["job"] == "train" else "sample_batch"] / j["b_s"] / 1e9 if f else None
            rows.append(model(c) + [j["job"], j["path"] or "all", cell(c.get(f"{j['job']}_paths", {}).get(j["path"])),
                                    j["iters"], ms(j["a_s"]), ms(j["b_s"]), speedup(j), ms(j["first_s"]["b"]),
                                    cell(gfs, ".1f")])  # fmt: skip
    lines.append(table(["config", "model", "job", "path", "weight", "iters", "A ms", "B ms", "speed-up", "B first call ms",
                    "B GFLOP/s"], rows))  # fmt: skip
    return "\n".join(lines) + "\n"


def run(args, argv: list[str]) -> dict:
    configs, reps = (["tiny"], 1) if args.quick else (args.configs, args.reps)
    refs = {"a": (args.ref, args.ref_options)} if args.ref.lower() != "none" else {}
    refs["b"] = (".", args.options)
    sides = {s: {"rev": rev, "options": opts, **tree(rev)} for s, (rev, opts) in refs.items()}  # bad --ref: exits here
    start, load_before, workers, cases = time.perf_counter(), load(), {}, []
    try:
        for s, d in sides.items():
            workers[s] = start_worker(d["source"], args.threads, d["options"])
        for spec in (case_spec(config, model, args.quick) for config in configs for model in args.models):
            print(f"{spec['config']}/{spec['model']} ...", flush=True)
            cases.append(measure_case(spec, workers, args.jobs, reps, args.quick))
    finally:
        for w in workers.values():
            w.kill()  # it holds nothing to save
    name = args.name or time.strftime("%Y%m%d-%H%M%S")
    res = {"name": name, "command": " ".join(["python -m benchmarks", *argv]), "sides": sides, "hardware": hardware(),
           "threads": args.threads, "reps": reps, "load_before": load_before, "load_after": load(),
           "seconds": time.perf_counter() - start, "cases": cases}  # fmt: skip
    save(args.out, name, res, markdown(res))
    return res
