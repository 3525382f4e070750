import torch
import torch.nn.functional as F
from torch import nn

from scale_space_diffusion.diffusion.loss import DiffusionLoss
from scale_space_diffusion.diffusion.schedule import NoiseSchedule
from scale_space_diffusion.models.settings import Optimization
from scale_space_diffusion.models.settings import Sampling
from scale_space_diffusion.metrics.flops import count_flops, count_params, count_train_flops, register_cpu_attention_flops


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
    """Registering twice keeps the first formula (one registry entry per op) and counts attention as before."""
    from torch.utils import flop_counter

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    register_cpu_attention_flops()
    formula, size = flop_counter.flop_registry[op], len(flop_counter.flop_registry)
    q = torch.randn(1, 2, 8, 4)
    before = count_flops(F.scaled_dot_product_attention, q, q, q)
    register_cpu_attention_flops()
    assert flop_counter.flop_registry[op] is formula and len(flop_counter.flop_registry) == size
    assert count_flops(F.scaled_dot_product_attention, q, q, q) == before == 4 * 1 * 2 * 8 * 8 * 4


def test_count_params():
    net, _, _ = conv_stack()
    assert count_params(net) == (3 * 8 * 9 + 8) + (8 * 16 * 9 + 16)
    net[0].requires_grad_(False)
    assert count_params(net, trainable_only=True) == 8 * 16 * 9 + 16


# -- model-level FLOPs: sampling over the trajectory, training in expectation over t ------------
import pytest  # noqa: E402

from scale_space_diffusion import DDPM, FlexiUNet, ScaleSpaceDiffusion  # noqa: E402
from scale_space_diffusion.metrics.model_flops import param_counts, sampling_flops, training_flops, training_flops_breakdown  # noqa: E402

TINY = dict(image_size=16, in_channels=1, model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1,
            attention_resolutions=(8,), num_heads=2)  # fmt: skip


def tiny_ssd(**kwargs) -> ScaleSpaceDiffusion:
    torch.manual_seed(0)
    return ScaleSpaceDiffusion(FlexiUNet(**TINY), **kwargs, schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None), sampling=Sampling(steps=10))


def test_one_level_ssd_costs_what_ddpm_costs():
    ssd = tiny_ssd(num_levels=1)
    ddpm = DDPM(ssd.net, schedule=NoiseSchedule(timesteps=100), loss=DiffusionLoss(prediction="x0"), optim=Optimization(ema_decay=None), sampling=Sampling(steps=10))  # same weights and width
    s_ssd, s_ddpm = sampling_flops(ssd), sampling_flops(ddpm)
    assert s_ssd["flops"] == s_ddpm["flops"] > 0
    assert s_ssd["paths"] == s_ddpm["paths"] == {"16->16": s_ddpm["paths"]["16->16"]}
    assert training_flops(ssd) == training_flops(ddpm) > 2 * s_ddpm["paths"]["16->16"]["denoise_flops"]


@pytest.mark.parametrize("ladder_schedule", ["convex", "equal"])
def test_traced_and_per_path_sampling_flops_agree(ladder_schedule):
    model = tiny_ssd(num_levels=3, ladder_schedule=ladder_schedule)
    out = sampling_flops(model)
    assert out["flops_traced"] == out["flops"]  # exact: (a) the traced sampler, (b) per path x steps
    assert set(out["paths"]) == {"16->16", "8->16", "8->8", "4->8", "4->4"}
    assert sum(p["steps"] for p in out["paths"].values()) == out["num_steps"] == len(out["steps"])
    assert out["paths"]["8->16"]["posterior_flops"] > 0 == out["paths"]["8->8"]["posterior_flops"]  # R only at transitions


def test_ssd_samples_and_trains_cheaper_than_ddpm():
    ssd = tiny_ssd(num_levels=3)
    ddpm = DDPM(ssd.net, schedule=NoiseSchedule(timesteps=100), loss=DiffusionLoss(prediction="x0"), optim=Optimization(ema_decay=None), sampling=Sampling(steps=10))
    assert sampling_flops(ssd, 100)["flops"] < sampling_flops(ddpm, 100)["flops"]
    train = training_flops_breakdown(ssd)
    assert sum(p["share"] for p in train["paths"].values()) == pytest.approx(1.0)
    assert train["flops"] < training_flops(ddpm) and train["teacher_flops"] == 0
    assert train["flops"] == pytest.approx(sum(p["share"] * p["flops"] for p in train["paths"].values()))


def test_full_unet_ablation_costs_ddpm_at_every_step():
    full, ddpm = tiny_ssd(num_levels=3, unet_mode="full"), None
    ddpm = DDPM(full.net, schedule=NoiseSchedule(timesteps=100), loss=DiffusionLoss(prediction="x0"), optim=Optimization(ema_decay=None))
    per_step = sampling_flops(ddpm, 100)["paths"]["16->16"]["denoise_flops"]
    assert all(p["denoise_flops"] >= per_step for p in sampling_flops(full, 100)["paths"].values())


def test_active_params_shrink_down_the_ladder():
    counts = param_counts(tiny_ssd(num_levels=3))
    active = counts["active_params"]
    assert active["16->16"] <= counts["params"]
    assert active["4->4"] < active["8->8"] < active["16->16"]
    assert active["8->16"] == active["16->16"]  # the authors' top transition runs the full-resolution path


def test_spectral_teacher_forward_is_reported_apart(tmp_path):
    from conftest import train_and_save

    from scale_space_diffusion import SpectralDiffusion, SpectralUNet, UNet

    torch.manual_seed(0)
    teacher = DDPM(UNet(**TINY), schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None), sampling=Sampling(grid_size=0))  # no sample grid at train end
    path = train_and_save(teacher, tmp_path / "teacher.ckpt")
    slim = {**TINY, "model_channels": 4}
    student = SpectralDiffusion(SpectralUNet(**slim), teacher=path, schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None))
    plain = SpectralDiffusion(SpectralUNet(**slim), schedule=NoiseSchedule(timesteps=100), optim=Optimization(ema_decay=None))
    out = training_flops_breakdown(student)
    teacher_fwd = sampling_flops(teacher, 1)["paths"]["16->16"]["denoise_flops"]
    assert out["teacher_flops"] == teacher_fwd  # forward only, every t
    assert out["flops"] > training_flops(plain)  # the student also pays for its distillation adapters
    assert out["total_flops"] == out["flops"] + out["teacher_flops"]
    assert param_counts(student)["teacher_params"] == count_params(teacher.net)
