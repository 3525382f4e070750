"""One side of ``throughput``: ``python worker.py SOURCE THREADS [OPTIONS...]`` times the ``scale_space_diffusion``
in the folder SOURCE (050a661 or later). Each JSON line on stdin builds {"case": spec} if new, then answers
``Case.describe`` or, given "job", "path" and "iters", ``Case.time``. EOF ends it. Imports torch and the package."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
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
    """Training batch 32, sampling batch 8 (tiny: 4 and 2), 100 sampler steps (quick: 10)."""
    tiny = config == "tiny"
    return {"config": config, "model": model, "batch": 4 if tiny else 32, "sample_batch": 2 if tiny else 8,
            "sample_steps": 10 if quick else 100}  # fmt: skip


def seeded(model: torch.nn.Module) -> torch.nn.Module:
    """Weights seeded by parameter name: both trees hold the same network, non-zero (a vacuous parity check else)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "little"))
            z, bias = torch.randn(p.shape, generator=g), name.endswith("bias")
            p.copy_(z / math.sqrt(p[0].numel()) if p.ndim > 1 else 0.02 * z if bias else 1 + 0.1 * z)
    return model


def build_model(config: str, kind: str):
    """``kind`` (ddpm, ssd, ssd_full, sd) at the network ``config``, seeded."""
    import scale_space_diffusion as pkg

    cfg = dict(NETS[config])
    layout, sd_width = cfg.pop("layout"), cfg.pop("sd_width")
    if kind == "ddpm":
        model = pkg.DDPM(pkg.UNet(**cfg))
    elif kind == "sd":
        model = pkg.SpectralDiffusion(pkg.SpectralUNet(**{**cfg, "model_channels": sd_width}))
        model.attach_teacher(seeded(pkg.DDPM(pkg.UNet(**cfg))))
    else:
        model = pkg.ScaleSpaceDiffusion(pkg.FlexiUNet(**cfg, layout=layout), num_levels=len(cfg["channel_mult"]),
                                        unet_mode="full" if kind == "ssd_full" else "flexi")  # fmt: skip
    return seeded(model)


class Case:
    """A seeded model with fixed inputs for every (job, path) it is timed on; a path is 'r(t)->r(s)'."""

    def __init__(self, spec: dict, options: list[str]):
        from scale_space_diffusion.diffusion.sampler import jumps, respaced_steps

        self.spec, self.options, self.inputs = spec, set(options), {}
        torch.manual_seed(0)
        self.model = build_model(spec["config"], spec["model"])
        if "channels_last" in self.options:
            self.model.to(memory_format=torch.channels_last)
        if "compile" in self.options:
            self.model.net.compile()
        self.opt, self.process = self.model.configure_optimizers(), self.model.process
        self.C = self.model.net.in_channels
        self.kept, self.paths = respaced_steps(self.process, spec["sample_steps"]), {}
        self.res = res = self.process.ladder.res
        for job, pairs in (("train", [(t, t - 1) for t in range(self.process.T)]), ("sample", jumps(self.kept))):
            for t, s in pairs:  # (job, path) -> its (t, s): every t of training, every jump of the sampler
                self.paths.setdefault((job, f"{res(t)}->{res(s)}"), []).append((t, s))
        for (job, path), pairs in self.paths.items():  # train: (x0, t, noise); sample: the first jump's (x_t, t, s)
            (t, s), train = pairs[0], job == "train"
            g, n = torch.Generator().manual_seed(1 if train else 2), spec["batch" if train else "sample_batch"]
            if train:  # t drawn from the path's steps
                ts = torch.tensor([u for u, _ in pairs])[torch.randint(len(pairs), (n,), generator=g)]
                self.inputs[(job, path)] = self.randn(g, n, res(-1)).clamp(-1, 1), ts, self.randn(g, n, res(t))
            else:
                self.inputs[(job, path)] = self.randn(g, n, res(t)), t, s

    def randn(self, g: torch.Generator, batch: int, r: int) -> torch.Tensor:
        x = torch.randn(batch, self.C, r, r, generator=g)
        return x.contiguous(memory_format=torch.channels_last) if "channels_last" in self.options else x

    def autocast(self) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in self.options)

    def denoiser(self):
        """(x_t, t, out_res, labels) -> x0_hat: the model's Denoiser, or (050a661) its ``denoise`` method."""
        return self.model.denoiser() if hasattr(self.model, "denoiser") else self.model.denoise

    def train_step(self, path: str) -> None:
        x0, t, noise = self.inputs[("train", path)]
        m = self.model.train()
        with self.autocast():
            out_res = (int(path.split("->")[1]),) if "out_res" in inspect.signature(m.loss_terms).parameters else ()
            per_sample, extra = m.loss_terms(x0, t, noise, None, *out_res)  # out_res: after 050a661
            loss = per_sample.mean() + sum(extra.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def time(self, job: str, path: str | None, iters: int) -> dict:
        """{"wall": seconds of each of ``iters`` runs}: a training step, one ancestral step of the package's sampler
        (``reverse_step``), or (job "ladder") its whole respaced ladder (``sample``)."""
        from scale_space_diffusion.diffusion.sampler import reverse_step, sample

        self.model.train(job == "train")
        x = self.randn(torch.Generator().manual_seed(3), self.spec["sample_batch"], self.res(self.kept[0]))
        walls = []
        for _ in range(iters):
            start = time.perf_counter()
            if job == "train":
                self.train_step(path)
            else:
                with torch.no_grad(), self.autocast():
                    if job == "sample":
                        reverse_step(self.denoiser(), self.process, *self.inputs[(job, path)])
                    else:
                        sample(self.denoiser(), self.process, x, steps=self.kept, disable=True)
            walls.append(time.perf_counter() - start)
        return {"wall": walls}

    def describe(self, flops: bool) -> dict:
        """Paths and their weights (share of t; jumps), the parameter count, (this tree's FLOPs,) and the denoiser's
        outputs on every sampling path before training: both trees must agree to float tolerance."""
        import scale_space_diffusion.metrics.model_flops as mf

        out = {"params": sum(p.numel() for p in self.model.net.parameters()), "train_paths": {}, "sample_paths": {},
               "outputs": {}, "flops": None}  # fmt: skip
        if flops:
            tr = mf.training_flops_breakdown(self.model)
            sa = mf.sampling_flops(self.model, self.spec["sample_steps"], trace=False)
            out["flops"] = {"train": {k: v["flops"] for k, v in tr["paths"].items()}, "train_total": tr["flops"],
                            "sample": {k: v["denoise_flops"] + v["posterior_flops"] for k, v in sa["paths"].items()},
                            "sample_total": sa["flops"]}  # fmt: skip
        self.model.eval()
        for (job, path), pairs in self.paths.items():
            out[f"{job}_paths"][path] = len(pairs) / self.process.T if job == "train" else len(pairs)
            if job == "sample":
                x, t, s = self.inputs[(job, path)]
                with torch.no_grad(), self.autocast():
                    x0_hat = self.denoiser()(x[:2], torch.full((2,), t), self.res(s), None)
                out["outputs"][path] = x0_hat.float().flatten().tolist()
        return out


def main(source: str, threads: int, options: list[str]) -> None:
    sys.path.insert(0, source)  # before site-packages and an editable install's finder
    torch.set_num_threads(threads)
    if "malloc" in options:
        from scale_space_diffusion.cpu import retain_freed_memory  # what `ssd` does at start

        if not retain_freed_memory():
            raise RuntimeError("option malloc: glibc's mallopt refused the settings (or this is not glibc)")
    out, sys.stdout = sys.stdout, sys.stderr  # the package's prints go to stderr; stdout is the protocol
    warnings.filterwarnings("ignore")
    case = None
    for msg in map(json.loads, sys.stdin):
        if case is None or case.spec != msg["case"]:
            case = None  # free the last case first
            case = Case(msg["case"], options)
        answer = case.time(msg["job"], msg["path"], msg["iters"]) if "job" in msg else case.describe(msg["flops"])
        print(json.dumps(answer), file=out, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
