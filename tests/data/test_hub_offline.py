"""The Hugging Face offline flags change only inside ``hub_offline`` and are restored after it (issue 26 item 5)."""

import datasets
import pytest
from huggingface_hub import constants

from scale_space_diffusion.data import sources


def flags():
    return datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE


def test_an_unreachable_hub_loads_offline_inside_the_call_only(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(sources, "_hub_reachable", lambda: False)
    seen = []

    def load_dataset(name, cache_dir):
        seen.append(flags())
        raise ConnectionError("no cache")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(FileNotFoundError, match="the hub is unreachable"):
        sources.from_hub("someone/data", tmp_path)
    assert seen == [(True, True)] and flags() == (False, False)
    with sources.hub_offline(False):
        assert flags() == (False, False)
    with pytest.raises(RuntimeError), sources.hub_offline(True):
        assert flags() == (True, True)
        raise RuntimeError
    assert flags() == (False, False)
