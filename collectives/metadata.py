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

__all__ = ["ENV_PREFIXES", "ENV_NAMES", "TUNING_PREFIXES", "LAUNCHER_NAMES",
           "LAUNCHER_PREFIXES", "env_kind", "split_environment", "mpi_environment",
           "launcher_environment", "tuning_environment", "environment_differences",
           "git_commit", "mpi_library", "gpu_record", "collect"]

#: Variables that change what is measured, recorded in ``env`` and compared between
#: launches (merge, resume, fits): algorithm and transport selection of each MPI
#: library (MPICH and Cray MPICH, MVAPICH, Open MPI's MCA parameters, Intel MPI) and of
#: the layers below it (UCX, UCC, HCOLL, libfabric, PSM2) and NCCL.  Launcher
#: bookkeeping that happens to share a prefix is carved out by :data:`LAUNCHER_NAMES`
#: and :data:`LAUNCHER_PREFIXES`.
TUNING_PREFIXES = ("MPIR_CVAR_", "MPICH_", "MV2_", "MVP_", "OMPI_MCA_", "I_MPI_", "UCX_",
                   "UCC_", "HCOLL_", "FI_", "PSM2_", "NCCL_")
#: Launcher bookkeeping (recorded in ``launcher_env``, never compared): what mpiexec,
#: PRRTE/PMIx and Hydra put in every rank's environment (ranks, sizes, URIs, paths,
#: random ids, the hardware Hydra detected), device visibility, launcher options.
LAUNCHER_PREFIXES = (
    "PMIX_", "PMI_", "PRTE_", "HYDRA_", "OPAL_", "MPI_LOCAL",
    "OMPI_",  # Open MPI variables other than OMPI_MCA_* (OMPI_COMM_WORLD_*, OMPI_ARGV)
    # Open MPI 4 runtime (ORTE) parameters: per-launch keys and URIs, not tuning
    "OMPI_MCA_orte_", "OMPI_MCA_ess", "OMPI_MCA_pmix", "OMPI_MCA_prte_",
    # Intel MPI: Hydra's own settings and random id, its hardware probe, job control
    "I_MPI_HYDRA_", "I_MPI_INFO_", "I_MPI_JOB_",
)
#: ... and these exact names.
LAUNCHER_NAMES = (
    "CUDA_VISIBLE_DEVICES",
    "OMPI_MCA_initial_wdir", "OMPI_MCA_num_procs", "OMPI_MCA_cpu_type",
    "OMPI_MCA_PREFIXES",
    # written by Intel's Hydra from its topology probe and the pinning it computed
    "I_MPI_PIN_INFO", "I_MPI_PIN_MAPPING", "I_MPI_BIND_WIN_ALLOCATE",
    "I_MPI_INTERNAL_MEM_POLICY", "I_MPI_RETURN_WIN_MEM_NUMA", "I_MPI_ROOT", "I_MPI_MPIRUN",
    "FI_PROVIDER_PATH",  # an installation path (the library version is compared)
)
#: Every recorded environment variable has one of these prefixes ...
ENV_PREFIXES = TUNING_PREFIXES + tuple(p for p in LAUNCHER_PREFIXES
                                       if not p.startswith(TUNING_PREFIXES))
#: ... or one of these names.
ENV_NAMES = LAUNCHER_NAMES


def env_kind(name: str) -> str | None:
    """``"tuning"`` (recorded and compared), ``"launcher"`` (recorded apart, never
    compared) or None (not recorded) for an environment variable's name."""
    if name in LAUNCHER_NAMES:
        return "launcher"
    for prefix in LAUNCHER_PREFIXES:  # the specific carve-outs come before TUNING_
        if name.startswith(prefix) and (prefix != "OMPI_"
                                        or not name.startswith("OMPI_MCA_")):
            return "launcher"
    if name.startswith(TUNING_PREFIXES):
        return "tuning"
    return None


def split_environment(env=None) -> tuple[dict, dict]:
    """``(tuning, launcher)``: the recorded variables of ``env`` (``os.environ`` by
    default), each dict sorted by name."""
    env = os.environ if env is None else env
    tuning, launcher = {}, {}
    for k in sorted(env):
        kind = env_kind(k)
        if kind == "tuning":
            tuning[k] = env[k]
        elif kind == "launcher":
            launcher[k] = env[k]
    return tuning, launcher


def mpi_environment(env=None) -> dict:
    """The tuning variables in effect (the ``env`` record): what changes the measured
    times.  From ``env`` or ``os.environ``."""
    return split_environment(env)[0]


def launcher_environment(env=None) -> dict:
    """The launcher bookkeeping in effect (the ``launcher_env`` record)."""
    return split_environment(env)[1]


def tuning_environment(record) -> dict:
    """The compared variables of a run: a metadata dict (its ``env``) or an environment
    dict.  Records written before ``env`` and ``launcher_env`` were separated held
    launcher bookkeeping in ``env`` too; it is dropped here, so old and new runs of the
    same tuning compare equal."""
    env = record.get("env") if isinstance(record.get("env"), dict) else record
    if "env" in record and not isinstance(record.get("env"), dict):
        env = {}  # a metadata record with env null
    return {k: str(v) for k, v in sorted(env.items()) if env_kind(k) == "tuning"}


def environment_differences(first: dict, other: dict, names=("A", "B")) -> list:
    """One sentence per tuning variable (:func:`tuning_environment`) on which two runs
    disagree (set to different values, or set in one only); ``[]`` when the tuning is
    the same.  ``first`` and ``other`` are metadata dicts (or environment dicts);
    ``names`` say what they are in the sentences (e.g. two paths, or
    ``("the run", "this launch")``).  The one comparison merge, resume and the fitter
    use, so launcher bookkeeping (random ids, working directories) never refuses
    identical runs."""
    a, b = tuning_environment(first), tuning_environment(other)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            va = repr(a[k]) if k in a else "unset"
            vb = repr(b[k]) if k in b else "unset"
            out.append(f"tuning variables differ: {k} is {va} in {names[0]}, {vb} in "
                       f"{names[1]}")
    return out


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
    # Open MPI's string ends in a NUL byte (5.0.x wheels); Intel's in a newline
    version = MPI.Get_library_version().replace("\x00", "").strip()
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

    from . import __version__, native
    from .mpi import MPI
    from .results import KIND, SCHEMA_VERSION, new_run_id, utc_now

    del comm  # the layout already holds what the communicator tells
    collectives = list(options.get("collectives") or [])
    env, launcher_env = split_environment()
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
        "env": env,
        "launcher_env": launcher_env,
        "native_algorithms": native.pinned(),
        "algorithm_variables": native.algorithm_variables(env),
        "timer": dict(timer),
        "harness_overhead_s": dict(harness_overhead_s),
        "options": dict(options),
        "seed": seed,
        "size_convention": {c: size_convention(c) for c in collectives},
        "units": {"time": "s", "bytes": "B"},
        "gpu": gpu,
    }
    return record
