"""The headline (latency, bandwidth) per topology, with known answers."""
import numpy as np
import pandas as pd
import pytest

from fits import constants, headline, summary, synthetic
from fits.fit import FitOptions, fit_points

SIZES = (0,) + tuple(2 ** k for k in range(3, 24))


def _fit(truth, seed=0, bootstrap=100, **kw):
    rows = synthetic.synthetic_points(truth, [("pingpong", "native")], sizes=SIZES,
                                      seed=seed, **kw)
    return fit_points(pd.DataFrame(rows), FitOptions(bootstrap=bootstrap, seed=seed))


def test_protocol_breakpoint_headline():
    # small messages: 2 µs + 0.2 ns/B; from 64 KiB: 10 µs + 0.1 ns/B (10 GB/s)
    c = _fit(synthetic.Truth()).constants
    h = constants.headline(c, "intra")
    lat, bw = h["latency"], h["bandwidth"]
    assert lat["value"] == pytest.approx(2e-6, rel=0.1) and lat["status"] == "identified"
    assert lat["ci"][0] <= 2e-6 <= lat["ci"][1] or abs(lat["value"] / 2e-6 - 1) < 0.05
    assert lat["bytes_range"][1] <= headline.LATENCY_MAX_BYTES and lat["ranks"] == [2]
    assert bw["value"] == pytest.approx(1e10, rel=0.05) and bw["status"] == "identified"
    assert bw["bytes_range"][0] >= 65536
    # the largest segment's intercept (10 µs) is not called latency anywhere
    text = summary.format_summary(c)
    first = text.splitlines()[0]
    assert first.startswith("intra: latency 2") and "bandwidth 1" in first
    assert "alpha" not in text.split("segment constants")[1]


def test_negative_large_message_intercept():
    # token bucket: above 16 KiB, t = (n - burst) / rate with burst 16 KiB, 100 Mbit/s
    beta = 8 / 100e6
    truth = synthetic.Truth(segments=((0, 50e-6, beta), (65536, -16384 * beta, beta)))
    c = _fit(truth).constants
    h = c["topologies"]["intra"]["headline"]
    assert h["bandwidth"]["value"] == pytest.approx(1 / beta, rel=0.03)
    assert h["bandwidth"]["intercept_s"] < 0 and "negative" in h["bandwidth"]["note"]
    assert h["bandwidth"]["status"] == "identified"
    assert h["latency"]["value"] == pytest.approx(50e-6, rel=0.15)


def test_latency_at_bound_is_one_sided():
    # a ping-pong with no latency at all: α sits on 0
    truth = synthetic.Truth(segments=((0, 0.0, 1e-9),))
    rows = synthetic.synthetic_points(truth, [("pingpong", "native")],
                                      sizes=tuple(2 ** k for k in range(10, 24)), seed=3)
    h = fit_points(pd.DataFrame(rows), FitOptions(bootstrap=60)).constants[
        "topologies"]["intra"]["headline"]
    lat = h["latency"]
    if lat["status"] == "at_bound":
        assert lat["value"] == 0 and lat["ci"][0] == 0
        assert lat["ci"][1] is None or lat["ci"][1] > 0  # never a point interval
    else:  # a tiny positive α must not be claimed as identified
        assert lat["status"] == "not_identified"


def test_status_rules():
    assert headline.status_of(1.0, [0.8, 1.2])[0] == "identified"
    assert headline.status_of(1.0, [0.0, 1.2])[0] == "not_identified"
    assert headline.status_of(1.0, [0.2, 1.4])[0] == "not_identified"  # half-width .6
    assert headline.status_of(1.0, None)[0] == "not_identified"
    assert headline.bound_interval([-1.0, -2.0], 0.95) == [0.0, None]
    assert headline.bound_interval(np.linspace(-1, 1, 101), 0.95)[1] == pytest.approx(0.9)


def test_readers_and_schema(tmp_path):
    c = _fit(synthetic.Truth(), bootstrap=20).constants
    path = constants.save(c, tmp_path / "c.json")
    back = constants.load(path)
    assert constants.latency(back, "intra")["value"] > 0
    assert constants.bandwidth(back, "intra")["value"] > 0
    assert set(constants.headlines(back)) == {"intra"}
    with pytest.raises(constants.ConstantsError, match="inter.*present: intra"):
        constants.headline(back, "inter")
    bad = dict(back, topologies={"intra": dict(back["topologies"]["intra"], headline={
        "latency": {**back["topologies"]["intra"]["headline"]["latency"],
                    "status": "sure"}, "bandwidth": {}})})
    with pytest.raises(constants.ConstantsError):
        constants.validate(bad)


def test_narrow_summary_fits_100_columns():
    truth = synthetic.Truth()
    rows = synthetic.synthetic_points(
        truth, [("pingpong", "native"), ("reduce_local", "native"),
                ("reduce_scatter", "recursive_halving"), ("bcast", "native")],
        ranks=(2, 3, 4), sizes=SIZES, seed=0, repetitions=5)
    c = fit_points(pd.DataFrame(rows), FitOptions(bootstrap=10)).constants
    text = summary.format_summary(c)
    table = text.split("not identified):\n")[1]
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "µs" in table and "GB/s" in table
    wide = summary.format_summary(c, wide=True)
    assert "beta_ci_ps_per_B" in wide and "loro_max_pct" in wide


def test_bound_constants_never_point_intervals():
    # a native collective with no intercept in its large segment: α at its bound 0
    truth = synthetic.Truth(native={("bcast", 2): ((0, 5e-6, 1e-10), (65536, 0.0, 1e-10))})
    rows = synthetic.synthetic_points(truth, [("bcast", "native")], ranks=(2,),
                                      sizes=SIZES, seed=1)
    c = fit_points(pd.DataFrame(rows), FitOptions(bootstrap=60)).constants
    one = c["topologies"]["intra"]["algorithms"]["bcast"]["native"]["per_ranks"]["2"]
    for seg in one["segments"]:
        for name in ("alpha", "beta"):
            status, ci = seg[name + "_status"], seg[name + "_ci"]
            assert status in headline.STATUSES
            if status == "at_bound":
                assert seg[name] == 0 and ci[0] == 0 and (ci[1] is None or ci[1] > 0)
            if ci and ci[0] is not None and ci[1] is not None:
                assert ci[1] > ci[0]  # never a point
            if status == "identified":
                assert ci[0] > 0 and (ci[1] - ci[0]) / 2 <= seg[name] / 2


def test_gamma_cross_check_not_claimed_when_uninformative():
    # ring RS − AG: γ = 30 ps/B is a small difference of large times
    entries = [("reduce_scatter", "ring"), ("allgather", "ring")]
    for noise, expect in ((0.3, "not_identified"), (0.02, "identified")):
        rows = synthetic.synthetic_points(synthetic.Truth(), entries, ranks=(2, 4),
                                          sizes=SIZES, seed=2, point_noise=noise)
        g = fit_points(pd.DataFrame(rows), FitOptions(bootstrap=60)).constants[
            "topologies"]["intra"]["gamma"]
        assert g["source"] == "rs_minus_ag" and g["status"] == expect, (noise, g)
        assert g["identifiable"] is (expect == "identified")
        if expect == "not_identified":
            assert "reduce_local" in g["reason"]
