"""``python -m benchmarks throughput``: CPU train/sample time per resolution path, side A (``--ref``, a revision)
against B (this tree), each in its own worker process, timed alternately (A B, B A, ...) on the same seeded networks
whose outputs are compared first (``max_abs_diff``). train: one AdamW step at batch 32 per path (r(t), r(t-1));
sample: one ancestral step at batch 8 per sampler path; the ladder: paths weighted by their share of t or jumps."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..machine import hardware, load
from .ab import Series, Worker, median, paired, tree

RESULTS = Path(__file__).parent / "results"
CONFIGS, MODELS = ("authors", "demo"), ("ddpm", "ssd", "ssd_full", "sd")
MODEL_NAMES = {"ddpm": "DDPM", "ssd": "SSD (flexi)", "ssd_full": "SSD (unet_mode=full)", "sd": "SD student"}
OPTIONS = ("bf16", "channels_last", "compile", "malloc")  # per side (--options, --ref-options): benchmarks/README.md
TARGET_S = 0.6  # seconds each measurement aims at: iterations per repetition = TARGET_S / one step, 1..10


def case_spec(config: str, model: str, quick: bool) -> dict:
    tiny = config == "tiny"
    return {"config": config, "model": model, "batch": 4 if tiny else 32, "sample_batch": 2 if tiny else 8,
            "sample_steps": 10 if quick else 100}  # fmt: skip


def add_arguments(p) -> None:
    p.add_argument("--ref", default="050a661", help="side A: a git revision, '.' (this working tree) or 'none'")
    p.add_argument("--ref-options", default="", help=f"side A options, comma-separated: {', '.join(OPTIONS)}")
    p.add_argument("--options", default="", help="side B options (as --ref-options)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads of each worker (default 2)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=[*CONFIGS, "tiny"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--reps", type=int, default=4, help="alternating repetitions (default 4)")
    p.add_argument("--jobs", nargs="+", default=["train", "sample"], choices=["train", "sample", "ladder"],
                   help="ladder: the whole respaced ladder end to end (always at the demo config)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny networks, 1 repetition, 10 sampler steps (tests)")
    p.add_argument("--name", help="result file stem (default: a timestamp)")
    p.add_argument("--out", type=Path, default=RESULTS)


def _opts(text: str) -> list[str]:
    opts = [o.strip() for o in text.split(",") if o.strip()]
    if bad := sorted(set(opts) - set(OPTIONS)):
        raise SystemExit(f"error: unknown options {bad}; use {', '.join(OPTIONS)}")
    return opts


def measure_case(spec: dict, sides: dict[str, Worker], args) -> dict:
    key, start, load_before = f"{spec['config']}/{spec['model']}", time.perf_counter(), load()
    b = [w.ask(cmd="build", key=key, case=spec) for w in sides.values()][-1]
    rec = {"case": spec, "params": b["params"], "train_paths": b["train_paths"], "sample_paths": b["sample_paths"],
           "load_before": load_before, "flops": sides["b"].ask(cmd="flops", key=key)}  # fmt: skip
    if len(sides) == 2:
        outs = {s: w.ask(cmd="check", key=key)["outputs"] for s, w in sides.items()}
        rec["max_abs_diff"] = {p: max(abs(x - y) for x, y in zip(outs["a"][p], outs["b"][p])) for p in outs["b"]}
    jobs = [(j, p) for j in ("train", "sample") if j in args.jobs for p in b[f"{j}_paths"]]
    if "ladder" in args.jobs or (spec["config"] in ("demo", "tiny") and "sample" in args.jobs):
        jobs.append(("ladder", None))
    iters, first = {}, {}
    for job in jobs:  # warm-up: caches, allocator, compile; the first call's time is kept (compile cost)
        first[job] = {s: w.ask(cmd="time", key=key, job=job[0], path=job[1], iters=1)["wall"][0] for s, w in sides.items()}
        iters[job] = 1 if args.quick else max(1, min(10, round(TARGET_S / max(median(first[job].values()), 1e-6))))
    series = {job: Series() for job in jobs}
    for rep in range(args.reps):
        for job in jobs:
            for s in [s for s in (("a", "b") if rep % 2 == 0 else ("b", "a")) if s in sides]:
                series[job].add(s, sides[s].ask(cmd="time", key=key, job=job[0], path=job[1], iters=iters[job])["wall"])
        print(f"  {key} rep {rep + 1}/{args.reps} load {load():.2f}", flush=True)
    for w in sides.values():
        w.ask(cmd="drop", key=key)
    rec["jobs"] = [{"job": job, "path": path, "iters": iters[(job, path)], "first_s": first[(job, path)],
                    **paired(s.a, s.b), "a_reps": s.a, "b_reps": s.b} for (job, path), s in series.items()]  # fmt: skip
    rec["summary"] = summarise(rec, series, spec)
    rec["load_after"], rec["seconds"] = load(), time.perf_counter() - start
    return rec


def summarise(rec: dict, series: dict, spec: dict) -> dict:
    """Whole-ladder numbers per repetition from the per-path medians, paired across sides, and each ladder's speed-up
    over its own 1-level (top path) step next to the FLOPs ratio."""
    out, top, fl = {}, "32->32" if spec["config"] != "tiny" else "16->16", rec["flops"]
    for job, unit in (("train", 1.0), ("sample", 1.0 / spec["sample_batch"])):
        times = {p: s for (j, p), s in series.items() if j == job}
        if not times or set(times) != set(rec[f"{job}_paths"]):
            continue
        weights = rec[f"{job}_paths"]
        reps = min(len(s.a or s.b) for s in times.values())
        ladder = {side: [unit * sum(weights[p] * getattr(times[p], side)[r] for p in times) for r in range(reps)]
                  for side in ("a", "b") if all(getattr(s, side) for s in times.values())}  # fmt: skip
        step = paired(ladder.get("a", []), ladder.get("b", []))
        n = 1 if job == "train" else spec["sample_steps"]
        if job == "train":
            out["train_step_s"] = step
            out["train_images_per_s"] = {s: spec["batch"] / step[f"{s}_s"] if step[f"{s}_s"] else None for s in "ab"}
        else:
            out["sample_s_per_image"] = step
        if len(times) > 1 and top in times:
            vs = {s: median([n * unit * getattr(times[top], s)[r] / v for r, v in enumerate(vals)]) for s, vals in ladder.items()}
            out[f"{job}_vs_1_level"] = {**vs, "flops": n * fl[job][top] / fl[f"{job}_total"]}
    if lad := next((s for (j, _), s in series.items() if j == "ladder"), None):
        out["ladder_e2e_s_per_image"] = paired(*([x / spec["sample_batch"] for x in xs] for xs in (lad.a, lad.b)))
    return out


def _f(x, fmt="{:.3g}") -> str:
    return "-" if x is None else fmt.format(x)


def _speed(d: dict) -> str:
    return "-" if d.get("speedup") is None else f"**{d['speedup']:.2f}x** [{d['speedup_min']:.2f}-{d['speedup_max']:.2f}]"


def markdown(res: dict) -> str:
    a, b, hw = res["sides"].get("a"), res["sides"]["b"], res["hardware"]
    side = lambda d: "(none)" if d is None else d["desc"] + (f" {d['options']}" if d["options"] else "")  # noqa: E731
    lines = [f"# Throughput: {res['name']}\n", f"Command: `{res['command']}`  ", f"A = {side(a)}  ", f"B = {side(b)}  ",
             f"Machine: {hw['cpu_model']}, {hw['cpu_cores']} cores, ISA {hw['isa']}, {res['threads']} torch threads per "
             f"side, torch {hw['torch']}.  ", f"Load average (1 min) before / after: {res['load_before']:.2f} / "
             f"{res['load_after']:.2f}; wall time {res['seconds']:.0f} s. Alternating A/B repetitions: {res['reps']}; times are "
             "medians of per-repetition medians; speed-up = A time / B time per repetition, median [min-max].\n",
             "## Whole ladder\n", "| config | model | train img/s A | train img/s B | train speed-up | sample s/img A | "
             "sample s/img B | sample speed-up | outputs max abs diff |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in res["cases"]:
        s, spec = c["summary"], c["case"]
        ips, sam = s.get("train_images_per_s", {}), s.get("sample_s_per_image", {})
        diff = max(c["max_abs_diff"].values()) if c.get("max_abs_diff") else None
        lines.append(f"| {spec['config']} | {MODEL_NAMES[spec['model']]} | {_f(ips.get('a'), '{:.1f}')} | {_f(ips.get('b'), '{:.1f}')} "
                     f"| {_speed(s.get('train_step_s', {}))} | {_f(sam.get('a_s'), '{:.4f}')} | {_f(sam.get('b_s'), '{:.4f}')} | "
                     f"{_speed(sam)} | {_f(diff, '{:.1e}')} |")  # fmt: skip
    if ssd := [c for c in res["cases"] if c["summary"].get("train_vs_1_level") or c["summary"].get("sample_vs_1_level")]:
        lines += ["\n## Ladder speed-up over the same net's 1-level (top path) step, vs its FLOPs ratio\n",
                  "| config | model | train A | train B | train FLOPs ratio | sample A | sample B | sample FLOPs ratio |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in ssd:
            t, sm = c["summary"].get("train_vs_1_level", {}), c["summary"].get("sample_vs_1_level", {})
            cells = [_f(d.get(k), "{:.2f}") for d in (t, sm) for k in ("a", "b", "flops")]
            lines.append(f"| {c['case']['config']} | {MODEL_NAMES[c['case']['model']]} | " + " | ".join(cells) + " |")
    lines += ["\n## Per path\n", "ms per step (train: batch 32 forward+backward+AdamW; sample: one reverse step at batch "
              "8; ladder: the whole respaced ladder at batch 8). weight: share of t (train) or jumps (sample).\n",
              "| config | model | job | path | weight | iters | A ms | B ms | speed-up | B first call ms | B GFLOP/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in res["cases"]:
        spec, ms = c["case"], lambda x: _f(x and 1e3 * x, "{:.1f}")  # noqa: E731
        for j in c["jobs"]:
            w = c.get(f"{j['job']}_paths", {}).get(j["path"])
            f = c["flops"].get(j["job"], {}).get(j["path"]) if j["job"] != "ladder" else None
            gfs = f * spec["batch" if j["job"] == "train" else "sample_batch"] / j["b_s"] / 1e9 if f and j["b_s"] else None
            lines.append(f"| {spec['config']} | {MODEL_NAMES[spec['model']]} | {j['job']} | {j['path'] or 'all'} | "
                         f"{_f(w)} | {j['iters']} | {ms(j['a_s'])} | {ms(j['b_s'])} | {_speed(j)} | "
                         f"{ms(j['first_s'].get('b', j['first_s'].get('a')))} | {_f(gfs, '{:.1f}')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run(args, argv: list[str]) -> dict:
    configs, reps = (["tiny"], 1) if args.quick else (args.configs, args.reps)
    args.reps = reps
    sides_spec = {"a": (args.ref, _opts(args.ref_options))} if args.ref.lower() != "none" else {}
    sides_spec["b"] = (".", _opts(args.options))
    start, load_before, sides, desc = time.perf_counter(), load(), {}, {}
    try:
        for s, (rev, opts) in sides_spec.items():
            source, d = tree(rev)
            desc[s] = {"rev": rev, "desc": d, "options": opts, "source": str(source)}
            sides[s] = Worker(s, source, args.threads, opts)
        cases = []
        for spec in (case_spec(config, model, args.quick) for config in configs for model in args.models):
            print(f"{spec['config']}/{spec['model']} ...", flush=True)
            cases.append(measure_case(spec, sides, args))
    finally:
        for w in sides.values():
            w.close()
    name = args.name or time.strftime("%Y%m%d-%H%M%S")
    res = {"name": name, "command": " ".join(["python -m benchmarks", *argv]), "sides": desc, "hardware": hardware(),
           "threads": args.threads, "reps": reps, "load_before": load_before, "load_after": load(),
           "seconds": time.perf_counter() - start, "cases": cases}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    (args.out / f"{name}.md").write_text(markdown(res))
    print((args.out / f"{name}.md").read_text())
    return res
