"""Sample with the EMA of any width, rebuilt after training from PowerEMA snapshots (EDM2's post-hoc EMA).

    python -m scale_space_diffusion.posthoc_ema --ckpt RUN/checkpoints/last.ckpt --snapshots RUN/phema \\
        --sigma-rel 0.03 0.05 0.10 --num-samples 64 --out outputs/phema [--save-ckpt]

For each width: the (E6) weights, their profile residual, a sample grid ``<out>/sigma_rel-<w>.png`` and, with
``--save-ckpt``, a checkpoint ``<out>/sigma_rel-<w>.ckpt`` whose inference weights are that EMA.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .profiles import Profile, profile_residual, solve_weights
from .reconstruct import apply_to_model, latest_step, read_index, reconstruct, write_checkpoint


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="the run's checkpoint (its network and settings)")
    p.add_argument("--snapshots", required=True, help="the folder PowerEMA wrote (default <root_dir>/phema)")
    p.add_argument("--sigma-rel", type=float, nargs="+", required=True, help="EMA widths to rebuild, e.g. 0.05")
    p.add_argument("--step", type=int, default=None, help="the optimizer step to rebuild at (default: the last)")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/phema")
    p.add_argument("--save-ckpt", action="store_true", help="also write a checkpoint per width")
    args = p.parse_args(argv)

    from ..images import save_grid
    from ..io.loading import load_model

    index = read_index(args.snapshots)
    step = args.step or latest_step(index)
    model = load_model(args.ckpt)
    out = Path(args.out)
    for sigma_rel in args.sigma_rel:
        target = Profile(step, sigma_rel)
        used = [q for f in index if f.step <= step for q in f.profiles]
        residual = profile_residual(used, solve_weights(used, [target])[:, 0], target)
        state = reconstruct(index, target)
        images = apply_to_model(model, state).generate(args.num_samples, steps=args.steps, seed=args.seed,
                                                        output_type="tensor", progress=False)  # fmt: skip
        grid = save_grid(images, out / f"sigma_rel-{sigma_rel:g}.png", upscale=max(1, 128 // images.shape[-1]))
        line = f"sigma_rel={sigma_rel:g} at step {step}: {len(used)} snapshot EMAs, profile residual {residual:.2e}"
        print(f"{line}; samples {grid}")
        if args.save_ckpt:
            print(f"  checkpoint {write_checkpoint(args.ckpt, state, target, out / f'sigma_rel-{sigma_rel:g}.ckpt')}")


if __name__ == "__main__":
    main()
