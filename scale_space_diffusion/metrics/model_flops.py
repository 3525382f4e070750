"""Model-level FLOPs and parameter counts: sampling and training cost per image, per ladder path.

Built on :mod:`.flops` (FLOPs = 2 x MACs of matmuls, convolutions and attention, traced by
``FlopCounterMode`` at batch 1). A *path* is one (input resolution, output resolution) pair of
the denoiser: every step t -> s of a sampler runs ``model.denoiser()(x_t, t, r(s), labels)`` with
x_t at r(t), and its FLOPs depend only on (r(t), r(s)), never on the value of t.

- :func:`sampling_flops`: summed over the sampler's actual trajectory, counted two ways that agree
  exactly: tracing ``model.sample`` and multiplying per-path counts by their step counts.
- :func:`training_flops`: forward + backward per image in expectation over t ~ U{0..T-1}; SSD's
  path (r(t), r(t-1)) is weighted by its share of t. Spectral Diffusion's frozen teacher forward is
  reported apart from the student's own cost.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import replace

import torch
from torch import Tensor

from .flops import count_flops, count_params, count_train_flops
from ..diffusion.ddim import range_basis
from ..diffusion.rng import randn
from ..diffusion.sampler import jumps, respaced_steps, reverse_step

__all__ = ["param_counts", "sampling_flops", "training_flops", "training_flops_breakdown"]

Path = tuple[int, int]  # (input resolution r(t), output resolution r(s))


def _one_thread(fn):
    """Run ``fn`` with one intra-op thread: at batch 1 every op is tiny, and waking torch's thread
    pool costs more than it saves (80x slower on 2 busy cores). FLOP counts do not depend on it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(n)

    return wrapper


def _labels(model, batch: int = 1) -> Tensor | None:
    return model.sample_labels(torch.arange(batch))


def _path_name(path: Path) -> str:
    return f"{path[0]}->{path[1]}"


def _warm_caches(model) -> None:
    """Build the cached resize matrices (and their eigenbases) outside the counter: they are made
    once per process, not once per image, and would otherwise be counted by whichever call comes first."""
    process, ladder = model.process, model.process.ladder
    like = dict(device=model.device, dtype=next(model.parameters()).dtype)
    x0 = torch.zeros(1, model.channels, model.image_size, model.image_size, **like)
    for r in ladder.resolutions:
        process.degrade(x0, r)
    for t in ladder.transitions:
        x_t = torch.zeros(1, model.channels, ladder.res(t), ladder.res(t), **like)
        x_s = torch.zeros(1, model.channels, ladder.res(t - 1), ladder.res(t - 1), **like)
        process.posterior_mean(x_t, x_s, t, t - 1)
        process.posterior_noise(x_s, t, t - 1)
        range_basis(process.resize.kind, ladder.res(t - 1), ladder.res(t))  # the DDIM transition basis


def step_flops(model, t: int, s: int, sampling=None) -> dict[str, int]:
    """FLOPs of one reverse step t -> s at batch 1, as the sampler takes it (:func:`reverse_step`) with ``sampling``
    (default: the model's).

    ``denoise`` is the network (plus any resize inside it); ``posterior`` is the rest of the step, the exact
    posterior mean and noise, whose resize matmuls are non-zero only at transitions.
    """
    sampling = model.sampling if sampling is None else sampling
    ladder = model.process.ladder
    g = torch.Generator().manual_seed(0)
    x = randn((1, model.channels, ladder.res(t), ladder.res(t)), g, like=torch.empty(0, device=model.device))
    t_batch = torch.full((1,), t, dtype=torch.long, device=model.device)
    labels = _labels(model)
    denoise = count_flops(model.denoiser(sampling), x, t_batch, ladder.res(s), labels)
    eta = sampling.effective_eta
    step = count_flops(reverse_step, model.denoiser(sampling), model.process, x, t, s, eta=eta, labels=labels, generator=g)
    return {"denoise": denoise, "posterior": step - denoise}


@_one_thread
@torch.no_grad()
def sampling_flops(model, num_steps: int | None = None, trace: bool = True, cache: dict | None = None,
                   sampling=None) -> dict:  # fmt: skip
    """Forward FLOPs per image of ``model.sample(..., sampling=sampling)`` (default: the model's ``sampling``) with
    ``num_steps`` steps (default: ``sampling.steps``), over its actual trajectory.

    Returns ``flops`` (way b: per-path counts times step counts), ``flops_traced`` (way a: the
    real sampler traced at batch 1; equal to ``flops``, None with ``trace=False``), ``gflops``,
    ``steps`` (the kept timesteps), ``num_steps`` and ``paths``:
    {"16->32": {"steps", "denoise_flops", "posterior_flops"}}. ``cache`` (path -> counts) may be
    shared between models with the same network, unet mode and ladder resize, e.g. in sweeps.
    """
    was_training = model.training
    model.eval()
    _warm_caches(model)
    sampling = model.sampling if sampling is None else sampling
    n = num_steps or sampling.steps or model.process.T
    sampling = replace(sampling, steps=n)
    # (a) trace the real sampler at batch 1
    traced = None
    if trace:
        traced = count_flops(model.sample, [torch.Generator().manual_seed(0)], _labels(model), sampling=sampling)
    # (b) one count per distinct path, times the number of steps that take it
    steps = respaced_steps(model.process, n)
    ladder = model.process.ladder
    taken = jumps(steps)
    uses = Counter((ladder.res(t), ladder.res(s)) for t, s in taken)
    first = {}
    for t, s in taken:
        first.setdefault((ladder.res(t), ladder.res(s)), (t, s))
    cache = {} if cache is None else cache
    paths = {}
    for path, (t, s) in sorted(first.items(), reverse=True):
        if ("sample", path) not in cache:
            cache[("sample", path)] = step_flops(model, t, s, sampling)
        f = cache[("sample", path)]
        paths[_path_name(path)] = {"steps": uses[path], "denoise_flops": f["denoise"], "posterior_flops": f["posterior"]}
    by_path = sum(p["steps"] * (p["denoise_flops"] + p["posterior_flops"]) for p in paths.values())
    model.train(was_training)
    return {"flops": by_path, "flops_traced": traced, "gflops": by_path / 1e9, "num_steps": len(steps),
            "steps": steps, "paths": paths}  # fmt: skip


def _train_paths(model) -> dict[Path, tuple[int, int]]:
    """(r(t), r(t-1)) -> (first t on that path, how many t in 0..T-1 take it)."""
    ladder, out = model.process.ladder, {}
    for t in range(model.process.T):
        path = (ladder.res(t), ladder.res(t - 1))
        t0, count = out.get(path, (t, 0))
        out[path] = (t0, count + 1)
    return out


@_one_thread
def training_flops_breakdown(model, cache: dict | None = None) -> dict:
    """Forward + backward FLOPs per image of one training step, in expectation over t ~ U{0..T-1}.

    Each path is counted once at batch 1 through ``model.loss_terms(x0, t, noise, labels, out_res)`` (the
    denoising loss plus any extra terms, e.g. Spectral Diffusion's distillation) and weighted by its
    share of t. A frozen teacher's forward (no backward) is counted apart:
    ``flops`` is the student's own cost (denoising and distillation losses, forward and backward),
    ``teacher_flops`` the teacher's forward, ``total_flops`` their sum. The optimizer and EMA
    updates are elementwise and not counted. ``cache`` as in :func:`sampling_flops`.
    """
    was_training = model.training
    model.train()
    model.prepare_fit()  # e.g. Spectral Diffusion's teacher
    _warm_caches(model)
    cache = {} if cache is None else cache
    C, R = model.channels, model.image_size
    g = torch.Generator().manual_seed(0)
    x0 = randn((1, C, R, R), g, like=torch.empty(0, device=model.device)).clamp(-1, 1)
    labels = _labels(model)
    teacher = model.teacher
    paths, student, teacher_total = {}, 0.0, 0.0
    T = model.process.T
    for path, (t0, count) in sorted(_train_paths(model).items(), reverse=True):
        t = torch.full((1,), t0, dtype=torch.long, device=model.device)
        noise = randn((1, C, path[0], path[0]), g, like=x0)

        def loss() -> Tensor:
            per_sample, extra = model.loss_terms(x0, t, noise, labels, path[1], model.net)  # out_res = r(t-1)
            return per_sample.mean() + sum(extra.values())

        if ("train", path) not in cache:
            total = count_train_flops(model, loss)
            t_fwd = count_flops(teacher, model.process.q_sample(x0, t, noise), t, labels) if teacher is not None else 0
            cache[("train", path)] = total, t_fwd
        total, t_fwd = cache[("train", path)]
        share = count / T
        paths[_path_name(path)] = {"share": share, "flops": total - t_fwd, "teacher_flops": t_fwd}
        student += share * (total - t_fwd)
        teacher_total += share * t_fwd
    model.train(was_training)
    return {"flops": student, "teacher_flops": teacher_total, "total_flops": student + teacher_total, "paths": paths}


def training_flops(model) -> float:
    """The student's own forward + backward FLOPs per image (see :func:`training_flops_breakdown`)."""
    return training_flops_breakdown(model)["flops"]


def param_counts(model) -> dict:
    """``params`` (the sampling network), ``trainable_params`` (everything the optimizer updates,
    e.g. Spectral Diffusion's feature adapters), ``teacher_params`` (0 without a teacher) and
    ``active_params`` per denoiser path of the ladder ({"16->32": n}; Flexi-UNet only runs part of it).
    """
    net = model.net
    out = {"params": count_params(net), "trainable_params": count_params(model, trainable_only=True)}
    teacher = model.teacher
    out["teacher_params"] = count_params(teacher) if teacher is not None else 0
    active = {}
    for path in sorted(_train_paths(model), reverse=True):
        run = model.net_path(*path)
        active[_path_name(path)] = net.active_params(*run) if hasattr(net, "active_params") else out["params"]
    out["active_params"] = active
    return out
