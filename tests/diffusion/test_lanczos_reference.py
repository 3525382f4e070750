"""(P4) against the SSD authors' way of drawing the transition noise: a k-step Lanczos approximation of
Sigma^{1/2} z, Sigma = sigma_s^2 (I - rho c^2 R^T R). The exact eigenbasis draw must agree with it.

``python tests/diffusion/test_lanczos_reference.py`` also times both at 64 px (batch 16 x 3 channels, 40 iterations,
the authors' setting); docs/method.md quotes that run."""

from __future__ import annotations

import time

import torch

from scale_space_diffusion.diffusion.degradation import Resize
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.schedule import NoiseSchedule


def lanczos_sqrt(apply_A, z: torch.Tensor, k: int, reorth: bool = True) -> torch.Tensor:
    """A^{1/2} z ~ ||z|| V_k sqrt(T_k) e_1 for symmetric PSD A, batched over leading dims; z (..., n, n)."""
    shape = z.shape
    b = z.reshape(-1, shape[-2] * shape[-1])
    norm = b.norm(dim=1, keepdim=True)
    V, alphas, betas = [b / norm], [], []
    for j in range(k):
        w = apply_A(V[j].reshape(shape)).reshape(b.shape)
        alphas.append((w * V[j]).sum(1))
        if reorth:  # full reorthogonalisation against every basis vector so far
            basis = torch.stack(V, 1)
            w = w - torch.einsum("mj,mjn->mn", torch.einsum("mn,mjn->mj", w, basis), basis)
        else:  # the plain three-term recurrence
            w = w - alphas[-1][:, None] * V[j] - (betas[-1][:, None] * V[j - 1] if j else 0)
        if j + 1 < k:
            betas.append(w.norm(dim=1))
            V.append(w / betas[-1][:, None].clamp_min(1e-30))
    T = torch.diag_embed(torch.stack(alphas, 1))
    if betas:
        off = torch.diag_embed(torch.stack(betas, 1), offset=1)[:, :k, :k]
        T = T + off + off.transpose(1, 2)
    lam, Q = torch.linalg.eigh(T)
    sqrtT_e1 = Q @ (lam.clamp_min(0).sqrt()[:, :, None] * Q[:, 0, :, None])
    return (torch.einsum("mjn,mj->mn", torch.stack(V, 1), sqrtT_e1[..., 0]) * norm).reshape(shape)


def draws(size: int, batch: int, iters: int):
    """(exact draw, Lanczos draw with reorthogonalisation, plain Lanczos draw) at the transition into ``size``."""
    proc = ScaleSpaceProcess(NoiseSchedule.make("linear", 1000), ResolutionLadder(size, 4, 1000), Resize("bilinear"))
    t = proc.ladder.transitions[0]
    (a_t, sig_t), (a_s, sig_s) = proc.schedule.host_a_sigma(t), proc.schedule.host_a_sigma(t - 1)
    rc2 = (sig_s / sig_t) ** 2 * (a_t / a_s) ** 2  # rho c^2
    R, small = proc.resize, proc.ladder.res(t)
    apply_A = lambda v: v - rc2 * R.adjoint(R.down(v, small), size)  # noqa: E731
    z = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    return (lambda: proc.posterior_noise(z, t), lambda: sig_s * lanczos_sqrt(apply_A, z, iters),
            lambda: sig_s * lanczos_sqrt(apply_A, z, iters, reorth=False))  # fmt: skip


def test_exact_transition_noise_agrees_with_lanczos():
    exact, reorth, plain = (f() for f in draws(size=16, batch=2, iters=8))
    for approx in (reorth, plain):
        assert ((approx - exact).norm() / exact.norm()).item() < 1e-5  # float32 round-off


def test_lanczos_with_too_few_iterations_is_measurably_off():  # the comparison above can fail
    exact, reorth, _ = (f() for f in draws(size=16, batch=2, iters=1))
    assert ((reorth - exact).norm() / exact.norm()).item() > 1e-3


if __name__ == "__main__":
    timed = {}
    for name, fn in zip(("exact (eigenbasis)", "Lanczos reorthogonalised", "Lanczos plain"), draws(64, 16, 40)):
        fn()  # warm-up: builds and caches the exact path's eigendecomposition
        start = time.perf_counter()
        out = [fn() for _ in range(20)][-1]
        timed[name] = ((time.perf_counter() - start) / 20, out)
    exact = timed["exact (eigenbasis)"][1]
    print(f"64 px, batch 16 x 3 channels, 40 iterations, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (seconds, out) in timed.items():
        rel = ((out - exact).norm() / exact.norm()).item()
        print(f"{name:26s} {1e3 * seconds:8.2f} ms per draw, relative difference {rel:.1e}")
