"""fits.bootstrap: resampled medians, launch weights, percentile intervals."""
import numpy as np
import pytest

from fits import bootstrap


def test_shapes_and_single_launch_weights():
    rng = np.random.default_rng(0)
    samples = [rng.normal(1, 0.1, 11), rng.normal(2, 0.1, 5), np.array([])]
    reps = bootstrap.replicate_points(samples, [1.0, 2.0, 3.0], ["a"] * 3, 50, rng)
    assert reps.times.shape == (50, 3) and reps.count == 50
    assert np.all(reps.weights == 1)
    assert np.all(reps.times[:, 2] == 3.0)  # no samples: median held fixed
    # every replicate median is one of the point's samples (odd counts)
    assert np.all(np.isin(reps.times[:, 0], samples[0]))


def test_whole_launches_are_resampled():
    rng = np.random.default_rng(1)
    launches = ["a", "a", "b", "b", "c"]
    samples = [np.ones(3)] * 5
    reps = bootstrap.replicate_points(samples, np.ones(5), launches, 200, rng)
    # points of one launch share a weight; launch counts add up to the launch count
    assert np.all(reps.weights[:, 0] == reps.weights[:, 1])
    assert np.all(reps.weights[:, 2] == reps.weights[:, 3])
    assert np.all(reps.weights[:, [0, 2, 4]].sum(axis=1) == 3)
    assert (reps.weights == 0).any()  # some replicates leave a launch out


def test_interval_covers_the_median_spread():
    rng = np.random.default_rng(2)
    s = rng.lognormal(0, 0.1, 101)
    reps = bootstrap.replicate_points([s], [np.median(s)], ["a"], 400, rng)
    lo, hi = bootstrap.percentile_interval(reps.times[:, 0], 0.95)
    assert lo < np.median(s) < hi
    assert hi / lo - 1 < 0.1  # about 2 × 1.96 × 1.25 × 0.1 / sqrt(101)


def test_percentile_interval_ignores_nan():
    lo, hi = bootstrap.percentile_interval(np.array([1.0, np.nan, 3.0, 2.0]), 0.5)
    assert 1 <= lo <= hi <= 3
    lo, hi = bootstrap.percentile_interval(np.array([np.nan, np.nan]))
    assert np.isnan(lo) and np.isnan(hi)


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="count"):
        bootstrap.replicate_points([np.ones(2)], [1.0], ["a"], 0, rng)
    with pytest.raises(ValueError, match="one entry per point"):
        bootstrap.replicate_points([np.ones(2)], [1.0, 2.0], ["a"], 5, rng)
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap.replicate_points([np.array([1.0, np.nan])], [1.0], ["a"], 5, rng)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap.percentile_interval([1.0], 1.5)
