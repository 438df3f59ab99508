"""GPU buffers: CUDA-awareness detection, refusal, device choice, staging, sync counts.

No GPU and no CuPy here: the device path runs on the fake array of ``tests/fakecuda.py``
(``__cuda_array_interface__`` over host memory, counted stream synchronizations), which
the MPI programs below install as ``cupy``.  The real-GPU path is exercised only by
``jobs/gpu-check`` on a GPU node.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fakecuda
from collectives import gpu
from mpirun import library, mpirun

MPICH = "MPICH Version:      5.0.2\nMPICH Device:       ch4:ucx ofi"
OPENMPI = "Open MPI v5.0.3, package: Open MPI root@host Distribution, ident: 5.0.3"
CRAY = "MPI VERSION    : CRAY MPICH version 8.1.28.2 (ANL base 3.4a2)"
MVAPICH = "MVAPICH2 Version      :\t2.3.7\nMVAPICH2 Release date :\tWed March 02 22:00:00 EST 2022"
INTEL = "Intel(R) MPI Library 2021.10 for Linux* OS"


class TestParseOverride:
    def test_cli_wins_over_env(self):
        assert gpu.parse_override("yes", {"COLLCOST_CUDA_AWARE": "no"}) is True
        assert gpu.parse_override("no", {"COLLCOST_CUDA_AWARE": "yes"}) is False

    @pytest.mark.parametrize("raw, expected", [("yes", True), ("1", True), ("TRUE", True),
                                               ("no", False), ("0", False), ("off", False),
                                               ("auto", None), ("", None)])
    def test_env(self, raw, expected):
        assert gpu.parse_override("auto", {"COLLCOST_CUDA_AWARE": raw}) is expected

    def test_auto_without_env(self):
        assert gpu.parse_override("auto", {}) is None
        assert gpu.parse_override(None, {}) is None

    def test_bad_values_are_named(self):
        with pytest.raises(ValueError, match="COLLCOST_CUDA_AWARE"):
            gpu.parse_override("auto", {"COLLCOST_CUDA_AWARE": "maybe"})
        with pytest.raises(ValueError, match="--cuda-aware"):
            gpu.parse_override("perhaps", {})


class TestLibraryFamily:
    @pytest.mark.parametrize("text, family", [(MPICH, "mpich"), (OPENMPI, "openmpi"),
                                              (CRAY, "cray-mpich"), (MVAPICH, "mvapich"),
                                              (INTEL, "intel"), ("", "unknown"),
                                              ("Spectrum", "unknown")])
    def test_family(self, text, family):
        assert gpu.library_family(text) == family

    def test_this_library(self):
        from collectives.mpi import MPI
        from mpirun import library
        assert gpu.library_family(MPI.Get_library_version()) == library().family


class TestDecide:
    def test_override_beats_everything(self):
        v = gpu.decide(override=True, library_version=MPICH,
                       variables={"MPIR_CVAR_ENABLE_GPU": "0"}, query=0)
        assert v.aware and v.source == "override"
        v = gpu.decide(override=False, query=1)
        assert not v.aware and v.source == "override"

    def test_query_decides(self):
        v = gpu.decide(library_version=MPICH, query=1, query_library="/x/libmpi.so.12")
        assert v.aware and v.source == "MPIX_Query_cuda_support"
        assert "returned 1" in v.reason and "/x/libmpi.so.12" in v.reason
        v = gpu.decide(library_version=MPICH, query=0, alloc_kinds="mpi,system,cuda:device")
        assert not v.aware and v.source == "MPIX_Query_cuda_support"

    def test_mpich_variable_switches_gpu_off(self):
        v = gpu.decide(library_version=MPICH, variables={"MPIR_CVAR_ENABLE_GPU": "0"},
                       query=1)
        assert not v.aware and v.source == "variable"
        assert "MPIR_CVAR_ENABLE_GPU=0" in v.reason
        # unset or 1: MPICH's default is on, so the query decides
        assert gpu.decide(library_version=MPICH, variables={"MPIR_CVAR_ENABLE_GPU": None},
                          query=1).aware
        assert gpu.decide(library_version=MPICH, variables={"MPIR_CVAR_ENABLE_GPU": "1"},
                          query=1).aware

    @pytest.mark.parametrize("text, name", [(CRAY, "MPICH_GPU_SUPPORT_ENABLED"),
                                            (MVAPICH, "MV2_USE_CUDA"),
                                            (INTEL, "I_MPI_OFFLOAD")])
    def test_libraries_whose_gpu_support_is_off_by_default(self, text, name):
        v = gpu.decide(library_version=text, variables={name: None}, query=1)
        assert not v.aware and v.source == "variable"
        assert f"{name} is not set" in v.reason
        v = gpu.decide(library_version=text, variables={name: "1"}, query=1)
        assert v.aware and v.source == "MPIX_Query_cuda_support"

    def test_openmpi_variable_and_ompi_info(self):
        v = gpu.decide(library_version=OPENMPI,
                       variables={"OMPI_MCA_opal_cuda_support": "false"}, query=1)
        assert not v.aware and "OMPI_MCA_opal_cuda_support=false" in v.reason
        v = gpu.decide(library_version=OPENMPI, ompi_info=True)
        assert v.aware and v.source == "ompi_info"
        v = gpu.decide(library_version=OPENMPI, ompi_info=False)
        assert not v.aware and v.source == "ompi_info"

    def test_memory_alloc_kinds(self):
        v = gpu.decide(library_version=MPICH, alloc_kinds="mpi,system,cuda:device")
        assert v.aware and v.source == "mpi_memory_alloc_kinds"
        v = gpu.decide(library_version=MPICH, alloc_kinds="mpi, CUDA")
        assert v.aware
        v = gpu.decide(library_version=MPICH, alloc_kinds="mpi,system")
        assert not v.aware and "no CUDA" in v.reason

    def test_nothing_known_is_not_confirmed(self):
        v = gpu.decide(library_version="SomeMPI 1.0")
        assert not v.aware and v.source == "none" and "could not confirm" in v.reason

    def test_record_is_json(self):
        v = gpu.decide(library_version=MPICH, query=0)
        again = json.loads(json.dumps(v.to_dict()))
        assert again["aware"] is False and again["evidence"]["query"] == 0


MAPS = """\
7f0000000000-7f0000001000 r-xp 00000000 08:01 1 /usr/lib/libc.so.6
7f0000002000-7f0000003000 r-xp 00000000 08:01 2 /opt/venv/lib/libmpi.so.12
7f0000003000-7f0000004000 r--p 00001000 08:01 2 /opt/venv/lib/libmpi.so.12
7f0000004000-7f0000005000 r-xp 00000000 08:01 3 /opt/cray/lib/libmpi_gnu_123.so.12
7f0000005000-7f0000006000 r-xp 00000000 08:01 4 /opt/mpi4py/MPI.cpython-311.so
7f0000006000-7f0000007000 r-xp 00000000 08:01 5 /opt/ompi/lib/libmpi.so.40.30.0
7f0000007000-7f0000008000 rw-p 00000000 00:00 0 [heap]
7f0000008000-7f0000009000 rw-s 00000000 00:05 6 /dev/shm/mpich_shm_1_0
7f0000009000-7f000000a000 r-xp 00000000 08:01 7 /usr/lib/libmpich.so.12
"""


class TestProbes:
    def test_loaded_libraries_from_maps(self):
        assert gpu.loaded_mpi_libraries(MAPS) == [
            "/opt/venv/lib/libmpi.so.12", "/opt/cray/lib/libmpi_gnu_123.so.12",
            "/opt/ompi/lib/libmpi.so.40.30.0", "/usr/lib/libmpich.so.12"]

    def test_loaded_libraries_of_this_process(self):
        from collectives.mpi import MPI  # noqa: F401 -- loads libmpi
        libs = gpu.loaded_mpi_libraries()
        assert libs and all("libmpi" in lib or "libmpich" in lib for lib in libs)

    def test_query_uses_the_first_library_exporting_the_symbol(self):
        calls = []

        class Lib:
            def __init__(self, result):
                def query():
                    calls.append(result)
                    return result
                self.MPIX_Query_cuda_support = query

        handles = {"/a/libmpi.so": object(), "/b/libmpi.so": Lib(1)}
        result = gpu.query_cuda_support(["/a/libmpi.so", "/b/libmpi.so"],
                                        opener=handles.get)
        assert result == (1, "/b/libmpi.so") and calls == [1]

    def test_query_not_exported(self):
        result = gpu.query_cuda_support(["/nowhere/libmpi.so"], opener=lambda p: None)
        assert result == (None, None)

    def test_query_on_this_library(self):
        # Both PyPI wheels export MPIX_Query_cuda_support and are not CUDA-aware.
        from collectives.mpi import MPI  # noqa: F401
        value, where = gpu.query_cuda_support()
        assert value == 0 and "libmpi" in where

    def test_opener_never_loads_a_new_library(self, tmp_path):
        # RTLD_NOLOAD: a library that is not already mapped is not opened.
        assert gpu._open_loaded(str(tmp_path / "libmpi_absent.so")) is None

    @pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
    def test_query_through_ctypes_on_a_real_shared_library(self, tmp_path):
        # In a child process: once loaded, the fake libmpi stays mapped and would answer
        # every later probe of this test session.
        src = tmp_path / "fake.c"
        src.write_text("int MPIX_Query_cuda_support(void) { return 1; }\n")
        lib = tmp_path / "libmpi_fake.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
        code = f"""
import ctypes
from collectives import gpu
lib = {str(lib)!r}
assert gpu._open_loaded(lib) is None          # not loaded yet: not opened
keep = ctypes.CDLL(lib)                       # now it is mapped
assert lib in gpu.loaded_mpi_libraries()
assert gpu.query_cuda_support([lib]) == (1, lib), gpu.query_cuda_support([lib])
print("ok")
"""
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=env)
        assert done.returncode == 0 and "ok" in done.stdout, done.stderr

    def test_memory_alloc_kinds_of_this_library(self):
        kinds = gpu.memory_alloc_kinds()
        assert kinds is None or "cuda" not in kinds.lower()

    def test_ompi_info_parsing(self):
        text = ("mca:mpi:base:param:mpi_built_with_cuda_support:value:true\n"
                "mca:mpi:base:param:mpi_built_with_cuda_support:enumerator:value:0:false\n")
        assert gpu.ompi_built_with_cuda(text) is True
        assert gpu.ompi_built_with_cuda(text.replace("value:true", "value:false")) is False
        assert gpu.ompi_built_with_cuda("nothing here") is None

    def test_library_variables(self):
        env = {"MPIR_CVAR_ENABLE_GPU": "0", "OTHER": "1"}
        assert gpu.library_variables("mpich", env) == {"MPIR_CVAR_ENABLE_GPU": "0"}
        assert gpu.library_variables("unknown", env) == {}


class TestVerdictHere:
    """The whole probe chain on this machine's MPI (a PyPI wheel: not CUDA-aware)."""

    def test_auto_is_negative(self):
        v = gpu.cuda_awareness("auto", env={})
        assert not v.aware and v.source in ("MPIX_Query_cuda_support", "variable")

    def test_overrides(self):
        assert gpu.cuda_awareness("yes", env={}).aware
        assert gpu.cuda_awareness("auto", env={"COLLCOST_CUDA_AWARE": "yes"}).aware
        assert not gpu.cuda_awareness("no", env={"COLLCOST_CUDA_AWARE": "yes"}).aware

    def test_bad_env_without_comm(self):
        with pytest.raises(gpu.GpuSetupError, match="COLLCOST_CUDA_AWARE"):
            gpu.cuda_awareness("auto", env={"COLLCOST_CUDA_AWARE": "perhaps"})


class TestArgumentsAndDescribe:
    def test_add_arguments(self):
        import argparse
        parser = argparse.ArgumentParser()
        gpu.add_arguments(parser)
        ns = parser.parse_args([])
        assert (ns.buffer, ns.cuda_aware) == ("numpy", "auto")
        ns = parser.parse_args(["--buffer", "cupy-staged", "--cuda-aware", "no"])
        assert (ns.buffer, ns.cuda_aware) == ("cupy-staged", "no")
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["--buffer", "torch"])
        assert exc.value.code == 2

    def test_describe_host_imports_nothing(self):
        record = gpu.describe("numpy")
        assert record["gpu_used"] is False and "no GPU" in record["reason"]
        assert "cupy" not in sys.modules

    def test_describe_rejects_unknown_buffer(self):
        with pytest.raises(ValueError, match="buffer"):
            gpu.describe("torch")

    def test_import_cupy_missing_is_clear(self):
        import importlib.util
        if importlib.util.find_spec("cupy") is not None:
            pytest.skip("cupy is installed here, so the missing-cupy message cannot show")
        with pytest.raises(gpu.GpuSetupError, match="needs CuPy"):
            gpu.import_cupy()

    def test_check_device_memory_arguments(self):
        with pytest.raises(ValueError, match="nbytes_needed"):
            gpu.check_device_memory(-1, xp=object())
        with pytest.raises(ValueError, match="ranks_per_device"):
            gpu.check_device_memory(1, ranks_per_device=0, xp=object())


# ----------------------------------------------------------------------------------
# In-process tests on the fake device arrays (tests/fakecuda.py)
# ----------------------------------------------------------------------------------

@pytest.fixture
def fake_cupy(monkeypatch):
    """fakecuda installed as ``cupy`` for the duration of a test."""
    monkeypatch.setitem(sys.modules, "cupy", fakecuda)
    monkeypatch.setattr(fakecuda.STREAM, "queue", [])
    monkeypatch.setattr(fakecuda, "EXPOSURES", [])
    return fakecuda


def _syncs():
    return fakecuda.STREAM.synchronizations


class TestDeviceRecord:
    def test_select_device_by_node_local_rank(self, fake_cupy, monkeypatch):
        from collectives.mpi import MPI
        monkeypatch.setenv("FAKECUDA_DEVICES", "2")
        chosen = gpu.select_device(MPI.COMM_WORLD, fake_cupy)
        assert chosen == {"device": 0, "device_count": 2, "local_rank": 0,
                          "local_size": 1, "ranks_per_device": 1}

    def test_select_device_without_gpu(self, fake_cupy, monkeypatch):
        from collectives.mpi import MPI
        monkeypatch.setenv("FAKECUDA_DEVICES", "0")
        with pytest.raises(gpu.GpuSetupError, match="no GPU visible"):
            gpu.select_device(MPI.COMM_WORLD, fake_cupy)

    def test_check_device_memory(self, fake_cupy, monkeypatch):
        monkeypatch.setenv("FAKECUDA_FREE_BYTES", str(100 << 20))
        info = gpu.check_device_memory(60 << 20, xp=fake_cupy)
        assert info["free_bytes"] == 100 << 20 and info["needed_bytes"] == 60 << 20
        with pytest.raises(gpu.GpuSetupError, match=r"120\.0 MiB.*2 ranks share.*100\.0 MiB"):
            gpu.check_device_memory(60 << 20, ranks_per_device=2, xp=fake_cupy)

    def test_describe_device(self, fake_cupy):
        verdict = gpu.decide(override=False)
        record = gpu.describe("cupy-staged", verdict, {"device": 0}, fake_cupy)
        assert record["model"] == "FakeGPU" and record["compute_capability"] == "9.0"
        assert record["driver_version"] == "12.4" and record["runtime_version"] == "12.2"
        assert record["cupy_version"] == fake_cupy.__version__
        assert record["staged"] and record["gpu_used"]
        assert record["cuda_aware"]["aware"] is False
        json.dumps(record)


class TestStaging:
    def test_data_round_trip_and_synchronization(self, fake_cupy):
        send = fake_cupy.asarray(np.arange(5, dtype="f8"))
        recv = fake_cupy.zeros(5, "f8")
        fake_cupy.copyto(send, fake_cupy.asarray(np.arange(5, dtype="f8") * 10))  # queued
        seen = []

        def host_op(s, r):
            seen.append((type(s), type(r), fake_cupy.pending()))
            r[...] = s + 1

        call, hosts = gpu.staged(host_op, send, recv, inputs=[0], outputs=[1])
        before = _syncs()
        call()
        assert seen == [(np.ndarray, np.ndarray, 0)]  # host arrays, device work done
        assert fake_cupy.pending() == 0                # the copy back has landed
        assert _syncs() - before >= 2
        np.testing.assert_array_equal(recv.get(), np.arange(5) * 10 + 1)
        assert fake_cupy.EXPOSURES == []

    def test_in_place_keeps_one_mirror(self, fake_cupy):
        buf = fake_cupy.asarray(np.ones(4, dtype="i4"))

        def double(a, b):
            assert a is b
            b *= 2

        call, hosts = gpu.staged(double, buf, buf)
        call()
        np.testing.assert_array_equal(buf.get(), [2, 2, 2, 2])

    def test_host_arguments_pass_through(self, fake_cupy):
        from collectives.mpi import MPI
        buf = fake_cupy.asarray(np.ones(3, dtype="f4"))
        got = []
        call, hosts = gpu.staged(lambda s, r: got.append(s), MPI.IN_PLACE, buf)
        call()
        assert got == [MPI.IN_PLACE]

    def test_bad_positions(self, fake_cupy):
        with pytest.raises(ValueError, match="outputs must be positions 0..0"):
            gpu.staged(lambda a: None, fake_cupy.zeros(1, "f4"), outputs=[1])
        with pytest.raises(TypeError, match="fn must be callable"):
            gpu.staged(None)

    @pytest.mark.parametrize("collective, nbytes", [("allreduce", 8), ("allreduce", 4 << 20),
                                                    ("bcast", 12), ("reduce_scatter", 4096),
                                                    ("allgather", 4 << 20),
                                                    ("reduce_local", 64)])
    def test_staged_point_on_one_rank(self, fake_cupy, collective, nbytes):
        from collectives import operations
        from collectives.mpi import MPI
        point = operations.prepare(MPI.COMM_WORLD, collective, "native", nbytes, "float32",
                                   "sum", "cupy-staged")
        assert point.check()
        call, before = gpu.timed_call(point.call, "cupy-staged")
        call()
        assert fake_cupy.pending() == 0 and fake_cupy.EXPOSURES == []

    def test_staged_check_fails_without_the_copy_back(self, fake_cupy, monkeypatch):
        from collectives import operations
        from collectives.mpi import MPI
        point = operations.prepare(MPI.COMM_WORLD, "allreduce", "native", 1024, "float32",
                                   "sum", "cupy-staged")
        monkeypatch.setattr(gpu, "copy_out", lambda pairs: None)
        assert point.check() is False

    def test_staged_algorithm(self, fake_cupy):
        from collectives.algorithms import allreduce
        from collectives.mpi import MPI
        x = np.arange(1, 1001, dtype="f8")
        send, recv = fake_cupy.asarray(x), fake_cupy.zeros(1000, "f8")
        gpu.staged_algorithm(allreduce.ring)(MPI.COMM_WORLD, send, recv, MPI.SUM)
        np.testing.assert_array_equal(recv.get(), x)
        assert fake_cupy.EXPOSURES == []


class TestHarnessSynchronization:
    """Every timer read of the harness happens with no device work pending."""

    @staticmethod
    def _time(monkeypatch, call, before):
        import time as _time
        from collectives import harness
        from collectives.mpi import MPI
        reads = []

        def clock():
            reads.append(fakecuda.pending())
            return _time.perf_counter_ns()

        monkeypatch.setattr(harness, "_clock", clock)
        opts = harness.TimingOptions(warmup=2, min_reps=5, max_reps=5, time_budget=1.0)
        harness.time_call(MPI.COMM_WORLD, call, opts, before=before)
        return reads

    def test_timed_call_synchronizes_around_every_repetition(self, fake_cupy, monkeypatch):
        a, b = fake_cupy.zeros(8, "f4"), fake_cupy.zeros(8, "f4")
        calls = []

        def kernel():  # device work left queued, as an asynchronous kernel would be
            calls.append(1)
            fake_cupy.copyto(a, b)

        call, before = gpu.timed_call(kernel, "cupy")
        start = _syncs()
        reads = self._time(monkeypatch, call, before)
        assert len(calls) == 7 and max(reads) == 0
        assert _syncs() - start == 2 * len(calls)   # one before, one after each call

    def test_without_synchronization_the_reads_see_pending_work(self, fake_cupy,
                                                                monkeypatch):
        a, b = fake_cupy.zeros(8, "f4"), fake_cupy.zeros(8, "f4")
        reads = self._time(monkeypatch, lambda: fake_cupy.copyto(a, b), None)
        assert max(reads) > 0   # the recorder can fail: the check above means something

    def test_host_buffers_are_left_alone(self):
        def call():
            return None
        assert gpu.timed_call(call, "numpy") == (call, None)
        with pytest.raises(ValueError, match="buffer"):
            gpu.timed_call(call, "torch")


# ----------------------------------------------------------------------------------
# Under mpiexec: the CLIs with fakecuda installed as cupy
# ----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
FAKE_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}

#: Runs a collcost CLI with fakecuda as cupy; prints what it saw as one JSON line per
#: rank: exit status, device-pointer exposures, synchronizations, pending kernels seen
#: at each MPI call of the hand-written algorithms (argv[1] = module, rest = its args).
WORKER = textwrap.dedent("""
    import importlib, json, sys
    import fakecuda
    fakecuda.install()
    from collectives.algorithms import messages
    from collectives.mpi import MPI
    seen = []
    def watch(fn):
        def watched(*args, **kwargs):
            seen.append(fakecuda.pending())
            return fn(*args, **kwargs)
        return watched
    for name in ("send", "recv", "sendrecv"):
        setattr(messages, name, watch(getattr(messages, name)))
    argv = sys.argv[1:]
    if argv[0] == "--without-sync":
        from collectives.algorithms import allgather, allreduce, bcast, reduce_scatter
        from collectives.algorithms import reductions
        for module in (allgather, allreduce, bcast, reduce_scatter, reductions):
            module.synchronize = lambda buf: None
        argv = argv[1:]
    rank = MPI.COMM_WORLD.Get_rank()  # the sweep finalizes MPI before it returns
    status = importlib.import_module(argv[0]).main(argv[1:])
    report = {"rank": rank, "status": status,
              "exposures": len(fakecuda.EXPOSURES),
              "syncs": fakecuda.STREAM.synchronizations,
              "mpi_calls": len(seen), "max_pending": max(seen, default=0)}
    print("REPORT " + json.dumps(report), flush=True)
    sys.exit(status)
""")


def run_fake(n, *args, env=None, timeout=150):
    """mpiexec -n n WORKER args; returns (CompletedProcess, per-rank reports)."""
    out = mpirun(n, ["-c", WORKER, *args], env={**FAKE_ENV, **(env or {})},
                 timeout=timeout)
    assert out.returncode != 124, f"timed out\n{out.stdout}\n{out.stderr}"
    return out, _reports(out.stdout)


def _reports(stdout):
    """The REPORT objects printed by the ranks (their lines may interleave)."""
    return [json.loads(m) for m in re.findall(r"REPORT (\{[^{}]*(?:\{[^{}]*\}[^{}]*)?\})",
                                              stdout)]


QUICK = ["--min-reps", "3", "--max-reps", "3", "--time-budget", "0.01", "--seed", "1"]


def _points(path):
    return [json.loads(line) for line in (path / "points.jsonl").read_text().splitlines()]


class TestSweepUnderMpi:
    def test_staged_sweep_never_hands_mpi_a_device_pointer(self, tmp_path):
        out_dir = tmp_path / "run"
        out, reports = run_fake(3, "collectives.sweep", "--buffer", "cupy-staged",
                                "--collectives", "allreduce,bcast,pingpong",
                                "--algorithms", "native,ring", "--sizes", "8,6M",
                                "--ranks", "3", "--out", str(out_dir), *QUICK)
        assert out.returncode == 0, out.stderr
        assert len(reports) == 3
        assert all(r["exposures"] == 0 for r in reports)   # MPI saw host memory only
        assert all(r["syncs"] > 0 for r in reports)
        points = _points(out_dir)
        assert {(p["ranks"], p["bytes"]) for p in points} == {
            (3, 8), (3, 6 << 20), (2, 8), (2, 6 << 20)}            # pingpong: 2 ranks
        assert all(p["buffer"] == "cupy-staged" and p["correct"] for p in points)
        assert {(p["collective"], p["algorithm"]) for p in points} == {
            ("allreduce", "native"), ("allreduce", "ring"), ("bcast", "native"),
            ("pingpong", "native")}
        meta = json.loads((out_dir / "metadata.json").read_text())
        record = meta["gpu"]
        assert record["staged"] and record["model"] == "FakeGPU"
        assert record["cupy_version"] == "0.0-fakecuda"
        assert record["driver_version"] == "12.4" and record["runtime_version"] == "12.2"
        assert record["cuda_aware"]["aware"] is False          # the PyPI wheel
        assert record["device"]["local_size"] == 3 and record["devices_by_rank"] == [0, 0, 0]
        assert meta["options"]["buffer"] == "cupy-staged"

    def test_refusals_exit_2_before_anything_is_written(self, tmp_path):
        out_dir = tmp_path / "never"
        out, reports = run_fake(2, "collectives.sweep", "--buffer", "cupy",
                                "--out", str(out_dir), *QUICK)
        assert out.returncode == 2 and not out_dir.exists()
        assert "refusing --buffer cupy" in out.stderr
        assert library().cuda_refusal in out.stderr            # the wheel's verdict
        assert out.stderr.count("refusing") == 1               # rank 0 only
        out, _ = run_fake(2, "collectives.sweep", "--buffer", "cupy-staged",
                          "--sizes", "64M", "--out", str(out_dir), *QUICK,
                          env={"FAKECUDA_FREE_BYTES": str(1 << 20)})
        assert out.returncode == 2 and not out_dir.exists()
        assert "of GPU memory" in out.stderr and "MiB" in out.stderr
        out, _ = run_fake(2, "collectives.check", "--buffer", "cupy")
        assert out.returncode == 2 and "refusing --buffer cupy" in out.stderr
        out, _ = run_fake(2, "collectives.check", "--buffer", "cupy",
                          env={"COLLCOST_CUDA_AWARE": "no"})
        assert out.returncode == 2 and "denied by the user" in out.stderr

    def test_without_cupy_device_buffers_fail_clearly(self, tmp_path):
        import importlib.util
        if importlib.util.find_spec("cupy") is not None:
            pytest.skip("cupy is installed here")
        out_dir = tmp_path / "never"
        out = mpirun(2, ["-m", "collectives.sweep", "--buffer", "cupy-staged",
                         "--out", str(out_dir), *QUICK], timeout=120)
        assert out.returncode == 2 and not out_dir.exists()
        assert "needs CuPy" in out.stderr


class TestCheckUnderMpi:
    def test_algorithms_synchronize_before_every_mpi_call(self):
        out, reports = run_fake(3, "collectives.check", "--buffer", "cupy",
                                "--cuda-aware", "yes", "--large", "4MiB", "--ranks", "3",
                                "--dtypes", "float32", "--ops", "sum,max",
                                "--roots", "0,last")
        assert out.returncode == 0, out.stdout + out.stderr
        assert len(reports) == 3
        assert all(r["mpi_calls"] > 50 and r["max_pending"] == 0 for r in reports)
        assert all(r["exposures"] > 0 for r in reports)  # the exposure detector works
        assert all(r["syncs"] > r["mpi_calls"] / 4 for r in reports)

    def test_the_watch_catches_a_missing_synchronization(self):
        out, reports = run_fake(2, "--without-sync", "collectives.check", "--buffer", "cupy",
                                "--cuda-aware", "yes", "--large", "0", "--collectives",
                                "allreduce,reduce_scatter", "--dtypes", "int32",
                                "--ops", "sum")
        assert max(r["max_pending"] for r in reports) > 0

    def test_staged_check_passes_without_exposing_device_memory(self):
        out, reports = run_fake(3, "collectives.check", "--buffer", "cupy-staged",
                                "--large", "3MiB", "--ranks", "3", "--dtypes", "float64",
                                "--ops", "sum", "--roots", "last")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "cases match the native MPI result" in out.stdout
        assert all(r["exposures"] == 0 for r in reports)


class TestVerdictUnderMpi:
    def test_ranks_agree_and_devices_follow_the_node_local_rank(self):
        code = textwrap.dedent("""
            import json, fakecuda
            fakecuda.install()
            from collectives import gpu
            from collectives.mpi import MPI
            comm = MPI.COMM_WORLD
            env = {"COLLCOST_CUDA_AWARE": "no" if comm.Get_rank() == 1 else "yes"}
            v = gpu.cuda_awareness("auto", comm, env=env)
            setup = gpu.prepare(comm, "cupy-staged", "auto", 1 << 20)
            print("REPORT " + json.dumps({"aware": v.aware, "reason": v.reason,
                                          "device": setup.device}), flush=True)
        """)
        out = mpirun(3, ["-c", code], env={**FAKE_ENV, "FAKECUDA_DEVICES": "2"},
                     timeout=120)
        assert out.returncode == 0, out.stderr
        reports = _reports(out.stdout)
        assert len(reports) == 3
        assert all(not r["aware"] and r["reason"].startswith("rank 1:") for r in reports)
        devices = sorted((r["device"]["local_rank"], r["device"]["device"],
                          r["device"]["ranks_per_device"]) for r in reports)
        assert devices == [(0, 0, 2), (1, 1, 1), (2, 0, 2)]

    def test_gpu_cli_reports_the_verdict(self):
        out = mpirun(2, ["-m", "collectives.gpu"], timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("CUDA-aware MPI: no -- ")
        assert "ranks 0-1 (2): no GPU used" in out.stdout
        assert max(len(line) for line in out.stdout.splitlines()) <= 100
        out = mpirun(2, ["-m", "collectives.gpu", "--format", "json"], timeout=60)
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["rank"] for r in lines] == [0, 1]
        assert all(r["cuda_aware"]["aware"] is False for r in lines)
        out = mpirun(1, ["-m", "collectives.gpu", "--buffer", "cupy"], timeout=60)
        assert out.returncode == 2 and "refusing --buffer cupy" in out.stderr


def test_format_report_groups_ranks_by_device():
    """The human report: one verdict line, one line per group of ranks sharing a
    device description (rank ranges), counts as integers, within 100 columns."""
    verdict = {"aware": False, "source": "override", "reason": "COLLCOST_CUDA_AWARE=no"}

    def rec(device):
        return {"buffer": "cupy-staged", "gpu_used": True, "staged": True,
                "cuda_aware": verdict, "model": "Fake GPU " + "X" * 40,
                "compute_capability": "9.0", "memory_bytes": 80 * 2**30,
                "driver_version": "12.4", "runtime_version": "12.4",
                "cupy_version": "13.0.0",
                "device": {"device": device, "device_count": 2, "local_rank": 0,
                           "ranks_per_device": 2}}
    text = gpu.format_report([rec(0), rec(1), rec(0), rec(1), rec(0)])
    lines = text.splitlines()
    assert lines[0].startswith("CUDA-aware MPI: no -- COLLCOST_CUDA_AWARE=no")
    assert "buffer cupy-staged: 5 rank(s)" in lines
    assert any(line.startswith("ranks 0, 2, 4 (3): GPU 0 of 2 (shared by 2 ranks)")
               for line in lines)
    assert any(line.startswith("ranks 1, 3 (2): GPU 1 of 2") for line in lines)
    assert "80.0 GiB" in text and "staged" in text
    assert max(len(line) for line in lines) <= 100
    assert gpu._rank_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


class TestGpuCheckJob:
    JOB = ROOT / "jobs" / "gpu-check"

    def _env(self, tmp_path, **extra):
        shim = tmp_path / "shim"
        shim.mkdir()
        (shim / "cupy.py").write_text("import sys\nimport fakecuda\n"
                                      "sys.modules[__name__] = fakecuda\n")
        env = dict(os.environ, COLLCOST_PYTHON=sys.executable,
                   COLLCOST_MPIEXEC=str(Path(sys.executable).with_name("mpiexec")),
                   MPIR_CVAR_DEVICE_COLLECTIVES="none",
                   PYTHONPATH=os.pathsep.join([str(shim), str(ROOT / "tests")]))
        env.update(extra)
        return env

    def _run(self, args, env, timeout=240):
        return subprocess.run(["timeout", "-k", "5", str(timeout), str(self.JOB), *args],
                              capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=timeout + 30)

    def test_end_to_end_with_a_cuda_aware_verdict(self, tmp_path):
        env = self._env(tmp_path,
                        COLLCOST_CHECK_ARGS="--large 1MiB --ranks 2 --dtypes int32 "
                                            "--ops sum --collectives allreduce,bcast",
                        COLLCOST_SWEEP_ARGS="--collectives allreduce --sizes 8,4M "
                                            "--min-reps 3 --max-reps 3")
        out = self._run(["-n", "2", "--out", str(tmp_path / "runs"),
                         "--cuda-aware", "yes"], env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "CUDA-aware: yes" in out.stdout
        for step in ("check --buffer cupy ", "sweep --quick --buffer cupy ",
                     "check --buffer cupy-staged", "sweep --quick --buffer cupy-staged"):
            assert f"PASS  {step}" in out.stdout
        for kind in ("cupy", "cupy-staged"):
            assert all(p["buffer"] == kind and p["correct"]
                       for p in _points(tmp_path / "runs" / kind))
            meta = json.loads((tmp_path / "runs" / kind / "metadata.json").read_text())
            assert meta["gpu"]["cuda_aware"]["source"] == "override"
            assert meta["gpu"]["staged"] == (kind == "cupy-staged")

    def test_usage_and_missing_cupy(self, tmp_path):
        out = self._run(["-n", "0"], dict(os.environ))
        assert out.returncode == 2 and "-n must be a whole number" in out.stderr
        import importlib.util
        if importlib.util.find_spec("cupy") is None:
            env = dict(os.environ, COLLCOST_PYTHON=sys.executable)
            out = self._run(["--out", str(tmp_path / "x")], env)
            assert out.returncode == 2 and "CuPy with a visible GPU is required" in out.stderr
            assert "No module named 'cupy'" in out.stderr and not (tmp_path / "x").exists()
