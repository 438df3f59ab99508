"""The compiled timing loop (collectives.cloop): build, cache, fallback, agreement.

Run as a script under ``python -m mpi4py`` this file is the MPI worker (scenarios assert
on every rank; rank 0 prints ``OK <scenario>``); the pytest side launches it at 1, 2 and
3 ranks through ``tests/mpirun.py`` (always under a timeout).  Every launch gets a cache
directory of its own (``COLLCOST_CACHE_DIR``), so the builds are real.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from collectives import cloop

HERE = Path(__file__).resolve()
#: tests that expect the C loop to be built need a C compiler on the machine
needs_cc = pytest.mark.skipif(
    shutil.which(os.environ.get("COLLCOST_CC") or os.environ.get("CC") or "cc") is None,
    reason="no C compiler (cc) on this machine: the C loop cannot be built")


# ------------------------------------------------------------------ pure checks

LIB = {"path": "/opt/mpi/lib/libmpi.so.12", "size": 1000, "mtime_ns": 1, "handle_size": 4,
       "version": "MPICH Version: 4.2.0"}
TOOLS = {"wrapper": "/opt/mpi/bin/mpicc", "cc": "cc", "cc_path": "/usr/bin/cc",
         "cc_version": "cc 12", "include": "/opt/mpi/include", "cc_variables": {}}


class TestKey:
    def test_same_inputs_same_key(self):
        assert cloop._key(dict(LIB), dict(TOOLS)) == cloop._key(dict(LIB), dict(TOOLS))

    @pytest.mark.parametrize("change", [
        {"path": "/other/lib/libmpi.so.12"}, {"version": "MPICH Version: 4.3.0"},
        {"mtime_ns": 2}, {"size": 1001}, {"handle_size": 8}])
    def test_library_change_changes_key(self, change):
        assert cloop._key(dict(LIB, **change), TOOLS) != cloop._key(LIB, TOOLS)

    @pytest.mark.parametrize("change", [
        {"cc_path": "/usr/bin/clang"}, {"cc_version": "cc 13"}, {"wrapper": None},
        {"cc_variables": {"CC": "clang"}}])
    def test_toolchain_change_changes_key(self, change):
        assert cloop._key(LIB, dict(TOOLS, **change)) != cloop._key(LIB, TOOLS)


class TestSettings:
    def test_cache_root(self, monkeypatch, tmp_path):
        monkeypatch.setenv("COLLCOST_CACHE_DIR", str(tmp_path / "c"))
        assert cloop.cache_root() == tmp_path / "c"
        monkeypatch.delenv("COLLCOST_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
        assert cloop.cache_root() == tmp_path / "x" / "collcost"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "h"))
        assert cloop.cache_root() == tmp_path / "h" / ".cache" / "collcost"

    def test_mode(self, monkeypatch):
        monkeypatch.delenv("COLLCOST_TIMING_LOOP", raising=False)
        assert cloop.mode() == "auto"
        monkeypatch.setenv("COLLCOST_TIMING_LOOP", "Python")
        assert cloop.mode() == "python"
        monkeypatch.setenv("COLLCOST_TIMING_LOOP", "fast")
        with pytest.raises(ValueError, match="COLLCOST_TIMING_LOOP='fast'"):
            cloop.mode()

    def test_native_op_checks(self):
        with pytest.raises(ValueError, match="kind must be one of"):
            cloop.NativeOp("alltoall")
        with pytest.raises(TypeError, match="send must be a C-contiguous numpy array"):
            cloop.NativeOp("bcast", send=np.zeros(8)[::2])
        op = cloop.NativeOp("allgatherv", counts=[1, 2], displs=[0, 1])
        assert op.counts.dtype == np.intc and op.displs.tolist() == [0, 1]


# ------------------------------------------------------------------ MPI worker

def _fill(a, values):
    a[...] = values


def scenario_results(comm, MPI):
    """Each native kind run by the C loop gives the right result (buffers really used),
    with the arguments operations.prepare builds (divisible and ragged blocks)."""
    from collectives.operations import prepare
    rank, p = comm.Get_rank(), comm.Get_size()
    for nbytes in (4, 4 * p, 4 * p + 4, 4 << 20):  # 4 B at p = 3: ranks with no element
        count = nbytes // 4
        # allreduce
        pt = prepare(comm, "allreduce", "native", nbytes, "float32", "sum")
        send, recv = pt.inputs[0], pt.outputs[0]
        _fill(send, np.arange(count) % 7 + rank)
        _fill(recv, 0)
        r = cloop.runner(comm, pt.native)
        t = r.barrier(3)
        assert t.shape == (3,) and (t > 0).all()
        assert np.array_equal(recv, (np.arange(count) % 7) * p + p * (p - 1) // 2)
        # bcast
        pt = prepare(comm, "bcast", "native", nbytes, "float32", "sum")
        buf = (pt.inputs or pt.outputs)[0]
        _fill(buf, np.arange(count) % 5 + 1 if rank == 0 else 0)
        cloop.runner(comm, pt.native).barrier(1)
        assert np.array_equal(buf, np.arange(count) % 5 + 1)
        # reduce_scatter (block when count % p == 0, else counts)
        pt = prepare(comm, "reduce_scatter", "native", nbytes, "float32", "sum")
        assert pt.native.kind == ("reduce_scatter_block" if count % p == 0
                                  else "reduce_scatter")
        send, recv = pt.inputs[0], pt.outputs[0]
        _fill(send, np.arange(count) % 3 + 1)
        _fill(recv, 0)
        cloop.runner(comm, pt.native).barrier(1)
        counts = [count // p + (1 if i < count % p else 0) for i in range(p)]
        start = sum(counts[:rank])
        assert np.array_equal(recv, (np.arange(start, start + counts[rank]) % 3 + 1) * p)
        # allgather (allgatherv when ragged)
        pt = prepare(comm, "allgather", "native", nbytes, "float32", "sum")
        send, recv = pt.inputs[0], pt.outputs[0]
        _fill(send, rank + 1)
        _fill(recv, 0)
        cloop.runner(comm, pt.native).barrier(1)
        assert np.array_equal(recv, np.repeat(np.arange(1, p + 1), counts))
    # ping-pong between ranks 0 and 1 of a 2-rank sub-communicator
    sub = comm.Split(0 if rank < 2 else MPI.UNDEFINED, rank)
    if sub != MPI.COMM_NULL and sub.Get_size() < 2:
        sub.Free()
    elif sub != MPI.COMM_NULL:
        for nbytes in (4, 4 << 20):
            pt = prepare(sub, "pingpong", "native", nbytes, "float32", "sum")
            send, recv = pt.inputs[0] if rank == 0 else None, None
            if rank == 0:
                _fill(send, np.arange(nbytes // 4) % 11)
            r = cloop.runner(sub, pt.native)
            t = r.barrier(2)
            assert (t > 0).all()
            if rank == 0:
                assert np.array_equal(pt.outputs[0], np.arange(nbytes // 4) % 11)
        sub.Free()


def scenario_time_call(comm, MPI):
    """time_call picks the C loop for native points (both start modes), the Python loop
    otherwise; results are identical on every rank and the overhead floor is finite."""
    from collectives.harness import TimingOptions, harness_overhead, time_call
    from collectives.operations import prepare
    pt = prepare(comm, "allreduce", "native", 1024, "float32", "sum")
    for sync in ("barrier", "window"):
        opts = TimingOptions(sync=sync, min_reps=12, max_reps=40, time_budget=0.05,
                             late_tolerance=0.01)
        t = time_call(comm, pt.call, opts, native=pt.native)
        assert t.timing_loop == "c" and t.summary()["timing_loop"] == "c"
        assert t.max_s.size > 0 and (t.max_s > 0).all()
        digest = (t.max_s.tobytes(), t.timing_loop)
        assert all(d == digest for d in comm.allgather(digest))
        tp = time_call(comm, pt.call, opts)
        assert tp.timing_loop == "python"
    # a 'before' hook (device synchronization) keeps the Python loop
    t = time_call(comm, pt.call, TimingOptions(min_reps=5, max_reps=5, time_budget=0.05),
                  before=lambda: None, native=pt.native)
    assert t.timing_loop == "python"
    # hand-written algorithms have no native description
    if comm.Get_size() > 1:
        assert prepare(comm, "allreduce", "ring", 1024, "float32", "sum").native is None
    assert prepare(comm, "reduce_local", "native", 1024, "float32", "sum").native is None
    o = harness_overhead(comm, TimingOptions(time_budget=0.05), loop="c")
    assert 0 < o < 2e-3, o
    with pytest.raises(TypeError, match="native must be None"):
        time_call(comm, pt.call, TimingOptions(), native="allreduce")


def scenario_agree(comm, MPI):
    """At 4 MiB (binding cost negligible) the C and Python loops agree: their 95% CIs
    of the median overlap, or the medians are within 15% (round-to-round medians of
    either loop varied by +-20% on the shared 2-core machine; a loop that timed the wrong
    operation or part of it would differ by far more).  Points alternate C / Python
    seven times and each loop is represented by its least disturbed round (lowest
    median): on a shared machine a whole round can be slowed by other jobs.  The
    medians are printed (run pytest with -s to see them)."""
    from collectives import stats
    from collectives.harness import TimingOptions, time_call
    from collectives.operations import prepare
    p = comm.Get_size()
    # (a 1-rank bcast moves nothing: all binding cost, nothing to agree on)
    for coll in ("allreduce",) + (("bcast",) if p > 1 else ()) + (("pingpong",) if p == 2
                                                                   else ()):
        pt = prepare(comm, coll, "native", 4 << 20, "float32", "sum")
        opts = TimingOptions(min_reps=20, max_reps=20, warmup=3, time_budget=5)
        rounds = {"c": [], "python": []}
        for _ in range(7):
            for loop in ("c", "python"):
                t = time_call(comm, pt.call, opts, native=pt.native if loop == "c" else None)
                assert t.timing_loop == loop
                rounds[loop].append(stats.summarize(t.max_s))
        c, py = (min(rounds[k], key=lambda r: r["median_s"]) for k in ("c", "python"))
        overlap = c["ci_low_s"] <= py["ci_high_s"] and py["ci_low_s"] <= c["ci_high_s"]
        close = abs(c["median_s"] / py["median_s"] - 1) <= 0.15
        if comm.Get_rank() == 0:
            print(f"agree {coll} p={p}: C {c['median_s'] * 1e6:.1f} µs "
                  f"[{c['ci_low_s'] * 1e6:.1f}, {c['ci_high_s'] * 1e6:.1f}], Python "
                  f"{py['median_s'] * 1e6:.1f} µs [{py['ci_low_s'] * 1e6:.1f}, "
                  f"{py['ci_high_s'] * 1e6:.1f}]", flush=True)
        assert overlap or close, (
            f"{coll}: C {c['median_s']:.3e} s [{c['ci_low_s']:.3e}, {c['ci_high_s']:.3e}], "
            f"Python {py['median_s']:.3e} s [{py['ci_low_s']:.3e}, {py['ci_high_s']:.3e}]; "
            "round medians: C " + " ".join(f"{r['median_s']:.3e}" for r in rounds["c"])
            + ", Python " + " ".join(f"{r['median_s']:.3e}" for r in rounds["python"]))


def scenario_record(comm, MPI):
    """Every rank loaded the same cached build; rank 0 prints the record as JSON."""
    cloop.load()
    rec = cloop.describe()
    paths = comm.allgather(rec["path"])
    assert len(set(paths)) == 1 and rec["loop"] == "c", paths
    if comm.Get_rank() == 0:
        print("RECORD " + json.dumps(rec), flush=True)


def scenario_unavailable(comm, MPI):
    """No usable compiler (or the loop disabled): time_call falls back to Python."""
    from collectives.harness import TimingOptions, time_call
    from collectives.operations import prepare
    with pytest.raises(cloop.LoopUnavailable):
        cloop.load()
    rec = cloop.describe()
    assert rec["loop"] == "python" and rec["reason"]
    pt = prepare(comm, "allreduce", "native", 64, "float32", "sum")
    t = time_call(comm, pt.call, TimingOptions(min_reps=5, max_reps=5, time_budget=0.05),
                  native=pt.native)
    assert t.timing_loop == "python"
    if comm.Get_rank() == 0:
        print("RECORD " + json.dumps(rec), flush=True)


SCENARIOS = {f.__name__[len("scenario_"):]: f for f in (
    scenario_results, scenario_time_call, scenario_agree, scenario_record,
    scenario_unavailable)}


def main(names):
    from collectives.mpi import MPI
    comm = MPI.COMM_WORLD
    for name in names:
        SCENARIOS[name](comm, MPI)
        comm.Barrier()
        if comm.Get_rank() == 0:
            print(f"OK {name}", flush=True)


# ------------------------------------------------------------------ pytest side

def _launch(n, names, tmp_path, env=None, timeout=240):
    from tests.mpirun import mpirun
    full = {"COLLCOST_CACHE_DIR": str(tmp_path / "cache")}
    full.update(env or {})
    proc = mpirun(n, ["-m", "mpi4py", str(HERE)] + names, timeout=timeout, env=full)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    for name in names:
        assert f"OK {name}" in proc.stdout, proc.stdout
    return proc


def _record(proc) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RECORD ")]
    assert lines, proc.stdout
    return json.loads(lines[-1][len("RECORD "):])


@needs_cc
@pytest.mark.parametrize("n", [1, 2, 3])
def test_loop_under_mpi(n, tmp_path):
    proc = _launch(n, ["record", "results", "time_call"], tmp_path)
    rec = _record(proc)
    assert rec["path"].startswith(str(tmp_path / "cache"))
    assert rec["cached"] in (True, False) and rec["compiler"] and rec["library"]["path"]
    # ranks of one node built once: one build directory, no temporary leftovers
    builds = [d.name for d in (tmp_path / "cache" / "timing-loop").iterdir() if d.is_dir()]
    assert len(builds) == 1 and not builds[0].startswith(".build-"), builds


@needs_cc
@pytest.mark.parametrize("n", [1, 2, 3])
def test_c_and_python_loops_agree_at_4mib(n, tmp_path):
    # timings with more busy ranks than cores are for correctness only (README): 3 ranks
    # on 2 cores failed this under Open MPI in CI; 3-rank results are checked elsewhere
    if n > (os.cpu_count() or 1):
        pytest.skip(f"{n} ranks on {os.cpu_count()} cores: timings would be "
                    "oversubscribed, so their agreement means nothing")
    proc = _launch(n, ["agree"], tmp_path, timeout=300)
    print("".join(ln + "\n" for ln in proc.stdout.splitlines() if ln.startswith("agree")))


@needs_cc
def test_cache_reused_and_rebuilt_when_the_library_changes(tmp_path):
    first = _record(_launch(1, ["record"], tmp_path))
    again = _record(_launch(1, ["record"], tmp_path))
    assert first["cached"] is False and again["cached"] is True
    assert again["path"] == first["path"]
    # the same library file seen with another version (an upgrade in place): new key
    info = json.loads((Path(first["path"]).parent / "build.json").read_text())
    lib = dict(info["library"], version=info["library"]["version"] + " (upgraded)")
    rec = cloop.build(lib, root=tmp_path / "cache")
    assert rec["ok"] and rec["cached"] is False and rec["path"] != first["path"]
    assert cloop.build(lib, root=tmp_path / "cache")["cached"] is True
    # a damaged cache entry (shared object gone) is rebuilt, not trusted
    Path(rec["path"]).unlink()
    again = cloop.build(lib, root=tmp_path / "cache")
    assert again["cached"] is False and Path(again["path"]).is_file()
    # ... and at another path (another installation): new key again
    moved = dict(info["library"], path=str(tmp_path / "copy" / "libmpi.so.12"))
    assert cloop._key(moved, info["tools"]) != cloop._key(info["library"], info["tools"])


@pytest.mark.parametrize("env, reason", [
    ({"COLLCOST_CC": "/nonexistent/cc"}, "/nonexistent/cc"),
    ({"CC": "/nonexistent/cc"}, "/nonexistent/cc"),
    ({"COLLCOST_TIMING_LOOP": "python"}, "COLLCOST_TIMING_LOOP=python")])
def test_no_compiler_falls_back_to_python(env, reason, tmp_path):
    rec = _record(_launch(2, ["unavailable"], tmp_path, env=env))
    assert reason in rec["reason"], rec


def _sweep(tmp_path, env, extra=()):
    from tests.mpirun import mpirun
    out = tmp_path / "run"
    full = {"COLLCOST_CACHE_DIR": str(tmp_path / "cache")}
    full.update(env)
    proc = mpirun(2, ["-m", "mpi4py", "-m", "collectives.sweep", "--quick", "--sizes",
                      "8,4M", "--collectives", "allreduce,pingpong", "--out", str(out),
                      *extra], timeout=240, env=full)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    meta = json.loads((out / "metadata.json").read_text())
    rows = [json.loads(ln) for ln in (out / "points.jsonl").read_text().splitlines()]
    return meta, rows


@needs_cc
def test_sweep_records_the_loop(tmp_path):
    meta, rows = _sweep(tmp_path, {}, ["--algorithms", "native,ring"])
    assert meta["timing_loop"]["loop"] == "c" and meta["timing_loop"]["path"]
    assert meta["timing_loop"]["overhead_s"]
    loops = {(r["collective"], r["algorithm"]): r["timing_loop"] for r in rows}
    assert loops[("allreduce", "native")] == "c" and loops[("pingpong", "native")] == "c"
    assert loops[("allreduce", "ring")] == "python"
    assert all(r["correct"] for r in rows)


def test_sweep_without_compiler(tmp_path):
    meta, rows = _sweep(tmp_path, {"COLLCOST_CC": "/nonexistent/cc"})
    assert meta["timing_loop"]["loop"] == "python"
    assert "/nonexistent/cc" in meta["timing_loop"]["reason"]
    assert rows and all(r["timing_loop"] == "python" for r in rows)
    assert all(r["correct"] for r in rows)


def test_sweep_rejects_a_bad_loop_setting(tmp_path):
    from tests.mpirun import mpirun
    out = tmp_path / "run"
    proc = mpirun(2, ["-m", "mpi4py", "-m", "collectives.sweep", "--quick", "--out",
                      str(out)], timeout=120, env={"COLLCOST_TIMING_LOOP": "fast"})
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "COLLCOST_TIMING_LOOP='fast': expected one of auto, c, python" in proc.stderr
    assert not out.exists()


if __name__ == "__main__":
    main(sys.argv[1:])
