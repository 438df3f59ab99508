"""fits.compare: per-point tests on raw repetitions, per-constant intervals, regressions,
exit statuses, and every bad input (nothing written)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fits import compare, constants, linksynth

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "example-2rank"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    c = linksynth.make_cluster(6, groups=[3, 3], seed=1)
    slow = linksynth.make_cluster(6, groups=[3, 3], seed=1, slow_nodes={4: 1.5})
    return {
        "base": linksynth.write_run(d / "base", c, seed=2, run_id="base"),
        "same": linksynth.write_run(d / "same", c, seed=3, run_id="same"),
        "slow": linksynth.write_run(d / "slow", slow, seed=4, run_id="slow"),
        "other": linksynth.write_run(d / "other", linksynth.make_cluster(4, seed=1),
                                     seed=5),
    }


class TestComparePoints:
    def test_shift_is_significant_and_noise_is_not(self):
        rng = np.random.default_rng(0)
        base = [rng.lognormal(0, 0.05, 20) for _ in range(40)]
        new = [b * 1.0 for b in (rng.lognormal(0, 0.05, 20) for _ in range(40))]
        new[3] = new[3] * 1.3
        f = compare.compare_points([(k,) for k in range(40)], base, new, threshold=0.05,
                                   alpha=0.05, key_names=("k",))
        assert f["regression"].tolist() == [k == 3 for k in range(40)]
        assert (f["p_adj"] >= f["p"]).all()  # Benjamini-Hochberg only raises p

    def test_groups_of_different_repetition_counts(self):
        rng = np.random.default_rng(1)
        base = [rng.normal(10, 0.1, n) for n in (5, 9, 9, 30)]
        new = [rng.normal(12, 0.1, n) for n in (7, 9, 11, 30)]
        f = compare.compare_points([(k,) for k in range(4)], base, new, threshold=0.05,
                                   alpha=0.05, key_names=("k",))
        assert f["p"].notna().all() and f["regression"].all()


class TestLinksRuns:
    def test_same_cluster_new_noise_no_regression(self, runs, capsys):
        assert compare.main([str(runs["base"]), str(runs["same"])]) == 0
        assert "no regression" in capsys.readouterr().out

    def test_slowed_node_is_a_regression(self, runs, tmp_path, capsys):
        js, png = tmp_path / "c.json", tmp_path / "c.png"
        rc = compare.main([str(runs["base"]), str(runs["slow"]), "--json", str(js),
                           "--plot", str(png)])
        assert rc == compare.EXIT_REGRESSION
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 100
        doc = json.loads(js.read_text())
        pts = [p for p in doc["significant_points"] if p["regression"]]
        big = {(p["src"], p["dst"]) for p in pts if p["bytes"] == 4 << 20}
        assert big == {(i, j) for i in range(6) for j in range(6)
                       if i != j and 4 in (i, j)}  # every link of node 4, no other
        # Benjamini-Hochberg bounds the false discovery rate (5%), not every error
        false = [p for p in pts if 4 not in (p["src"], p["dst"])]
        assert len(false) <= 0.1 * len(pts)
        links_flagged = [c for c in doc["constants"] if c["constant"].startswith("link ")]
        assert links_flagged and all("n0004" in c["constant"] for c in links_flagged)
        assert png.stat().st_size > 10_000

    def test_different_layouts_exit_2_nothing_written(self, runs, tmp_path, capsys):
        js = tmp_path / "c.json"
        assert compare.main([str(runs["base"]), str(runs["other"]), "--json",
                             str(js)]) == 2
        assert "different layouts" in capsys.readouterr().err
        assert compare.main([str(runs["base"]), str(EXAMPLE), "--json", str(js)]) == 2
        assert "compare like with like" in capsys.readouterr().err
        assert not js.exists()


class TestConstantsFiles:
    def test_worse_beta_is_a_regression(self, tmp_path, capsys):
        doc = constants.load(EXAMPLE / "constants.json")
        p2p = doc["topologies"]["intra"]["p2p"]
        # x10: the example's p2p β interval is wide (basic bootstrap, [18, 163] ps/B),
        # so a tripled β's interval still overlapped it
        p2p["beta"] *= 10
        p2p["beta_ci"] = [v * 10 for v in p2p["beta_ci"]]
        worse = tmp_path / "worse.json"
        constants.save(doc, worse)
        same = tmp_path / "same.json"
        shutil.copy(EXAMPLE / "constants.json", same)
        assert compare.main([str(EXAMPLE / "constants.json"), str(same)]) == 0
        capsys.readouterr()
        assert compare.main([str(EXAMPLE / "constants.json"), str(worse)]) == 1
        out = capsys.readouterr().out
        line = [x for x in out.splitlines() if x.startswith("intra p2p beta")][0]
        assert "REGRESSION" in line and "+900%" in line

    def test_bad_inputs(self, tmp_path, capsys):
        assert compare.main([str(EXAMPLE / "constants.json"),
                             str(EXAMPLE / "constants.json")]) == 2
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        assert compare.main([str(EXAMPLE / "constants.json"), str(bad)]) == 2
        assert "NEW" in capsys.readouterr().err
        assert compare.main([str(EXAMPLE / "constants.json"), str(tmp_path / "nope")]) == 2
        assert compare.main([str(EXAMPLE / "constants.json"), str(bad),
                             "--threshold", "-1"]) == 2


def test_sweep_runs_same_data_no_regression(tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(EXAMPLE, copy)
    assert compare.main([str(EXAMPLE), str(copy), "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "0 regressions" in out and "no regression" in out


def test_regressions_count_links_beyond_those_listed(runs, monkeypatch):
    base = compare.load_side(runs["base"], "BASE")
    new = compare.load_side(runs["slow"], "NEW")
    full = compare.compare(base, new)
    monkeypatch.setattr(compare, "LINK_ROWS", 3)
    capped = compare.compare(compare.load_side(runs["base"], "BASE"),
                             compare.load_side(runs["slow"], "NEW"))
    assert capped.regressions == full.regressions > 10
    assert sum(c.startswith("link ") for c in capped.constants["constant"]) <= 6
    assert any("are listed" in n for n in capped.notes)


def test_sweep_runs_of_different_layouts_exit_2(tmp_path, capsys):
    js = tmp_path / "c.json"
    other = ROOT / "data" / "example-emulated-2x2" / "run-2x2"
    assert compare.main([str(EXAMPLE), str(other), "--json", str(js)]) == 2
    assert "different layouts: world_size 2 vs 4" in capsys.readouterr().err
    assert not js.exists()
