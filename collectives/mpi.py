"""The single place MPI is imported from, configured before first use.

mpi4py asks for ``MPI_THREAD_MULTIPLE`` by default; with MPICH that costs about 3 µs per
small collective on this machine (a 4-byte Allreduce at 2 ranks: 5.1 µs against 1.9 µs
with ``single``).  Our code never calls MPI from several threads, so we ask for
``single`` unless the user set ``COLLCOST_THREAD_LEVEL``.
"""
import os

import mpi4py

if "MPI" not in dir(mpi4py):  # configure only before the first import of mpi4py.MPI
    mpi4py.rc.thread_level = os.environ.get("COLLCOST_THREAD_LEVEL", "single")

from mpi4py import MPI  # noqa: E402

__all__ = ["MPI"]
