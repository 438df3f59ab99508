"""fits.segments: breakpoint search and BIC choice of the number of segments."""
import numpy as np
import pytest

from fits import model, segments

N = np.concatenate([[0], 2.0 ** np.arange(0, 25)])


def _pingpong(rng=None, sigma=0.0, breakpoint=65536):
    t = np.where(N < breakpoint, 1e-6 + N * 2e-10, 2e-5 + N * 1e-10)
    if rng is not None:
        t = t * rng.lognormal(0, sigma, N.size)
    return model.hockney_design(N), t


class TestFitSegments:
    def test_finds_breakpoint_without_noise(self):
        X, t = _pingpong()
        fit = segments.fit_segments(X, t, N)
        assert fit.breakpoints == (65536.0,)
        assert fit.bounds == ((0.0, 32768.0), (65536.0, 2.0 ** 24))
        np.testing.assert_allclose(fit.thetas[:, :2], [[1e-6, 2e-10], [2e-5, 1e-10]],
                                   rtol=1e-6)

    def test_finds_breakpoint_with_noise(self):
        counts = []
        for seed in range(20):
            X, t = _pingpong(np.random.default_rng(seed), 0.03)
            fit = segments.fit_segments(X, t, N)
            assert 65536.0 in fit.breakpoints
            assert fit.bic[2] < fit.bic[1]
            counts.append(fit.count)
        # one point per size: a spurious third segment now and then, not often
        assert counts.count(2) >= 16

    def test_straight_line_is_one_segment(self):
        rng = np.random.default_rng(5)
        t = (1e-6 + N * 2e-10) * rng.lognormal(0, 0.02, N.size)
        fit = segments.fit_segments(model.hockney_design(N), t, N)
        assert fit.count == 1 and fit.breakpoints == ()

    def test_fixed_count(self):
        X, t = _pingpong()
        assert segments.fit_segments(X, t, N, segments=1).count == 1
        assert segments.fit_segments(X, t, N, segments="3").count == 3

    def test_too_few_sizes(self):
        X = model.hockney_design([1.0, 1.0])
        with pytest.raises(ValueError, match="2 distinct sizes"):
            segments.fit_segments(X, [1e-6, 1e-6], [1.0, 1.0])
        n = 2.0 ** np.arange(5)
        with pytest.raises(ValueError, match="3 segments need"):
            segments.fit_segments(model.hockney_design(n), 1e-6 + n * 1e-9, n, segments=3)

    def test_bad_segments_argument(self):
        X, t = _pingpong()
        for bad in ("two", 0, -1, True, 1.5):
            with pytest.raises(ValueError, match="segments"):
                segments.fit_segments(X, t, N, segments=bad)


class TestAssignAndFixed:
    def test_breakpoint_belongs_to_upper_segment(self):
        assert segments.assign([0, 65535, 65536, 1e9], [65536]).tolist() == [0, 0, 1, 1]

    def test_fit_fixed_empty_segment_is_nan(self):
        X, t = _pingpong()
        w = np.where(N < 65536, 1.0, 0.0)
        thetas = segments.fit_fixed(X, t, N, (65536.0,), weights=w)
        assert np.isfinite(thetas[0]).all() and np.isnan(thetas[1]).all()
