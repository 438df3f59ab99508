"""Local reduction with the buffer's own array module (numpy, cupy, ...).

No branching on the array library: :func:`reducer` maps an MPI predefined operation to
the ufunc of the same name in the module that owns the buffer
(:func:`collectives.arrays.array_module`) and synchronizes the buffer's stream after each
call, so the result is complete before the next MPI call reads it.  Host (numpy)
buffers take short paths where the general one would only add cost: no stream to
synchronize, plain assignment for copies, scratch arrays reused between calls.
"""
from __future__ import annotations

import numpy as np

from collectives.arrays import array_module, synchronize
from collectives.mpi import MPI

__all__ = ["SUPPORTED_OPS", "reducer", "op_name", "copy", "scratch"]

#: MPI operation -> name of the array-module ufunc (same names in numpy and cupy).
SUPPORTED_OPS = ((MPI.SUM, "add", "sum"), (MPI.MAX, "maximum", "max"),
                 (MPI.MIN, "minimum", "min"))


def _entry(op):
    for mpi_op, ufunc, name in SUPPORTED_OPS:
        if op is mpi_op:
            return ufunc, name
    for mpi_op, ufunc, name in SUPPORTED_OPS:
        if op == mpi_op:
            return ufunc, name
    raise ValueError(f"op must be one of MPI.SUM, MPI.MAX, MPI.MIN, got {op!r}")


def op_name(op) -> str:
    """``'sum'``, ``'max'`` or ``'min'`` for an MPI op (the results-table spelling)."""
    return _entry(op)[1]


#: ``(ufunc name, array module) -> reduce``: built once per pair.
_REDUCERS: dict = {}


def reducer(op, buf):
    """Return ``reduce(a, b, out)`` computing ``out = a op b`` elementwise.

    The ufunc comes from ``buf``'s own array module; for device buffers the stream is
    synchronized after each call (for host buffers that is a no-op and is skipped).
    ``a``, ``b`` and ``out`` are 1-D arrays of the same length (``out`` may be ``a`` or
    ``b``).  Cached per (op, module): every call on the same pair returns the same
    function.
    """
    if type(buf) is np.ndarray:
        for mpi_op, reduce in _HOST_REDUCERS:
            if op is mpi_op:
                return reduce
    ufunc_name = _entry(op)[0]
    module = array_module(buf)
    key = (ufunc_name, module)
    reduce = _REDUCERS.get(key)
    if reduce is None:
        reduce = _REDUCERS[key] = _make_reducer(getattr(module, ufunc_name), module is np)
    return reduce


def _make_reducer(ufunc, host):
    if host:  # no stream to synchronize
        def reduce(a, b, out):
            ufunc(a, b, out=out)
    else:
        def reduce(a, b, out):
            ufunc(a, b, out=out)
            synchronize(out)
    return reduce


#: ``(MPI op, reduce)`` for numpy buffers: the fast path of :func:`reducer`.
_HOST_REDUCERS = tuple((mpi_op, _make_reducer(getattr(np, ufunc), True))
                       for mpi_op, ufunc, _ in SUPPORTED_OPS)


def copy(dst, src) -> None:
    """``dst[...] = src`` with the buffers' array module, then synchronize."""
    if type(dst) is np.ndarray:  # host: no stream; plain assignment beats np.copyto
        dst[...] = src
        return
    array_module(dst).copyto(dst, src)
    synchronize(dst)


#: Host scratch arrays up to this many bytes are kept for reuse (see :func:`scratch`).
SCRATCH_CACHE_BYTES = 64 << 20


def scratch(buf, n: int, cache=None, slot=0):
    """An uninitialized 1-D array of ``n`` elements of ``buf``'s dtype and module.

    With ``cache`` (a dict, :attr:`.messages.Context.scratch` of the communicator) host
    arrays of at most :data:`SCRATCH_CACHE_BYTES` are reused from call to call: slot
    ``slot`` keeps one array, replaced by a larger one when needed, and a view of its
    first ``n`` elements is returned.  Arrays used at the same time need distinct slots.
    """
    if cache is not None and type(buf) is np.ndarray:
        kept = cache.get(slot)
        dtype = buf.dtype
        if kept is not None and kept.dtype is dtype and kept.size >= n:
            return kept if kept.size == n else kept[:n]
        if n * dtype.itemsize <= SCRATCH_CACHE_BYTES:
            cache[slot] = kept = np.empty(n, dtype=dtype)
            return kept
    return array_module(buf).empty(n, dtype=buf.dtype)
