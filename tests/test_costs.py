"""The cost-model registry: textbook forms, non-power-of-two forms, API contract.

The exactness of every coefficient against the implementation is checked by counting
(test_algorithms_counting.py); here the formulas are checked against the closed forms of
``shared/reference/cost-models.md`` and against the lower bounds.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from collectives import costs
from collectives.algorithms import ALGORITHMS

ALL = sorted(k for k in costs.COSTS if k[0] in costs.COLLECTIVES)
POW2 = [1, 2, 4, 8, 16, 64, 1024]


def coef(collective, algorithm, p):
    return tuple(float(x) for x in costs.coefficients(collective, algorithm, p))


def textbook(collective, algorithm, p):
    """Power-of-two forms from the reference table (Thakur et al., Chan et al.)."""
    lg, f = math.log2(p), (p - 1) / p
    return {
        ("bcast", "binomial"): (lg, lg, 0),
        ("bcast", "scatter_allgather"): (lg + p - 1, 2 * f, 0),
        ("reduce_scatter", "ring"): (p - 1, f, f),
        ("reduce_scatter", "pairwise"): (p - 1, f, f),
        ("reduce_scatter", "recursive_halving"): (lg, f, f),
        ("allreduce", "ring"): (2 * (p - 1), 2 * f, f),
        ("allreduce", "binomial"): (2 * lg, 2 * lg, lg),
        ("allreduce", "recursive_doubling"): (lg, lg, lg),
        ("allreduce", "rabenseifner"): (2 * lg, 2 * f, f),
        ("allgather", "ring"): (p - 1, f, 0),
        ("allgather", "recursive_doubling"): (lg, f, 0),
    }[(collective, algorithm)]


class TestRegistry:
    def test_names_match_the_implementation(self):
        assert set(ALL) == set(ALGORITHMS)
        for collective in costs.COLLECTIVES:
            assert costs.algorithms(collective)[-1] == costs.NATIVE

    @pytest.mark.parametrize("key", ALL)
    def test_powers_of_two_are_the_textbook_forms(self, key):
        for p in POW2:
            assert coef(*key, p) == pytest.approx(textbook(*key, p), abs=1e-12), p

    @pytest.mark.parametrize("key", ALL)
    def test_one_rank_costs_nothing(self, key):
        assert coef(*key, 1) == (0.0, 0.0, 0.0)

    def test_rabenseifner_other_p_is_the_reference_form(self):
        for p in (3, 5, 6, 7, 9, 12, 100):
            pp = 2 ** int(math.log2(p))
            assert coef("allreduce", "rabenseifner", p) == pytest.approx(
                (2 * math.log2(pp) + 2, 2 * (pp - 1) / pp + 2, 1 + (pp - 1) / pp))

    @pytest.mark.parametrize("p,expected", [
        # (p' - 1 + spread)/p + fold; spread = sum_{k < lg p'} min(rem, 2^k)
        (3, (3, 6 / 3, 5 / 3)), (5, (4, 11 / 5, 10 / 5)), (6, (4, 13 / 6, 12 / 6)),
        (7, (4, 14 / 7, 13 / 7)), (12, (5, 27 / 12, 26 / 12))])
    def test_recursive_halving_other_p(self, p, expected):
        assert coef("reduce_scatter", "recursive_halving", p) == pytest.approx(expected)
        a, b, _ = expected
        assert coef("allgather", "recursive_doubling", p) == pytest.approx((a, b, 0))

    def test_fold_spread_closed_form_equals_the_sum(self):
        p = np.arange(1, 2000)
        _, rem, spread = costs._fold(p)
        brute = [sum(min(int(r), 2 ** k) for k in range(int(math.log2(q))))
                 for q, r in zip(p, rem)]
        np.testing.assert_array_equal(spread, brute)

    def test_vectorized_over_p(self):
        p = np.arange(1, 40)
        for key in ALL:
            a, b, c = costs.coefficients(*key, p)
            assert a.shape == b.shape == c.shape == p.shape
            for i, q in enumerate(p):
                assert (a[i], b[i], c[i]) == coef(*key, int(q))

    def test_predict_combines_the_coefficients(self):
        t = costs.predict("allreduce", "ring", 4, 1 << 20, 1e-6, 1e-9, 2e-10)
        assert t == pytest.approx(6e-6 + 1.5 * (1 << 20) * 1e-9 + 0.75 * (1 << 20) * 2e-10)

    @pytest.mark.parametrize("call,match", [
        (lambda: costs.coefficients("allreduce", "nope", 4), "unknown algorithm 'nope'"),
        (lambda: costs.coefficients("allreduce", "native", 4), "no registry formula"),
        (lambda: costs.coefficients("gather", "ring", 4), "unknown collective"),
        (lambda: costs.coefficients("allreduce", "ring", 0), "whole number >= 1"),
        (lambda: costs.coefficients("allreduce", "ring", 2.5), "whole number >= 1"),
        (lambda: costs.lower_bound("alltoall", 4, 1, 1, 1), "no lower bound"),
        (lambda: costs.busbw_factor("alltoall", 4), "no bus-bandwidth factor"),
    ])
    def test_errors_name_the_problem(self, call, match):
        with pytest.raises(ValueError, match=match):
            call()


class TestLowerBound:
    @given(p=st.integers(1, 300), n=st.floats(0, 1e9), alpha=st.floats(0, 1e-3),
           beta=st.floats(0, 1e-8), gamma=st.floats(0, 1e-8))
    def test_no_algorithm_beats_its_lower_bound(self, p, n, alpha, beta, gamma):
        for collective, algorithm in ALL:
            t = costs.predict(collective, algorithm, p, n, alpha, beta, gamma)
            bound = costs.lower_bound(collective, p, n, alpha, beta, gamma)
            assert t >= bound * (1 - 1e-12) - 1e-300, (collective, algorithm, p)

    def test_ring_allreduce_bandwidth_term_is_optimal(self):
        p, n = 8, 1e8
        assert costs.predict("allreduce", "ring", p, n, 0, 1e-9) == pytest.approx(
            costs.lower_bound("allreduce", p, n, 0, 1e-9))

    def test_single_rank_bound_is_zero(self):
        for collective in ("bcast", "reduce", "allgather", "reduce_scatter", "allreduce"):
            assert costs.lower_bound(collective, 1, 1e6, 1e-6, 1e-9, 1e-10) == 0


def test_busbw_factor():
    assert costs.busbw_factor("allreduce", 4) == pytest.approx(1.5)
    assert costs.busbw_factor("reduce_scatter", 4) == pytest.approx(0.75)
    assert costs.busbw_factor("bcast", 4) == pytest.approx(1.0)


def test_size_convention_names_every_collective():
    for collective in costs.COLLECTIVES + costs.AUXILIARY:
        assert "bytes" in costs.size_convention(collective)
