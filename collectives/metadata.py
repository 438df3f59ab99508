"""Provenance of a run: everything ``metadata.json`` records (docs/formats.md).

:func:`collect` assembles the record; the helpers it calls are pure or read-only
(environment, versions, git).  Nothing here fails because a piece of provenance is
unavailable: the field is then ``null``.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from .costs import size_convention

__all__ = ["ENV_PREFIXES", "ENV_NAMES", "mpi_environment", "git_commit", "mpi_library",
           "gpu_record", "collect"]

#: Environment variables recorded: every name with one of these prefixes ...
ENV_PREFIXES = ("MPIR_CVAR_", "MPICH_", "HYDRA_", "OMPI_", "PMIX_", "UCX_", "FI_",
                "I_MPI_", "NCCL_")
#: ... and these exact names.
ENV_NAMES = ("CUDA_VISIBLE_DEVICES",)


def mpi_environment(env=None) -> dict:
    """The MPI/transport variables in effect (sorted), from ``env`` or ``os.environ``."""
    env = os.environ if env is None else env
    return {k: env[k] for k in sorted(env)
            if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}


def git_commit(directory=None) -> str | None:
    """``git rev-parse HEAD`` of the checkout holding ``directory`` (this package by
    default); None when git or the checkout is unavailable.  A dirty tree gets a
    ``+dirty`` suffix."""
    directory = Path(directory or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, text=True,
                              capture_output=True, timeout=10)
        if head.returncode != 0:
            return None
        commit = head.stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=directory, text=True, capture_output=True, timeout=10)
        if commit and dirty.returncode == 0 and dirty.stdout.strip():
            commit += "+dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


def mpi_library(MPI) -> dict:
    """``library`` (first word of the version string), ``version`` (full string),
    ``standard`` (``MAJOR.MINOR``)."""
    version = MPI.Get_library_version().strip()
    library = version.split()[0] if version else None
    for name in ("Cray MPICH", "MVAPICH", "Intel(R) MPI", "Open MPI", "MPICH"):
        if name in version:
            library = name
            break
    major, minor = MPI.Get_version()
    return {"library": library, "version": version, "standard": f"{major}.{minor}"}


def gpu_record(buffer: str = "numpy", setup=None):
    """The ``gpu`` metadata field: null for host buffers, else the GPU description.

    Hook for the GPU support: ``setup`` is :class:`collectives.gpu.DeviceSetup` (its
    ``record`` is stored); without it, :func:`collectives.gpu.describe` is asked.
    """
    if buffer == "numpy":
        return None
    if setup is not None:
        return setup.record
    from . import gpu
    return gpu.describe(buffer)


def collect(comm, layout, *, options: dict, command_line, seed, timer: dict,
            harness_overhead_s: dict, gpu=None, run_id=None, date_utc=None) -> dict:
    """The metadata record of a sweep (every key of ``results.METADATA_KEYS`` but
    ``launches``, which :class:`collectives.results.RunWriter` adds).

    Not collective: call it on the writing rank after the collective measurements
    (layout, timer, harness overhead) are done.
    """
    import mpi4py
    import numpy

    from . import __version__
    from .mpi import MPI
    from .results import KIND, SCHEMA_VERSION, new_run_id, utc_now

    del comm  # the layout already holds what the communicator tells
    collectives = list(options.get("collectives") or [])
    record = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "run_id": run_id or new_run_id(),
        "date_utc": date_utc or utc_now(),
        "command_line": list(command_line),
        "git_commit": git_commit(),
        "collcost_version": __version__,
        "mpi": mpi_library(MPI),
        "mpi4py_version": mpi4py.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        **layout.to_dict(),
        "env": mpi_environment(),
        "timer": dict(timer),
        "harness_overhead_s": dict(harness_overhead_s),
        "options": dict(options),
        "seed": seed,
        "size_convention": {c: size_convention(c) for c in collectives},
        "units": {"time": "s", "bytes": "B"},
        "gpu": gpu,
    }
    return record
