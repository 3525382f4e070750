"""Issue 25 item 3: every checkpoint written through AtomicCheckpointIO and every export carries a sha256 per tensor;
one flipped byte in tensor data is refused in one line naming the file and the tensor; the same file unflipped loads;
``verify=False`` loads it anyway; files without checksums (Lightning's own, older ones) load as before."""

import json
import re
import struct

import pytest
import torch

from conftest import ROOT, train_and_save
from extension_classes import tiny
from scale_space_diffusion.io import AtomicCheckpointIO, from_pretrained, load_model, save_pretrained
from scale_space_diffusion.io.integrity import KEY, CorruptFile, checksums, digest, verify
from test_extension import fit


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return fit(tiny(), tmp_path_factory.mktemp("integrity") / "tiny.ckpt")


def flip_byte_of(path, tensor: torch.Tensor, at: int = 5) -> None:
    """Flip one bit of ``tensor``'s data where it first sits in the file at ``path`` (an EMA equal to the weights
    holds the same bytes again)."""
    blob = bytearray(path.read_bytes())
    raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    start = blob.find(raw)
    assert start > 0
    blob[start + at] ^= 0x10
    path.write_bytes(bytes(blob))


def test_a_checkpoint_carries_a_checksum_of_every_tensor_weights_and_optimizer_alike(ckpt):
    saved = torch.load(ckpt, weights_only=True)
    names = set(saved[KEY])
    assert names == set(checksums(saved)) and len(names) > 20
    assert {"state_dict/net.inp.weight", "state_dict/net_ema.module.inp.weight"} <= names
    assert any(n.startswith("optimizer_states/0/state/") and n.endswith("exp_avg") for n in names)
    verify(saved, saved[KEY], ckpt)  # as written


def test_one_flipped_byte_in_a_checkpoint_is_refused_and_the_unflipped_file_loads(ckpt, tmp_path):
    good = load_model(ckpt)
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(open(ckpt, "rb").read())
    flip_byte_of(bad, good.state_dict()["net.out.weight"])
    for load in (lambda: load_model(bad), lambda: AtomicCheckpointIO().load_checkpoint(bad)):
        with pytest.raises(CorruptFile) as err:
            load()
        message = str(err.value)
        assert "\n" not in message and str(bad) in message and "does not match its sha256 checksum" in message
        assert re.search(r"tensor 'state_dict/net(_ema\.module)?\.out\.weight'", message) and "verify=False" in message
    forced = load_model(bad, verify=False)  # the explicit opt-out loads the changed data
    assert not torch.equal(forced.state_dict()["net.out.weight"], good.state_dict()["net.out.weight"]) or not \
        torch.equal(forced.state_dict()["net_ema.module.out.weight"], good.state_dict()["net_ema.module.out.weight"])
    assert AtomicCheckpointIO(verify=False).load_checkpoint(bad)["global_step"] == 2


def test_one_flipped_byte_in_an_export_is_refused_and_the_unflipped_file_loads(ckpt, tmp_path):
    model = load_model(ckpt)
    folder = save_pretrained(model, tmp_path / "export")
    header = json.loads((folder / "model.safetensors").read_bytes()[8 : 8 + struct.unpack("<Q", (folder / "model.safetensors").read_bytes()[:8])[0]])
    assert set(json.loads(header["__metadata__"][KEY])) == {f"net.{k}" for k in model.sampling_net.state_dict()}
    assert torch.equal(from_pretrained(folder).net.inp.weight, model.sampling_net.inp.weight)
    flip_byte_of(folder / "model.safetensors", model.sampling_net.state_dict()["inp.weight"])
    with pytest.raises(CorruptFile, match=r"model.safetensors is corrupt: tensor 'net.inp.weight' does not match"):
        from_pretrained(folder)
    assert not torch.equal(from_pretrained(folder, verify=False).net.inp.weight, model.sampling_net.inp.weight)


def test_files_without_checksums_load_as_before(tmp_path):
    """Lightning's own checkpoint (a Trainer without our plugin) and one written before checksums existed."""
    foreign = train_and_save(tiny(), tmp_path / "plain.ckpt", image_size=8)
    assert KEY not in torch.load(foreign, weights_only=True)
    assert type(load_model(foreign)).__name__ == "TinyModel"
    assert load_model(ROOT / "tests/fixtures/legacy_c666f5b/ddpm.ckpt").net_ema is not None


def test_a_missing_tensor_or_a_changed_shape_is_refused():
    state = {"a": torch.arange(4.0), "b": torch.zeros(2, 2)}
    recorded = checksums(state)
    with pytest.raises(CorruptFile, match="tensor 'b' is missing"):
        verify({"a": state["a"]}, recorded, "f")
    with pytest.raises(CorruptFile, match="tensor 'b' does not match"):
        verify({**state, "b": torch.zeros(4)}, recorded, "f")  # same bytes, another shape
    assert digest(torch.zeros(2, dtype=torch.bfloat16)) != digest(torch.zeros(1, dtype=torch.float32))
