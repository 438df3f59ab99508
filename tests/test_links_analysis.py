"""fits.links on synthetic links runs with known answers (fits.linksynth), and its
command line: outputs, --fail-on, every bad input."""
import json
import shutil

import numpy as np
import pytest

from fits import linksynth, links

SIZES = linksynth.DEFAULT_SIZES


def _run(tmp_path, name, seed=3, **kw):
    c = linksynth.make_cluster(seed=seed, **kw)
    return linksynth.write_run(tmp_path / name, c, seed=seed + 1), c


def _analyze(path, **opts):
    return links.analyze(links.read_links_run(path), links.Options(**opts))


def _suspects(an):
    return (sorted(s["node"] for s in an.suspect_nodes),
            sorted((s["src"], s["dst"]) for s in an.suspect_links))


class TestFitLinks:
    def test_noiseless_recovers_every_link(self):
        c = linksynth.make_cluster(5, groups=[2, 3], seed=1)
        d = linksynth.links_data(c, noise=0.0, tail_prob=0.0, repetitions=7)
        fit = links.fit_links(d)
        assert np.allclose(fit.alpha, c.alpha[fit.src, fit.dst], rtol=1e-6)
        assert np.allclose(fit.beta, c.beta[fit.src, fit.dst], rtol=1e-9)

    def test_intervals_cover_the_truth(self):
        c = linksynth.make_cluster(12, seed=2)
        d = linksynth.links_data(c, noise=0.05, tail_prob=0.0, repetitions=15, seed=5)
        fit = links.fit_links(d)
        tb = c.beta[fit.src, fit.dst]
        cover = np.mean((fit.beta_ci[:, 0] <= tb) & (tb <= fit.beta_ci[:, 1]))
        assert cover > 0.85, cover
        assert np.all(fit.beta_ci[:, 0] <= fit.beta) and np.all(fit.beta <= fit.beta_ci[:, 1])

    def test_negative_intercept_is_clamped_to_zero(self):
        c = linksynth.make_cluster(3, alpha=(0.0, 0.0), seed=1)
        d = linksynth.links_data(c, noise=0.0, tail_prob=0.0)
        d.median[d.nbytes == SIZES[0]] *= 0.01  # line through the points crosses < 0
        fit = links.fit_links(d)
        assert np.all(fit.alpha >= 0) and np.all(fit.beta > 0)


class TestMixture:
    def test_two_separated_groups(self):
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(0, 0.03, 400), rng.normal(0.7, 0.03, 600)])
        mu, _, wt, lab = links.gmm_1d(x)
        assert mu.size == 2 and abs(mu[1] - mu[0] - 0.7) < 0.02
        assert np.isclose(wt[0], 0.4, atol=0.02) and lab[:400].max() == 0

    def test_one_group(self):
        x = np.random.default_rng(1).normal(0, 0.05, 2000)
        assert links.gmm_1d(x)[0].size == 1


class TestScenarios:
    """The cases of the issue: healthy, slow node, slow pair, two switch groups."""

    @pytest.mark.parametrize("nodes", [4, 6])
    def test_healthy_names_no_suspect(self, tmp_path, nodes):
        an = _analyze(_run(tmp_path, "h", nodes=nodes)[0])
        assert _suspects(an) == ([], []) and len(an.tiers) == 1

    @pytest.mark.parametrize("nodes,slow", [(4, 3), (6, 2)])
    def test_slow_node_is_the_suspect_node(self, tmp_path, nodes, slow):
        an = _analyze(_run(tmp_path, "n", nodes=nodes, slow_nodes={slow: 2.0})[0])
        assert _suspects(an) == ([slow], [])
        s = an.suspect_nodes[0]
        assert s["feature"] == "bandwidth" and 1.8 < s["slowdown"] < 2.2
        assert f"{s['slowdown']:.2f}x slower" in s["evidence"]
        assert "GB/s over its" in s["evidence"] and f"z = {s['z']:.1f}" in s["evidence"]
        assert s["links_slower"] == s["links"] == 2 * (nodes - 1)

    def test_slow_pair_is_the_suspect_link(self, tmp_path):
        an = _analyze(_run(tmp_path, "l", nodes=6, slow_links={(1, 4): 2.0})[0])
        assert _suspects(an) == ([], [(1, 4), (4, 1)])
        assert all("tier median" in s["evidence"] for s in an.suspect_links)

    @pytest.mark.parametrize("groups", [[2, 2], [3, 3], [2, 3]])
    def test_two_switch_groups_are_two_tiers(self, tmp_path, groups):
        path, c = _run(tmp_path, "t", nodes=sum(groups), groups=groups)
        an = _analyze(path)
        assert _suspects(an) == ([], [])
        assert len(an.tiers) == 2
        for tier, beta in zip(an.tiers, c.tier_beta):
            assert abs(tier["beta"] / beta - 1) < 0.10
        want = sorted(sorted(f"n{k:04d}" for k in np.flatnonzero(c.group == g))
                      for g in np.unique(c.group))
        assert sorted(sorted(g) for g in an.tiers[0]["groups"]) == want

    def test_slow_node_inside_a_switch_group(self, tmp_path):
        path, c = _run(tmp_path, "tn", nodes=6, groups=[3, 3], slow_nodes={0: 2.0})
        an = _analyze(path)
        assert _suspects(an) == ([0], []) and len(an.tiers) == 2
        assert abs(an.tiers[1]["beta"] / c.tier_beta[1] - 1) < 0.10

    def test_slow_pair_inside_a_switch_group(self, tmp_path):
        path, _ = _run(tmp_path, "tl", nodes=8, groups=[4, 4], slow_links={(1, 2): 2.0})
        an = _analyze(path)
        assert _suspects(an) == ([], [(1, 2), (2, 1)]) and len(an.tiers) == 2

    def test_one_direction_runs(self, tmp_path):
        c = linksynth.make_cluster(6, slow_nodes={5: 2.0}, seed=4)
        path = linksynth.write_run(tmp_path / "one", c, direction="one", seed=1)
        an = _analyze(path)
        assert an.fit.src.size == 15 and _suspects(an) == ([5], [])


def test_false_positive_rate_on_healthy_clusters(tmp_path):
    """Realistic noise: 10% per repetition, 5% heavy-tailed repetitions, 5% spread
    between links; 25 healthy clusters of 8 nodes (one and two switch groups) and one
    of 48: no suspect at all (with the default thresholds)."""
    found = []
    for seed in range(25):
        c = linksynth.make_cluster(8, groups=1 + seed % 2, link_spread=0.05, seed=seed)
        d = linksynth.links_data(c, noise=0.10, tail_prob=0.05, seed=100 + seed)
        an = links.analyze(d)
        found += [(seed, s) for s in an.suspect_nodes + an.suspect_links]
        assert len(an.tiers) == 1 + seed % 2, seed
    c = linksynth.make_cluster(48, groups=3, link_spread=0.05, seed=7)
    an = links.analyze(linksynth.links_data(c, noise=0.10, tail_prob=0.05, seed=8))
    found += [(48, s) for s in an.suspect_nodes + an.suspect_links]
    assert found == []


def test_1024_nodes_in_bounded_time_and_memory():
    """~10^6 directed links x 3 sizes: every planted fault found, nothing else, two
    tiers within 10% (timings: benchmarks/bench_links_scale.py)."""
    n = 1024
    c = linksynth.make_cluster(n, groups=32, slow_nodes={341: 2.0},
                               slow_links={(1, 515): 2.0, (7, 8): 2.0}, seed=1)
    d = linksynth.links_data(c, repetitions=6, seed=2)
    an = links.analyze(d)
    assert an.fit.src.size == n * (n - 1)
    assert _suspects(an) == ([341], [(1, 515), (7, 8), (8, 7), (515, 1)])
    assert len(an.tiers) == 2
    assert all(abs(t["beta"] / b - 1) < 0.1 for t, b in zip(an.tiers, c.tier_beta))
    assert len(an.tiers[0]["groups"]) == 32


def test_tiers_are_levels_the_predictor_reads(tmp_path):
    from fits.predict import hierarchy
    path, c = _run(tmp_path, "t", nodes=6, groups=[3, 3])
    doc = links.tiers_document(_analyze(path))
    assert doc["kind"] == "collcost-link-tiers" and len(doc["levels"]) == 2
    for level, beta, alpha in zip(doc["levels"], c.tier_beta, c.tier_alpha):
        a, b, g = hierarchy.level_constants(level, "allreduce", "ring")
        assert abs(b / beta - 1) < 0.1 and abs(a / alpha - 1) < 0.1 and g == 0
        assert level["p2p"]["beta_ci"][0] <= level["p2p"]["beta"] <= level["p2p"]["beta_ci"][1]
    json.dumps(doc, allow_nan=False)


class TestCommandLine:
    def test_writes_outputs_and_prints_tiers(self, tmp_path, capsys):
        path, _ = _run(tmp_path, "r", nodes=6, groups=[3, 3], slow_nodes={4: 2.0})
        out = tmp_path / "out"
        assert links.main([str(path), "--out", str(out)]) == 0
        names = sorted(p.name for p in out.iterdir())
        assert names == ["bandwidth.png", "latency.png", "links.csv", "links.json",
                         "tiers.json"]
        doc = json.loads((out / "links.json").read_text())
        assert [s["node"] for s in doc["suspect_nodes"]] == [4]
        assert "SUSPECT NODE n0004" in capsys.readouterr().out
        # existing output: refused without --overwrite, replaced with it
        assert links.main([str(path), "--out", str(out)]) == 2
        assert links.main([str(path), "--out", str(out), "--overwrite", "--no-plots"]) == 0
        assert not (out / "latency.png").exists()

    def test_fail_on(self, tmp_path):
        bad, _ = _run(tmp_path, "bad", nodes=6, slow_nodes={1: 2.0})
        good, _ = _run(tmp_path, "good", nodes=6)
        assert links.main([str(bad), "--fail-on", "suspects"]) == links.EXIT_FAIL
        assert (bad / links.DEFAULT_OUT / "links.json").is_file()  # written by default
        # repeated checks of one run: --no-write (the analysis exists now)
        assert links.main([str(bad), "--fail-on", "links"]) == 2
        assert links.main([str(bad), "--no-write", "--fail-on", "links"]) == 0
        assert links.main([str(bad), "--no-write", "--fail-on", "slowdown:1.5"]) == \
            links.EXIT_FAIL
        assert links.main([str(bad), "--no-write", "--fail-on", "slowdown:3"]) == 0
        assert links.main([str(good), "--no-write", "--fail-on", "suspects"]) == 0
        assert not (good / links.DEFAULT_OUT).exists()

    @pytest.mark.parametrize("args,needle", [
        (["--fail-on", "bogus"], "--fail-on"),
        (["--fail-on", "slowdown:0.5"], "slowdown"),
        (["--node-z", "-1"], "--node-z"),
        (["--confidence", "1.5"], "--confidence"),
        (["--max-tiers", "0"], "--max-tiers"),
        (["--features", "colour"], "--features"),
    ])
    def test_bad_options(self, tmp_path, capsys, args, needle):
        path, _ = _run(tmp_path, "r", nodes=4)
        assert links.main([str(path), "--out", str(tmp_path / "o")] + args) == 2
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "o").exists()

    def test_bad_inputs_exit_2_and_write_nothing(self, tmp_path, capsys):
        from pathlib import Path
        root = Path(__file__).resolve().parents[1]
        out = tmp_path / "o"
        sweep = root / "data" / "example-2rank"
        assert links.main([str(sweep), "--out", str(out)]) == 2
        assert "not a links run" in capsys.readouterr().err
        assert links.main([str(tmp_path / "missing"), "--out", str(out)]) == 2
        path, _ = _run(tmp_path, "r", nodes=4)
        assert links.main([str(path), "--out", str(path / "inside")]) == 2
        assert "input" in capsys.readouterr().err
        # one size only: α and β cannot be separated
        c = linksynth.make_cluster(4, seed=0)
        one = linksynth.write_run(tmp_path / "one", c, sizes=(4096,))
        assert links.main([str(one), "--out", str(out)]) == 2
        assert ">= 2 message sizes" in capsys.readouterr().err
        # a row that is not a ping-pong between two endpoints
        broken = tmp_path / "broken"
        shutil.copytree(path, broken)
        lines = (broken / "points.jsonl").read_text().splitlines()
        row = json.loads(lines[3])
        row["dst"] = row["src"]
        lines[3] = json.dumps(row)
        (broken / "points.jsonl").write_text("\n".join(lines) + "\n")
        assert links.main([str(broken), "--out", str(out)]) == 2
        assert "line 4" in capsys.readouterr().err
        assert not out.exists()

    def test_truncated_last_line_is_dropped_with_a_warning(self, tmp_path, capsys):
        path, _ = _run(tmp_path, "r", nodes=4)
        text = (path / "points.jsonl").read_text()
        (path / "points.jsonl").write_text(text[:-40])
        assert links.main([str(path)]) == 0
        assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize("direction", ["one", "both"])
def test_reads_and_analyses_a_real_links_run(tmp_path, direction):
    """A run of the real measurement (collectives.links, 3 ranks of this machine, every
    rank pair): read, fitted and written without error whatever the timings (they are
    noise on a shared 2-core machine, so nothing is asserted about suspects)."""
    from mpirun import mpirun
    run = tmp_path / "run"
    res = mpirun(3, ["-m", "mpi4py", "-m", "collectives.links", "--mode", "rank",
                     "--direction", direction, "--sizes", "8,4K,1M",
                     "--time-budget", "0.02", "--min-reps", "6", "--out", run],
                 timeout=150)
    assert res.returncode == 0, res.stderr[-2000:]
    data = links.read_links_run(run)
    assert data.nodes == 3 and data.sizes == [8, 4096, 1 << 20]
    out = tmp_path / "an"
    assert links.main([str(run), "--out", str(out)]) == 0
    rows = (out / "links.csv").read_text().splitlines()
    assert len(rows) == 1 + (6 if direction == "both" else 3)
    doc = json.loads((out / "tiers.json").read_text())
    assert doc["levels"] and doc["levels"][0]["p2p"]["beta"] >= 0


def test_tiers_by_latency(tmp_path):
    """Switch groups that differ in α only (a fat tree: more hops, full bandwidth)."""
    path, c = _run(tmp_path, "a", nodes=6, groups=[3, 3], alpha=(2e-6, 8e-6),
                   beta=(1e-10, 1e-10))
    by_alpha = _analyze(path, tiers_by="alpha")
    assert len(by_alpha.tiers) == 2 and _suspects(by_alpha) == ([], [])
    for tier, alpha in zip(by_alpha.tiers, c.tier_alpha):
        assert abs(tier["alpha"] / alpha - 1) < 0.1
    assert len(_analyze(path, tiers_by="beta").tiers) == 1


def test_features_restrict_what_makes_a_suspect(tmp_path):
    c = linksynth.make_cluster(6, slow_nodes={2: 3.0}, slow_alpha=True, seed=2)
    path = linksynth.write_run(tmp_path / "r", c, seed=3)
    both = {(s["node"], s["feature"]) for s in _analyze(path).suspect_nodes}
    assert both == {(2, "bandwidth"), (2, "latency")}
    only = _analyze(path, features=("bandwidth",)).suspect_nodes
    assert [(s["node"], s["feature"]) for s in only] == [(2, "bandwidth")]
    assert links.main([str(path), "--features", "latency", "--fail-on", "nodes"]) == 1
