"""Point-to-point messages of the hand-written algorithms, on a private communicator.

* :func:`private` returns the communicator's cached duplicate: library traffic never
  matches a user's message.  The duplicate is created on first use and stored as an MPI
  attribute of the user's communicator (so timing loops do not pay for ``Dup``); it is
  freed when the user's communicator is freed (attribute delete callback).
  :func:`context` adds the duplicate's size and rank and this process's scratch
  arrays, found in O(1) on every later call.
* :func:`sendrecv`, :func:`send`, :func:`recv` pass explicit ``[buffer, datatype]``
  specifications; buffers are 1-D numpy arrays or any array exposing
  ``__cuda_array_interface__`` (mpi4py accepts both).  Zero-length messages are sent
  like any other, so an algorithm's message count never depends on the element count.
* Only ``Sendrecv`` and tree-shaped ``Send``/``Recv`` are used: no two ranks ever block
  in ``Send`` towards each other, so nothing deadlocks above the eager threshold.
"""
from __future__ import annotations

import numpy as np

from collectives.mpi import MPI

__all__ = ["Context", "context", "private", "datatype", "DATATYPES", "sendrecv", "send",
           "recv", "TAG"]

#: Tag of every message (the private communicator carries nothing else).
TAG = 7


class Context:
    """What the algorithms need of a communicator on every call, looked up once.

    ``private`` is the duplicate carrying the traffic, ``p`` and ``rank`` its size and
    this process's rank, ``members`` the tuple ``0..p-1``, ``scratch`` the reusable work arrays of
    :func:`.reductions.scratch` (per communicator, so simulated ranks sharing a process
    never share one).
    """

    __slots__ = ("comm", "private", "p", "rank", "members", "scratch")

    def __init__(self, comm, private):
        self.comm, self.private = comm, private
        self.p, self.rank = private.Get_size(), private.Get_rank()
        self.members = tuple(range(self.p))   # the identity group of the kernels
        self.scratch = {}


#: ``id(comm) -> Context``.  The context holds ``comm`` itself, so the id cannot be
#: reused by another object while the entry exists; freeing ``comm`` drops the entry
#: (:func:`_free_private`).
_CONTEXTS: dict[int, Context] = {}
_MAX_CONTEXTS = 64


def _free_private(comm, keyval, dup):
    for key, ctx in list(_CONTEXTS.items()):
        if ctx.private is dup:
            _CONTEXTS.pop(key, None)
    if not MPI.Is_finalized():
        dup.Free()
    return MPI.SUCCESS


_KEYVAL = MPI.Comm.Create_keyval(delete_fn=_free_private)


def context(comm) -> Context:
    """The :class:`Context` of ``comm``: O(1) after the first call on ``comm``.

    The first call on a communicator is collective (it may ``Dup``); the duplicate is
    stored as an MPI attribute of ``comm``, so other Python objects for the same
    communicator find it too.
    """
    ctx = _CONTEXTS.get(id(comm))
    if ctx is not None and ctx.comm is comm:
        return ctx
    dup = comm.Get_attr(_KEYVAL)
    if dup is None:
        dup = comm.Dup()
        comm.Set_attr(_KEYVAL, dup)
    ctx = Context(comm, dup)
    if len(_CONTEXTS) >= _MAX_CONTEXTS:
        _CONTEXTS.clear()
    _CONTEXTS[id(comm)] = ctx
    return ctx


def private(comm):
    """The private duplicate of ``comm`` (created once, cached as an attribute)."""
    return context(comm).private


#: Predefined MPI datatype of each supported element type (predefined: reductions,
#: including the native ones the check compares with, are defined on them).
DATATYPES = {"float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT32_T,
             "int64": MPI.INT64_T}
#: The same keyed by numpy dtype object (hashing a dtype is cheap, ``.name`` is not).
_BY_DTYPE = {np.dtype(name): mpi_type for name, mpi_type in DATATYPES.items()}


def datatype(buf):
    """The predefined MPI datatype of ``buf``'s elements (a dtype or an array)."""
    try:
        return _BY_DTYPE[getattr(buf, "dtype", buf)]
    except (KeyError, TypeError):
        pass
    name = np.dtype(getattr(buf, "dtype", buf)).name
    try:
        return DATATYPES[name]
    except KeyError:
        raise ValueError(f"no MPI datatype for dtype {name}; expected one of "
                         f"{', '.join(DATATYPES)}") from None


def sendrecv(comm, sendbuf, dest, recvbuf, source, dtype):
    """Send ``sendbuf`` to ``dest`` while receiving ``recvbuf`` from ``source``."""
    comm.Sendrecv([sendbuf, dtype], dest, TAG, [recvbuf, dtype], source, TAG)


def send(comm, buf, dest, dtype):
    """Blocking send (used only along trees: the receiver is already waiting)."""
    comm.Send([buf, dtype], dest, TAG)


def recv(comm, buf, source, dtype):
    """Blocking receive of exactly ``buf``'s length."""
    comm.Recv([buf, dtype], source, TAG)
