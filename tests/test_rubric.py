"""The scaling rubric (fits.predict.rubric) on tables built from known serial fractions."""
import math

import numpy as np
import pandas as pd
import pytest

from fits.predict import rubric, scaling

P = np.array([1, 2, 4, 8, 16, 32])


def amdahl_table(s=0.08, t1=100.0, p=P, **extra):
    return pd.DataFrame({"p": p, "seconds": t1 * scaling.amdahl_time(s, p), **extra})


class TestKnownSerialFraction:
    def test_fit_model_and_karp_flatt(self):
        res = rubric.evaluate(amdahl_table(0.08))
        t = res.table
        assert res.serial_fraction == pytest.approx(0.08, abs=1e-12)
        assert res.ceiling == pytest.approx(12.5)
        np.testing.assert_allclose(t["speedup"], scaling.amdahl_speedup(0.08, P))
        np.testing.assert_allclose(t["model_speedup"], t["speedup"], rtol=1e-12)
        np.testing.assert_allclose(t["karp_flatt"][1:], 0.08, atol=1e-12)
        np.testing.assert_allclose(t["efficiency"], t["speedup"] / P)
        assert res.karp_flatt_trend.startswith("flat")

    def test_largest_efficient_p(self):
        # E(p) = 1 / (p s + 1 - s) >= 0.7  <=>  p <= (1/0.7 - 1 + s) / s = 6.36 -> 4
        res = rubric.evaluate(amdahl_table(0.08))
        assert res.largest_efficient_p == 4
        res = rubric.evaluate(amdahl_table(0.08), threshold=0.5)  # p <= 13.5 -> 8
        assert res.largest_efficient_p == 8

    def test_costs_in_worker_seconds_without_rate(self):
        res = rubric.evaluate(amdahl_table(0.08))
        np.testing.assert_allclose(res.table["cost_per_run"], P * res.table["seconds"])
        assert res.cost_unit == "worker-seconds"
        assert res.cheapest_p == 1  # p T(p) = T1 (p s + 1 - s) grows with p

    def test_costs_with_rate_column(self):
        # a discount for big allocations makes p = 8 the cheapest per unit of work
        rate = np.array([10.0, 20.0, 40.0, 20.0, 160.0, 320.0])
        res = rubric.evaluate(amdahl_table(0.08, rate_per_hour=rate, work=np.full(6, 5.0)))
        t = res.table
        cost = rate * t["seconds"] / 3600
        np.testing.assert_allclose(t["cost_per_run"], cost)
        np.testing.assert_allclose(t["cost_per_work"], cost / 5)
        np.testing.assert_allclose(t["work_per_cost"], 5 / cost)
        assert res.cheapest_p == int(P[np.argmin(cost)]) == 8
        assert res.cost_unit == "currency"

    def test_rate_per_worker_hour_option(self):
        res = rubric.evaluate(amdahl_table(0.08), rate_per_worker_hour=3.6)
        np.testing.assert_allclose(res.table["cost_per_run"],
                                   3.6 * P * res.table["seconds"] / 3600)

    def test_weak_scaling_via_work(self):
        res = rubric.evaluate(pd.DataFrame({"p": P, "seconds": 50.0, "work": 10.0 * P}))
        np.testing.assert_allclose(res.table["speedup"], P)
        np.testing.assert_allclose(res.table["efficiency"], 1.0)
        assert res.serial_fraction == pytest.approx(0.0, abs=1e-12)
        assert res.largest_efficient_p == 32

    def test_rising_karp_flatt_points_at_communication(self):
        # T = s + (1-s)/p + c lg p: the experimentally determined fraction grows with p
        t = 100 * scaling.textbook_strong_time(0.02, 0.02, P)
        res = rubric.evaluate(pd.DataFrame({"p": P, "seconds": t}))
        kf = res.table["karp_flatt"].to_numpy()[1:]
        assert np.all(np.diff(kf) > 0)
        assert res.karp_flatt_trend.startswith("rising")

    def test_baseline_above_one(self):
        res = rubric.evaluate(amdahl_table(0.0, p=np.array([2, 4, 8])))
        np.testing.assert_allclose(res.table["speedup"], [2, 4, 8])
        assert res.baseline_p == 2
        assert any("no p = 1 row" in n for n in res.notes)

    def test_verdict_names_the_findings(self):
        res = rubric.evaluate(amdahl_table(0.08))
        assert "p=4" in res.verdict and "s=0.08" in res.verdict and "ceiling" in res.verdict


class TestQualityGate:
    def table(self):
        t = amdahl_table(0.08, quality=np.array([0.50, 0.50, 0.501, 0.50, 0.50, 0.62]))
        # the drifting run also "finished" suspiciously fast
        t.loc[5, "seconds"] = 1.0
        return t

    def test_drifting_rows_flagged_and_excluded(self):
        res = rubric.evaluate(self.table(), quality_tol=0.01)
        assert res.drifting == (32,)
        assert res.table["quality_ok"].tolist() == [True] * 5 + [False]
        # excluded from the fit: s is still the true one
        assert res.serial_fraction == pytest.approx(0.08, abs=1e-12)
        # and from the recommendations, though p = 32 looks super-efficient and cheap
        assert res.largest_efficient_p == 4
        assert res.cheapest_p == 1
        assert "quality drift" in res.verdict

    def test_tolerance_option(self):
        res = rubric.evaluate(self.table(), quality_tol=0.5)
        assert res.drifting == ()
        assert res.largest_efficient_p == 32

    def test_zero_baseline_quality_uses_absolute_drift(self):
        t = amdahl_table(0.08, quality=np.array([0.0, 0.0, 0.005, 0.0, 0.02, 0.0]))
        res = rubric.evaluate(t, quality_tol=0.01)
        assert res.drifting == (16,)


class TestInvalid:
    def test_missing_columns(self):
        with pytest.raises(ValueError, match="missing column.*seconds"):
            rubric.validate_table(pd.DataFrame({"p": [1, 2]}))

    @pytest.mark.parametrize("col,values,msg", [
        ("seconds", [10.0, -1.0], "'seconds' must be > 0"),
        ("seconds", [10.0, 0.0], "'seconds' must be > 0"),
        ("p", [0, 2], "whole numbers >= 1"),
        ("p", [1, 2.5], "whole numbers >= 1"),
        ("p", [2, 2], "appears more than once"),
        ("seconds", [10.0, "fast"], "not a number"),
        ("seconds", [10.0, math.inf], "'seconds' must be > 0"),
        ("p", [1, math.inf], "whole numbers >= 1"),
        ("rate_per_hour", [1.0, math.inf], "'rate_per_hour' must be"),
        ("work", [1.0, math.inf], "'work' must be"),
    ])
    def test_bad_values(self, col, values, msg):
        df = pd.DataFrame({"p": [1, 2], "seconds": [10.0, 6.0]})
        df[col] = values
        with pytest.raises(ValueError, match=msg):
            rubric.validate_table(df)

    def test_bad_options(self):
        with pytest.raises(ValueError, match="threshold"):
            rubric.evaluate(amdahl_table(), threshold=1.5)
        with pytest.raises(ValueError, match="quality tolerance"):
            rubric.evaluate(amdahl_table(), quality_tol=-1)

    def test_read_table_errors(self, tmp_path):
        with pytest.raises(ValueError, match="no such file"):
            rubric.read_table(tmp_path / "missing.csv")
        empty = tmp_path / "empty.csv"
        empty.write_text("")
        with pytest.raises(ValueError, match="not a readable CSV"):
            rubric.read_table(empty)

    def test_single_row(self):
        res = rubric.evaluate(pd.DataFrame({"p": [1], "seconds": [3.0]}))
        assert math.isnan(res.serial_fraction)
        assert res.cheapest_p == 1
