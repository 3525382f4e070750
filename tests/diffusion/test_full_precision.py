"""The diffusion math stays float32 under bf16 autocast: only the network is meant to run in low precision."""

import torch

from scale_space_diffusion.diffusion.ddim import ddim_step
from scale_space_diffusion.diffusion.degradation import Resize
from scale_space_diffusion.diffusion.ladder import ResolutionLadder
from scale_space_diffusion.diffusion.precision import full_precision, no_autocast
from scale_space_diffusion.diffusion.process import ScaleSpaceProcess
from scale_space_diffusion.diffusion.schedule import NoiseSchedule


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_full_precision_turns_autocast_off_and_upcasts_low_precision_arguments():
    @full_precision
    def matmul(a, b, scale=1.0):
        return scale * (a @ b)

    a, b = torch.randn(4, 4), torch.randn(4, 4)
    ref = a @ b
    with bf16_autocast():
        assert (a @ b).dtype == torch.bfloat16  # what autocast does to plain math
        assert matmul(a, b).dtype == torch.float32 and torch.equal(matmul(a, b), ref)
        assert matmul(a.bfloat16(), b=b.bfloat16()).dtype == torch.float32
        with no_autocast():
            assert (a @ b).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")  # restored on exit
    assert matmul(a.double(), b.double()).dtype == torch.float64  # higher precision is left alone


def test_resize_posterior_and_ddim_are_float32_under_autocast():
    proc = ScaleSpaceProcess(NoiseSchedule.make("linear", 90), ResolutionLadder(16, 3, 90, "equal"), Resize())
    t = next(t for t in range(1, 90) if proc.ladder.res(t) != proc.ladder.res(t - 1))  # a transition, 8 px -> 16 px
    s = t - 1
    g = torch.Generator().manual_seed(0)
    n_t, n_s = proc.ladder.res(t), proc.ladder.res(s)
    x_t, x0_hat, z = (torch.randn(2, 1, n, n, generator=g) for n in (n_t, n_s, n_s))
    calls = {
        "down": lambda: proc.resize.down(x0_hat, n_t),
        "adjoint": lambda: proc.resize.adjoint(x_t, n_s),
        "posterior_mean": lambda: proc.posterior_mean(x_t, x0_hat, t, s),
        "posterior_noise": lambda: proc.posterior_noise(z, t, s),
        "ddim_step": lambda: ddim_step(proc, x_t, x0_hat, t, s, 0.0, z),
        "ddim_step from a bf16 network output": lambda: ddim_step(proc, x_t, x0_hat.bfloat16(), t, s, 0.0, z),
    }
    for name, call in calls.items():
        ref = call() if "bf16" not in name else ddim_step(proc, x_t, x0_hat.bfloat16().float(), t, s, 0.0, z)
        with bf16_autocast():
            out = call()
        assert out.dtype == torch.float32, name
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6, msg=name)
