"""FID and KID from features with bootstrap intervals: torch-fidelity's numbers, intervals that hold the estimate
and shrink with N, and the ranking rule (only non-overlapping intervals order two models)."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from scale_space_diffusion.metrics import (
    bootstrap_scores,
    fid_from_features,
    kid_subsets_metric,
    rank_by_intervals,
    reference_stats,
    separable,
)


def feats(n: int, seed: int, shift: float = 0.0, scale: float = 1.0, d: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale + shift


@pytest.fixture(scope="module")
def ref():
    return reference_stats(feats(600, 0))


def test_fid_and_kid_are_torch_fidelitys(ref):
    x = feats(300, 1, shift=0.2, scale=1.1)
    expected = fid_statistics_to_metric(fid_features_to_statistics(x.double()), fid_features_to_statistics(ref.features.cpu()), False)
    assert fid_from_features(x, ref) == pytest.approx(expected["frechet_inception_distance"], rel=1e-9)
    tf = kid_features_to_metric(x, ref.features.float().cpu(), kid_subsets=10, kid_subset_size=200, rng_seed=3, verbose=False)
    ours = kid_subsets_metric(x, ref.features, subsets=10, size=200, seed=3)
    assert ours.mean() == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-4, abs=1e-7)
    assert ours.std() == pytest.approx(tf["kernel_inception_distance_std"], rel=1e-3, abs=1e-7)


def test_interval_holds_the_estimate_and_shrinks_with_n(ref):
    small = bootstrap_scores(feats(100, 2, shift=0.3), ref, resamples=200, seed=0)
    large = bootstrap_scores(feats(800, 2, shift=0.3), ref, resamples=200, seed=0)
    for s in (small, large):
        for key in ("fid", "kid"):
            lo, hi = s[f"{key}_ci95"]
            assert lo <= s[key] <= hi
        assert s["kid_std"] > 0 and s["num_samples"] in (100, 800) and s["resamples"] == 200
        assert s["fid_bootstrap_median"] > s["fid"]  # duplicates bias the resampled FID upwards: the shift corrects it
    width = lambda s, k: s[f"{k}_ci95"][1] - s[f"{k}_ci95"][0]  # noqa: E731
    assert width(large, "fid") < width(small, "fid") and width(large, "kid") < width(small, "kid")
    assert bootstrap_scores(feats(100, 2, shift=0.3), ref, resamples=200, seed=0) == small  # seeded


def test_full_set_kid_matches_the_subsets_on_average(ref):
    x = feats(400, 4, shift=0.5)
    s = bootstrap_scores(x, ref, resamples=50)
    assert s["kid"] == pytest.approx(s["kid_subsets_mean"], rel=0.05)  # both unbiased estimates of one MMD^2


def test_the_same_distribution_scores_near_zero_and_a_shift_is_separated(ref):
    same = bootstrap_scores(feats(500, 5), ref, resamples=200)
    shifted = bootstrap_scores(feats(500, 6, shift=0.4), ref, resamples=200)
    assert same["fid"] < shifted["fid"] and abs(same["kid"]) < 0.01 < shifted["kid"]
    assert separable(tuple(same["fid_ci95"]), tuple(shifted["fid_ci95"])) == -1
    assert separable(tuple(shifted["fid_ci95"]), tuple(same["fid_ci95"])) == 1


def test_ranks_only_where_intervals_do_not_overlap():
    ranks = rank_by_intervals({"a": (1.0, 2.0), "b": (1.5, 3.0), "c": (2.5, 4.0), "d": (5.0, 6.0)})
    assert ranks == {"a": 1, "b": 1, "c": 2, "d": 4}  # a~b, b~c, a<c: c is ranked below a only
    assert separable((1.0, 2.0), (2.0, 3.0)) == 0  # touching intervals overlap


def test_too_few_samples_are_refused(ref):
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_scores(feats(1, 7), ref)
    assert np.isfinite(bootstrap_scores(feats(8, 7), ref, resamples=20)["fid"])  # rank-deficient covariance is fine
