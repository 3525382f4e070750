"""Spectral Diffusion ablation: plain slim net, +gating, +spectral distillation, full SD.

    python -m benchmarks.sd_ablation --teacher benchmarks/results/<run>/ddpm/model.ckpt [--steps 200]

Each variant trains the same slim student (1/4 of the teacher's width) for the same number of
steps with the same seed on Fashion-MNIST 32 and reports parameters, FLOPs per training step
against the teacher, the final train and validation denoising losses (mean squared eps error) and
the validation total (denoising plus the weighted distillation terms).
"""

from __future__ import annotations

import argparse
import json

import lightning as L
import torch

from scale_space_diffusion import ImageDataModule, SpectralDiffusion, SpectralUNet, load_model
from scale_space_diffusion.models.settings import Optimization, Sampling
from scale_space_diffusion.metrics.model_flops import param_counts, sampling_flops, training_flops_breakdown

VARIANTS = {  # name -> (gating, distil)
    "plain slim": (False, False),
    "+gating": (True, False),
    "+spectral loss": (False, True),
    "full SD": (True, True),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="a DDPM checkpoint (e.g. the benchmark's ddpm run)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--val-batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    teacher = load_model(a.teacher)
    cfg = teacher.net.config
    teacher_train = training_flops_breakdown(teacher)
    rows = {}
    for name, (gating, distil) in VARIANTS.items():
        L.seed_everything(a.seed, verbose=False)
        net = SpectralUNet(**{**cfg, "model_channels": max(4, cfg["model_channels"] // 4), "gating": gating})
        model = SpectralDiffusion(net, teacher=a.teacher if distil else None, schedule=teacher.process.schedule,
                                  optim=Optimization(lr=1e-3, ema_decay=None), sampling=Sampling(grid_size=0))  # fmt: skip
        data = ImageDataModule(dataset="fashion_mnist", image_size=cfg["image_size"], batch_size=a.batch_size)
        trainer = L.Trainer(max_steps=a.steps, logger=False, enable_checkpointing=False, accelerator="cpu",
                            limit_val_batches=a.val_batches, val_check_interval=a.steps, check_val_every_n_epoch=None,
                            enable_model_summary=False)  # fmt: skip
        trainer.fit(model, data)
        m = trainer.callback_metrics
        rows[name] = {
            "params": param_counts(model)["params"],
            "train_gflops_per_image": training_flops_breakdown(model)["flops"] / 1e9,
            "sample_gflops_per_image": sampling_flops(model, 50)["gflops"],
            "train_denoise": float(m["train/denoise"]),
            "val_denoise": float(m["val/denoise"]),
            "val_total": float(m["val/loss"]),
            **({"val_spatial": float(m["val/spatial"]), "val_freq": float(m["val/freq"])} if distil else {}),
        }
    t_params = param_counts(teacher)["params"]
    t_sample = sampling_flops(teacher, 50)["gflops"]
    t_train = teacher_train["flops"] / 1e9
    print(f"teacher: {t_params} params, {t_train:.4f} train GFLOPs/img, {t_sample:.3f} sample GFLOPs/img (50 steps)")
    print("| variant | params | teacher/student params | train GFLOPs/img | teacher/student FLOPs per step | train denoise | val denoise | val total |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['params']} | {t_params / r['params']:.1f}x | {r['train_gflops_per_image']:.4f} | "
              f"{t_sample / r['sample_gflops_per_image']:.1f}x | {r['train_denoise']:.4f} | {r['val_denoise']:.4f} | {r['val_total']:.4f} |")  # fmt: skip
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
