"""Up-front validation of the algorithms' arguments (messages name the argument)."""
from __future__ import annotations

import numpy as np

from collectives.mpi import MPI

from . import reductions

__all__ = ["SUPPORTED_DTYPES", "check_vector", "check_same_dtype", "check_op",
           "check_root", "check_size", "in_place"]

#: Element types the algorithms accept.
SUPPORTED_DTYPES = ("float32", "float64", "int32", "int64")
#: The same as dtype objects: the fast path tests membership without ``dtype.name``.
_SUPPORTED = frozenset(np.dtype(name) for name in SUPPORTED_DTYPES)
_NDARRAY = np.ndarray


def check_vector(name, buf):
    """``buf`` must be a contiguous 1-D array of a supported dtype.

    Fast path for numpy arrays that pass; anything else (device arrays, every failure)
    takes the full check below, which names the problem.
    """
    if (type(buf) is _NDARRAY and buf.ndim == 1 and buf.dtype in _SUPPORTED
            and buf.flags.c_contiguous):
        return
    dtype = getattr(buf, "dtype", None)
    ndim = getattr(buf, "ndim", None)
    if dtype is None or ndim is None:
        raise TypeError(f"{name} must be an array (numpy, cupy or another array exposing "
                        f"__cuda_array_interface__), got {type(buf).__name__}")
    if ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {ndim} dimensions")
    if np.dtype(dtype).name not in SUPPORTED_DTYPES:
        raise ValueError(f"{name} has dtype {np.dtype(dtype).name}; expected one of "
                         f"{', '.join(SUPPORTED_DTYPES)}")
    flags = getattr(buf, "flags", None)
    if flags is not None and not flags["C_CONTIGUOUS"]:
        raise ValueError(f"{name} must be contiguous")


def check_same_dtype(sendbuf, recvbuf):
    """Both buffers hold the same element type."""
    if sendbuf.dtype is recvbuf.dtype:
        return
    if np.dtype(sendbuf.dtype) != np.dtype(recvbuf.dtype):
        raise ValueError(f"sendbuf dtype {np.dtype(sendbuf.dtype).name} differs from "
                         f"recvbuf dtype {np.dtype(recvbuf.dtype).name}")


def check_size(name, buf, expected, why):
    """``buf`` has ``expected`` elements."""
    if buf.size != expected:
        raise ValueError(f"{name} must have {expected} elements ({why}), got {buf.size}")


def check_op(op):
    """``op`` is MPI.SUM, MPI.MAX or MPI.MIN."""
    if op is _SUM or op is _MAX or op is _MIN:
        return
    reductions.op_name(op)


_SUM, _MAX, _MIN = MPI.SUM, MPI.MAX, MPI.MIN


def check_root(root, p):
    """``root`` is a rank of the communicator."""
    if not isinstance(root, (int, np.integer)) or isinstance(root, bool) or not 0 <= root < p:
        raise ValueError(f"root must be a rank in [0, {p}), got {root!r}")


def in_place(sendbuf, recvbuf):
    """``recvbuf`` when ``sendbuf`` is ``MPI.IN_PLACE`` (or ``recvbuf`` itself)."""
    return recvbuf if sendbuf is MPI.IN_PLACE else sendbuf
