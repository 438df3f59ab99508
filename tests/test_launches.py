"""Repeated launches of one sweep under the MPI library in use (.ci/run runs this under
MPICH, Open MPI and Intel MPI): launched from different directories, with a launcher
that puts random ids and working directories in every rank's environment, they merge
and fit together; a pinned native algorithm shows in the points and refuses a merge
with an unpinned launch."""
import json
import subprocess
import sys

import pytest

from collectives import native
from collectives.results import merge_runs, read_run
from mpirun import ROOT, library, mpirun

TINY = ["--collectives", "allreduce,pingpong", "--sizes", "8,64K,1M", "--time-budget",
        "0.01", "--min-reps", "3", "--max-reps", "30"]


def sweep(n, args, cwd, env=None, timeout=120):
    return mpirun(n, ["-m", "collectives.sweep"] + [str(a) for a in args],
                  timeout=timeout, cwd=cwd, env=env)


def test_repeated_launches_merge_and_fit(tmp_path):
    runs = []
    for name in ("a", "b"):
        where = tmp_path / f"cwd-{name}"  # Open MPI records it (OMPI_MCA_initial_wdir)
        where.mkdir()
        proc = sweep(2, TINY + ["--out", tmp_path / name], cwd=where)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(tmp_path / name)
    metas = [read_run(r).metadata for r in runs]
    assert metas[0]["mpi"]["library"] == library().name
    assert metas[0]["env"] == metas[1]["env"]
    # the launcher's bookkeeping is recorded, apart from env, and differs per launch
    assert metas[0]["launcher_env"] and metas[0]["launcher_env"] != metas[1]["launcher_env"] \
        or library().key == "mpich"  # Hydra's PMI_* values can repeat between launches
    merge = subprocess.run([sys.executable, "-m", "collectives.merge", *map(str, runs),
                            "--out", str(tmp_path / "merged")], capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert merge.returncode == 0, merge.stderr
    merged = read_run(tmp_path / "merged")
    assert len(merged.launches) == 2 and len(merged.points) == sum(
        len(read_run(r).points) for r in runs)
    fit = subprocess.run([sys.executable, "-m", "fits", *map(str, runs), "--out",
                          str(tmp_path / "constants.json")], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    doc = json.loads((tmp_path / "constants.json").read_text())
    fitted = doc["provenance"]["runs"]
    assert [r["run_id"] for r in fitted] == [m["run_id"] for m in metas]


def test_pinned_native_algorithm_is_recorded_and_not_merged_with_unpinned(tmp_path):
    fam = library().family
    alg = next(iter(native.PINS[fam]["allreduce"]))  # the first this library offers
    pinned, plain = tmp_path / "pinned", tmp_path / "plain"
    args = ["--collectives", "allreduce", "--algorithms", f"native,{alg}", "--sizes",
            "8,1M", "--time-budget", "0.01", "--min-reps", "3", "--max-reps", "30"]
    proc = sweep(2, args + ["--native-algorithm", f"allreduce={alg}", "--out", pinned],
                 cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = read_run(pinned)
    pts = run.points
    assert set(pts.loc[pts["algorithm"] == "native", "native_algorithm"]) == {alg}
    assert pts.loc[pts["algorithm"] == alg, "native_algorithm"].isna().all()
    assert pts["correct"].all()
    assert run.metadata["native_algorithms"] == {"allreduce": alg}
    for k, v in native.variables(fam, {"allreduce": alg}).items():
        assert run.metadata["env"][k] == v
        assert run.metadata["algorithm_variables"][k] == v
    # a resume must pin the same way: without the option the tuning differs
    proc = sweep(2, ["--resume", pinned], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "tuning variables differ" in proc.stderr and "unset in this launch" in proc.stderr
    proc = sweep(2, ["--resume", pinned, "--native-algorithm", f"allreduce={alg}"],
                 cwd=tmp_path)
    assert proc.returncode == 0 and "0 point(s) to measure" in proc.stderr, proc.stderr
    proc = sweep(2, args + ["--out", plain], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_run(plain).metadata["native_algorithms"] == {}
    assert read_run(plain).points["native_algorithm"].isna().all()
    with pytest.raises(ValueError, match="tuning variables differ"):
        merge_runs([pinned, plain], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_pin_the_library_lacks_is_a_usage_error(tmp_path):
    offered = native.PINS[library().family]["reduce_scatter"]
    missing = [a for a in ("ring", "pairwise", "recursive_halving") if a not in offered]
    request = f"reduce_scatter={missing[0]}" if missing else "reduce_scatter=bogus"
    proc = sweep(2, ["--collectives", "reduce_scatter", "--sizes", "8",
                     "--native-algorithm", request, "--out", tmp_path / "run"],
                 cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("usage:") == 1
    assert f"--native-algorithm {request!r}" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_point_timeout_exits_3_while_another_rank_waits_elsewhere(tmp_path):
    """Ranks 0-1 hang in a point, rank 2 (outside the 2-rank sub-communicator) waits
    for them.  Ranks that merely exited 3 let Intel MPI's Hydra SIGKILL rank 2 and
    report 255; the watchdog's MPI_Abort(3) gives 3 under every library."""
    proc = sweep(3, ["--collectives", "allreduce", "--ranks", "2", "--sizes", "1M",
                     "--time-budget", "5", "--min-reps", "100000", "--max-reps", "100000",
                     "--point-timeout", "1", "--out", tmp_path / "run"],
                 cwd=tmp_path, timeout=90)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-3000:])
    assert "allreduce/native/intra/2/1048576B exceeded --point-timeout 1s" in proc.stderr
    assert len(read_run(tmp_path / "run").points) == 0


def test_an_exception_on_one_rank_aborts_with_status_1(tmp_path):
    """Same under every library: the failing rank's message, MPI_Abort(1) (the
    launcher's own report, tests/mpirun.py), status 1, the points done kept."""
    from collectives.faults import FAIL_ENV
    proc = sweep(3, ["--collectives", "allreduce", "--sizes", "8,16", "--ranks", "3",
                     "--time-budget", "0.005", "--min-reps", "2", "--max-reps", "20",
                     "--out", tmp_path / "run"], cwd=tmp_path, timeout=60,
                 env={FAIL_ENV: "2"})
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert f"rank 2: RuntimeError: {FAIL_ENV}=2" in proc.stderr
    assert any(text in proc.stderr for text in library().abort_report), proc.stderr[-3000:]
    assert len(read_run(tmp_path / "run").points) == 1
