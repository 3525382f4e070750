"""One A/B side: times models of whichever ``scale_space_diffusion`` is on PYTHONPATH (050a661 or later; the API
differences are feature-detected in ``Case.denoise`` and ``Case.train_step``). JSON lines on stdin/stdout:
info | build | time | check | flops | drop | quit -> {"ok": ...}. Imports torch and the package only."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
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


def _seeded_weights(module: torch.nn.Module) -> None:
    """Deterministic non-zero weights per parameter name: both trees hold the same network (zero output convs would
    make the parity check vacuous)."""
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
    import scale_space_diffusion as pkg

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
        model.attach_teacher(teacher)
    else:
        raise ValueError(f"unknown model {kind!r}")
    _seeded_weights(model)
    return model


class Case:
    """A built model with fixed inputs for every (job, path) it is timed on."""

    def __init__(self, spec: dict, options: list[str]):
        self.spec, self.options, self.inputs = spec, set(options), {}
        torch.manual_seed(0)
        self.model = _model(spec)
        if "channels_last" in self.options:
            self.model.to(memory_format=torch.channels_last)
        if "compile" in self.options:
            self.model.net.compile()
        opt = self.model.configure_optimizers()
        self.opt = opt["optimizer"] if isinstance(opt, dict) else opt
        self.process, self.ladder = self.model.process, self.model.process.ladder
        self.C, self.R, self.steps = self.model.net.in_channels, self.model.net.image_size, spec["sample_steps"]
        from scale_space_diffusion.diffusion.sampler import respaced_steps

        self.kept = respaced_steps(self.process, self.steps)

    def denoise(self, x_t, t, out_res: int, labels):
        """x0_hat as the sampler gets it: the model's Denoiser (after 050a661) or its ``denoise`` method."""
        m = self.model
        return (m.denoiser() if hasattr(m, "denoiser") else m.denoise)(x_t, t, out_res, labels)

    def train_paths(self) -> dict[str, list[int]]:
        """'r_in->r_out' -> the t in 0..T-1 on that path."""
        out: dict[str, list[int]] = {}
        for t in range(self.process.T):
            out.setdefault(f"{self.ladder.res(t)}->{self.ladder.res(t - 1)}", []).append(t)
        return out

    def sample_paths(self) -> dict[str, dict]:
        """'r(t)->r(s)' -> {"uses": jumps of the respaced sampler on it, "t": first t, "s": its s}."""
        out: dict[str, dict] = {}
        for t, s in zip(self.kept, self.kept[1:] + [-1]):
            out.setdefault(f"{self.ladder.res(t)}->{self.ladder.res(s)}", {"uses": 0, "t": t, "s": s})["uses"] += 1
        return out

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if "channels_last" in self.options else x

    def _randn(self, g, batch: int, r: int) -> torch.Tensor:
        return self._format(torch.randn(batch, self.C, r, r, generator=g))

    def train_inputs(self, path: str):
        if ("train", path) not in self.inputs:
            g, ts = torch.Generator().manual_seed(1), torch.tensor(self.train_paths()[path])
            plain = ts[[int(t) not in set(self.ladder.transitions) for t in ts]]
            pool = plain if len(plain) else ts  # a transition path is one t; a plain path never mixes one in
            t = pool[torch.randint(len(pool), (self.spec["batch"],), generator=g)]
            x0 = self._randn(g, self.spec["batch"], self.R).clamp(-1, 1)
            self.inputs[("train", path)] = (x0, t, self._randn(g, self.spec["batch"], int(path.split("->")[0])))
        return self.inputs[("train", path)]

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in self.options else contextlib.nullcontext()

    def train_step(self, path: str) -> None:
        x0, t, noise = self.train_inputs(path)
        m = self.model.train()
        with self.autocast():
            out_res = (int(path.split("->")[1]),) if "out_res" in inspect.signature(m.loss_terms).parameters else ()
            per_sample, extra = m.loss_terms(x0, t, noise, None, *out_res)  # out_res: after 050a661
            loss = per_sample.mean() + sum(extra.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def reverse_step(self, x, t: int, s: int, z) -> torch.Tensor:
        """One ancestral step as both trees' samplers take it: denoise, clip, exact posterior mean and noise."""
        with self.autocast():
            x0_hat = self.denoise(x, torch.full((len(x),), t, dtype=torch.long), self.ladder.res(s), None)
        mean = self.process.posterior_mean(x, x0_hat.float().clamp(-1, 1), t, s)
        return mean if s < 0 else mean + self.process.posterior_noise(z, t, s)

    def sample_inputs(self, path: str):
        if ("sample", path) not in self.inputs:
            p, g = self.sample_paths()[path], torch.Generator().manual_seed(2)
            x = self._randn(g, self.spec["sample_batch"], self.ladder.res(p["t"]))
            self.inputs[("sample", path)] = (x, p["t"], p["s"], self._randn(g, len(x), self.ladder.res(p["s"])))
        return self.inputs[("sample", path)]

    def run(self, job: str, path: str | None) -> None:
        if job == "train":
            return self.train_step(path)
        self.model.eval()
        if job == "sample":
            self.reverse_step(*self.sample_inputs(path))
            return
        g = torch.Generator().manual_seed(3)  # job "ladder": the whole respaced ladder, end to end
        x = torch.randn(self.spec["sample_batch"], self.C, self.ladder.res(self.kept[0]), self.ladder.res(self.kept[0]), generator=g)
        for t, s in zip(self.kept, self.kept[1:] + [-1]):
            z = torch.zeros(len(x), self.C, self.ladder.res(s), self.ladder.res(s)) if s >= 0 else None
            x = self.reverse_step(self._format(x), t, s, z)

    @torch.no_grad()
    def outputs(self) -> dict[str, list[float]]:
        """The denoiser's output on every sampling path, before training: both trees must agree to float tolerance."""
        self.model.eval()
        out = {}
        for path in self.sample_paths():
            x, t, s, _ = self.sample_inputs(path)
            with self.autocast():
                y = self.denoise(x[:2], torch.full((2,), t, dtype=torch.long), self.ladder.res(s), None)
            out[path] = y.float().flatten().tolist()
        return out

    def flops(self) -> dict:
        import scale_space_diffusion.metrics.model_flops as mf

        train, sample = mf.training_flops_breakdown(self.model), mf.sampling_flops(self.model, self.steps, trace=False)
        return {"train": {k: v["flops"] for k, v in train["paths"].items()}, "train_total": train["flops"],
                "sample": {k: v["denoise_flops"] + v["posterior_flops"] for k, v in sample["paths"].items()},
                "sample_total": sample["flops"]}  # fmt: skip


def reply(msg: dict, cases: dict) -> dict:
    cmd, case = msg["cmd"], cases.get(msg.get("key"))
    if cmd == "info":
        import scale_space_diffusion

        return {"package": os.path.dirname(scale_space_diffusion.__file__), "torch": torch.__version__}
    if cmd == "build":
        case = cases[msg["key"]] = Case(msg["case"], [o for o in os.environ.get("THROUGHPUT_OPTIONS", "").split(",") if o])
        return {"train_paths": {k: len(v) / case.process.T for k, v in case.train_paths().items()},
                "sample_paths": {k: v["uses"] for k, v in case.sample_paths().items()},
                "params": sum(p.numel() for p in case.model.net.parameters())}  # fmt: skip
    if cmd == "time":
        walls = []
        for _ in range(msg["iters"]):
            start = time.perf_counter()
            case.run(msg["job"], msg.get("path"))
            walls.append(time.perf_counter() - start)
        return {"wall": walls}
    if cmd in ("check", "flops"):
        return {"outputs": case.outputs()} if cmd == "check" else case.flops()
    if cmd == "drop":
        cases.pop(msg["key"], None)
        return {}
    raise ValueError(f"unknown command {cmd!r}")


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THROUGHPUT_THREADS", "2")))
    if "malloc" in os.environ.get("THROUGHPUT_OPTIONS", "").split(","):
        from scale_space_diffusion.cpu import retain_freed_memory  # what `ssd` does at start

        if not retain_freed_memory():
            raise RuntimeError("option malloc: glibc's mallopt refused the settings (or this is not glibc)")
    out, sys.stdout = sys.stdout, sys.stderr  # anything the package prints goes to stderr; stdout is the protocol
    import warnings

    warnings.filterwarnings("ignore")
    cases: dict[str, Case] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        try:
            answer = {**reply(msg, cases), "ok": True}
        except Exception as e:  # noqa: BLE001 - reported to the driver, which decides
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
