"""Native identification is absolute, not only relative: a library whose times no
registry algorithm explains, or one measured at a single rank count, is reported
not_identified and never extrapolated in p (fits.native.adequacy)."""
import numpy as np
import pandas as pd
import pytest

from fits import constants, native, synthetic
from fits.fit import FitOptions, fit_points

from test_fits_native import ENTRIES, SIZES, TRUTH


def _scale(row, factor):
    out = dict(row)
    for key in ("median_s", "ci_low_s", "ci_high_s", "mean_s", "min_s", "p95_s", "p99_s"):
        out[key] = row[key] * factor
    out["samples"] = {k: [v * factor for v in vals] for k, vals in row["samples"].items()}
    return out


@pytest.fixture(scope="module")
def cubic():
    # the library's all-reduce grows as p^3: no registry shape (all <= p in p) fits it,
    # yet one of them is "best" and would get BIC weight ~1
    rows = synthetic.synthetic_points(TRUTH, ENTRIES, ranks=(2, 3, 4, 8), sizes=SIZES,
                                      seed=7, repetitions=9, noise=0.03)
    rows = [_scale(r, (r["ranks"] / 2) ** 3)
            if (r["collective"], r["algorithm"]) == ("allreduce", "native") else r
            for r in rows]
    return fit_points(pd.DataFrame(rows), FitOptions(bootstrap=0)).constants


def test_bad_fit_is_not_identified(cubic):
    ident = constants.native_identification(cubic, "intra", "allreduce")
    assert ident["segments"], "the candidates stay as evidence"
    assert ident["status"] == "not_identified"
    assert "left-out rank counts" in ident["reason"] or "residual" in ident["reason"]
    assert constants.native_model(cubic, "intra", "allreduce") is None
    # the bcast of the same run is fine and stays identified
    assert constants.native_identification(cubic, "intra", "bcast")["status"] == \
        "identified"
    assert constants.native_model(cubic, "intra", "bcast") is not None


def test_bad_fit_is_not_extrapolated(cubic):
    with pytest.raises(constants.ConstantsError, match=r"not identified.*p=16"):
        constants.predict_native(cubic, "intra", "allreduce", 16, 1 << 20)
    with pytest.raises(constants.ConstantsError, match=r"measured rank counts p=2,3,4,8"):
        constants.price(cubic, "intra", "allreduce", 16, 1 << 20)
    # at a measured rank count: its own fit, and the text says so
    seconds, how = constants.price(cubic, "intra", "allreduce", 8, 1 << 20)
    assert "own fit" in how and "not identified" in how
    true = TRUTH.time("allreduce", "native", 8, 1 << 20) * 64
    assert seconds == pytest.approx(true, rel=0.15)


def test_adequacy_thresholds_on_the_reviewers_case():
    # BIC weight 0.99, leave-one-rank-out 33%, 231%, 126%: not identified
    result = {"ranks": [2, 3, 4],
              "segments": [{"algorithm": "recursive_doubling", "weight": 0.99,
                            "median_rel": 0.08, "min_bytes": 8, "max_bytes": 1 << 20}],
              "leave_one_rank_out": {"2": {"median_rel": 0.33}, "3": {"median_rel": 2.31},
                                     "4": {"median_rel": 1.26}}}
    status, reason = native.adequacy(result)
    assert status == "not_identified" and "p=3 231%" in reason
    result["leave_one_rank_out"] = {"2": {"median_rel": 0.10}, "3": {"median_rel": 1.02},
                                    "4": {"median_rel": 0.11}}
    assert native.adequacy(result) == ("identified", "")
    result["segments"][0]["median_rel"] = 0.4
    assert native.adequacy(result)[0] == "not_identified"


def test_one_rank_count():
    rows = synthetic.synthetic_points(TRUTH, ENTRIES, ranks=(4,), sizes=SIZES, seed=3,
                                      repetitions=9, noise=0.03)
    c = fit_points(pd.DataFrame(rows), FitOptions(bootstrap=0)).constants
    ident = constants.native_identification(c, "intra", "allreduce")
    assert ident["status"] == "not_identified"
    assert ident["reason"].startswith("one rank count (p=4)")
    assert constants.native_model(c, "intra", "allreduce") is None
    n = np.array([1 << 16, 1 << 20])
    seconds, how = constants.price(c, "intra", "allreduce", 4, n)
    assert "p=4" in how and "one rank count" in how
    assert np.all(np.abs(seconds / TRUTH.time("allreduce", "native", 4, n) - 1) < 0.1)
    np.testing.assert_allclose(constants.predict_native(c, "intra", "allreduce", 4, n),
                               seconds)
    for call in (constants.price, constants.predict_native):
        with pytest.raises(constants.ConstantsError,
                           match=r"one rank count.*only at its measured rank counts "
                                 r"p=4, not at p=8"):
            call(c, "intra", "allreduce", 8, n)


def test_step_pricing_uses_the_measured_fit_only_at_measured_rank_counts():
    from fits.predict import pricing
    rows = synthetic.synthetic_points(TRUTH, ENTRIES, ranks=(4,), sizes=SIZES, seed=3,
                                      repetitions=9, noise=0.03)
    c = fit_points(pd.DataFrame(rows), FitOptions(bootstrap=0)).constants
    t, label = pricing.stage_time(c, "intra", "allreduce", None, 4, 1 << 20)
    assert str(np.ravel(label)[0]) == "allreduce@measured"
    assert float(t) == pytest.approx(
        float(constants.predict_native(c, "intra", "allreduce", 4, 1 << 20)))
    t8, label8 = pricing.stage_time(c, "intra", "allreduce", None, 8, 1 << 20)
    assert str(np.ravel(label8)[0]).endswith("@joint")  # explicit fallback, labelled
    assert "not identified" in pricing.describe_label("allreduce@measured")


def test_schema_knows_the_status(cubic):
    import copy
    doc = copy.deepcopy(cubic)
    constants.validate(doc)
    doc["topologies"]["intra"]["algorithms"]["allreduce"]["native"]["identified"][
        "status"] = "probably"
    with pytest.raises(constants.ConstantsError, match=r"identified\.status"):
        constants.validate(doc)
