"""Launch ``mpiexec`` from tests, always under a hard timeout.

Every MPI launch in the test suite goes through :func:`mpirun` so a deadlock fails fast
(``timeout -k 5`` gives exit status 124 every time; Hydra's own MPIEXEC_TIMEOUT exit code
is unreliable) and oversubscribed runs stay usable on a 2-core machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: MPICH settings that keep runs with more ranks than cores usable (measurement.md).
#: MPIR_CVAR_ENABLE_HEAVY_YIELD makes waiting ranks yield the core (p=6 check: 9.5 s -> 1.9 s).
OVERSUBSCRIBE_ENV = {"MPIR_CVAR_DEVICE_COLLECTIVES": "none", "MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"}


def mpiexec() -> str:
    """Path of the ``mpiexec`` next to this Python, else the one on PATH."""
    here = Path(sys.executable).with_name("mpiexec")
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if not found:
        raise RuntimeError("mpiexec not found: pip install 'collcost[mpich]'")
    return found


def mpirun(n: int, args, *, timeout: float = 120, env: dict | None = None,
           cwd=None, python: bool = True) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n n [python] args...`` under ``timeout -k 5 <timeout>``.

    ``args`` is a list; with ``python=True`` it is prefixed by this interpreter.
    Returns the CompletedProcess (text mode, stdout/stderr captured); the caller
    asserts on ``returncode`` (124 means the launch timed out).
    """
    full_env = dict(os.environ)
    full_env.update(OVERSUBSCRIBE_ENV)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    cmd = ["timeout", "-k", "5", str(int(timeout)), mpiexec(), "-n", str(n)]
    if python:
        cmd.append(sys.executable)
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env,
                          cwd=cwd or ROOT, timeout=timeout + 30)
