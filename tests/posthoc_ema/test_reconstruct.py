"""Post-hoc EMA on a short real run: the snapshots rebuild a directly tracked power EMA of another width."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from scale_space_diffusion.posthoc_ema import PowerEMA, Profile
from scale_space_diffusion.posthoc_ema.profiles import discrete_profile, sigma_rel_to_gamma
from scale_space_diffusion.posthoc_ema.reconstruct import (
    SnapshotFile, apply_to_model, read_index, reconstruct, write_checkpoint,
)  # fmt: skip

STEPS, EVERY, TARGET = 40, 4, 0.07


class RecordIterates(L.Callback):
    """theta_1..theta_t: the net's weights after every optimizer step."""

    def __init__(self):
        self.iterates = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.iterates.append(torch.nn.utils.parameters_to_vector(pl_module.net.parameters()).detach().double().clone())


def tiny_model():
    from scale_space_diffusion.diffusion.schedule import NoiseSchedule
    from scale_space_diffusion.models.ddpm import DDPM
    from scale_space_diffusion.models.settings import Optimization, Sampling
    from scale_space_diffusion.networks.unet import UNet

    return DDPM(UNet(16, 1, None, 8, (1, 2), 1, (), 4), NoiseSchedule(timesteps=100),
                optim=Optimization(lr=5e-3, ema_decay=0.9), sampling=Sampling(steps=3, grid_size=0))  # fmt: skip


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """40 AdamW steps of a tiny DDPM on CPU with two PowerEMAs: the snapshotting one and a direct 0.07 one."""
    root = tmp_path_factory.mktemp("phema")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 16 px net gains nothing from threads; on a busy 2-core machine they cost 30x
    L.seed_everything(0, verbose=False)
    model = tiny_model()
    data = TensorDataset(torch.rand(64, 1, 16, 16) * 2 - 1, torch.zeros(64, dtype=torch.long))
    snapshots = PowerEMA((0.05, 0.10), every_n_steps=EVERY, dirpath=str(root / "snapshots"))
    direct = PowerEMA((TARGET, 0.05, 0.10), every_n_steps=10 * STEPS, dirpath=str(root / "direct"))
    record = RecordIterates()
    trainer = L.Trainer(max_steps=STEPS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
                        callbacks=[snapshots, direct, record], default_root_dir=str(root))  # fmt: skip
    try:
        trainer.fit(model, DataLoader(data, batch_size=4, shuffle=True))
    finally:
        torch.set_num_threads(threads)
    trainer.save_checkpoint(root / "last.ckpt")
    (direct_file,) = read_index(root / "direct")
    tracked = torch.load(direct_file.path, weights_only=True)["emas"]
    return dict(root=root, model=model, index=read_index(root / "snapshots"), tracked=tracked, record=record)


def flat(state: dict) -> torch.Tensor:
    return torch.cat([v.double().flatten() for v in state.values()])


def test_callback_keeps_the_exact_discrete_power_ema(short_run):
    """The fused lerps equal sum_i w_t(i) theta_i of (E4) over the recorded iterates (float32 rounding)."""
    thetas = torch.stack(short_run["record"].iterates)
    assert len(thetas) == STEPS
    w = discrete_profile(sigma_rel_to_gamma(TARGET), STEPS)
    torch.testing.assert_close(flat(short_run["tracked"][0]), w @ thetas, rtol=0, atol=1e-6)
    assert [f.step for f in short_run["index"]] == list(range(EVERY, STEPS + 1, EVERY))
    assert all(f.sigma_rels == (0.05, 0.10) for f in short_run["index"])


def errors(short_run, index):
    target = flat(short_run["tracked"][0])
    err = (flat(reconstruct(index, Profile(STEPS, TARGET))) - target).norm()
    spread = (flat(short_run["tracked"][1]) - flat(short_run["tracked"][2])).norm()  # |EMA 0.05 - EMA 0.10|
    return float(err), float(spread)


def test_reconstruction_matches_the_directly_tracked_ema(short_run):
    """Tolerance: 1 % of the distance between the 0.05 and 0.10 EMAs, the scale on which widths differ at all.

    The parameter error is sum_i r(i) theta_i for the profile residual r (sum_i r(i) = 0), so it is about
    |r| / |w| (1.2 % for snapshots every 4 of 40 steps) times the spread of the iterates; measured: 0.14 %.
    """
    err, spread = errors(short_run, short_run["index"])
    print(f"reconstruction error {err:.3g}, EMA spread {spread:.3g}")
    assert spread > 0
    assert err < 0.01 * spread


@pytest.mark.parametrize("wrong", ["swapped widths", "steps shifted"])
def test_wrong_snapshots_give_a_much_worse_reconstruction(short_run, wrong):
    index = short_run["index"]
    if wrong == "swapped widths":  # each file's EMAs labelled with the other's sigma_rel
        bad = [SnapshotFile(f.path, f.step, f.sigma_rels[::-1]) for f in index]
    else:  # each snapshot believed taken half an interval later than it was
        bad = [SnapshotFile(f.path, f.step + EVERY // 2, f.sigma_rels) for f in index if f.step + EVERY // 2 <= STEPS]
    good, spread = errors(short_run, index)
    err, _ = errors(short_run, bad)
    print(f"{wrong}: error {err:.3g} vs {good:.3g} with the right snapshots (spread {spread:.3g})")
    assert err > 5 * good
    assert err > 0.01 * spread  # outside the tolerance the correct snapshots meet


def test_apply_and_write_checkpoint(short_run, tmp_path):
    state = reconstruct(short_run["index"], Profile(STEPS, TARGET))
    model = apply_to_model(short_run["model"], state)
    torch.testing.assert_close(flat(model.sampling_net.state_dict()), flat(state))
    assert model.sampling_net is not model.net  # the raw training weights are left alone
    out = write_checkpoint(short_run["root"] / "last.ckpt", state, Profile(STEPS, TARGET), tmp_path / "e.ckpt")
    from scale_space_diffusion.io.checkpoint_io import AtomicCheckpointIO

    ckpt = AtomicCheckpointIO().load_checkpoint(out, weights_only=True)  # its new checksums verify
    assert ckpt["posthoc_ema"]["sigma_rel"] == TARGET
    for name, value in state.items():
        torch.testing.assert_close(ckpt["state_dict"][f"net_ema.module.{name}"], value)
    images = model.generate(2, steps=2, output_type="tensor", progress=False)
    assert images.shape == (2, 1, 16, 16) and torch.isfinite(images).all()


def test_resume_continues_the_same_emas(short_run):
    cb = PowerEMA((0.05, 0.10), every_n_steps=EVERY)
    cb.load_state_dict({"step": 7, "sigma_rels": [0.05, 0.10], "emas": [[torch.ones(3)], [torch.zeros(3)]]})
    other = PowerEMA((0.05, 0.2), every_n_steps=EVERY)
    other.load_state_dict(cb._restored)

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(1, 3, bias=False)

    cb.on_fit_start(None, Net())
    assert cb.step == 7 and float(cb.emas[0][0].sum()) == 3.0
    with pytest.raises(ValueError, match=r"tracked sigma_rels=\[0.05, 0.1\]"):
        other.on_fit_start(None, Net())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PowerEMA(()), "sigma_rels is empty"),
        (lambda: PowerEMA((0.05, 0.05)), "repeats a width"),
        (lambda: PowerEMA((0.05, 0.4)), "sigma_rel=0.4 must be in"),
        (lambda: PowerEMA(every_n_steps=0), "every_n_steps=0 must be >= 1"),
    ],
)
def test_bad_callback_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_missing_snapshots_and_too_early_a_step(tmp_path, short_run):
    with pytest.raises(FileNotFoundError, match="no post-hoc EMA snapshots"):
        read_index(tmp_path)
    with pytest.raises(ValueError, match="no snapshot at or before step 2"):
        reconstruct(short_run["index"], Profile(2, TARGET))


class SharedLayer(L.LightningModule):
    """A net that uses one Linear under two names, as FlexiUNet shares an adapter between resolutions."""

    def __init__(self):
        super().__init__()
        layer = torch.nn.Linear(3, 3)
        self.net = torch.nn.ModuleDict({"a": layer, "b": layer})

    def training_step(self, batch, batch_idx):
        return self.net["b"](self.net["a"](batch[0])).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_shared_parameter_comes_back_under_each_of_its_names(tmp_path):
    """named_parameters() names a shared parameter once, state_dict() under every name: the rebuilt state must load
    strictly, with every name holding the same EMA (a stale copy under one name would win on load)."""
    model = SharedLayer()
    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu",
                        callbacks=[PowerEMA((0.05, 0.10), every_n_steps=2, dirpath=str(tmp_path))])  # fmt: skip
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(12, 3)), batch_size=2))
    state = reconstruct(read_index(tmp_path), Profile(6, 0.07))
    assert set(state) == set(model.net.state_dict()) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    torch.testing.assert_close(state["b.weight"], state["a.weight"])
    assert not torch.equal(state["a.weight"], model.net["a"].weight.detach())  # an average, not the last weights
    model.net.load_state_dict(state)  # strict
