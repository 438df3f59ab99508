"""Fault injection: kill, stop and starve ranks at each phase of a sweep.

Each faulty launch must end (never hang) within its deadline, lose no point that was
on disk and write no point twice; a --resume afterwards completes the run.  One writer
per run directory: a second writer is refused naming the holder, a stale lock is
cleared.  Every launch runs under a timeout (tests/mpirun.py); the deadlines are
shortened with COLLCOST_TEST_PHASE_FLOOR so the suite stays quick.
"""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from collectives.results import point_key, read_run
from mpirun import ROOT, launch_command, mpirun

TINY = ["--time-budget", "0.005", "--min-reps", "2", "--max-reps", "20"]
#: 3 ranks, groups intra/2 (rank 2 idle) then intra/3; 2 sizes: 4 points
SWEEP = ["--collectives", "allreduce", "--sizes", "8,64", "--ranks", "2,3", "--seed", "3",
         "--point-timeout", "4"] + TINY
PLANNED = 4
FLOOR = 4  # seconds: every phase's deadline floor in these tests
#: the longest a faulty launch may take: setup + idle-rank wait (4 x (2 + 1) + 4) +
#: launcher cleanup, on a busy 2-core machine
LIMIT = 75


def sweep(args, *, env=None, timeout=LIMIT, n=3):
    e = {"COLLCOST_TEST_PHASE_FLOOR": str(FLOOR)}
    e.update(env or {})
    return mpirun(n, ["-m", "collectives.sweep"] + [str(a) for a in args], timeout=timeout,
                  env=e)


def popen(n, args, *, timeout=90, env=None):
    """Start an ``n``-rank sweep in the background (the library's launch flags, under
    ``timeout``, which passes SIGINT and SIGTERM on to the launcher)."""
    cmd, extra = launch_command(n, timeout)
    full = dict(os.environ, **extra, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.Popen(cmd + [sys.executable, "-m", "collectives.sweep"]
                            + [str(a) for a in args], env=full, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def keys(run):
    return [point_key(r) for r in run.points.to_dict("records")]


def check_complete(out, before):
    """--resume finishes the run: every planned point once, the earlier ones untouched."""
    resumed = sweep(["--resume", out], timeout=90)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = read_run(out)
    k = keys(run)
    assert len(k) == len(set(k)) == PLANNED
    if before is not None and len(before):
        head = run.points.iloc[:len(before)]
        assert head["timestamp_utc"].tolist() == before["timestamp_utc"].tolist()
    assert not (out / ".lock").exists()


FAULTS = [
    # (phase, rank, action): where the job is when the fault hits
    ("setup", 1, "stop"),
    ("harness", 2, "stop"),
    ("plan", 1, "kill"),
    ("split intra/2", 2, "stop"),
    ("before-point:2", 1, "stop"),
    ("point:1", 1, "kill"),
    ("before-point:3", 0, "stop"),
    ("wait after group intra/2", 2, "stop"),   # idle between groups (issue 13's hang)
    ("wait after group intra/2", 0, "kill"),
    ("final write", 1, "stop"),
]


@pytest.mark.parametrize("phase,rank,action", FAULTS,
                         ids=[f"{a}-rank{r}-{p.replace(' ', '_')}" for p, r, a in FAULTS])
def test_fault_ends_the_job_and_resume_completes(tmp_path, phase, rank, action):
    out = tmp_path / "run"
    t0 = time.monotonic()
    proc = sweep(SWEEP + ["--out", out],
                 env={"COLLCOST_TEST_FAULT": f"{phase}@{rank}={action}"})
    took = time.monotonic() - t0
    assert proc.returncode not in (0, 124), (proc.returncode, proc.stderr[-3000:])
    assert took < LIMIT, took
    assert f"COLLCOST_TEST_FAULT: {action} at {phase}" in proc.stderr
    if action == "stop":
        # a waiting rank saw the deadline pass, named the phase (or the point) and
        # ended the job with the deadline's status
        assert proc.returncode == 3, (proc.returncode, proc.stderr[-3000:])
        assert "exceeded" in proc.stderr and "(rank " in proc.stderr, proc.stderr[-3000:]
    if not (out / "metadata.json").exists():  # the fault came before the run existed
        assert not out.exists() or not any(out.iterdir())
        assert not [p for p in tmp_path.iterdir() if p.name != "run"]  # no temp dir
        return
    before = read_run(out).points
    k = keys(read_run(out))
    assert len(k) == len(set(k))
    check_complete(out, before)


def test_starved_rank_within_the_deadline_is_waited_for(tmp_path):
    """A rank that is slow (starved) but within the deadlines does not end the job."""
    out = tmp_path / "run"
    proc = sweep(SWEEP + ["--out", out],
                 env={"COLLCOST_TEST_FAULT": "point:1@1=sleep:1.5,"
                                             "wait after group intra/2@2=sleep:1.5"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(set(keys(read_run(out)))) == PLANNED


def test_starved_rank_past_the_deadline_ends_the_job(tmp_path):
    out = tmp_path / "run"
    t0 = time.monotonic()
    proc = sweep(SWEEP + ["--out", out],
                 env={"COLLCOST_TEST_FAULT": "split intra/3@2=sleep:60"})
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert time.monotonic() - t0 < 45
    assert "phase 'split intra/3' exceeded its deadline" in proc.stderr
    before = read_run(out).points
    assert len(before) == 2  # the intra/2 group's points are kept
    check_complete(out, before)


# ---------------------------------------------------------------------------------
# One writer per run directory
# ---------------------------------------------------------------------------------

def _make_run(tmp_path, kill_after=2):
    out = tmp_path / "run"
    proc = sweep(SWEEP + ["--out", out], env={"COLLCOST_TEST_KILL_AFTER_POINTS":
                                              str(kill_after)})
    assert proc.returncode not in (0, 124)
    assert len(read_run(out).points) == kill_after
    # the launcher killed rank 0 too: its lock may be left behind, naming a dead process
    if (out / ".lock").exists():
        assert json.loads((out / ".lock").read_text())["pid"] != os.getpid()
    return out


def _lock(out, **info):
    base = {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": None,
            "started_utc": "2026-01-01T00:00:00Z", "command": "test"}
    base.update(info)
    (out / ".lock").write_text(json.dumps(base))


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    out = _make_run(tmp_path)
    _lock(out)  # this test process is alive: the lock is held
    before = (out / "points.jsonl").read_bytes()
    proc = sweep(["--resume", out], timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in proc.stderr
    assert "--break-lock" in proc.stderr
    assert (out / "points.jsonl").read_bytes() == before
    assert (out / ".lock").exists()  # the holder's lock is left alone


def test_lock_of_another_host_needs_break_lock(tmp_path):
    out = _make_run(tmp_path)
    _lock(out, host="elsewhere.example", pid=1)
    proc = sweep(["--resume", out], timeout=60)
    assert proc.returncode == 2 and "on host elsewhere.example" in proc.stderr
    proc = sweep(["--resume", out, "--break-lock"], timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "removed the lock" in proc.stderr and "--break-lock" in proc.stderr
    assert len(set(keys(read_run(out)))) == PLANNED
    assert not (out / ".lock").exists()


def test_stale_lock_of_a_dead_process_is_removed(tmp_path):
    out = _make_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(out, pid=dead.pid)
    proc = sweep(["--resume", out], timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"pid {dead.pid} is not running" in proc.stderr
    assert len(set(keys(read_run(out)))) == PLANNED


def test_concurrent_resume_is_refused(tmp_path):
    """Issue 13: a second --resume while the first still writes used to measure too
    (27 rows for 18 points).  Now the second exits 2 and the run stays exact."""
    out = _make_run(tmp_path, kill_after=1)
    if (out / ".lock").exists():
        (out / ".lock").unlink()  # the killed launch's stale lock (tested above)
    first = popen(3, ["--resume", out, "--point-timeout", "60"],
                  env={"COLLCOST_TEST_FAULT": "before-point:2@1=sleep:15"})
    try:
        deadline = time.monotonic() + 60
        while not (out / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (out / ".lock").exists()
        second = sweep(["--resume", out], timeout=60)
        assert second.returncode == 2, second.stderr[-2000:]
        assert "the run is being written by pid" in second.stderr
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    k = keys(read_run(out))
    assert len(k) == len(set(k)) == PLANNED


def test_concurrent_new_runs_one_wins(tmp_path):
    """Two sweeps creating the same --out: the directory appears whole, once."""
    out = tmp_path / "run"
    args = ["--collectives", "allreduce", "--sizes", "8", "--out", out] + TINY
    procs = [popen(2, args) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], (codes, [e[-1500:] for _, e in results])
    run = read_run(out)
    assert len(run.points) == 1 and len(run.metadata["launches"]) == 1
    assert any("not empty" in e or "exists" in e for _, e in results)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_sweep_releases_its_lock_and_resumes(tmp_path, sig):
    """Ctrl-C or a batch system's SIGTERM: the job ends, the lock goes, --resume ends it."""
    import signal
    out = tmp_path / "run"
    proc = popen(3, SWEEP + ["--point-timeout", "60", "--out", out],
                 env={"COLLCOST_TEST_FAULT": "before-point:2@0=sleep:30"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                (out / "points.jsonl").exists() and (out / "points.jsonl").stat().st_size):
            time.sleep(0.2)
        time.sleep(0.5)  # rank 0 is in its sleep before point 2
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode not in (0, None), err[-2000:]
    assert "interrupted" in err, err[-2000:]
    if (out / ".lock").exists():  # another rank's abort may kill rank 0 first: stale
        from collectives.rundir import RunLock
        lock = RunLock(out)
        info, text = lock._read()
        deadline = time.monotonic() + 15  # rank 0 may still be exiting
        while not lock.stale_reason(info, text) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lock.stale_reason(info, text), text
    before = read_run(out).points
    assert len(before) == 1
    check_complete(out, before)


def test_stopped_rank_at_finalize_ends_the_job(tmp_path):
    """MPI_Finalize blocks holding the GIL (no watchdog thread runs): its deadline is
    faulthandler's, whose stack names the phase's function.  The run is complete."""
    out = tmp_path / "run"
    proc = sweep(SWEEP + ["--out", out], env={"COLLCOST_TEST_FAULT": "finalize@1=stop"})
    assert proc.returncode not in (0, 124), proc.stderr[-3000:]
    assert "Timeout" in proc.stderr and "in finalize_mpi" in proc.stderr, proc.stderr[-3000:]
    run = read_run(out)
    assert len(set(keys(run))) == len(run.points) == PLANNED
    assert (out / "points.csv").exists() and not (out / ".lock").exists()
