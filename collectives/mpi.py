"""The single place MPI is imported from, configured before first use.

mpi4py asks for ``MPI_THREAD_MULTIPLE`` by default; with MPICH that costs about 3 µs per
small collective on this machine (a 4-byte Allreduce at 2 ranks: 5.1 µs against 1.9 µs
with ``single``).  Our code never calls MPI from several threads, so we ask for
``single`` unless the user set ``COLLCOST_THREAD_LEVEL``.

When ``COLLCOST_NATIVE_ALGORITHM`` is set (the sweep's ``--native-algorithm`` sets it),
the library's own algorithm selection is pinned before ``MPI_Init`` reads it: MPI is
loaded without initializing, the library named by ``MPI_Get_library_version`` (callable
before ``MPI_Init``) gets its variables (:func:`collectives.native.apply`), then MPI is
initialized.  A request that cannot be honoured sets nothing;
:func:`collectives.native.error` says why, for the command to report.
"""
import os

import mpi4py

_request = None
if "MPI" not in dir(mpi4py):  # configure only before the first import of mpi4py.MPI
    mpi4py.rc.thread_level = os.environ.get("COLLCOST_THREAD_LEVEL", "single")
    _request = os.environ.get("COLLCOST_NATIVE_ALGORITHM")
    if _request is not None:
        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = True

from mpi4py import MPI  # noqa: E402

if _request is not None and not MPI.Is_initialized():
    from . import native  # noqa: E402

    native.apply(MPI.Get_library_version(), _request)
    _LEVELS = {"single": MPI.THREAD_SINGLE, "funneled": MPI.THREAD_FUNNELED,
               "serialized": MPI.THREAD_SERIALIZED, "multiple": MPI.THREAD_MULTIPLE}
    MPI.Init_thread(_LEVELS.get(mpi4py.rc.thread_level, MPI.THREAD_SINGLE))

__all__ = ["MPI"]
