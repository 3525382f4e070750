"""The EMA: one fused lerp per step equals the textbook recursion, warm-up ramps the decay, the host-side count
survives a checkpoint, and the state dict keeps torch's AveragedModel layout."""

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from scale_space_diffusion.models.ema import EMA, ema_decay


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def step(model: nn.Module, k: int) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(k)))
    model.train()(torch.randn(5, 2, 8, 8, generator=torch.Generator().manual_seed(k)))  # moves BatchNorm's stats


def test_decay_warms_up_and_caps():
    assert ema_decay(0.999, 0, True) == 0.0 and ema_decay(0.999, 0, False) == 0.0  # the first update copies
    assert ema_decay(0.999, 1, True) == pytest.approx(2 / 11) and ema_decay(0.999, 1, False) == 0.999
    ramp = [ema_decay(0.999, k, True) for k in range(1, 20000)]
    assert all(a <= b for a, b in zip(ramp, ramp[1:])) and ramp[-1] == 0.999


@pytest.mark.parametrize("warmup", [True, False])
def test_fused_update_is_the_recursion(warmup):
    live = net()
    ema = EMA(live, 0.9, warmup)
    reference = {k: v.clone() for k, v in live.state_dict().items()}
    for k in range(6):
        step(live, k)
        ema.update(live)
        beta = ema_decay(0.9, k, warmup)
        for name, value in live.state_dict().items():
            if value.is_floating_point():
                reference[name] = beta * reference[name] + (1 - beta) * value
            else:
                reference[name] = value.clone()  # BatchNorm's batch counter is copied
    for name, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=1e-6, atol=1e-6)
    assert ema.updates == 6 and int(ema.n_averaged) == 6


def test_without_warmup_it_matches_torch_averaged_model():
    live = net()
    ours, torchs = EMA(live, 0.95, warmup=False), AveragedModel(live, multi_avg_fn=get_ema_multi_avg_fn(0.95), use_buffers=True)
    for k in range(4):
        step(live, k)
        ours.update(live)
        torchs.update_parameters(live)
    for (name, a), b in zip(ours.state_dict().items(), torchs.state_dict().values()):
        if a.is_floating_point():  # torch averages integer buffers (BatchNorm's batch count) too; we copy them
            torch.testing.assert_close(a, b, msg=name)
    assert list(ours.state_dict()) == list(torchs.state_dict())  # checkpoints of either load into the other


def test_the_host_count_comes_back_from_a_state_dict():
    live = net()
    ema = EMA(live, 0.9)
    for k in range(3):
        ema.update(live)
    fresh = EMA(live, 0.9)
    assert fresh.updates == 0
    fresh.load_state_dict(ema.state_dict())
    assert fresh.updates == 3


def test_warmup_follows_a_short_run_and_plain_decay_does_not():
    """After 200 updates towards weights that moved away, the warmed-up EMA is near them; 0.9999 without warm-up
    is still ~98 % the initial weights: the "short runs sample grey" failure."""
    live = net()
    start = [p.detach().clone() for p in live.parameters()]
    warm, cold = EMA(live, 0.9999, True), EMA(live, 0.9999, False)
    warm.update(live), cold.update(live)  # both start as a copy
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    for _ in range(200):
        warm.update(live), cold.update(live)
    moved = lambda ema: torch.stack([(q - p0).mean() for q, p0 in zip(ema.module.parameters(), start)]).mean()  # noqa: E731
    assert moved(warm) > 0.9 and moved(cold) < 0.05
