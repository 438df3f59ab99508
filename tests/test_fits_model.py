"""fits.model: registry design matrices, non-negative relative-error solvers, rank checks."""
import numpy as np
import pytest

from collectives import costs
from fits import model

P = np.repeat([2, 3, 4, 5, 8], 12)
N = np.tile(2.0 ** np.arange(0, 24, 2), 5)
TRUE = np.array([3e-6, 1.5e-10, 4e-11])


class TestDesign:
    def test_matches_registry_predict(self):
        for collective, algorithm in [("allreduce", "ring"), ("bcast", "binomial"),
                                      ("reduce_scatter", "recursive_halving"),
                                      ("allreduce", "rabenseifner")]:
            X = model.design(collective, algorithm, P, N)
            expected = costs.predict(collective, algorithm, P, N, *TRUE)
            np.testing.assert_allclose(X @ TRUE, expected, rtol=1e-12)

    def test_hockney_is_pingpong(self):
        X = model.hockney_design([0, 10, 1000])
        np.testing.assert_array_equal(X, [[1, 0, 0], [1, 10, 0], [1, 1000, 0]])

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="same length"):
            model.design("allreduce", "ring", [2, 3], [1])
        with pytest.raises(ValueError, match="nbytes"):
            model.design("allreduce", "ring", [2], [-1])
        with pytest.raises(ValueError, match="native"):
            model.design("allreduce", "native", [2], [1])


class TestSolve:
    def test_exact_recovery_without_noise(self):
        X = model.design("allreduce", "recursive_doubling", P, N)
        theta = model.solve(X, X @ TRUE)
        np.testing.assert_allclose(theta, TRUE, rtol=1e-6)

    def test_constants_are_non_negative(self):
        # Data whose best unconstrained line has a negative intercept.
        n = 2.0 ** np.arange(12, 22)
        t = 1e-10 * n - 2e-7
        theta = model.solve(model.hockney_design(n), t)
        assert theta[0] == 0.0 and theta[1] > 0

    def test_relative_weighting_fits_small_sizes(self):
        # An unweighted fit would let the 16 MiB point set everything; relative
        # weighting keeps the 1-byte points within a few percent.
        n = 2.0 ** np.arange(0, 25)
        rng = np.random.default_rng(3)
        t = (2e-6 + 1e-10 * n) * rng.lognormal(0, 0.02, n.size)
        X = model.hockney_design(n)
        rel = model.relative_residuals(X, t, model.solve(X, t))
        assert np.max(np.abs(rel[:5])) < 0.06

    @pytest.mark.parametrize("loss", ["soft_l1", "huber"])
    def test_robust_losses_resist_an_outlier(self, loss):
        n = 2.0 ** np.arange(0, 24)
        t = 2e-6 + 1e-10 * n
        t[12] *= 5  # the 5x spike seen in every tool at one reduce-scatter size
        X = model.hockney_design(n)
        lin = model.solve(X, t)
        rob = model.solve(X, t, loss=loss)
        assert abs(rob[1] / 1e-10 - 1) < 0.01
        assert abs(rob[0] / 2e-6 - 1) < abs(lin[0] / 2e-6 - 1)

    def test_offset_and_weights(self):
        X = model.design("allreduce", "ring", P, N)
        t = X @ TRUE
        theta = model.solve(X, t, active=[True, True, False], offset=X[:, 2] * TRUE[2])
        np.testing.assert_allclose(theta[:2], TRUE[:2], rtol=1e-6)
        assert theta[2] == 0
        w = np.zeros(P.size)
        w[:30] = 2
        theta = model.solve(X, t, active=[True, True, False], offset=X[:, 2] * TRUE[2],
                            weights=w)
        np.testing.assert_allclose(theta[:2], TRUE[:2], rtol=1e-6)

    def test_bad_input(self):
        X = model.hockney_design([1, 2, 3])
        with pytest.raises(ValueError, match="NaN"):
            model.solve(X, [1.0, np.nan, 1.0])
        with pytest.raises(ValueError, match="> 0"):
            model.solve(X, [1.0, 0.0, 1.0])
        with pytest.raises(ValueError, match="loss"):
            model.solve(X, [1.0, 2.0, 3.0], loss="cauchy2")
        with pytest.raises(ValueError, match="no points"):
            model.solve(np.empty((0, 3)), [])
        with pytest.raises(ValueError, match="whole-number"):
            model.solve(X, [1.0, 2.0, 3.0], loss="huber", weights=[0.5, 1, 1])


class TestIdentifiable:
    """γ identifiability comes from the numbers, not from a list of algorithm names."""

    @pytest.mark.parametrize("algorithm", ["ring", "rabenseifner", "binomial"])
    def test_gamma_proportional_to_beta(self, algorithm):
        X = model.design("allreduce", algorithm, P, N)
        assert model.identifiable_columns(X, X @ TRUE).tolist() == [True, True, False]

    def test_recursive_doubling_mixed_p_identifies_gamma(self):
        X = model.design("allreduce", "recursive_doubling", P, N)
        assert model.identifiable_columns(X, X @ TRUE).all()

    def test_recursive_doubling_powers_of_two_only(self):
        p = np.repeat([2, 4, 8], 12)
        n = np.tile(2.0 ** np.arange(0, 24, 2), 3)
        X = model.design("allreduce", "recursive_doubling", p, n)
        assert not model.identifiable_columns(X, X @ TRUE)[2]

    def test_no_reduction_no_gamma(self):
        X = model.design("bcast", "binomial", P, N)
        assert model.identifiable_columns(X).tolist() == [True, True, False]

    def test_single_size_cannot_separate_alpha_beta(self):
        X = model.design("allreduce", "ring", np.full(5, 4), np.full(5, 1024.0))
        assert model.identifiable_columns(X).sum() == 1
