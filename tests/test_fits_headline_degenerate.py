"""The headline and the intervals on degenerate ping-pongs: few sizes, one regime only,
nothing for the bootstrap to resample.  Each must give a clear status, never a
large-message intercept called latency, never a point interval called identified."""
import pandas as pd

from fits import headline, summary, synthetic
from fits.fit import FitOptions, fit_points

BIG = tuple(2 ** k for k in range(16, 25))


def _headline(truth, sizes, seed=1, **opts):
    rows = synthetic.synthetic_points(truth, [("pingpong", "native")], sizes=sizes,
                                      seed=seed, noise=0.03,
                                      repetitions=opts.pop("repetitions", 21))
    c = fit_points(pd.DataFrame(rows), FitOptions(seed=seed, **opts)).constants
    return c, c["topologies"]["intra"]["headline"]


def test_no_small_sizes_no_latency_even_at_bound():
    # only sizes >= 64 KiB, under a token bucket (negative intercept): the intercept
    # sits at 0, but it is a large-message intercept, not a latency at its bound
    truth = synthetic.Truth(segments=((0, 2e-6, 2e-10), (65536, -3e-6, 1e-10)))
    c, h = _headline(truth, BIG, bootstrap=40)
    assert h["latency"]["status"] == "not_identified", h["latency"]
    assert h["latency"]["value"] is None
    assert h["bandwidth"]["status"] == "identified"
    first = summary.format_summary(c).splitlines()[0]
    assert "latency - not_identified (0 size(s) up to 4096 B" in first, first


def test_latency_fit_stays_in_the_small_message_regime():
    # two small sizes, then the large regime (10 µs intercept): the latency fit must not
    # reach into the large sizes to make up three sizes
    for sizes in ((8, 64) + BIG, (8,) + BIG):
        _, h = _headline(synthetic.Truth(), sizes, bootstrap=40)
        lat = h["latency"]
        assert lat["bytes_range"][1] <= headline.LATENCY_MAX_BYTES or \
            lat["status"] == "not_identified", (sizes, lat)
        if lat["status"] != "not_identified":
            assert lat["bytes_range"][1] <= headline.LATENCY_MAX_BYTES


def test_two_sizes_identify_neither_regime():
    # 8 B and 1 MiB: one size per regime; a line through both is neither a latency
    # nor the large-message bandwidth (here it reads 9.3 GB/s for a 10 GB/s link)
    _, h = _headline(synthetic.Truth(), (8, 1 << 20), bootstrap=40)
    assert h["latency"]["status"] == "not_identified", h["latency"]
    assert h["bandwidth"]["status"] == "not_identified", h["bandwidth"]


def test_replicates_that_do_not_vary_give_no_interval():
    # one repetition per point, one launch, no point resampling: every replicate is
    # the data itself, so the percentile interval is a point [x, x]
    c, h = _headline(synthetic.Truth(), synthetic.DEFAULT_SIZES, repetitions=1,
                     bootstrap=20, bootstrap_points=False)
    for name in ("latency", "bandwidth"):
        e = h[name]
        assert e["status"] == "not_identified", (name, e)
        assert e["ci"] is None or e["ci"][0] != e["ci"][1], (name, e)
    seg = c["topologies"]["intra"]["p2p"]["segments"][-1]
    assert seg["beta_status"] == "not_identified" and seg["beta_ci"] is None
    j = c["topologies"]["intra"]["joint"]["constants"]["beta"]
    assert j["status"] == "not_identified" and j["ci"] is None


def test_a_single_replicate_is_no_interval():
    _, h = _headline(synthetic.Truth(), synthetic.DEFAULT_SIZES, bootstrap=1)
    assert h["latency"]["ci"] is None and h["latency"]["status"] == "not_identified"


def test_unidentifiable_gamma_is_not_called_at_bound():
    # ring all-reduce alone: γ's coefficient is proportional to β's at every p, and no
    # γ was measured, so the fit holds γ at 0 -- that is "not identified", not "at its
    # bound 0" with a one-sided interval
    rows = synthetic.synthetic_points(synthetic.Truth(), [("allreduce", "ring")],
                                      ranks=(2, 4), sizes=synthetic.DEFAULT_SIZES, seed=1,
                                      repetitions=5)
    e = fit_points(pd.DataFrame(rows), FitOptions(bootstrap=20)).constants[
        "topologies"]["intra"]["algorithms"]["allreduce"]["ring"]
    assert e["gamma"] is None and e["gamma_status"] == "not_identified", e["gamma_status"]
    for seg in e["segments"]:
        assert seg["gamma"] is None and seg["gamma_ci"] is None
        assert seg["gamma_status"] == "not_identified", seg


def test_intervals_of_constants_fitted_non_negative_stay_non_negative():
    # the γ cross-check (ring RS − AG) of the 2-rank example is a small difference of
    # large times: its basic interval reached [-35, 29] ps/B, but γ ≥ 0
    from pathlib import Path

    from fits.fit import fit_runs

    run = Path(__file__).resolve().parent.parent / "data" / "example-2rank"
    c = fit_runs([run], FitOptions(bootstrap=200)).constants
    g = c["topologies"]["intra"]["gamma"]
    checked = [g, g["cross_check"]]
    for e in c["topologies"]["intra"]["algorithms"].values():
        for fit in e.values():
            for seg in fit.get("segments", []):
                checked += [{"ci": seg.get(k + "_ci")} for k in ("alpha", "beta", "gamma")]
    checked += [c for c in c["topologies"]["intra"]["joint"]["constants"].values()]
    for e in checked:
        ci = e.get("ci")
        assert ci is None or ci[0] is None or ci[0] >= 0, e
    assert g["cross_check"]["status"] == "not_identified"
