import torch

from scale_space_diffusion.diffusion.ladder import ResolutionLadder


def test_worked_example_64px_4_levels():
    lad = ResolutionLadder(64, 4, 1000, "convex", 0.5)
    assert lad.transitions == [438, 750, 937]
    assert lad.steps_per_level == [438, 312, 187, 63]
    assert lad.res(437) == 64 and lad.res(438) == 32 and lad.res(999) == 8


def test_equal_schedule_splits_evenly():
    lad = ResolutionLadder(32, 4, 1000, "equal")
    assert lad.steps_per_level == [250, 250, 250, 250]


def test_one_level_is_ddpm():
    lad = ResolutionLadder(32, 1, 1000)
    assert lad.transitions == [] and set(lad.t2res) == {32}
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(lad.sample_t(16, g1), torch.randint(1000, (16,), generator=g2))


def test_batches_have_one_input_and_one_output_resolution():
    lad = ResolutionLadder(32, 3, 1000)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        t = lad.sample_t(8, g)
        assert len({lad.res(int(x)) for x in t}) == 1
        assert len({lad.res(int(x) - 1) for x in t}) == 1


def test_batch_t_marginal_is_uniform():
    """Chi-square test of the per-entry marginal against U{0..T-1} (T = 20, coarse enough to test)."""
    T, n_batches, B = 20, 20000, 4
    lad = ResolutionLadder(32, 3, T)
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.cat([lad.sample_t(B, g) for _ in range(n_batches)]), minlength=T).double()
    expected = n_batches * B / T
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    # Entries of one batch are dependent (a transition fills the batch), which inflates the variance
    # by at most B; 19 dof: the 99.9% quantile is 43.8.
    assert chi2 / B < 43.8, counts


def test_shared_generator_fixes_the_resolution_across_ranks():
    lad = ResolutionLadder(32, 3, 1000)
    for step in range(50):
        rank0 = lad.sample_t(4, torch.Generator().manual_seed(100), shared=torch.Generator().manual_seed(step))
        rank1 = lad.sample_t(4, torch.Generator().manual_seed(200), shared=torch.Generator().manual_seed(step))
        assert lad.res(int(rank0[0])) == lad.res(int(rank1[0]))
