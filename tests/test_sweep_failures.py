"""Failure behaviour of the sweep: bad arguments, a killed rank then --resume, an
exception on one rank, the per-point watchdog.  Every launch under a timeout."""
import os

import pytest

from collectives.results import point_key, read_run
from mpirun import mpirun

TINY = ["--time-budget", "0.005", "--min-reps", "2", "--max-reps", "20"]


def sweep(n, args, timeout=90, env=None):
    return mpirun(n, ["-m", "collectives.sweep"] + [str(a) for a in args],
                  timeout=timeout, env=env)


def listing(path):
    return sorted(os.listdir(path))


BAD = [
    (["--collectives", "allreduce,gather"], "unknown value 'gather'"),
    (["--algorithms", "bogus"], "--algorithms: unknown value 'bogus'"),
    (["--collectives", "bcast", "--algorithms", "ring"],
     "'ring' is not an algorithm of any of bcast"),
    (["--sizes", "0,8"], "sizes must be > 0 bytes"),
    (["--sizes", "-8"], "is not a size"),
    (["--sizes", "8:lots"], "'lots' is not a size"),
    (["--sizes", "1K:8"], "MAX is smaller than MIN"),
    (["--sizes", "8:1K:1"], "FACTOR must be a whole number >= 2"),
    (["--sizes", "6", "--dtype", "float64"], "not a multiple of the float64"),
    (["--ranks", "2,5"], "--ranks 5 is larger than the intra topology supports: node"),
    (["--ranks", "two"], "'two' is not a whole number"),
    (["--ranks", "0"], "--ranks must be >= 1"),
    # one node cannot give an inter topology (it used to measure and fit one from 1 host)
    (["--topology", "inter", "--ranks", "2"], "--topology inter: the job spans 1 node"),
    (["--topology", "inter"], "--topology inter: the job spans 1 node"),
    (["--topology", "ring"], "--topology: unknown value 'ring'"),
    (["--sizes", "64M", "--max-memory", "100M"], "more than --max-memory"),
    (["--max-memory", "lots"], "--max-memory 'lots' is not a size"),
    (["--dtype", "float16"], "--dtype: unknown value 'float16'"),
    (["--op", "prod"], "--op: unknown value 'prod'"),
    (["--sync", "never"], "sync must be one of barrier, window"),
    (["--time-budget", "-1"], "--time-budget must be a finite number > 0"),
    (["--min-reps", "10", "--max-reps", "5"], "max_reps (5) must be >= min_reps (10)"),
    (["--point-timeout", "-1"], "--point-timeout must be >= 0"),
    # non-finite timeouts used to pass: nan silently disabled the watchdog, inf
    # crashed its thread (Condition.wait(inf) overflows), so no point was guarded
    (["--point-timeout", "nan"], "--point-timeout must be >= 0"),
    # an empty value (e.g. an unset shell variable) used to mean "the default": a
    # full 8:64M sweep of everything instead of an error
    (["--sizes", ""], "--sizes is empty"),
    (["--collectives", ""], "--collectives is empty"),
    (["--algorithms", ""], "--algorithms is empty"),
    (["--topology", ""], "--topology is empty"),
    (["--sync", ""], "sync must be one of barrier, window, got ''"),
    (["--point-timeout", "inf"], "--point-timeout must be >= 0"),
    (["--resume", "/nonexistent/run"], "--resume: /nonexistent/run: not a run directory"),
    (["--resume", "/tmp", "--out", "/tmp/x"], "--out and --resume exclude each other"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_arguments_are_usage_errors(tmp_path, args, message):
    """Every bad input, validated in-process on a 3-rank one-node layout (what rank 0
    does before anything is created); the launches below check the exit path."""
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    out = [] if "--resume" in args else ["--out", str(tmp_path / "data" / "run")]
    kind, status, text, _ = sw._setup(args + out, layout_from_hosts(["h"] * 3))
    assert (kind, status) == ("exit", 2)
    assert message in " ".join(text.split()), text
    assert text.startswith("usage:")
    assert listing(tmp_path) == []


def test_nothing_to_measure(tmp_path):
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    kind, status, text, _ = sw._setup(["--collectives", "pingpong", "--out",
                                       str(tmp_path / "r")], layout_from_hosts(["h"]))
    assert (kind, status) == ("exit", 2) and "pingpong needs 2 ranks" in text
    assert listing(tmp_path) == []


def test_argparse_errors_are_usage_errors(tmp_path, capsys):
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    kind, status, _, _ = sw._setup(["--target-ci", "abc"], layout_from_hosts(["h"]))
    assert (kind, status) == ("exit", 2)
    assert "invalid float value" in capsys.readouterr().err


@pytest.mark.parametrize("n,args,message", [
    (1, ["--algorithms", "bogus"], "--algorithms: unknown value 'bogus'"),
    (2, ["--sizes", "0,8"], "sizes must be > 0 bytes"),
    (3, ["--ranks", "2,5"], "--ranks 5 is larger than the intra topology supports"),
    (4, ["--sizes", "64M", "--max-memory", "100M"], "more than --max-memory"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, n, args, message):
    out = tmp_path / "data" / "run"
    proc = sweep(n, args + ["--out", out], timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert proc.stderr.count("usage:") == 1  # rank 0 alone reports
    assert listing(tmp_path) == []            # not even data/


def setup_in_process(args, n=2):
    """What rank 0 does with a command line on an n-rank one-node job, in-process."""
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    return sw._setup([str(a) for a in args], layout_from_hosts(["h"] * n))


def test_unwritable_output_directory(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    kind, status, text, _ = setup_in_process(["--out", tmp_path / "file" / "run"])
    assert (kind, status) == ("exit", 2) and "is not a directory" in text
    assert listing(tmp_path) == ["file"]


def test_non_empty_output_directory(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep").write_text("x")
    kind, status, text, _ = setup_in_process(["--out", tmp_path / "run"])
    assert (kind, status) == ("exit", 2) and "is not empty" in text
    assert listing(tmp_path / "run") == ["keep"]


def test_read_only_filesystem_output():
    # /proc refuses new directories even to root, unlike permission bits
    kind, status, text, _ = setup_in_process(["--out", "/proc/collcost-test-run"])
    assert (kind, status) == ("exit", 2) and "cannot create a directory in /proc" in text
    assert not os.path.exists("/proc/collcost-test-run")


def test_kill_a_rank_then_resume(tmp_path):
    out = tmp_path / "run"
    args = ["--collectives", "allreduce,pingpong,reduce_scatter", "--sizes", "8,2M",
            "--ranks", "2,3"] + TINY
    killed = sweep(3, args + ["--seed", "5", "--out", out], timeout=90,
                   env={"COLLCOST_TEST_KILL_AFTER_POINTS": "4"})
    assert killed.returncode not in (0, 124), killed.stderr[-2000:]
    assert "exits now" in killed.stderr
    before = read_run(out).points
    assert len(before) == 4  # rank 1 died right after the 4th point was on disk
    # options given again must match the stored ones, and so must the layout
    kind, status, text, _ = setup_in_process(["--resume", out, "--sizes", "8"], n=3)
    assert (kind, status) == ("exit", 2) and "options differ" in text and "sizes" in text
    kind, status, text, _ = setup_in_process(["--resume", out], n=2)
    assert (kind, status) == ("exit", 2)
    assert "world size: the run has 3, this launch 2" in text
    assert len(read_run(out).points) == 4
    resumed = sweep(3, ["--resume", out, "--dtype", "float32"], timeout=90)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # planned: p=2: 3 collectives x 2 sizes; p=3: 2 x 2 (pingpong only at 2) = 10
    assert "6 point(s) to measure" in resumed.stderr
    run = read_run(out)
    keys = [point_key(r) for r in run.points.to_dict("records")]
    assert len(keys) == len(set(keys)) == 10
    # the first 4 rows are untouched and belong to the first launch
    assert run.points.iloc[:4]["timestamp_utc"].tolist() == before["timestamp_utc"].tolist()
    assert set(run.points.iloc[:4]["launch"]) == {run.run_id}
    assert set(run.points.iloc[4:]["launch"]) == {run.run_id + "+1"}
    assert [l["launch"] for l in run.metadata["launches"]] == [run.run_id,
                                                              run.run_id + "+1"]
    assert (out / "points.csv").exists()
    # nothing left to do: a second resume measures nothing and changes nothing
    again = sweep(3, ["--resume", out], timeout=60)
    assert again.returncode == 0 and "0 point(s) to measure" in again.stderr
    assert len(read_run(out).points) == 10


def test_exception_on_one_rank_aborts_the_job(tmp_path):
    proc = sweep(3, ["--collectives", "allreduce", "--sizes", "8,16", "--ranks", "3", "--out",
                     tmp_path / "run"] + TINY, timeout=60,
                 env={"COLLCOST_TEST_FAIL_AT_POINT": "2"})
    assert proc.returncode not in (0, 124), proc.stderr  # aborted, not hung
    assert "rank 2: RuntimeError: COLLCOST_TEST_FAIL_AT_POINT=2" in proc.stderr
    assert len(read_run(tmp_path / "run").points) == 1


def test_point_timeout_names_the_point(tmp_path):
    # 100000 repetitions of a 1 MiB all-reduce (stopping at the 5 s budget at the
    # earliest) cannot finish in 1 s
    proc = sweep(2, ["--collectives", "allreduce", "--sizes", "1M", "--time-budget", "5",
                     "--min-reps", "100000", "--max-reps", "100000", "--point-timeout",
                     "1", "--out", tmp_path / "run"], timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert ("collcost: point allreduce/native/intra/2/1048576B exceeded --point-timeout "
            "1s") in proc.stderr
    assert len(read_run(tmp_path / "run").points) == 0
