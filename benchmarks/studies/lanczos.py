"""``python -m benchmarks lanczos``: the exact transition noise Sigma^{1/2} z, Sigma = sigma_s^2 (I - rho c^2 R^T R),
against the authors' 40-iteration Lanczos draw ||z|| V sqrt(T_k) e_1 (with and without reorthogonalisation)."""

from __future__ import annotations

import time

import torch

from scale_space_diffusion.diffusion.degradation import Resize
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.schedule import NoiseSchedule


def lanczos_sqrt(apply_A, z: torch.Tensor, k: int, reorth: bool = True) -> torch.Tensor:
    """A^{1/2} z for symmetric PSD A, batched over leading dims; z (..., n, n)."""
    shape = z.shape
    b = z.reshape(-1, shape[-2] * shape[-1])
    norm = b.norm(dim=1, keepdim=True)
    V = [b / norm]
    alphas, betas = [], []
    for j in range(k):
        w = apply_A(V[j].reshape(shape)).reshape(b.shape)
        alpha = (w * V[j]).sum(1)
        if reorth:  # full reorthogonalisation against every basis vector so far
            basis = torch.stack(V, 1)
            w = w - torch.einsum("mj,mjn->mn", torch.einsum("mn,mjn->mj", w, basis), basis)
        else:  # the plain three-term recurrence
            w = w - alpha[:, None] * V[j] - (betas[-1][:, None] * V[j - 1] if j else 0)
        alphas.append(alpha)
        beta = w.norm(dim=1)
        if j + 1 < k:
            betas.append(beta)
            V.append(w / beta[:, None].clamp_min(1e-30))
    T = torch.diag_embed(torch.stack(alphas, 1))
    if betas:
        off = torch.diag_embed(torch.stack(betas, 1), offset=1)[:, :k, :k]
        T = T + off + off.transpose(1, 2)
    lam, Q = torch.linalg.eigh(T)
    sqrtT_e1 = Q @ (lam.clamp_min(0).sqrt()[:, :, None] * Q[:, 0, :, None])  # sqrt(T) e_1
    out = torch.einsum("mjn,mj->mn", torch.stack(V, 1), sqrtT_e1[..., 0]) * norm
    return out.reshape(shape)


def run_lanczos(size: int = 64, batch: int = 16, iters: int = 40, repeats: int = 20) -> dict[str, float]:
    """Milliseconds per draw (exact, Lanczos reorthogonalised, plain) and the Lanczos draws' relative differences."""
    T = 1000
    proc = ScaleSpaceProcess(NoiseSchedule.make("linear", T), ResolutionLadder(size, 4, T), Resize("bilinear"))
    t = proc.ladder.transitions[0]  # into the top resolution
    s = t - 1
    a_t, sig_t = (float(v) for v in proc.schedule.a_sigma(t))
    a_s, sig_s = (float(v) for v in proc.schedule.a_sigma(s))
    rc2 = (sig_s**2 / sig_t**2) * (a_t / a_s) ** 2
    R, small = proc.resize, proc.ladder.res(t)
    apply_A = lambda v: v - rc2 * R.adjoint(R.down(v, small), size)  # noqa: E731
    z = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def timed(fn):
        fn()  # warm-up (builds and caches the eigendecomposition for the exact path)
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        return out, (time.perf_counter() - start) / repeats

    exact, t_exact = timed(lambda: proc.posterior_noise(z, t))
    approx, t_lanczos = timed(lambda: sig_s * lanczos_sqrt(apply_A, z, iters))
    plain, t_plain = timed(lambda: sig_s * lanczos_sqrt(apply_A, z, iters, reorth=False))
    rel = ((approx - exact).norm() / exact.norm()).item()
    rel_plain = ((plain - exact).norm() / exact.norm()).item()
    print(f"transition t={t} ({small}->{size}px), batch {batch}x3 channels, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"exact (eigenbasis):   {1e3 * t_exact:8.2f} ms per draw")
    print(f"Lanczos, {iters} iters, reorthogonalised: {1e3 * t_lanczos:8.2f} ms per draw (relative difference {rel:.2e})")
    print(f"Lanczos, {iters} iters, plain:            {1e3 * t_plain:8.2f} ms per draw (relative difference {rel_plain:.2e})")
    print(f"ratio Lanczos / exact: {t_lanczos / t_exact:.1f}x reorthogonalised, {t_plain / t_exact:.1f}x plain")
    return {"exact_ms": 1e3 * t_exact, "lanczos_ms": 1e3 * t_lanczos, "plain_ms": 1e3 * t_plain, "rel": rel, "rel_plain": rel_plain}
