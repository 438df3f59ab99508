"""fits.validate: error figures, leave-one-rank-out, bus bandwidth, p2p prediction."""
import numpy as np
import pytest

from collectives import costs
from fits import model, validate

P = np.repeat([2, 3, 4, 6], 10)
N = np.tile(2.0 ** np.arange(4, 24, 2), 4)


def test_error_summary():
    out = validate.error_summary([1.1, 0.9, 1.0], [1.0, 1.0, 1.0])
    assert out == pytest.approx({"median_rel": 0.1, "max_rel": 0.1})
    with pytest.raises(ValueError, match="shape"):
        validate.error_summary([1.0], [1.0, 2.0])


def test_leave_one_rank_out_exact_model_predicts_held_out_p():
    X = model.design("allreduce", "ring", P, N)
    t = X @ [2e-6, 1e-10, 0]
    loro = validate.leave_one_rank_out(X, t, N, P, (), active=[True, True, False])
    assert set(loro) == {"2", "3", "4", "6"}
    assert max(loro.values()) < 1e-6


def test_leave_one_rank_out_detects_a_wrong_p_dependence():
    # Times that grow like p^2 in alpha: the ring model (p-1) cannot extrapolate to p=6.
    X = model.design("allreduce", "ring", P, N)
    t = 2e-6 * P ** 2 + X[:, 1] * 1e-10
    loro = validate.leave_one_rank_out(X, t, N, P, (), active=[True, True, False])
    assert loro["6"] > 0.1


def test_leave_one_rank_out_needs_two_rank_counts():
    X = model.hockney_design(N[:10])
    assert validate.leave_one_rank_out(X, X @ [1e-6, 1e-10, 0], N[:10], P[:10], ()) == {}


def test_busbw_check_ring_tends_to_one():
    t = costs.predict("allreduce", "ring", P, N, 2e-6, 1e-10)
    out = validate.busbw_check("allreduce", "ring", P, N, t, 1e-10)
    assert out["model_ratio"] == 1.0
    assert 0.95 < out["ratio"] <= 1.0
    assert out["bytes"] == int(N.max())
    assert validate.busbw_check("allreduce", "ring", P, N, t, 0.0) is None


def test_from_p2p_exact_when_collective_follows_p2p_constants():
    t = costs.predict("bcast", "binomial", P, N, 2e-6, 1e-10)
    out = validate.from_p2p("bcast", "binomial", P, N, t, (), [[2e-6, 1e-10, 0]])
    assert out["median_rel"] < 1e-12 and out["bias"] == pytest.approx(1.0)
    slower = validate.from_p2p("bcast", "binomial", P, N, 2 * t, (), [[2e-6, 1e-10, 0]])
    assert slower["bias"] == pytest.approx(0.5)
