"""EpochSampler: the training order and flips are a function of (seed, epoch, position), sharded and resumable."""

import pytest

from scale_space_diffusion.data.order import EpochSampler


def test_each_epoch_is_a_seeded_permutation_with_seeded_flips():
    epoch = lambda seed, e: (s := EpochSampler(50, seed, flip=True), s.set_epoch(e), list(s))[-1]  # noqa: E731
    first = epoch(0, 0)
    assert sorted(i for i, _ in first) == list(range(50)) and 10 < sum(f for _, f in first) < 40
    assert first == epoch(0, 0) and first != epoch(0, 1) and first != epoch(1, 0)
    assert not any(f for _, f in EpochSampler(50, 0, flip=False))


@pytest.mark.parametrize("n", [10, 11])
def test_ranks_deal_out_one_permutation(n):
    ranks = [list(EpochSampler(n, 3, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == (n + 1) // 2
    assert {i for r in ranks for i, _ in r} == set(range(n))  # padding repeats at most one index
    one = list(EpochSampler(n, 3))
    assert [p for pair in zip(*ranks) for p in pair][:n] == one  # the 1-device order, dealt round-robin


def test_resume_skips_finished_samples_of_that_epoch_only():
    s = EpochSampler(20, 0, flip=True)
    s.set_epoch(2)
    whole = list(s)
    s.resume(2, 6)
    assert list(s) == whole[6:]
    assert list(s) == whole  # the skip is used once
    s.resume(1, 6)
    s.set_epoch(2)  # Lightning moved on to the next epoch: no skip there
    assert list(s) == whole
