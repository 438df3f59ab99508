"""Native collectives identified as registry algorithms, joint constants, and interval
coverage: synthetic runs with known answers."""
import numpy as np
import pandas as pd
import pytest

from fits import constants, joint, native, synthetic
from fits.fit import FitOptions, fit_points

SIZES = (0,) + tuple(2 ** k for k in range(3, 23))
RANKS = (2, 3, 4, 5, 8)
#: one network regime (5 µs, 1 GB/s); the library's all-reduce is recursive doubling
#: below 64 KiB and ring from there, with 20 µs per call; its bcast is binomial
TRUTH = synthetic.Truth(
    segments=((0, 5e-6, 1e-9),), gamma=3e-11,
    native_algorithms={"allreduce": ((0, "recursive_doubling"), (65536, "ring")),
                       "bcast": ((0, "binomial"),)},
    native_call=2e-5)
ENTRIES = [("pingpong", "native"), ("reduce_local", "native"), ("allreduce", "ring"),
           ("allreduce", "recursive_doubling"), ("bcast", "binomial"),
           ("allreduce", "native"), ("bcast", "native")]


@pytest.fixture(scope="module")
def fitted():
    rows = synthetic.synthetic_points(TRUTH, ENTRIES, ranks=RANKS, sizes=SIZES, seed=4,
                                      repetitions=9, noise=0.03)
    return fit_points(pd.DataFrame(rows), FitOptions(bootstrap=30)).constants


def test_joint_constants_recover_the_network(fitted):
    j = constants.joint_constants(fitted, "intra")
    c = j["constants"]
    assert c["alpha"]["value"] == pytest.approx(5e-6, rel=0.1)
    assert c["beta"]["value"] == pytest.approx(1e-9, rel=0.03)
    assert c["gamma"]["value"] == pytest.approx(3e-11, rel=0.1)
    assert c["beta"]["status"] == "identified"
    # the registry algorithms are predicted from one set of constants
    assert j["errors"]["median_rel_large"] < 0.05
    for key in ("allreduce/ring", "allreduce/recursive_doubling", "bcast/binomial"):
        assert j["errors"]["per_entry"][key]["median_rel_large"] < 0.05
    # no Python step cost in this truth: the fit must not invent a large one
    step = j["software"]["python"]["step_s"]
    assert step["value"] < 1e-6


def test_native_switch_identified(fitted):
    model = constants.native_model(fitted, "intra", "allreduce")
    segs = model["segments"]
    assert [s["algorithm"] for s in segs] == ["recursive_doubling", "ring"]
    assert model["breakpoints"] == [65536]
    assert all(s["weight"] > 0.9 for s in segs)
    assert segs[1]["call_s"] == pytest.approx(2e-5, rel=0.3)
    bcast = constants.native_model(fitted, "intra", "bcast")
    assert [s["algorithm"] for s in bcast["segments"]] == ["binomial"]


def test_native_predicted_at_unmeasured_rank_counts(fitted):
    n = np.array([1 << 16, 1 << 20, 1 << 22])
    for p in (6, 16, 64):
        pred = constants.predict_native(fitted, "intra", "allreduce", p, n)
        true = TRUTH.time("allreduce", "native", p, n)
        assert np.all(np.abs(pred / true - 1) < 0.05), (p, pred, true)
    seconds, how = constants.price(fitted, "intra", "allreduce", 16, 1 << 20)
    assert "recursive_doubling" in how and "ring" in how and seconds > 0


def test_held_out_rank_count():
    rows = pd.DataFrame(synthetic.synthetic_points(
        TRUTH, ENTRIES, ranks=RANKS, sizes=SIZES, seed=5, repetitions=9, noise=0.03))
    fit_rows = rows[rows["ranks"] < 8]
    j = fit_points(fit_rows, FitOptions(bootstrap=0)).constants["topologies"]["intra"][
        "joint"]
    q = rows[(rows["collective"] == "allreduce") & (rows["algorithm"] == "native")]
    ho = native.held_out(j, "allreduce", q["ranks"].to_numpy(), q["bytes"].to_numpy(),
                         q["median_s"].to_numpy(), (2, 3, 4, 5), (8,))
    assert ho["errors"]["median_rel_large"] < 0.05
    assert [s["algorithm"] for s in ho["model"]["segments"]] == ["recursive_doubling",
                                                                 "ring"]


def test_equivalent_shapes_are_grouped():
    # ring and pairwise reduce-scatter have the same formula: never a false choice
    truth = synthetic.Truth(segments=((0, 5e-6, 1e-9),),
                            native_algorithms={"reduce_scatter": ((0, "pairwise"),)})
    rows = pd.DataFrame(synthetic.synthetic_points(
        truth, [("pingpong", "native"), ("reduce_scatter", "ring"),
                ("reduce_scatter", "native")], ranks=(2, 3, 4), sizes=SIZES, seed=1))
    c = fit_points(rows, FitOptions(bootstrap=0)).constants
    model = constants.native_model(c, "intra", "reduce_scatter")
    assert native.names_algorithm(model, "pairwise")
    assert native.names_algorithm(model, "ring")
    assert model["segments"][0]["extrapolates_alike"] is True
    assert not native.names_algorithm(model, "recursive_halving")


def test_forced_algorithms_from_metadata():
    env = {"MPIR_CVAR_DEVICE_COLLECTIVES": "none",
           "MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": "reduce_scatter_allgather",
           "MPIR_CVAR_BCAST_INTRA_ALGORITHM": "scatter_ring_allgather"}
    assert native.forced_algorithms(env) == {"allreduce": "rabenseifner",
                                             "bcast": "scatter_allgather"}
    # the variables act only with device collectives off
    assert native.forced_algorithms({**env, "MPIR_CVAR_DEVICE_COLLECTIVES": "all"}) == {}
    assert native.forced_algorithms({}, {"native_algorithms": {"bcast": "binomial"}}) == \
        {"bcast": "binomial"}


def test_predict_native_without_model_is_a_clear_error(fitted):
    with pytest.raises(constants.ConstantsError, match="reduce_scatter"):
        constants.predict_native(fitted, "intra", "reduce_scatter", 4, 1024)


def test_headline_intervals_cover_at_the_stated_rate():
    # 30 synthetic ping-pongs (protocol switch at 64 KiB, 3% point-to-point noise):
    # the 95% intervals of latency and bandwidth must cover the truth about 95% of
    # the time (at least 24 of 30; binomial 3-sigma allowance)
    sizes = (0,) + tuple(2 ** k for k in range(3, 24))
    hits = np.zeros(2)
    trials = 30
    for seed in range(trials):
        rows = synthetic.synthetic_points(synthetic.Truth(), [("pingpong", "native")],
                                          sizes=sizes, seed=100 + seed, point_noise=0.03,
                                          repetitions=9)
        h = constants.headline(fit_points(pd.DataFrame(rows), FitOptions(
            bootstrap=60, seed=seed)).constants, "intra")
        lat, bw = h["latency"]["ci"], h["bandwidth"]["ci"]
        hits += [lat[0] <= 2e-6 <= lat[1], bw[0] <= 1e10 <= bw[1]]
    assert np.all(hits >= 24), hits
