"""Hand-written collective algorithms on mpi4py point-to-point calls.

Call conventions (every function validates its arguments and raises ``ValueError`` /
``TypeError`` naming the bad one):

* ``bcast(comm, buf, root=0)``: in place, ``buf`` the whole vector on every rank;
* ``reduce_scatter(comm, sendbuf, recvbuf, op)``: ``sendbuf`` the whole vector,
  ``recvbuf`` this rank's block of ``block_counts(count, p)[rank]`` elements;
* ``allreduce(comm, sendbuf, recvbuf, op)``: whole vectors; ``sendbuf`` may be
  ``recvbuf`` or ``MPI.IN_PLACE``;
* ``allgather(comm, sendbuf, recvbuf)``: ``sendbuf`` this rank's block (or
  ``MPI.IN_PLACE``), ``recvbuf`` the whole vector.

``op`` is ``MPI.SUM``, ``MPI.MAX`` or ``MPI.MIN``; dtypes float32, float64, int32, int64;
any p >= 1 and any element count >= 0.  Buffers are numpy arrays or device arrays
exposing ``__cuda_array_interface__`` (cupy): the local reduction uses the buffer's own
array module and the stream is synchronized before MPI reads a buffer.

Traffic runs on a private duplicate of ``comm``, created on first use and cached as an
MPI attribute of ``comm`` (see :func:`.messages.private`): the first call on a new
communicator is collective and pays for one ``Dup``; later calls do not.

Everything a call derives from cheap immutable facts is computed once and cached: the
communicator's context (private duplicate, size, rank: :func:`.messages.context`), block
layouts (:func:`.blocks.layout`), the kernels' message plans, the reducers, and host
scratch arrays (up to :data:`.reductions.SCRATCH_CACHE_BYTES` per slot and
communicator).  Validation keeps a fast path for numpy arrays that pass; anything else
takes the full check.  A small call thus costs its messages plus a few microseconds
(``benchmarks/bench_algorithm_overhead.py`` measures it).

The names are those of the cost-model registry :mod:`collectives.costs`; the MPI
library's own collective (``native``) is not in :data:`ALGORITHMS`.
"""
from __future__ import annotations

from typing import Callable

from collectives import costs

from . import allgather, allreduce, bcast, reduce_scatter
from .blocks import block_counts, block_displs

__all__ = ["ALGORITHMS", "get", "names", "block_counts", "block_displs"]

#: ``(collective, algorithm) -> function``.
ALGORITHMS: dict[tuple[str, str], Callable] = {
    ("bcast", "binomial"): bcast.binomial,
    ("bcast", "scatter_allgather"): bcast.scatter_allgather,
    ("reduce_scatter", "ring"): reduce_scatter.ring,
    ("reduce_scatter", "pairwise"): reduce_scatter.pairwise,
    ("reduce_scatter", "recursive_halving"): reduce_scatter.recursive_halving,
    ("allreduce", "ring"): allreduce.ring,
    ("allreduce", "binomial"): allreduce.binomial,
    ("allreduce", "recursive_doubling"): allreduce.recursive_doubling,
    ("allreduce", "rabenseifner"): allreduce.rabenseifner,
    ("allgather", "ring"): allgather.ring,
    ("allgather", "recursive_doubling"): allgather.recursive_doubling,
}


def names(collective: str) -> tuple[str, ...]:
    """Hand-written algorithm names for ``collective`` (registry order, no ``native``)."""
    costs.size_convention(collective)
    return tuple(a for (c, a) in ALGORITHMS if c == collective)


def get(collective: str, name: str) -> Callable:
    """The function implementing ``name`` for ``collective``."""
    try:
        return ALGORITHMS[(collective, name)]
    except KeyError:
        known = ", ".join(names(collective)) or "none"
        if name == costs.NATIVE:
            raise ValueError(f"'native' {collective} is MPI's own call, not a hand-written "
                             "algorithm") from None
        raise ValueError(f"unknown algorithm {name!r} for {collective}; expected one of "
                         f"{known}") from None
