"""results.md: one table row per model, then every choice the numbers depend on."""

from __future__ import annotations


def _num(x, fmt: str = "{:.3g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def table(runs: list[dict]) -> str:
    if not runs:
        return "(no runs)\n"
    label = runs[0]["feature_extractor"]
    cols = ["run", "params", "train GFLOPs/img", "sample GFLOPs/img", "train img/s", "sample img/s", label,
            "KID", "classifier acc.", "N", "sampler steps", "EMA", "train s", "steps in DDPM time"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in runs:
        train = _num(r["train_gflops_per_image"])
        if r["teacher_gflops"]:
            train += f" (+{_num(r['teacher_gflops'])} teacher fwd)"
        row = [f"`{r['run']}`", f"{r['params'] / 1e6:.3f}M", train, _num(r["sample_gflops_per_image"]),
               _num(r["train_images_per_s"], "{:.1f}"), _num(r["sample_images_per_s"], "{:.2f}"),
               _num(r["fid"], "{:.4g}"), _num(r["kid"], "{:.4f}"), _num(r["classifier_accuracy"], "{:.4f}"),
               str(r["num_samples"]) + (" (low)" if r["low_sample"] else ""), str(r["steps"]),
               f"yes ({r['ema_decay']})" if r["ema"] else "no", _num(r["train_seconds"], "{:.0f}"),
               _num(r["steps_in_ddpm_time"], "{}")]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    p, hw, runs = results["preset"], results["hardware"], results["runs"]
    label = runs[0]["feature_extractor"] if runs else "FID"
    acc = runs[0]["classifier_accuracy"] if runs else None
    ref = runs[0]["num_reference"] if runs else "n/a"
    warn = ""
    if p["low_sample"]:
        warn = (f"\n> **Low-sample run:** FID/KID from {p['num_samples']} samples per model (paper-like is 10k+). "
                "FID is biased upwards at small N; these numbers only rank the models of this run.\n")  # fmt: skip
    parts = [
        f"# Benchmark: preset `{p['name']}`\n",
        f"Command: `{results['command']}`  \n"
        f"Hardware: {hw['cpu_model']}, {hw['cpu_cores']} cores ({hw['torch_threads']} torch threads), "
        f"GPU: {hw['gpu'] or 'none'}; torch {hw['torch']}, lightning {hw['lightning']}, Python {hw['python']}.\n",
        warn,
        table(runs),
        "\n## What the columns are\n",
        "- **params**: parameters of the sampling network (SD: the slim student; teacher and feature adapters not included).",
        "- **train GFLOPs/img**: forward + backward per training image, in expectation over t ~ U{0..T-1} (SSD: each "
        "path (r(t), r(t-1)) weighted by its share of t). SD: the student's own cost (denoising and distillation "
        "losses); the frozen teacher's forward is shown apart.",
        f"- **sample GFLOPs/img**: forward FLOPs per image over the whole sampler trajectory ({p['sample_steps']} "
        "respaced steps), counted by tracing the sampler at batch 1 and checked to equal the per-path count "
        "(denoiser + exact posterior) times the steps on each path.",
        "- FLOPs = 2 x multiply-accumulates of convolutions, matmuls and attention (`torch.utils.flop_counter`); "
        "norms, activations and resampling are not counted.",
        f"- **train img/s**: optimisation steps timed from one batch start to the next after {p['warmup_steps']} "
        f"warm-up steps, batch {p['batch_size']} for every model (data loading, forward, backward, AdamW, EMA).",
        f"- **sample img/s**: `model.sample` at batch {p['sample_batch']}, PNG writing excluded.",
        f"- **{label}** and **KID** (mean over subsets of min(1000, N) images) through torch-fidelity against the "
        f"{ref} real test images; **classifier acc.**: test accuracy of the feature classifier (n/a for Inception).",
        "- **train s**: wall-clock of `Trainer.fit`. **steps in DDPM time** = steps x ddpm_train_s / train_s: the "
        "optimisation steps the model would reach in the DDPM's training wall-clock at its measured pace. It is an "
        "equal-wall-clock view of the training budget; FID is not re-measured at that step count.",
        "\n## Stated choices\n",
        f"- **Equal optimisation steps**: {p['steps']} steps at batch {p['batch_size']} for every model, AdamW lr "
        f"{p['lr']}, gradient clipping 1.0, T = {p['timesteps']}, {p['image_size']}x{p['image_size']} Fashion-MNIST "
        + ("(28x28 padded with 2 px of background" if p["image_size"] >= 28 else "(28x28 resized, antialiased")
        + ", random horizontal flips).",
        f"- **Networks**: DDPM and SSD share the ADM backbone (width {p['model_channels']}, mult {p['channel_mult']}, "
        f"{p['num_res_blocks']} res block(s), attention at {p['attention_resolutions']}); SD's slim SpectralUNet has "
        f"width {p['slim_channels']} (1/4). DDPM and SD predict eps; SSD predicts x0 with min(SNR, 5) weights.",
        f"- **Samples**: {p['num_samples']} per model{' (LOW-SAMPLE)' if p['low_sample'] else ''}, saved as lossless "
        "PNG (`<run>/samples/000000.png`...), drawn with the **EMA weights** "
        f"(decay {p['ema_decay']}, from step {p['ema_start_step']}).",
        f"- **Sampler**: ancestral with the exact posterior, respaced to {p['sample_steps']} steps; SSD keeps every "
        "transition, so it takes up to 2 more steps (column *sampler steps*).",
        f"- **Seeds**: weights and data order from seed {p['seed']}; sample i is drawn from a generator seeded by "
        f"({p['seed']}, i), so every model starts from the same noise where resolutions match.",
        f"- **Feature extractor**: {label}" + (f", classifier test accuracy {acc:.4f}" if acc is not None else "")
        + "; it runs in eval mode (frozen, no dropout, BatchNorm statistics fixed). Classifier numbers compare the "
        "models of this run, not papers.",
        "- **Reference statistics**: features of the real test split, cached by torch-fidelity under a key made "
        "of the dataset, the reference's shape and content hash and the extractor's identity (a changed "
        "reference or classifier never reads stale statistics).",
        "\n## Plots\n",
        *[f"- `{name}`" for name in results.get("plots", [])],
    ]
    return "\n".join(parts) + "\n"
