"""One side of ``throughput``: ``python worker.py THREADS [OPTIONS...]`` times the ``scale_space_diffusion`` on
PYTHONPATH (050a661 or later). Each JSON line on stdin builds {"case": spec} if new, then answers ``Case.describe``
or, given "job", "path" and "iters", {"wall": [s, ...]}. EOF ends it. Imports torch and the package only."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import sys
import time
import warnings

import torch

NETS = {  # network configurations: the authors' SSD code's, the demo config's (configs/ssd_fmnist32.yaml), tiny
    "authors": dict(image_size=32, in_channels=3, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                    attention_resolutions=(16,), num_heads=4, layout="official", sd_width=16),
    "demo": dict(image_size=32, in_channels=1, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=4, layout="full", sd_width=8),
    "tiny": dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=2, layout="full", sd_width=4),
}  # fmt: skip


def case_spec(config: str, model: str, quick: bool) -> dict:
    """A case: training batch 32, sampling batch 8 (tiny: 4 and 2), 100 sampler steps (quick: 10)."""
    tiny = config == "tiny"
    return {"config": config, "model": model, "batch": 4 if tiny else 32, "sample_batch": 2 if tiny else 8,
            "sample_steps": 10 if quick else 100}  # fmt: skip


def seeded_weights(module: torch.nn.Module) -> None:
    """Non-zero weights seeded by parameter name, so that both trees hold the same network (zero output convs would
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


def build_model(config: str, kind: str):
    """``kind`` (ddpm, ssd, ssd_full, sd) at the network ``config`` of NETS, with seeded weights."""
    import scale_space_diffusion as pkg

    cfg = dict(NETS[config])
    layout, sd_width = cfg.pop("layout"), cfg.pop("sd_width")
    if kind in ("ssd", "ssd_full"):
        model = pkg.ScaleSpaceDiffusion(pkg.FlexiUNet(**cfg, layout=layout), num_levels=len(cfg["channel_mult"]),
                                        unet_mode="full" if kind == "ssd_full" else "flexi")  # fmt: skip
    elif kind == "sd":
        teacher = pkg.DDPM(pkg.UNet(**cfg))
        seeded_weights(teacher)
        model = pkg.SpectralDiffusion(pkg.SpectralUNet(**{**cfg, "model_channels": sd_width}))
        model.attach_teacher(teacher)
    else:
        model = pkg.DDPM(pkg.UNet(**cfg))
    seeded_weights(model)
    return model


class Case:
    """A built model with fixed seeded inputs for every (job, path) it is timed on; a path is 'r(t)->r(s)'."""

    def __init__(self, spec: dict, options: list[str]):
        from scale_space_diffusion.diffusion.sampler import respaced_steps

        self.spec, self.options, self.inputs = spec, set(options), {}
        torch.manual_seed(0)
        self.model = build_model(spec["config"], spec["model"])
        if "channels_last" in self.options:
            self.model.to(memory_format=torch.channels_last)
        if "compile" in self.options:
            self.model.net.compile()
        self.opt = self.model.configure_optimizers()
        self.process, self.res, self.C = self.model.process, self.model.process.ladder.res, self.model.net.in_channels
        kept = respaced_steps(self.process, spec["sample_steps"])
        self.jumps = list(zip(kept, kept[1:] + [-1]))
        self.paths: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (job, path) -> its (t, s): every t, every jump
        for job, pairs in (("train", [(t, t - 1) for t in range(self.process.T)]), ("sample", self.jumps)):
            for t, s in pairs:
                self.paths.setdefault((job, f"{self.res(t)}->{self.res(s)}"), []).append((t, s))

    def fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if "channels_last" in self.options else x

    def randn(self, g: torch.Generator, batch: int, r: int) -> torch.Tensor:
        return self.fmt(torch.randn(batch, self.C, r, r, generator=g))

    def inputs_of(self, job: str, path: str) -> tuple:
        """train: (x0, t, noise) at batch; sample: (x_t, t, s, z) of the path's first jump at sample_batch."""
        if (job, path) not in self.inputs:
            pairs = self.paths[(job, path)]
            if job == "train":
                g, ts, n = torch.Generator().manual_seed(1), torch.tensor([t for t, _ in pairs]), self.spec["batch"]
                t = ts[torch.randint(len(ts), (n,), generator=g)]
                x0 = self.randn(g, n, self.res(-1)).clamp(-1, 1)
                self.inputs[(job, path)] = x0, t, self.randn(g, n, self.res(pairs[0][0]))
            else:
                g, (t, s) = torch.Generator().manual_seed(2), pairs[0]
                x = self.randn(g, self.spec["sample_batch"], self.res(t))
                self.inputs[(job, path)] = x, t, s, self.randn(g, len(x), self.res(s))
        return self.inputs[(job, path)]

    def autocast(self) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in self.options)

    def denoise(self, x_t, t: int, s: int) -> torch.Tensor:
        """x0_hat at r(s) as the sampler gets it: the model's Denoiser (after 050a661) or its ``denoise`` method."""
        m, t_batch = self.model, torch.full((len(x_t),), t, dtype=torch.long)
        return (m.denoiser() if hasattr(m, "denoiser") else m.denoise)(x_t, t_batch, self.res(s), None)

    def train_step(self, path: str) -> None:
        x0, t, noise = self.inputs_of("train", path)
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
            x0_hat = self.denoise(x, t, s)
        mean = self.process.posterior_mean(x, x0_hat.float().clamp(-1, 1), t, s)
        return mean if s < 0 else mean + self.process.posterior_noise(z, t, s)

    def run(self, job: str, path: str | None) -> torch.Tensor | None:
        if job == "train":
            return self.train_step(path)
        self.model.eval()
        if job == "sample":
            return self.reverse_step(*self.inputs_of("sample", path))
        x = self.randn(torch.Generator().manual_seed(3), self.spec["sample_batch"], self.res(self.jumps[0][0]))
        for t, s in self.jumps:  # job "ladder": the whole respaced ladder, end to end, with z = 0
            x = self.reverse_step(self.fmt(x), t, s, torch.zeros(len(x), self.C, self.res(s), self.res(s)) if s >= 0 else None)

    def describe(self, flops: bool) -> dict:
        """Paths with their weights (share of t; jumps), and the denoiser's outputs on every sampling path before
        training (both trees must agree to float tolerance)."""
        import scale_space_diffusion as pkg

        out = {"package": os.path.dirname(pkg.__file__), "params": sum(p.numel() for p in self.model.net.parameters()),
               "train_paths": {}, "sample_paths": {}, "outputs": {}, "flops": self.flops() if flops else None}  # fmt: skip
        self.model.eval()
        for (job, path), pairs in self.paths.items():
            out[f"{job}_paths"][path] = len(pairs) / self.process.T if job == "train" else len(pairs)
            if job == "sample":
                x, t, s, _ = self.inputs_of(job, path)
                with torch.no_grad(), self.autocast():
                    out["outputs"][path] = self.denoise(x[:2], t, s).float().flatten().tolist()
        return out

    def flops(self) -> dict:
        import scale_space_diffusion.metrics.model_flops as mf

        train, sample = mf.training_flops_breakdown(self.model), mf.sampling_flops(self.model, self.spec["sample_steps"], trace=False)
        return {"train": {k: v["flops"] for k, v in train["paths"].items()}, "train_total": train["flops"],
                "sample": {k: v["denoise_flops"] + v["posterior_flops"] for k, v in sample["paths"].items()},
                "sample_total": sample["flops"]}  # fmt: skip


def main(threads: int, options: list[str]) -> None:
    torch.set_num_threads(threads)
    if "malloc" in options:
        from scale_space_diffusion.cpu import retain_freed_memory  # what `ssd` does at start

        if not retain_freed_memory():
            raise RuntimeError("option malloc: glibc's mallopt refused the settings (or this is not glibc)")
    out, sys.stdout = sys.stdout, sys.stderr  # anything the package prints goes to stderr; stdout is the protocol
    warnings.filterwarnings("ignore")
    case = None
    for line in sys.stdin:
        msg = json.loads(line)
        if case is None or case.spec != msg["case"]:
            case = None  # free the last case first
            case = Case(msg["case"], options)
        if "job" not in msg:
            out.write(json.dumps(case.describe(msg["flops"])) + "\n")
        else:
            walls = []
            for _ in range(msg["iters"]):
                start = time.perf_counter()
                case.run(msg["job"], msg["path"])
                walls.append(time.perf_counter() - start)
            out.write(json.dumps({"wall": walls}) + "\n")
        out.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
