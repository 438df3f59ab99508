"""collectives.stats on samples with known answers, and the stopping rule without MPI."""
import math

import numpy as np
import pytest

from collectives import stats
from collectives.stats import (ci_ranks, median_ci, next_batch_size, relative_halfwidth,
                               stop_reason, summarize)


class TestCiRanks:
    # hand-computed: l = floor((n - 1.96 sqrt n)/2), u = ceil(1 + (n + 1.96 sqrt n)/2)
    @pytest.mark.parametrize("n, expected", [
        (10, (1, 10)),       # (10-6.198)/2 = 1.90 -> 1 ; 1 + 16.198/2 = 9.10 -> 10
        (25, (7, 19)),       # 1.96*5 = 9.8: 7.6 -> 7 ; 18.4 -> 19
        (50, (18, 33)),      # 13.859: 18.07 -> 18 ; 32.93 -> 33
        (100, (40, 61)),     # 19.6: 40.2 -> 40 ; 60.8 -> 61
        (1000, (469, 532)),  # 61.98: 469.01 -> 469 ; 531.99 -> 532
    ])
    def test_textbook_ranks(self, n, expected):
        assert ci_ranks(n) == expected

    def test_other_confidence_uses_table_z(self):
        # z = 2.58 at 99%: (100 - 25.8)/2 = 37.1 -> 37 ; 1 + 125.8/2 = 63.9 -> 64
        assert ci_ranks(100, 0.99) == (37, 64)

    def test_small_n_clamped_while_coverage_holds(self):
        # n = 6: raw ranks (0, 7); [min, max] covers with 1 - 2/64 = 0.969 >= 0.95
        assert ci_ranks(6) == (1, 6)
        assert ci_ranks(7) == (1, 7)
        assert ci_ranks(8) == (1, 8)

    @pytest.mark.parametrize("n", [0, 1, 2, 5])
    def test_too_small_n_has_no_interval(self, n):
        # 1 - 2 * 0.5**5 = 0.9375 < 0.95: no order statistics reach the coverage
        assert ci_ranks(n) is None

    @pytest.mark.parametrize("bad", [-1, 2.5, True])
    def test_bad_n(self, bad):
        with pytest.raises(ValueError, match="n must be"):
            ci_ranks(bad)

    @pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
    def test_bad_confidence(self, bad):
        with pytest.raises(ValueError, match="confidence"):
            ci_ranks(10, bad)


class TestMedianCi:
    def test_order_statistics_of_shuffled_ranks(self):
        x = np.random.default_rng(1).permutation(np.arange(1, 101))
        assert median_ci(x) == (40.0, 61.0)

    def test_tiny_sample_is_nan(self):
        lo, hi = median_ci([1.0, 2.0, 3.0])
        assert math.isnan(lo) and math.isnan(hi)

    def test_coverage_on_known_distribution(self):
        # exponential(1) has median ln 2; the interval must cover it ~95% of the time
        rng = np.random.default_rng(7)
        for n in (20, 50, 200):
            hits = 0
            for _ in range(1000):
                lo, hi = median_ci(rng.exponential(size=n))
                hits += lo <= math.log(2) <= hi
            assert 0.93 <= hits / 1000 <= 0.995, (n, hits)

    @pytest.mark.parametrize("bad, match", [([[1.0, 2.0]], "one-dimensional"),
                                            ([1.0, float("nan")], "finite"),
                                            ([1.0, float("inf")], "finite")])
    def test_bad_samples(self, bad, match):
        with pytest.raises(ValueError, match=match):
            median_ci(bad)


def test_relative_halfwidth_uses_wider_side():
    assert relative_halfwidth(10.0, 9.0, 12.0) == pytest.approx(0.2)
    assert relative_halfwidth(10.0, 7.0, 11.0) == pytest.approx(0.3)
    assert relative_halfwidth(10.0, math.nan, 11.0) == math.inf
    assert relative_halfwidth(0.0, 0.0, 0.0) == math.inf


class TestSummarize:
    def test_known_answers(self):
        x = np.random.default_rng(3).permutation(np.arange(1, 101)) * 1e-6
        s = summarize(x)
        assert s["median_s"] == pytest.approx(50.5e-6)
        assert (s["ci_low_s"], s["ci_high_s"]) == pytest.approx((40e-6, 61e-6))
        assert s["mean_s"] == pytest.approx(50.5e-6)
        assert s["min_s"] == pytest.approx(1e-6)
        assert s["p95_s"] == pytest.approx(95.05e-6)
        assert s["p99_s"] == pytest.approx(99.01e-6)
        assert s["repetitions"] == 100
        assert s["ci_rel"] == pytest.approx(10.5 / 50.5)
        assert s["unstable"] is True           # 21% > 5% target
        assert summarize(x, target_ci=0.25)["unstable"] is False

    def test_tight_sample_is_stable(self):
        x = 1e-3 * (1 + 0.001 * np.sin(np.arange(50)))
        s = summarize(x)
        assert s["ci_rel"] < 0.002 and s["unstable"] is False

    def test_heavy_tail_is_unstable_even_with_tight_ci(self):
        x = np.r_[np.full(95, 1e-6), np.full(5, 1e-6 * (stats.TAIL_RATIO + 1))]
        s = summarize(x)
        assert s["ci_rel"] == 0.0
        assert s["p99_s"] > stats.TAIL_RATIO * s["median_s"]
        assert s["unstable"] is True

    def test_empty_and_tiny(self):
        s = summarize([])
        assert s["repetitions"] == 0 and s["unstable"] is True and math.isnan(s["median_s"])
        s = summarize([1.0, 1.0, 1.0])
        assert s["median_s"] == 1.0 and math.isnan(s["ci_low_s"]) and s["unstable"] is True

    def test_bad_target(self):
        with pytest.raises(ValueError, match="target_ci"):
            summarize([1.0] * 10, target_ci=0)


class TestStopReason:
    kw = dict(target_ci=0.05, time_budget=1.0, min_reps=10, max_reps=100)

    def test_constant_sequence_stops_on_ci_at_min_reps(self):
        assert stop_reason([2e-6] * 9, 0.0, **self.kw) is None
        assert stop_reason([2e-6] * 10, 0.0, **self.kw) == "ci"

    def test_wide_sequence_goes_on_then_budget_then_max(self):
        wide = np.linspace(1.0, 3.0, 50)
        assert stop_reason(wide, 0.5, **self.kw) is None
        assert stop_reason(wide, 1.0, **self.kw) == "budget"
        assert stop_reason(np.linspace(1.0, 3.0, 100), 0.1, **self.kw) == "max"

    def test_ci_has_precedence_over_max_and_budget(self):
        assert stop_reason([1.0] * 100, 5.0, **self.kw) == "ci"

    def test_min_reps_wins_over_budget_until_hard_limit(self):
        assert stop_reason([1.0, 5.0], 3.0, **self.kw) is None
        assert stop_reason([1.0, 5.0], stats.HARD_LIMIT * 1.0, **self.kw) == "budget"
        assert stop_reason([], stats.HARD_LIMIT * 1.0, **self.kw) == "budget"

    def test_ci_target_checked_against_the_wider_side(self):
        # 20 samples: 1.96 sqrt 20 = 8.77, ranks (5, 16); median 1.0;
        # x(16) 4% above, x(5) 6% below
        x = np.r_[np.full(4, 0.5), 0.94, np.full(10, 1.0), 1.04, np.full(4, 2.0)]
        assert ci_ranks(20) == (5, 16)
        assert stop_reason(x, 0.0, **self.kw) is None
        assert stop_reason(x, 0.0, **{**self.kw, "target_ci": 0.061}) == "ci"

    @pytest.mark.parametrize("kw, match", [
        (dict(min_reps=0), "min_reps"), (dict(min_reps=5, max_reps=4), "max_reps"),
        (dict(time_budget=0), "time_budget"), (dict(target_ci=-1), "target_ci"),
    ])
    def test_bad_limits(self, kw, match):
        with pytest.raises(ValueError, match=match):
            stop_reason([1.0], 0.0, **kw)


class TestNextBatchSize:
    def test_schedule(self):
        kw = dict(min_reps=10, max_reps=100, time_budget=1.0)
        assert next_batch_size(0, 0.0, **kw) == 10
        assert next_batch_size(4, 0.0, **kw) == 6
        assert next_batch_size(10, 0.01, **kw) == 2        # 25% of 10
        assert next_batch_size(80, 0.01, **kw) == 20
        assert next_batch_size(96, 0.01, **kw) == 4        # capped by max_reps
        assert next_batch_size(100, 0.01, **kw) == 0
        # 100 reps took 0.9 s: 0.1 s left at 9 ms each -> 11, not 25
        assert next_batch_size(100, 0.9, min_reps=10, max_reps=1000, time_budget=1.0) == 11
        assert next_batch_size(100, 2.0, min_reps=10, max_reps=1000, time_budget=1.0) == 1

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="done"):
            next_batch_size(-1, 0.0)


def _simulate(draw, *, step_s, target_ci=0.05, time_budget=1.0, min_reps=10,
              max_reps=100000):
    """The harness's stop loop on synthetic samples; elapsed time is simulated."""
    x = np.empty(0)
    checks = []
    while True:
        elapsed = x.size * step_s
        rule = stop_reason(x, elapsed, target_ci=target_ci, time_budget=time_budget,
                           min_reps=min_reps, max_reps=max_reps)
        checks.append((x.size, rule))
        if rule:
            return rule, x, checks
        k = next_batch_size(x.size, elapsed, min_reps=min_reps, max_reps=max_reps,
                            time_budget=time_budget)
        x = np.r_[x, draw(k)]


def test_simulated_point_stops_on_ci_once_target_reached():
    rng = np.random.default_rng(11)
    rule, x, checks = _simulate(lambda k: rng.lognormal(0.0, 0.3, k), step_s=1e-6)
    assert rule == "ci"
    s = summarize(x)
    assert s["ci_rel"] <= 0.05
    prev = x[:checks[-2][0]]
    assert prev.size < 10 or summarize(prev)["ci_rel"] > 0.05  # did not stop too late
    assert len(checks) < 40  # CI recomputed a logarithmic number of times


def test_simulated_noisy_point_stops_on_budget_or_max():
    rng = np.random.default_rng(12)
    rule, x, _ = _simulate(lambda k: rng.pareto(0.5, k) + 1.0, step_s=1e-3,
                           target_ci=0.001)
    assert rule == "budget"
    assert 1000 <= x.size <= 1001  # 1 s of 1 ms repetitions, overrun at most one
    rule, x, _ = _simulate(lambda k: rng.pareto(0.5, k) + 1.0, step_s=1e-6,
                           target_ci=0.001, max_reps=500)
    assert rule == "max" and x.size == 500
