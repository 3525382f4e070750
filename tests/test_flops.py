import torch
import torch.nn.functional as F
from torch import nn

from scale_space_diffusion.flops import count_flops, count_params, count_train_flops, register_cpu_attention_flops


def conv_flops(c_in: int, c_out: int, k: int, h_out: int, w_out: int) -> int:
    return 2 * c_in * c_out * k * k * h_out * w_out


def conv_stack() -> tuple[nn.Module, int, int]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2))
    c1 = conv_flops(3, 8, 3, 16, 16)  # 16x16 -> 16x16
    c2 = conv_flops(8, 16, 3, 7, 7)  # 16x16 -> floor((16 - 3) / 2) + 1 = 7
    return net, c1, c2


def test_conv_stack_matches_hand_formula():
    net, c1, c2 = conv_stack()
    x = torch.randn(2, 3, 16, 16)
    assert count_flops(net, x) == 2 * (c1 + c2)  # batch of 2; bias adds are not counted


def test_train_flops_count_backward():
    net, c1, c2 = conv_stack()
    x = torch.randn(2, 3, 16, 16)
    fwd = count_flops(net, x)
    train = count_train_flops(net, lambda: net(x).square().mean())
    # forward + grad_weight for both convs + grad_input for the second only (x needs no grad)
    assert train == 2 * (c1 + c1 + c2 + c2 + c2)
    assert train > 2 * fwd
    assert all(p.grad is None for p in net.parameters())


def test_attention_is_counted():
    B, h, L, d = 2, 4, 64, 16
    q, k, v = (torch.randn(B, h, L, d) for _ in range(3))
    # QK^T and PV: two (L x d) @ (d x L)-sized bmms per head
    assert count_flops(F.scaled_dot_product_attention, q, k, v) == 4 * B * h * L * L * d


def test_attention_backward_is_counted():
    B, h, L, d = 1, 2, 32, 8
    proj = nn.Linear(d, 3 * d, bias=False)
    x = torch.randn(B, h, L, d)

    def loss() -> torch.Tensor:
        q, k, v = proj(x).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v).square().mean()

    linear = 2 * B * h * L * d * 3 * d
    # forward 4 B h L^2 d; backward recomputes QK^T and does 4 more bmms: 10 B h L^2 d;
    # the projection: forward + grad_weight (x needs no grad)
    expected = 14 * B * h * L * L * d + 2 * linear
    assert count_train_flops(proj, loss) == expected


def test_register_is_idempotent():
    register_cpu_attention_flops()
    register_cpu_attention_flops()


def test_count_params():
    net, _, _ = conv_stack()
    assert count_params(net) == (3 * 8 * 9 + 8) + (8 * 16 * 9 + 16)
    net[0].requires_grad_(False)
    assert count_params(net, trainable_only=True) == 8 * 16 * 9 + 16
