"""Point-to-point messages of the hand-written algorithms, on a private communicator.

* :func:`private` returns the communicator's cached duplicate: library traffic never
  matches a user's message.  The duplicate is created on first use and stored as an MPI
  attribute of the user's communicator (so timing loops do not pay for ``Dup``); it is
  freed when the user's communicator is freed (attribute delete callback).
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

__all__ = ["private", "datatype", "DATATYPES", "sendrecv", "send", "recv", "TAG"]

#: Tag of every message (the private communicator carries nothing else).
TAG = 7


def _free_private(comm, keyval, dup):
    if not MPI.Is_finalized():
        dup.Free()
    return MPI.SUCCESS


_KEYVAL = MPI.Comm.Create_keyval(delete_fn=_free_private)


def private(comm):
    """The private duplicate of ``comm`` (created once, cached as an attribute)."""
    dup = comm.Get_attr(_KEYVAL)
    if dup is None:
        dup = comm.Dup()
        comm.Set_attr(_KEYVAL, dup)
    return dup


#: Predefined MPI datatype of each supported element type (predefined: reductions,
#: including the native ones the check compares with, are defined on them).
DATATYPES = {"float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT32_T,
             "int64": MPI.INT64_T}


def datatype(buf):
    """The predefined MPI datatype of ``buf``'s elements (a dtype or an array)."""
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
