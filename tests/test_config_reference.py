"""docs/config.md is generated from the typed settings and docstrings, and a stale copy fails here."""

import dataclasses

import pytest

from scale_space_diffusion import config_reference
from scale_space_diffusion.models.settings import Optimization, Sampling


def test_docs_config_md_is_the_generated_text():
    assert config_reference.DOC.read_text() == config_reference.render(), (
        "docs/config.md is stale: run `python -m scale_space_diffusion.config_reference`")


def test_every_option_has_a_type_default_and_meaning():
    text = config_reference.render()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) > 60 and all(line.split(" | ")[-1].strip(" |") for line in rows), [
        line for line in rows if not line.split(" | ")[-1].strip(" |")]
    for group, cls in (("optim", Optimization), ("sampling", Sampling)):
        for f in dataclasses.fields(cls):
            assert f"| `model.init_args.{group}.{f.name}` |" in text


def test_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "config.md"
    stale.write_text(config_reference.render().replace("AdamW learning rate.", "the learning rate"))
    monkeypatch.setattr(config_reference, "DOC", stale)
    with pytest.raises(SystemExit, match="config.md is stale"):
        config_reference.main(["--check"])
    config_reference.main([])
    config_reference.main(["--check"])  # rewritten: current again
