import pytest
import torch

from scale_space_diffusion.networks.flexi_unet import FlexiUNet
from scale_space_diffusion.networks.unet import UNet, timestep_embedding

ARGS = dict(image_size=32, in_channels=3, model_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
            attention_resolutions=(16,), num_heads=2)  # fmt: skip


def perturbed(net):
    """Shift every weight so zero-initialised heads do not hide differences."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


def test_unet_shapes_and_class_conditioning():
    net = UNet(**ARGS, num_classes=5)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 900])
    assert net(x, t, torch.tensor([0, 4])).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="class-conditional: pass labels"):
        net(x, t)
    with pytest.raises(ValueError, match="expects 32x32 inputs"):
        net(torch.randn(2, 3, 16, 16), t)


def test_flexi_full_layout_at_top_is_the_plain_unet():
    unet = perturbed(UNet(**ARGS))
    flexi = FlexiUNet(**ARGS).eval()
    missing, unexpected = flexi.load_state_dict(unet.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("adapters_") for k in missing)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 500])
    torch.testing.assert_close(flexi(x, t), unet(x, t), rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["full", "official"])
@pytest.mark.parametrize("in_res, out_res", [(32, 32), (16, 16), (8, 8), (8, 16), (16, 32)])
def test_flexi_output_shapes(layout, in_res, out_res):
    net = FlexiUNet(**ARGS, layout=layout)
    y = net(torch.randn(2, 3, in_res, in_res), torch.tensor([1, 2]), out_res=out_res)
    assert y.shape == (2, 3, out_res, out_res)


def run_with_hooks(net, in_res, out_res):
    ran = set()
    for name, module in [*net.enc.items(), *(("dec." + k, m) for k, m in net.dec.items())]:
        module.register_forward_hook(lambda m, i, o, name=name: ran.add(name))
    net(torch.randn(1, 3, in_res, in_res), torch.tensor([5]), out_res=out_res)
    return ran


@pytest.mark.parametrize("layout", ["full", "official"])
def test_8px_input_never_runs_higher_resolution_blocks(layout):
    net = FlexiUNet(**ARGS, layout=layout)
    ran = run_with_hooks(net, 8, 8)
    assert "32x32_conv" in ran  # the shared stem runs at any resolution; no 32/16 block does
    ran.discard("32x32_conv")
    assert not any(k.startswith(("32x32", "16x16", "dec.32x32", "dec.16x16")) for k in ran), ran
    assert "8x8_block0" in ran and "16x16_down" not in ran  # the encoder starts at level 8 itself
    increasing = run_with_hooks(FlexiUNet(**ARGS, layout=layout), 8, 16) - {"32x32_conv"}
    assert "dec.16x16_up" in increasing and "dec.16x16_block0" in increasing
    assert not any(k.startswith(("32x32", "16x16", "dec.32x32")) for k in increasing), increasing


def test_official_layout_skips_the_last_top_block_and_full_runs_it():
    assert "dec.32x32_block1" not in run_with_hooks(FlexiUNet(**ARGS, layout="official"), 32, 32)
    assert "dec.32x32_block1" in run_with_hooks(FlexiUNet(**ARGS, layout="full"), 32, 32)


def test_active_params_shrink_with_resolution():
    net = FlexiUNet(**ARGS)
    p32, p16, p8 = (net.active_params(r) for r in (32, 16, 8))
    assert p8 < p16 < p32 <= sum(p.numel() for p in net.parameters())


def test_bad_paths():
    net = FlexiUNet(**ARGS)
    with pytest.raises(ValueError, match="input resolution 12 is not a UNet level"):
        net(torch.randn(1, 3, 12, 12), torch.tensor([1]))
    with pytest.raises(ValueError, match="cannot go from 8px to 32px"):
        net(torch.randn(1, 3, 8, 8), torch.tensor([1]), out_res=32)
    with pytest.raises(ValueError, match="unknown layout"):
        FlexiUNet(**ARGS, layout="slim")


def test_null_class_embeds_label_minus_one_and_learns():
    net = perturbed(UNet(**ARGS, num_classes=5, null_class=True))
    t = torch.tensor([3, 3, 3])
    emb = net.embed(t, torch.tensor([-1, 0, 4]))
    time = net.time_embed(timestep_embedding(t, net.model_channels))
    torch.testing.assert_close(emb[0], time[0] + net.null_emb, rtol=0, atol=0)
    torch.testing.assert_close(emb[1:], time[1:] + net.label_emb(torch.tensor([0, 4])), rtol=0, atol=0)
    emb.square().sum().backward()  # the null embedding learns from the -1 entries
    assert net.null_emb.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.isfinite(net(torch.randn(1, 3, 32, 32), t[:1], torch.tensor([-1]))).all()


def test_label_minus_one_without_null_class_names_the_fix():
    net = UNet(**ARGS, num_classes=5)
    with pytest.raises(ValueError, match="null_class=true and train with cond_drop_prob > 0"):
        net(torch.randn(2, 3, 32, 32), torch.tensor([3, 4]), torch.tensor([1, -1]))
    with pytest.raises(ValueError, match="set num_classes"):
        UNet(**ARGS, null_class=True)


def test_null_class_adds_one_key_and_leaves_other_weights_and_keys_alone():
    """Nets without null_class keep their exact keys (released weights load by name); with it, the only new key is
    null_emb, zero-initialised without touching the global RNG, so the other initial weights are the same."""
    torch.manual_seed(0)
    plain = UNet(**ARGS, num_classes=5)
    torch.manual_seed(0)
    cfg = UNet(**ARGS, num_classes=5, null_class=True)
    assert "null_emb" not in plain.state_dict() and not any("null" in k for k in UNet(**ARGS).state_dict())
    assert set(cfg.state_dict()) - set(plain.state_dict()) == {"null_emb"}
    assert all(torch.equal(v, cfg.state_dict()[k]) for k, v in plain.state_dict().items())
    assert cfg.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["null_emb"]  # fine-tune into CFG
