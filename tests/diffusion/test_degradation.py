import pytest
import torch
import torch.nn.functional as F

from scale_space_diffusion.diffusion.degradation import Resize, axis_matrix


@pytest.mark.parametrize("kind", ["bilinear", "box"])
@pytest.mark.parametrize("n_in, n_out", [(32, 16), (32, 8), (8, 4), (64, 8)])
def test_adjoint_identity(kind, n_in, n_out):
    """<R x, y> = <x, R^T y>."""
    R = Resize(kind)
    x = torch.randn(2, 3, n_in, n_in, dtype=torch.float64)
    y = torch.randn(2, 3, n_out, n_out, dtype=torch.float64)
    lhs = (R.down(x, n_out) * y).sum()
    rhs = (x * R.adjoint(y, n_in)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [32, 16, 8])
def test_bilinear_matches_interpolate(n):
    x = torch.randn(4, 3, n, n)
    ref = F.interpolate(x, size=(n // 2, n // 2), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(Resize("bilinear").down(x, n // 2), ref, rtol=0, atol=1e-6)


def test_composition_is_repeated_steps_not_a_direct_resize():
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    step = lambda z: F.interpolate(z, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)  # noqa: E731
    torch.testing.assert_close(Resize("bilinear").down(x, 8), step(step(x)))


def test_box_gram_is_a_quarter_identity():
    M = axis_matrix("box", 16, 8)
    R = torch.kron(M, M)
    torch.testing.assert_close(R @ R.T, torch.eye(64, dtype=torch.float64) / 4)
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(Resize("box").down(x, 8), F.avg_pool2d(x, 2))


def test_bilinear_gram_top_eigenvalue_is_about_a_quarter():
    M = axis_matrix("bilinear", 32, 16)
    R = torch.kron(M, M)
    lam = torch.linalg.eigvalsh(R @ R.T)
    assert 0.24 < lam.max().item() < 0.26  # border renormalisation lifts it slightly above 1/4
