"""Scaling laws (fits.predict.scaling): hand-computed values, properties, invalid inputs."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fits.predict import scaling

fractions = st.floats(0.0, 1.0, allow_nan=False)
workers = st.integers(1, 100_000)


class TestHandComputed:
    def test_amdahl(self):
        # s = 0.1, K = 10: 1 / (0.1 + 0.9/10) = 1 / 0.19
        assert scaling.amdahl_speedup(0.1, 10) == pytest.approx(1 / 0.19, rel=1e-15)
        assert scaling.amdahl_time(0.25, 4) == pytest.approx(0.25 + 0.75 / 4)
        assert scaling.amdahl_ceiling(0.1) == pytest.approx(10.0)
        assert scaling.amdahl_ceiling(0.0) == math.inf

    def test_gustafson(self):
        assert scaling.gustafson_speedup(0.1, 10) == pytest.approx(10 - 0.1 * 9)
        assert scaling.gustafson_speedup(1.0, 64) == pytest.approx(1.0)

    def test_speedup_efficiency(self):
        assert scaling.speedup(12.0, 3.0) == 4.0
        assert scaling.efficiency(6.0, 8) == 0.75

    def test_karp_flatt(self):
        # S = 5 at K = 10: (0.2 - 0.1) / 0.9
        assert scaling.karp_flatt(5.0, 10) == pytest.approx(0.1 / 0.9)
        assert math.isnan(scaling.karp_flatt(1.0, 1))

    def test_fit_serial_fraction_exact(self):
        K = np.array([1, 2, 3, 4, 8, 16])
        assert scaling.fit_serial_fraction(K, scaling.amdahl_speedup(0.07, K)) == \
            pytest.approx(0.07, abs=1e-14)

    def test_fit_serial_fraction_least_squares(self):
        # x = 1 - 1/K, y = 1/S - 1/K; s = Σxy / Σx² by hand for two points
        K = np.array([2.0, 4.0])
        S = np.array([1.8, 3.0])
        x = 1 - 1 / K
        y = 1 / S - 1 / K
        assert scaling.fit_serial_fraction(K, S) == pytest.approx((x @ y) / (x @ x))

    def test_comm_serial_fraction(self):
        assert scaling.comm_serial_fraction(1.0, 3.0) == 0.25
        assert scaling.comm_serial_fraction(0.0, 0.0) == 0.0

    def test_textbook_models(self):
        # s = 0.2, c = 0.05, K = 8: 0.2 + 0.8/8 + 0.05*3 and 0.2 + 0.8 + 0.05*3
        assert scaling.textbook_strong_time(0.2, 0.05, 8) == pytest.approx(0.45)
        assert scaling.textbook_weak_time(0.2, 0.05, 8) == pytest.approx(1.15)
        assert scaling.textbook_strong_time(0.2, 0.05, 1) == pytest.approx(1.0)

    def test_textbook_optimum_closed_form(self):
        # K* = (1 - s) ln 2 / c = 10 exactly
        assert scaling.textbook_optimal_workers(0.0, math.log(2) / 10) == 10.0
        assert scaling.textbook_optimal_workers(0.1, 0.0) == math.inf
        assert scaling.textbook_optimal_workers(0.5, 10.0) == 1.0

    def test_costs(self):
        assert scaling.run_cost(3.6, 1000) == pytest.approx(1.0)
        assert scaling.cost_per_work(2.0, 8) == 0.25
        assert scaling.work_per_cost(8, 2.0) == 4.0
        assert scaling.work_per_cost(8, 0.0) == math.inf

    def test_vectorized(self):
        K = np.array([[1, 2], [4, 8]])
        s = np.array([[0.0], [0.5]])
        out = scaling.amdahl_speedup(s, K)
        assert out.shape == (2, 2)
        assert out[0].tolist() == [1.0, 2.0]
        assert out[1, 1] == pytest.approx(1 / (0.5 + 0.5 / 8))


class TestProperties:
    @given(fractions)
    def test_one_worker_is_no_speedup(self, s):
        assert scaling.amdahl_speedup(s, 1) == pytest.approx(1.0)
        assert scaling.gustafson_speedup(s, 1) == pytest.approx(1.0)

    @given(fractions, workers)
    def test_gustafson_at_least_amdahl(self, s, K):
        assert scaling.gustafson_speedup(s, K) >= scaling.amdahl_speedup(s, K) * (1 - 1e-12)

    @given(fractions, workers)
    def test_amdahl_bounded_and_efficiency_at_most_one(self, s, K):
        S = scaling.amdahl_speedup(s, K)
        assert 1 - 1e-12 <= S <= min(K, scaling.amdahl_ceiling(s)) * (1 + 1e-12)
        assert scaling.efficiency(S, K) <= 1 + 1e-12

    @given(fractions, workers)
    def test_amdahl_monotone_in_workers(self, s, K):
        assert scaling.amdahl_speedup(s, K + 1) >= scaling.amdahl_speedup(s, K) * (1 - 1e-12)

    @given(st.floats(0.0, 0.99), st.floats(0.01, 0.99), workers)
    def test_amdahl_monotone_in_serial_fraction(self, s, ds, K):
        s2 = min(1.0, s + ds)
        assert scaling.amdahl_speedup(s2, K) <= scaling.amdahl_speedup(s, K) * (1 + 1e-12)

    @given(st.floats(0.0, 1.0), st.integers(2, 10_000))
    def test_karp_flatt_recovers_amdahl_fraction(self, s, K):
        assert scaling.karp_flatt(scaling.amdahl_speedup(s, K), K) == \
            pytest.approx(s, abs=1e-9)

    @settings(max_examples=60)
    @given(st.floats(0.0, 0.95), st.floats(1e-4, 0.5))
    def test_optimum_is_the_brute_force_argmin(self, s, c):
        k = scaling.textbook_optimal_workers(s, c)
        K = np.arange(1, int(4 * (1 - s) * math.log(2) / c) + 20)
        T = scaling.textbook_strong_time(s, c, K)
        assert scaling.textbook_strong_time(s, c, k) == pytest.approx(T.min(), rel=1e-12)

    @settings(max_examples=50)
    @given(fractions, st.lists(st.integers(2, 512), min_size=1, max_size=6))
    def test_fit_recovers_fraction_from_exact_speedups(self, s, ks):
        K = np.array([1] + ks)
        assert scaling.fit_serial_fraction(K, scaling.amdahl_speedup(s, K)) == \
            pytest.approx(s, abs=1e-9)


class TestInvalid:
    @pytest.mark.parametrize("K", [0, -1, 2.5, float("nan")])
    def test_bad_workers(self, K):
        with pytest.raises(ValueError, match="whole numbers >= 1"):
            scaling.amdahl_speedup(0.1, K)

    @pytest.mark.parametrize("s", [-0.1, 1.5, float("inf")])
    def test_bad_fraction(self, s):
        with pytest.raises(ValueError, match="between 0 and 1"):
            scaling.gustafson_speedup(s, 4)

    def test_bad_times_and_costs(self):
        with pytest.raises(ValueError, match="T\\(K\\)"):
            scaling.speedup(1.0, -2.0)
        with pytest.raises(ValueError, match="rate per hour"):
            scaling.run_cost(-1, 10)
        with pytest.raises(ValueError, match="communication coefficient"):
            scaling.textbook_strong_time(0.1, -0.01, 4)

    def test_fit_needs_more_than_one_worker(self):
        with pytest.raises(ValueError, match="worker count > 1"):
            scaling.fit_serial_fraction([1, 1], [1.0, 1.0])
        with pytest.raises(ValueError, match="same length"):
            scaling.fit_serial_fraction([1, 2], [1.0])
