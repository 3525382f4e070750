import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from scale_space_diffusion.networks import linear as linear_module
from scale_space_diffusion.networks.linear import linear


@pytest.fixture(params=[True, False], ids=["onednn", "blas"])
def route(request, monkeypatch):
    """Both CPU routes on any machine: oneDNN (AVX-512 CPUs) and F.linear (the rest)."""
    monkeypatch.setattr(linear_module, "onednn_is_faster", lambda: request.param)
    return request.param


class Ops(TorchDispatchMode):
    """Records the aten ops run inside it."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


def _inputs(shape, transposed):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64).float()
    if transposed:  # e.g. an NCHW activation read token-major: (B, HW, C) with stride HW along C
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    w, b = torch.randn(48, shape[-1], generator=g), torch.randn(48, generator=g)
    return x, w, b


@pytest.mark.parametrize("shape", [(7, 20), (3, 50, 20), (2, 3, 5, 20)])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_is_f_linear_values_and_gradients(shape, transposed, with_bias, route):
    x, w, b = _inputs(shape, transposed)
    b = b if with_bias else None
    leaves = [t.requires_grad_() for t in (x, w, b) if t is not None]
    ours = linear(x, w, b)
    ref = F.linear(*(t.double() if t is not None else None for t in (x, w, b)))
    assert ours.shape == ref.shape == (*shape[:-1], 48) and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, leaves, g)
    ref_grads = torch.autograd.grad(ref, leaves, g.double())
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=1e-4)


def test_linear_runs_on_onednn_convolution_in_float32_on_an_avx512_cpu_else_on_the_blas(route):
    x, w, b = _inputs((4, 16, 20), False)
    with Ops() as ops:
        linear(x, w, b)
    assert ("convolution" in ops.names) == route and bool({"mm", "addmm", "bmm"} & set(ops.names)) != route


def test_onednn_is_the_route_exactly_where_pytorch_runs_avx512():
    linear_module.onednn_is_faster.cache_clear()
    assert linear_module.onednn_is_faster() == (torch.backends.cpu.get_cpu_capability() == "AVX512")


def test_linear_under_cpu_autocast_is_f_linear_in_bf16(route):
    x, w, b = _inputs((4, 16, 20), False)
    with torch.autocast("cpu", dtype=torch.bfloat16), Ops() as ops:
        out = linear(x, w, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.linear(x, w, b)
    assert out.dtype == torch.bfloat16 and "convolution" not in ops.names
    torch.testing.assert_close(out, ref)


def test_linear_takes_a_transposed_weight_and_refuses_a_mismatch_as_f_linear_does(route):
    x, w, b = _inputs((5, 20), False)
    wt = w.T.contiguous().T  # same values, column-major
    torch.testing.assert_close(linear(x, wt, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        linear(x, w[:, :10], b)
    assert linear(torch.zeros(0, 20), w, b).shape == (0, 48)
