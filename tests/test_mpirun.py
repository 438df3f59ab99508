"""tests/mpirun.py (each launcher's flags) and the automatic ``mpi`` marker
(tests/conftest.py); no MPI launched."""
import os
import subprocess
import sys

import pytest

import conftest
import mpirun as mr


@pytest.mark.parametrize("key", sorted(mr.LIBRARIES))
@pytest.mark.parametrize("root", [True, False])
@pytest.mark.parametrize("n", [2, 6])
def test_launch_command(monkeypatch, key, root, n):
    lib = mr.LIBRARIES[key]
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    cmd, env = mr.launch_command(n, 60, lib, cores=2)
    assert cmd[:4] == ["timeout", "-k", "5", "60"]
    assert cmd[-2:] == ["-n", str(n)]
    flags = cmd[5:-2]
    if key == "openmpi":
        assert ("--allow-run-as-root" in flags) == root
        assert ("--oversubscribe" in flags) == (n > 2)
        assert flags[flags.index("--timeout") + 1] == "62"  # behind the hard limit
        assert (env.get("OMPI_MCA_mpi_yield_when_idle") == "1") == (n > 2)
    else:  # Hydra: no root or oversubscription flag, its own limit in the environment
        assert flags == []
        assert env["MPIEXEC_TIMEOUT"] == "62"
    if key == "mpich":
        assert env["MPIR_CVAR_DEVICE_COLLECTIVES"] == "none"
    if key == "impi":
        assert ("I_MPI_PIN" in env) == (n > 2)


def test_every_library_is_described():
    for key, lib in mr.LIBRARIES.items():
        assert lib.key == key and lib.name and lib.family and lib.version_marker
        assert lib.own_timeout and lib.abort_report


def test_the_library_in_use_is_known():
    lib = mr.library()
    assert lib in mr.LIBRARIES.values()


#: Sample tests, compiled at run time so that this file's own tests do not reference
#: ``mpirun`` (they would be marked ``mpi`` themselves).
SAMPLES = """
def _helper_launching():
    return mpirun(1, [])

def _plain_helper():
    return 1

def direct():
    return mpirun(1, [])

def via_helper():
    return [_helper_launching() for _ in range(1)]

def no_launch():
    from collectives import sweep as sweep_module  # a name, not a call of mpirun
    return _plain_helper(), sweep_module

def local_import():
    from mpirun import mpirun
    return mpirun(1, [])

class Suite:
    def launch(self):
        return mpirun(2, [])

    def test_through_a_method(self):
        return self.launch()

    def test_without(self):
        return _plain_helper()
"""


def test_marker_follows_calls_into_helpers_and_methods():
    ns = {"__name__": "samples", "mpirun": None}
    exec(compile(SAMPLES, "samples", "exec"), ns)
    assert conftest._reaches_mpirun(ns["direct"])
    assert conftest._reaches_mpirun(ns["via_helper"])
    assert conftest._reaches_mpirun(ns["local_import"])
    assert not conftest._reaches_mpirun(ns["no_launch"])
    suite = ns["Suite"]
    assert conftest._reaches_mpirun(suite.test_through_a_method, suite)
    assert not conftest._reaches_mpirun(suite.test_without, suite)


def test_launching_tests_elsewhere_are_marked(request):
    for item in request.session.items:  # this file launches nothing
        if item.nodeid.startswith("tests/test_mpirun.py"):
            assert item.get_closest_marker("mpi") is None, item.nodeid
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m",
                          "mpi", "-p", "no:cacheprovider", "tests/test_sweep_failures.py"],
                         capture_output=True, text=True, cwd=mr.ROOT, timeout=120)
    listed = out.stdout
    assert "test_point_timeout_names_the_point" in listed  # launches through a helper
    assert "test_bad_arguments_exit_2_and_write_nothing" in listed
    assert "test_bad_arguments_are_usage_errors" not in listed  # in-process only
