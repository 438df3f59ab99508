"""Local reduction with the buffer's own array module (numpy, cupy, ...).

No branching on the array library: :func:`reducer` maps an MPI predefined operation to
the ufunc of the same name in the module that owns the buffer
(:func:`collectives.arrays.array_module`) and synchronizes the buffer's stream after each
call, so the result is complete before the next MPI call reads it.
"""
from __future__ import annotations

from collectives.arrays import array_module, synchronize
from collectives.mpi import MPI

__all__ = ["SUPPORTED_OPS", "reducer", "op_name", "copy", "scratch"]

#: MPI operation -> name of the array-module ufunc (same names in numpy and cupy).
SUPPORTED_OPS = ((MPI.SUM, "add", "sum"), (MPI.MAX, "maximum", "max"),
                 (MPI.MIN, "minimum", "min"))


def _entry(op):
    for mpi_op, ufunc, name in SUPPORTED_OPS:
        if op == mpi_op:
            return ufunc, name
    raise ValueError(f"op must be one of MPI.SUM, MPI.MAX, MPI.MIN, got {op!r}")


def op_name(op) -> str:
    """``'sum'``, ``'max'`` or ``'min'`` for an MPI op (the results-table spelling)."""
    return _entry(op)[1]


def reducer(op, buf):
    """Return ``reduce(a, b, out)`` computing ``out = a op b`` elementwise.

    The ufunc comes from ``buf``'s own array module; the stream is synchronized after
    each call.  ``a``, ``b`` and ``out`` are 1-D arrays of the same length (``out`` may
    be ``a`` or ``b``).
    """
    ufunc = getattr(array_module(buf), _entry(op)[0])

    def reduce(a, b, out):
        ufunc(a, b, out=out)
        synchronize(out)

    return reduce


def copy(dst, src) -> None:
    """``dst[...] = src`` with the buffers' array module, then synchronize."""
    array_module(dst).copyto(dst, src)
    synchronize(dst)


def scratch(buf, n: int):
    """A new uninitialized 1-D array of ``n`` elements of ``buf``'s dtype and module."""
    return array_module(buf).empty(n, dtype=buf.dtype)
