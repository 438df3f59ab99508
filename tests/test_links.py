"""``python -m collectives.links``: bad input (in-process and launched), real launches at
2-5 ranks (all rank pairs on this one host), both directions, the serial schedule, a
killed rank then ``--resume``, an injected failure.  Every launch under a timeout."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from collectives import links
from collectives.topology import layout_from_hosts
from mpirun import mpirun

TINY = ["--time-budget", "0.01", "--min-reps", "3", "--max-reps", "30", "--warmup", "1"]
SIZES = "8,4M"  # tiny and well above MPICH's eager threshold


def launch(n, args, timeout=120, env=None):
    return mpirun(n, ["-m", "mpi4py", "-m", "collectives.links"] + [str(a) for a in args],
                  timeout=timeout, env=env)


def rows(run: Path):
    return [json.loads(line) for line in (run / "points.jsonl").read_text().splitlines()]


BAD = [
    (["a"] * 3, [], "--mode node: this launch gives 1 endpoint(s)"),
    (["a"], ["--mode", "rank"], "start at least 2 ranks"),
    (["a", "a", "b"], ["--mode", "group", "--groups-per-node", "2"],
     "node b holds only 1 rank(s)"),
    (["a", "b"], ["--mode", "group"], "needs --groups-per-node"),
    (["a", "b"], ["--mode", "nic"], "--mode: unknown value 'nic'"),
    (["a", "b"], ["--sizes", "6"], "not a multiple of the float32"),
    (["a", "b"], ["--sizes", "0,8"], "sizes must be > 0 bytes"),
    (["a", "b"], ["--sizes", ""], "--sizes is empty"),
    (["a", "b"], ["--direction", "up"], "--direction: unknown value 'up'"),
    (["a", "b"], ["--concurrent", "-2"], "--concurrent must be a whole number >= 1"),
    (["a", "b"], ["--sync", "never"], "--sync: unknown value 'never'"),
    (["a", "b"], ["--min-reps", "9", "--max-reps", "3"], "max_reps (3) must be >= min_reps"),
    (["a", "b"], ["--time-budget", "0"], "--time-budget must be a finite number > 0"),
    (["a", "b"], ["--time-budget", "1e300"], "--time-budget must be a finite number > 0 and <= 86400"),
    (["a", "b"], ["--max-reps", "1000000000000"], "--max-reps must be between 1 and 1000000"),
    (["a", "b"], ["--warmup", "100000000000"], "--warmup must be between 0 and 1000000"),
    (["a", "b"], ["--out", ""], "--out is empty"),
    (["a", "b"], ["--resume", ""], "--resume is empty"),
    (["a", "b"], ["--point-timeout", "nan"], "--point-timeout must be >= 0"),
    (["a", "b"], ["--resume", "/nonexistent/run"], "not a run directory"),
    (["a", "b"], ["--sizes", "8,64T"], "more than a quarter of this node's memory"),
    (["a", "b"], ["--keep-samples", "0"], "--keep-samples must be between 1 and 1000000"),
    (["a", "b"], ["--keep-samples", "1000000000000"], "--keep-samples must be between 1 and"),
]


@pytest.mark.parametrize("hosts, args, message", BAD)
def test_bad_input_is_a_usage_error(tmp_path, hosts, args, message):
    out = [] if "--resume" in args else ["--out", str(tmp_path / "run")]
    got = links._setup(args + out, layout_from_hosts(hosts))
    assert got[:2] == ("exit", 2), got
    assert message in " ".join(got[2].split()), got[2]
    assert got[2].startswith("usage:")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_out_not_empty_and_resume_of_a_sweep_run(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep me")
    got = links._setup(["--out", str(full)], layout_from_hosts(["a", "b"]))
    assert got[:2] == ("exit", 2) and "not empty" in got[2]
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    meta = {"schema_version": 1, "kind": "collcost-run", "run_id": "x"}
    (sweep / "metadata.json").write_text(json.dumps(meta))
    got = links._setup(["--resume", str(sweep)], layout_from_hosts(["a", "b"]))
    assert got[:2] == ("exit", 2) and "collcost-links" in got[2], got[2]
    got = links._setup(["--resume", str(sweep), "--out", str(tmp_path / "o")],
                       layout_from_hosts(["a", "b"]))
    assert "--out and --resume exclude each other" in got[2]
    assert (full / "x").read_text() == "keep me"
    assert sorted(p.name for p in sweep.iterdir()) == ["metadata.json"]


def test_help_explains_every_option():
    text = links.build_parser().format_help()
    for action in links.build_parser()._actions:
        for opt in action.option_strings:
            assert opt in text
        assert action.help, action.option_strings
    assert "Exit status" in text and "ack_s" in text


@pytest.mark.parametrize("args, message", [
    (["--sizes", "8"], "--mode node: this launch gives 1 endpoint(s)"),
    (["--mode", "rank", "--sizes", "8"], "start at least 2 ranks"),
])
def test_launched_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    n = 1 if "--mode" in args else 2  # 2 ranks of one host: still one node
    p = launch(n, args + ["--out", tmp_path / "run"], timeout=60)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert p.stderr.count("usage:") == 1  # rank 0 alone prints
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_all_rank_pairs(tmp_path, n):
    run = tmp_path / "run"
    p = launch(n, ["--mode", "rank", "--sizes", SIZES, "--out", run] + TINY)
    assert p.returncode == 0, p.stderr[-3000:]
    got = rows(run)
    pairs = n * (n - 1) // 2
    assert len(got) == pairs * 2
    assert {(r["src"], r["dst"]) for r in got} == {(a, b) for a in range(n)
                                                  for b in range(a + 1, n)}
    assert sorted({r["bytes"] for r in got}) == [8, 4 << 20]
    for r in got:
        assert r["collective"] == "pingpong" and r["topology"] == "link"
        assert r["ranks"] == 2 and r["nodes"] == 1 and r["correct"]
        assert r["concurrent"] == n // 2 and r["src_rank"] == r["src"]
        assert 0 < r["median_s"] and len(r["samples"]["max"]) == r["repetitions"] >= 3
    # every round's pairs are disjoint
    by_round = {}
    for r in got:
        if r["bytes"] == 8:
            by_round.setdefault(r["round"], []).extend([r["src"], r["dst"]])
    assert len(by_round) == (n - 1 if n % 2 == 0 else n)
    assert all(len(v) == len(set(v)) for v in by_round.values())
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["kind"] == "collcost-links"
    assert meta["links"]["mode"] == "rank" and meta["links"]["direction"] == "one"
    assert [e["rank"] for e in meta["links"]["endpoints"]] == list(range(n))
    assert meta["links"]["schedule"] == ("serial" if n < 4 else "tournament")
    csv_lines = (run / "points.csv").read_text().splitlines()
    assert len(csv_lines) == len(got) + 1 and "src_host" in csv_lines[0]
    assert not (run / ".lock").exists()
    assert "plan:" in p.stderr and "estimated" in p.stderr  # printed before measuring
    assert "bandwidth matrix" in p.stdout
    back = links.read_links(run)
    assert len(back.points) == len(got) and "samples" not in back.points


def test_samples_kept_are_bounded(tmp_path):
    run = tmp_path / "run"
    p = launch(2, ["--mode", "rank", "--sizes", "8", "--keep-samples", "4",
                   "--time-budget", "0.05", "--min-reps", "10", "--out", run], timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    (r,) = rows(run)
    assert r["repetitions"] >= 10 and r["samples_kept"] == 4
    assert all(len(v) == 4 for v in r["samples"].values())
    assert r["min_s"] <= min(r["samples"]["max"])  # statistics over every repetition


def test_both_directions_serial(tmp_path):
    run = tmp_path / "run"
    p = launch(4, ["--mode", "rank", "--sizes", "8,4M", "--direction", "both",
                   "--concurrent", "1", "--out", run] + TINY)
    assert p.returncode == 0, p.stderr[-3000:]
    got = rows(run)
    assert len(got) == 12 * 2
    assert {(r["src"], r["dst"]) for r in got} == {(a, b) for a in range(4)
                                                  for b in range(4) if a != b}
    assert all(r["concurrent"] == 1 and r["ack_s"] > 0 and r["correct"] for r in got)
    assert len({r["step"] for r in got}) == 6
    # one way of 4 MiB takes longer than one way of 8 B (a loaded machine can upset a
    # pair or two: 4 ranks share 2 cores with other jobs)
    med = {(r["src"], r["dst"], r["bytes"]): r["median_s"] for r in got}
    slower = sum(med[(a, b, 4 << 20)] > med[(a, b, 8)] for a in range(4) for b in range(4)
                 if a != b)
    assert slower >= 10, med


def test_killed_rank_then_resume(tmp_path):
    run = tmp_path / "run"
    args = ["--mode", "rank", "--sizes", "8,64K,1M", "--out", run] + TINY
    p = launch(4, args, env={"COLLCOST_TEST_KILL_AFTER_POINTS": "4"})
    assert p.returncode != 0
    before = (run / "points.jsonl").read_text().splitlines()
    assert 0 < len(before) < 18
    again = launch(4, ["--resume", run])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {run}" in again.stderr
    after = (run / "points.jsonl").read_text().splitlines()
    assert after[:len(before)] == before
    keys = [(r["src"], r["dst"], r["bytes"]) for r in map(json.loads, after)]
    assert len(keys) == len(set(keys)) == 18
    meta = json.loads((run / "metadata.json").read_text())
    assert len(meta["launches"]) == 2
    # a resume with other options is refused, nothing changes
    other = launch(4, ["--resume", run, "--sizes", "8"], timeout=60)
    assert other.returncode == 2 and "options differ" in other.stderr
    assert (run / "points.jsonl").read_text().splitlines() == after


def test_failure_on_one_rank_aborts(tmp_path):
    run = tmp_path / "run"
    p = launch(3, ["--mode", "rank", "--sizes", "8", "--out", run] + TINY,
               env={"COLLCOST_TEST_FAIL_AT_POINT": "2"}, timeout=60)
    assert p.returncode not in (0, 124), p.stderr[-2000:]
    assert "failure injected" in p.stderr
    assert len(rows(run)) >= 1  # the first step's point was kept


def test_group_mode_on_one_host(tmp_path):
    run = tmp_path / "run"
    p = launch(4, ["--mode", "group", "--groups-per-node", "2", "--sizes", "8,1M",
                   "--out", run] + TINY)
    assert p.returncode == 0, p.stderr[-3000:]
    meta = json.loads((run / "metadata.json").read_text())
    assert [(e["rank"], e["group"]) for e in meta["links"]["endpoints"]] == [(0, 0), (2, 1)]
    got = rows(run)
    assert [(r["src_rank"], r["dst_rank"], r["bytes"]) for r in got] == \
        [(0, 2, 8), (0, 2, 1 << 20)]


def test_summary_at_1024_endpoints_is_bounded():
    import time

    import numpy as np

    from collectives import linkplan as lp
    n, sizes = 1024, [8, 1 << 20]
    ends = lp.endpoints(layout_from_hosts([f"node{i:04d}" for i in range(n)]))
    plan = lp.Plan(n, sizes)
    ledger = lp.Ledger(n, sizes)
    rng = np.random.default_rng(1)
    iu = np.triu_indices(n, 1)
    ledger.done[iu] = True
    ledger.median[iu[0], iu[1], 0] = 2e-6 * (1 + 0.05 * rng.random(iu[0].size))
    ledger.median[iu[0], iu[1], 1] = 1e-4 * (1 + 0.05 * rng.random(iu[0].size))
    slow = (iu[0] == 7) | (iu[1] == 7)
    ledger.median[iu[0][slow], iu[1][slow], 1] *= 2  # node 7 at half bandwidth
    start = time.perf_counter()
    text = links.summary(ledger, plan, ends)
    took = time.perf_counter() - start
    lines = text.splitlines()
    assert len(lines) < 20 and took < 30
    assert "523776" in text  # every link counted
    at = next(i for i, line in enumerate(lines) if line.startswith("per endpoint"))
    assert "node0007" in lines[at + 1], text  # the slowest endpoint is listed first


@pytest.mark.parametrize("fault", ["point:1@0=stop", "before-point:2@1=stop",
                                   "write step 0@0=stop"])
def test_a_stopped_rank_ends_the_job(tmp_path, fault):
    """Rank 0 stopped after its first point (its partner and the idle rank are left
    waiting), rank 1 stopped inside its pair, or rank 0 stopped between two steps
    (every other rank waits for the next step): a deadline ends the job."""
    run = tmp_path / "run"
    p = launch(3, ["--mode", "rank", "--sizes", "8,64K", "--point-timeout", "3",
                   "--out", run] + TINY, env={"COLLCOST_TEST_FAULT": fault}, timeout=90)
    # Hydra reports the worst exit it saw (the stopped rank is killed with SIGKILL)
    assert p.returncode not in (0, 124), (p.returncode, p.stderr[-2000:])
    assert "exceeded" in p.stderr and "aborting" in p.stderr


def test_resume_on_other_hosts_is_refused(tmp_path):
    run = tmp_path / "run"
    p = launch(2, ["--mode", "rank", "--sizes", "8", "--out", run] + TINY, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    before = sorted((f.name, f.stat().st_mtime_ns) for f in run.iterdir())
    got = links._setup(["--resume", str(run)], layout_from_hosts(["elsewhere", "x"]))
    assert got[:2] == ("exit", 2)
    assert "endpoint 0 is" in got[2] and "elsewhere" in got[2], got[2]
    got = links._setup(["--resume", str(run)], layout_from_hosts(["a", "a", "a"]))
    assert got[:2] == ("exit", 2) and "the run has 2 endpoints, this launch 3" in got[2]
    assert sorted((f.name, f.stat().st_mtime_ns) for f in run.iterdir()) == before
