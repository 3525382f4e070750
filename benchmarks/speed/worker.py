"""One side of the throughput A/B: builds models from *whichever* ``scale_space_diffusion`` is on PYTHONPATH and
times them on request. Run by :mod:`benchmarks.ab` as ``python benchmarks/throughput_worker.py`` (a file path, so
that the reference tree's ``benchmarks`` package is never imported), speaking one JSON object per line:

    -> {"cmd": "info"} | {"cmd": "build", "case": {...}} | {"cmd": "time", "key": ..., "job": ..., "iters": n}
       | {"cmd": "check", "key": ...} | {"cmd": "flops", "key": ...} | {"cmd": "quit"}
    <- {"ok": true, ...} or {"ok": false, "error": "..."}

The package API changed after c666f5b; everything version-specific is feature-detected here (``_loss``, ``_mod``,
``_model``), so the same worker drives both trees. Self-contained: imports torch and the package only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import sys
import time
import traceback

import torch

NETS = {  # network configurations: the authors' SSD code's, the demo config's (configs/ssd_fmnist32.yaml), tiny
    "authors": dict(image_size=32, in_channels=3, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                    attention_resolutions=(16,), num_heads=4, layout="official", sd_width=16),
    "demo": dict(image_size=32, in_channels=1, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=4, layout="full", sd_width=8),
    "tiny": dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=2, layout="full", sd_width=4),
}  # fmt: skip


def _mod(*names: str):
    """The first importable module of ``names`` (the package was re-laid out after c666f5b)."""
    for name in names:
        with contextlib.suppress(ModuleNotFoundError):
            return importlib.import_module(name)
    raise ModuleNotFoundError(names)


def _seeded_weights(module: torch.nn.Module) -> None:
    """Deterministic non-zero weights, named-parameter by name, so both trees hold the same network
    (the zero-initialised output convs would make every output 0 and the parity check vacuous)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            g = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "little"))
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            else:  # norm scales
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))


def _model(case: dict):
    pkg = importlib.import_module("scale_space_diffusion")
    cfg = dict(NETS[case["config"]])
    layout, sd_width = cfg.pop("layout"), cfg.pop("sd_width")
    kind = case["model"]
    if kind in ("ssd", "ssd_full"):
        net = pkg.FlexiUNet(**cfg, layout=layout)
        model = pkg.ScaleSpaceDiffusion(net, num_levels=case.get("levels", len(cfg["channel_mult"])),
                                        unet_mode="full" if kind == "ssd_full" else "flexi")  # fmt: skip
    elif kind == "ddpm":
        model = pkg.DDPM(pkg.UNet(**cfg))
    elif kind == "sd":
        teacher = pkg.DDPM(pkg.UNet(**cfg))
        _seeded_weights(teacher)
        model = pkg.SpectralDiffusion(pkg.SpectralUNet(**{**cfg, "model_channels": sd_width}))
        attach = getattr(model, "attach_teacher", None) or model._attach_teacher  # public after c666f5b
        attach(teacher)  # (teacher DDPM) -> frozen teacher, feature adapters, distillation terms
    else:
        raise ValueError(f"unknown model {kind!r}")
    _seeded_weights(model)
    return model


class Case:
    """A built model with fixed inputs for every (job, path) it is timed on."""

    def __init__(self, spec: dict, options: list[str]):
        self.spec, self.options = spec, set(options)
        torch.manual_seed(0)
        self.model = _model(spec)
        self.channels_last = "channels_last" in self.options
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if "compile" in self.options:
            self.model.net.compile()
        opt = self.model.configure_optimizers()
        self.opt = opt["optimizer"] if isinstance(opt, dict) else opt
        if "fused_adamw" in self.options:  # what configure_optimizers(..., fused=True) would build
            d = self.opt.defaults
            self.opt = torch.optim.AdamW(self.opt.param_groups, lr=d["lr"], weight_decay=d["weight_decay"], fused=True)
        self.process = self.model.process
        self.ladder = self.process.ladder
        net = self.model.net
        self.C, self.R = net.in_channels, net.image_size
        self.batch, self.sample_batch = spec["batch"], spec["sample_batch"]
        self.inputs: dict = {}

    # -- which t each path uses ----------------------------------------------------------------
    def train_paths(self) -> dict[str, dict]:
        """'r_in->r_out' -> {"share": fraction of t in 0..T-1 on it, "ts": those t}."""
        out: dict[str, list[int]] = {}
        for t in range(self.process.T):
            out.setdefault(f"{self.ladder.res(t)}->{self.ladder.res(t - 1)}", []).append(t)
        return {k: {"share": len(v) / self.process.T, "ts": v} for k, v in out.items()}

    def sample_paths(self, steps: int) -> dict[str, dict]:
        """'r(t)->r(s)' -> {"uses": jumps of the respaced sampler on it, "t": first t, "s": its s}."""
        sampler = _mod("scale_space_diffusion.diffusion.sampler", "scale_space_diffusion.sampler")
        kept = sampler.respaced_steps(self.process, steps)
        out: dict[str, dict] = {}
        for t, s in zip(kept, kept[1:] + [-1]):
            d = out.setdefault(f"{self.ladder.res(t)}->{self.ladder.res(s)}", {"uses": 0, "t": t, "s": s})
            d["uses"] += 1
        return out

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_inputs(self, path: str):
        if ("train", path) not in self.inputs:
            g = torch.Generator().manual_seed(1)
            ts = torch.tensor(self.train_paths()[path]["ts"])
            trans = set(self.ladder.transitions)
            plain = ts[[int(t) not in trans for t in ts]]
            pool = plain if len(plain) else ts  # a transition path is one t; a plain path never mixes one in
            t = pool[torch.randint(len(pool), (self.batch,), generator=g)]
            r = int(path.split("->")[0])
            x0 = torch.randn(self.batch, self.C, self.R, self.R, generator=g).clamp(-1, 1)
            noise = torch.randn(self.batch, self.C, r, r, generator=g)
            self.inputs[("train", path)] = (self._format(x0), t, self._format(noise))
        return self.inputs[("train", path)]

    def autocast(self):
        if "bf16" in self.options:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss(self, x0, t, noise) -> torch.Tensor:
        m = self.model
        if hasattr(m, "loss_terms"):  # after c666f5b: the model returns its terms
            per_sample, extra = m.loss_terms(x0, t, noise, None)
            return per_sample.mean() + sum(extra.values())
        per_sample = m.loss_fn(m.network, m.process, x0, t, noise, None)  # c666f5b
        return per_sample.mean() + m.auxiliary_loss(x0, "train")

    def train_step(self, path: str) -> None:
        x0, t, noise = self.train_inputs(path)
        self.model.train()
        with self.autocast():
            loss = self.loss(x0, t, noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def sample_inputs(self, path: str, steps: int):
        if ("sample", path) not in self.inputs:
            p = self.sample_paths(steps)[path]
            r = self.ladder.res(p["t"])
            g = torch.Generator().manual_seed(2)
            x = torch.randn(self.sample_batch, self.C, r, r, generator=g)
            z = torch.randn(self.sample_batch, self.C, self.ladder.res(p["s"]), self.ladder.res(p["s"]), generator=g)
            self.inputs[("sample", path)] = (self._format(x), p["t"], p["s"], self._format(z))
        return self.inputs[("sample", path)]

    @torch.no_grad()
    def reverse_step(self, x, t: int, s: int, z) -> torch.Tensor:
        """One ancestral step as both trees' samplers take it: denoise, clip, exact posterior mean and noise."""
        t_batch = torch.full((len(x),), t, dtype=torch.long)
        with self.autocast():
            x0_hat = self.model.denoise(x, t_batch, self.ladder.res(s), None)
        x0_hat = x0_hat.float().clamp(-1, 1)
        mean = self.process.posterior_mean(x, x0_hat, t, s)
        return mean if s < 0 else mean + self.process.posterior_noise(z, t, s)

    def sample_step(self, path: str, steps: int) -> None:
        self.model.eval()
        x, t, s, z = self.sample_inputs(path, steps)
        self.reverse_step(x, t, s, z)

    @torch.no_grad()
    def sample_ladder(self, steps: int) -> None:
        """The whole respaced ladder, end to end (fixed noise per jump shape)."""
        self.model.eval()
        sampler = _mod("scale_space_diffusion.diffusion.sampler", "scale_space_diffusion.sampler")
        kept = sampler.respaced_steps(self.process, steps)
        g = torch.Generator().manual_seed(3)
        x = torch.randn(self.sample_batch, self.C, self.ladder.res(kept[0]), self.ladder.res(kept[0]), generator=g)
        for t, s in zip(kept, kept[1:] + [-1]):
            z = torch.zeros(len(x), self.C, self.ladder.res(s), self.ladder.res(s)) if s >= 0 else None
            x = self.reverse_step(self._format(x), t, s, z)

    def run(self, job: str, path: str | None, steps: int) -> None:
        if job == "train":
            self.train_step(path)
        elif job == "sample":
            self.sample_step(path, steps)
        elif job == "ladder":
            self.sample_ladder(steps)
        else:
            raise ValueError(f"unknown job {job!r}")

    # -- checks ------------------------------------------------------------------------------------
    @torch.no_grad()
    def outputs(self, steps: int) -> dict[str, list[float]]:
        """The denoiser's output on every sampling path for fixed inputs, before any training step: both trees
        must agree to float tolerance (same weights by construction, see ``_seeded_weights``)."""
        self.model.eval()
        out = {}
        for path in self.sample_paths(steps):
            x, t, s, _ = self.sample_inputs(path, steps)
            t_batch = torch.full((len(x),), t, dtype=torch.long)
            with self.autocast():
                y = self.model.denoise(x[:2], t_batch[:2], self.ladder.res(s), None)
            out[path] = y.float().flatten().tolist()
        return out

    def flops(self, steps: int) -> dict:
        mf = _mod("scale_space_diffusion.metrics.model_flops", "scale_space_diffusion.model_flops")
        train = mf.training_flops_breakdown(self.model)
        sample = mf.sampling_flops(self.model, steps, trace=False)
        return {"train": {k: v["flops"] for k, v in train["paths"].items()}, "train_total": train["flops"],
                "sample": {k: v["denoise_flops"] + v["posterior_flops"] for k, v in sample["paths"].items()},
                "sample_total": sample["flops"]}  # fmt: skip


def info() -> dict:
    import scale_space_diffusion

    return {"package": os.path.dirname(scale_space_diffusion.__file__), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": sys.version.split()[0]}  # fmt: skip


def retain_freed_memory() -> None:
    """What ``ssd`` does at start, on either side: this checkout's ``scale_space_diffusion/cpu.py``, loaded by path
    (it needs torch only), so that a reference tree that predates it gets the same allocator settings."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scale_space_diffusion", "cpu.py")
    spec = importlib.util.spec_from_file_location("_ssd_cpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.retain_freed_memory():
        raise RuntimeError("option malloc: glibc's mallopt refused the settings (or this is not glibc)")


def main() -> None:
    threads = int(os.environ.get("THROUGHPUT_THREADS", "2"))
    torch.set_num_threads(threads)
    options = [o for o in os.environ.get("THROUGHPUT_OPTIONS", "").split(",") if o]
    if "malloc" in options:
        retain_freed_memory()
    out = sys.stdout
    sys.stdout = sys.stderr  # anything the package prints goes to stderr; stdout is the protocol
    import warnings

    warnings.filterwarnings("ignore")
    cases: dict[str, Case] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            cmd = msg["cmd"]
            if cmd == "quit":
                break
            if cmd == "info":
                reply = info()
            elif cmd == "build":
                start = time.perf_counter()
                case = cases[msg["key"]] = Case(msg["case"], options)
                steps = msg["case"]["sample_steps"]
                reply = {"seconds": time.perf_counter() - start,
                         "train_paths": {k: v["share"] for k, v in case.train_paths().items()},
                         "sample_paths": {k: v["uses"] for k, v in case.sample_paths(steps).items()},
                         "params": sum(p.numel() for p in case.model.net.parameters()),
                         "param_sum": float(sum(p.double().sum() for p in case.model.net.parameters()))}  # fmt: skip
            elif cmd == "time":
                case = cases[msg["key"]]
                walls, cpus = [], []
                for _ in range(msg["iters"]):
                    w, c = time.perf_counter(), time.process_time()
                    case.run(msg["job"], msg.get("path"), case.spec["sample_steps"])
                    walls.append(time.perf_counter() - w)
                    cpus.append(time.process_time() - c)
                reply = {"wall": walls, "cpu": cpus}
            elif cmd == "check":
                case = cases[msg["key"]]
                reply = {"outputs": case.outputs(case.spec["sample_steps"])}
            elif cmd == "flops":
                case = cases[msg["key"]]
                reply = case.flops(case.spec["sample_steps"])
            elif cmd == "drop":
                cases.pop(msg["key"], None)
                reply = {}
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply["ok"] = True
        except Exception as e:  # noqa: BLE001 - reported to the driver, which decides
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
