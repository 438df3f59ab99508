"""Ground truth: synthetic sweeps from known α, β, γ with a breakpoint and 5% lognormal
noise must give those constants back (benchmarks/bench_fit_accuracy.py reports the
accuracy over many seeds; these fixed-seed checks assert looser, still meaningful bounds).
"""
import numpy as np
import pandas as pd
import pytest

from fits import synthetic
from fits.fit import FitError, FitOptions, fit_points

TRUTH = synthetic.Truth(segments=((0, 2e-6, 2e-10), (65536, 1e-5, 1e-10)), gamma=3e-11,
                        native={("bcast", 2): ((0, 1e-6, 3e-10),),
                                ("bcast", 4): ((0, 3e-6, 5e-10), (65536, 2e-5, 2e-10))})
ALL = [("pingpong", "native"), ("reduce_local", "native"), ("allreduce", "ring"),
       ("bcast", "binomial"), ("allreduce", "recursive_doubling"), ("bcast", "native")]


def _fit(entries, seed=0, options=FitOptions(bootstrap=40), **kw):
    rows = synthetic.synthetic_points(TRUTH, entries, seed=seed, **kw)
    return fit_points(pd.DataFrame(rows), options).constants["topologies"]["intra"]


def _rel(x, true):
    return abs(x / true - 1)


@pytest.fixture(scope="module", params=[0, 1])
def rep_noise(request):
    """5% lognormal noise on every repetition (21 per point)."""
    return _fit(ALL, seed=request.param)


class TestRepetitionNoise:
    @pytest.mark.parametrize("entry", ["p2p", "allreduce/ring", "bcast/binomial",
                                       "allreduce/recursive_doubling"])
    def test_both_segments_recovered(self, rep_noise, entry):
        e = rep_noise["p2p"] if entry == "p2p" else \
            rep_noise["algorithms"][entry.split("/")[0]][entry.split("/")[1]]
        assert e["breakpoints"] == [65536]
        small, large = e["segments"]
        assert _rel(large["beta"], 1e-10) < 0.02
        assert _rel(large["alpha"], 1e-5) < 0.05
        assert _rel(small["alpha"], 2e-6) < 0.05
        assert _rel(small["beta"], 2e-10) < 0.05  # β matters little below 64 KiB
        assert e["alpha"] == large["alpha"] and e["beta"] == large["beta"]

    def test_gamma_and_intervals(self, rep_noise):
        g = rep_noise["gamma"]
        assert g["source"] == "reduce_local" and _rel(g["value"], 3e-11) < 0.03
        assert g["ci"][0] < 3e-11 < g["ci"][1]
        ring = rep_noise["algorithms"]["allreduce"]["ring"]
        assert ring["beta_ci"][0] < 1e-10 < ring["beta_ci"][1]
        assert ring["gamma"] == g["value"] and ring["gamma_identifiable"] is False
        assert ring["errors"]["median_rel"] < 0.03
        assert max(ring["errors"]["leave_one_rank_out"].values()) < 0.05
        assert ring["from_p2p"]["median_rel"] < 0.05  # same constants as the p2p here

    def test_native_per_rank_count(self, rep_noise):
        native = rep_noise["algorithms"]["bcast"]["native"]
        assert native["model"] == "hockney-per-p"
        two, four = native["per_ranks"]["2"], native["per_ranks"]["4"]
        assert two["breakpoints"] == [] and _rel(two["beta"], 3e-10) < 0.02
        assert _rel(two["alpha"], 1e-6) < 0.05
        assert four["breakpoints"] == [65536] and _rel(four["beta"], 2e-10) < 0.02
        assert _rel(four["alpha"], 2e-5) < 0.05


def test_point_noise_bounds():
    """5% noise shared by a point's repetitions: repetitions cannot average it out."""
    topo = _fit(ALL[:4], seed=3, point_noise=0.05)
    for e in (topo["algorithms"]["allreduce"]["ring"],
              topo["algorithms"]["bcast"]["binomial"]):
        assert e["breakpoints"] == [65536]
        assert _rel(e["beta"], 1e-10) < 0.05 and _rel(e["alpha"], 1e-5) < 0.10
        assert e["beta_ci"][0] < 1e-10 < e["beta_ci"][1]


class TestGammaIdentifiability:
    def test_ring_reduce_scatter_against_allgather(self):
        topo = _fit([("reduce_scatter", "ring"), ("allgather", "ring"),
                     ("allreduce", "ring")])
        g = topo["gamma"]
        assert g["source"] == "rs_minus_ag" and g["identifiable"]
        assert _rel(g["value"], 3e-11) < 0.10
        assert topo["algorithms"]["allreduce"]["ring"]["gamma_source"] == "rs_minus_ag"

    def test_not_identifiable_reported_not_guessed(self):
        topo = _fit([("allreduce", "ring")])
        assert topo["gamma"]["value"] is None and not topo["gamma"]["identifiable"]
        ring = topo["algorithms"]["allreduce"]["ring"]
        assert ring["gamma"] is None and ring["gamma_source"] is None
        assert "not identifiable" in ring["gamma_reason"]
        # β absorbs c/b·γ = γ/2 for ring all-reduce
        assert _rel(ring["beta"], 1e-10 + 0.5 * 3e-11) < 0.02

    def test_fitted_from_design_when_full_rank(self):
        topo = _fit([("allreduce", "recursive_doubling")], noise=0.01)
        rd = topo["algorithms"]["allreduce"]["recursive_doubling"]
        assert rd["gamma_source"] == "fit" and rd["gamma_identifiable"]
        assert _rel(rd["gamma"], 3e-11) < 0.25
        assert _rel(rd["beta"], 1e-10) < 0.05


def test_robust_loss_resists_a_spike():
    rows = synthetic.synthetic_points(TRUTH, [("allreduce", "ring")], seed=4, noise=0.02)
    spike = [r for r in rows if r["bytes"] == 2 ** 20 and r["ranks"] == 4][0]
    spike["median_s"] *= 5
    spike["samples"]["max"] = [5 * s for s in spike["samples"]["max"]]
    frame = pd.DataFrame(rows)
    opts = dict(bootstrap=0, segments=2)
    lin = fit_points(frame, FitOptions(**opts)).constants
    rob = fit_points(frame, FitOptions(loss="soft_l1", **opts)).constants
    beta = lambda c: c["topologies"]["intra"]["algorithms"]["allreduce"]["ring"]["beta"]
    assert _rel(beta(rob), 1.15e-10) < 0.02  # γ not measured: β + γ/2
    assert _rel(beta(rob), 1.15e-10) < _rel(beta(lin), 1.15e-10)


def test_fit_errors_name_the_problem():
    with pytest.raises(FitError, match="empty run"):
        fit_points(pd.DataFrame())
    rows = synthetic.synthetic_points(TRUTH, [("allreduce", "ring")], sizes=(1024,))
    with pytest.raises(FitError, match="allreduce/ring: only one size"):
        fit_points(pd.DataFrame(rows), FitOptions(bootstrap=0))
    rows = synthetic.synthetic_points(TRUTH, [("allreduce", "ring")], sizes=(8, 1024))
    rows[0]["median_s"] = np.nan
    with pytest.raises(FitError, match="NaN"):
        fit_points(pd.DataFrame(rows), FitOptions(bootstrap=0))
    rows[0]["median_s"] = 1e-6
    rows[1]["dtype"] = "float64"
    with pytest.raises(FitError, match="mix dtype"):
        fit_points(pd.DataFrame(rows), FitOptions(bootstrap=0))
    rows = synthetic.synthetic_points(TRUTH, [("allreduce", "ring")], sizes=(8, 1024))
    rows[0]["algorithm"] = "butterfly"
    with pytest.raises(FitError, match="unknown algorithm 'butterfly'"):
        fit_points(pd.DataFrame(rows), FitOptions(bootstrap=0))
