"""What one measured point runs: its buffers, the timed call, and its correctness check.

:func:`prepare` turns ``(communicator, collective, algorithm, bytes, dtype, op, buffer)``
into a :class:`Prepared` record holding

``call``
    a zero-argument closure doing ONE operation, with every argument prebuilt (buffer
    specs ``[buf, count, MPI datatype]``, bound methods), so the timed region holds
    nothing but the call;
``check``
    runs the operation once on known data, outside the timed region, and returns
    whether every rank of the communicator got the expected result;
``scale``
    factor applied to measured times (0.5 for the ping-pong: half the round trip);
``native``
    the same operation described for the compiled timing loop
    (:class:`collectives.cloop.NativeOp`), for the library's own operations on host
    (numpy) buffers; None for hand-written algorithms, ``reduce_local`` and device
    buffers, which the harness's Python loop times.

``bytes`` follows :func:`collectives.costs.size_convention`; ``count`` is the element
count of the whole vector.  Counts not divisible by ``p`` use the blocks of
:mod:`collectives.algorithms.blocks` (the native reduce-scatter and allgather then call
``Reduce_scatter``/``Allgatherv`` instead of ``Reduce_scatter_block``/``Allgather``).

Operations (``native`` = the MPI library's own)::

    bcast           Bcast from rank 0 (in place)
    reduce_scatter  Reduce_scatter_block (sendbuf: count, recvbuf: this rank's block)
    allreduce       Allreduce (sendbuf and recvbuf: count)
    allgather       Allgather (sendbuf: this rank's block, recvbuf: count)
    pingpong        ranks 0 and 1 of a 2-rank communicator: Send, Recv back; time / 2
    reduce_local    out = out op in with the buffer's array module (no communication)

Hand-written algorithms come from ``collectives.algorithms.get(collective, name)`` with
the conventions ``bcast(comm, buf, root=0)``, ``reduce_scatter(comm, sendbuf, recvbuf,
op)``, ``allreduce(comm, sendbuf, recvbuf, op)``, ``allgather(comm, sendbuf, recvbuf)``.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from . import gpu
from .arrays import is_device, synchronize
from .costs import AUXILIARY, COLLECTIVES, NATIVE

__all__ = ["DTYPES", "OPS", "BUFFERS", "MAX_COUNT", "Prepared", "element_count",
           "memory_per_rank", "allocate", "mpi_op", "prepare"]

#: Element types the sweep accepts (those of collectives.algorithms.arguments, kept
#: here so validating a command line does not initialize MPI).
DTYPES = ("float32", "float64", "int32", "int64")
#: Reduction operations the sweep accepts (names as in the results).
OPS = ("sum", "max", "min")
#: Buffer kinds :func:`allocate` knows: numpy, cupy, cupy-staged (:mod:`collectives.gpu`).
BUFFERS = gpu.BUFFERS
#: Largest element count a classic (non-``_c``) MPI call takes.
MAX_COUNT = 2**31 - 1

_PATTERN_PERIOD = 7
_PINGPONG_TAG = 17


@dataclass(frozen=True)
class Prepared:
    """One point ready to time: ``call()`` does one operation, ``check()`` verifies."""

    collective: str
    algorithm: str
    count: int
    call: Callable[[], None]
    check: Callable[[], bool]
    scale: float = 1.0
    #: buffers the MPI call reads / writes on this rank (host staging copies them)
    inputs: tuple = ()
    outputs: tuple = ()
    #: the same operation for the compiled timing loop (collectives.cloop.NativeOp):
    #: set for the library's own operations on host buffers, None otherwise
    native: object = None


def element_count(nbytes: int, dtype: str) -> int:
    """Elements in ``nbytes`` bytes of ``dtype``; ``ValueError`` unless it divides."""
    size = np.dtype(_check_dtype(dtype)).itemsize
    if int(nbytes) < 0:
        raise ValueError(f"size must be >= 0 bytes, got {nbytes}")
    if int(nbytes) % size:
        raise ValueError(f"size {nbytes} B is not a multiple of the {dtype} element "
                         f"size ({size} B)")
    return int(nbytes) // size


def memory_per_rank(collective: str, nbytes: int, p: int, algorithm: str = NATIVE) -> int:
    """Estimate of the bytes one rank allocates for a point (buffers + check + scratch).

    Buffers: bcast n, pingpong 2n (rank 0 sends one buffer and receives into another),
    allreduce and reduce_local 2n, reduce_scatter and allgather n + ceil(n/p).  The
    correctness check builds one n-byte reference; hand-written algorithms are allowed
    2n bytes of scratch (the recursive-halving fold holds up to 1.5n on absorbing ranks).
    """
    n, p = int(nbytes), int(p)
    block = -(-n // max(p, 1))
    buffers = {"bcast": n, "pingpong": 2 * n, "allreduce": 2 * n, "reduce_local": 2 * n,
               "reduce_scatter": n + block, "allgather": n + block}
    try:
        total = buffers[collective] + n
    except KeyError:
        raise ValueError(f"unknown collective {collective!r}; expected one of "
                         f"{', '.join(buffers)}") from None
    return total + (2 * n if algorithm != NATIVE else 0)


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def allocate(count: int, dtype: str, buffer: str = "numpy"):
    """The one buffer allocator: ``count`` elements of ``dtype`` in ``buffer`` memory.

    Contents are zeros.  ``numpy``: host memory starting on a page boundary, as OSU's
    and the C reference loop's buffers do (numpy's own start mid-page for mid-sized
    arrays; measured with benchmarks/bench_c_loop.py, the MPICH ping-pong at 8-256 KiB
    then ran 6-7% slower than the reference).  ``cupy``: device memory (current GPU).
    ``cupy-staged``: the page-locked HOST buffer the MPI call uses; :func:`prepare` adds
    its device twin and the copies (:func:`collectives.gpu.stage_point`), so MPI never
    sees device memory.
    """
    _check_dtype(dtype)
    if buffer not in BUFFERS:
        raise ValueError(f"buffer must be one of {', '.join(BUFFERS)}, got {buffer!r}")
    if buffer == "cupy":
        return gpu.device_zeros(count, dtype)
    if buffer == "cupy-staged":
        return gpu.pinned_zeros(count, dtype)
    return page_aligned_zeros(int(count), dtype)


PAGE = 4096


def page_aligned_zeros(count: int, dtype) -> np.ndarray:
    """``np.zeros(count, dtype)`` whose data start on a ``PAGE`` boundary (a view into a
    slightly larger byte array, which it keeps alive)."""
    dt = np.dtype(dtype)
    nbytes = int(count) * dt.itemsize
    raw = np.zeros(nbytes + PAGE, dtype=np.uint8)
    start = (-raw.ctypes.data) % PAGE
    return raw[start:start + nbytes].view(dt)


def mpi_op(name: str):
    """The MPI operation for ``sum``, ``max`` or ``min``."""
    from .algorithms.reductions import SUPPORTED_OPS
    for op, _, op_name in SUPPORTED_OPS:
        if op_name == name:
            return op
    raise ValueError(f"op must be one of {', '.join(OPS)}, got {name!r}")


def _mpi_type(dtype: str):
    """The predefined MPI datatype of ``dtype`` (reductions need predefined types)."""
    from .algorithms.messages import datatype
    return datatype(np.dtype(_check_dtype(dtype)))


def _view(buf):
    """What MPI gets: a memoryview of host memory (mpi4py then skips its buffer-type
    guessing), the array itself for device memory."""
    return buf if is_device(buf) else memoryview(buf)


def _spec(buf, count: int, dtype: str) -> list:
    """Prebuilt message spec ``[buffer, count, MPI datatype]``."""
    return [_view(buf), int(count), _mpi_type(dtype)]


# ---------------------------------------------------------------------------------
# Reference data for the correctness check: rank r contributes c(r) * g(i), with
# g(i) = 1 + i mod 7 at global element index i and c(r) = 1 + r mod m.  m = p (every
# rank distinct) unless a sum over the ranks would pass the integers the dtype holds
# exactly (float32: 2^24, from ~2190 ranks on); then m is the largest period that keeps
# every partial sum exact, so the check does not depend on the reduction order.
# ---------------------------------------------------------------------------------

_EXACT_INTEGERS = {"float32": 2**24, "float64": 2**53, "int32": 2**31 - 1,
                   "int64": 2**63 - 1}


def _factor_sum(p: int, m: int) -> int:
    """Sum of c(r) = 1 + r mod m over r = 0..p-1."""
    q, rem = divmod(p, m)
    return q * m * (m + 1) // 2 + rem * (rem + 1) // 2


@functools.lru_cache(maxsize=64)
def _rank_period(p: int, dtype: str) -> int:
    """The period m of the rank factors c(r) (see above)."""
    limit = _EXACT_INTEGERS[_check_dtype(dtype)] // _PATTERN_PERIOD
    for m in range(p, 0, -1):
        if _factor_sum(p, m) <= limit:
            return m
    raise ValueError(f"the correctness check of {p} ranks cannot stay exact in {dtype}")


def _rank_factor(rank: int, p: int, dtype: str) -> int:
    """c(rank): the multiple of g(i) rank ``rank`` contributes to a reduction."""
    return 1 + rank % _rank_period(p, dtype)

def _pattern(start: int, length: int, dtype: str) -> np.ndarray:
    """g(i) for i in [start, start + length) as ``dtype`` (host array)."""
    base = np.arange(1, _PATTERN_PERIOD + 1, dtype=dtype)
    return np.resize(np.roll(base, -(start % _PATTERN_PERIOD)), length)


def _op_factor(op: str, p: int, dtype: str) -> int:
    """op over r = 0..p-1 of c(r): the multiple of g(i) a reduction yields."""
    m = _rank_period(p, dtype)
    return {"sum": _factor_sum(p, m), "max": min(p, m), "min": 1}[op]


def _host(buf) -> np.ndarray:
    return buf.get() if is_device(buf) else buf


def _fill(buf, values) -> None:
    if is_device(buf):
        buf.set(np.ascontiguousarray(values))
        synchronize(buf)  # the copy has landed before MPI reads the buffer
    else:
        buf[...] = values


def _agree(comm, ok: bool) -> bool:
    from .mpi import MPI
    return bool(comm.allreduce(bool(ok), op=MPI.LAND))


def _algorithm(collective: str, algorithm: str):
    if algorithm == NATIVE:
        return None
    try:
        from . import algorithms
        get = algorithms.get
    except (ImportError, AttributeError):
        raise ValueError(f"algorithm {algorithm!r}: hand-written algorithms are not "
                         "available (collectives.algorithms.get is missing)") from None
    return get(collective, algorithm)


def prepare(comm, collective: str, algorithm: str, nbytes: int, dtype: str,
            op: str = "sum", buffer: str = "numpy") -> Prepared:
    """Allocate the buffers of one point on ``comm`` and build its call and check.

    Collective in the sense that every rank of ``comm`` must call it with the same
    arguments (it does no communication itself).  ``pingpong`` needs exactly 2 ranks.
    """
    if collective not in COLLECTIVES + AUXILIARY:
        raise ValueError(f"unknown collective {collective!r}; expected one of "
                         f"{', '.join(COLLECTIVES + AUXILIARY)}")
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")
    count = element_count(nbytes, dtype)
    if count > MAX_COUNT:
        raise ValueError(f"size {nbytes} B is {count} elements of {dtype}, more than "
                         f"an MPI count holds ({MAX_COUNT})")
    if collective in AUXILIARY and algorithm != NATIVE:
        raise ValueError(f"{collective} has only the {NATIVE!r} algorithm, got "
                         f"{algorithm!r}")
    builder = _BUILDERS[collective]
    point = builder(comm, algorithm, count, dtype, op, buffer)
    if buffer != "numpy" and point.native is not None:
        # device buffers: the timed call synchronizes the device, the C loop does not
        point = dataclasses.replace(point, native=None)
    if buffer == "cupy-staged" and collective != "reduce_local":
        point = gpu.stage_point(point, comm)
    return point


def _native(kind, *args, **kw):
    from .cloop import NativeOp
    return NativeOp(kind, *args, **kw)


def _blocks(count, p):
    from .algorithms.blocks import block_counts, block_displs
    return block_counts(count, p), block_displs(count, p)


def _bcast(comm, algorithm, count, dtype, op, buffer):
    rank = comm.Get_rank()
    buf = allocate(count, dtype, buffer)
    fn = _algorithm("bcast", algorithm)
    native = None
    if fn is None:
        call = partial(comm.Bcast, _spec(buf, count, dtype), 0)
        if buffer == "numpy":
            native = _native("bcast", send=buf, count=count, datatype=_mpi_type(dtype),
                             root=0)
    else:
        call = partial(fn, comm, buf, root=0)

    def check():
        expected = _pattern(0, count, dtype)
        _fill(buf, expected if rank == 0 else np.zeros(count, dtype))
        call()
        return _agree(comm, np.array_equal(_host(buf), expected))

    return Prepared("bcast", algorithm, count, call, check,
                    inputs=(buf,) if rank == 0 else (), outputs=() if rank == 0 else (buf,),
                    native=native)


def _allreduce(comm, algorithm, count, dtype, op, buffer):
    rank, p = comm.Get_rank(), comm.Get_size()
    send, recv = allocate(count, dtype, buffer), allocate(count, dtype, buffer)
    mop = mpi_op(op)
    fn = _algorithm("allreduce", algorithm)
    native = None
    if fn is None:
        call = partial(comm.Allreduce, _spec(send, count, dtype), _spec(recv, count, dtype),
                       mop)
        if buffer == "numpy":
            native = _native("allreduce", send, recv, count, _mpi_type(dtype), mop)
    else:
        call = partial(fn, comm, send, recv, mop)

    def check():
        g = _pattern(0, count, dtype)
        _fill(send, g * _rank_factor(rank, p, dtype))
        _fill(recv, np.zeros(count, dtype))
        call()
        return _agree(comm, np.array_equal(_host(recv), g * _op_factor(op, p, dtype)))

    return Prepared("allreduce", algorithm, count, call, check, inputs=(send,),
                    outputs=(recv,), native=native)


def _reduce_scatter(comm, algorithm, count, dtype, op, buffer):
    rank, p = comm.Get_rank(), comm.Get_size()
    counts, displs = _blocks(count, p)
    mine = counts[rank]
    send, recv = allocate(count, dtype, buffer), allocate(mine, dtype, buffer)
    mop = mpi_op(op)
    fn = _algorithm("reduce_scatter", algorithm)
    native = None
    if fn is None:
        if count % p == 0:
            call = partial(comm.Reduce_scatter_block, _spec(send, mine, dtype),
                           _spec(recv, mine, dtype), mop)
            kind = "reduce_scatter_block"
        else:
            call = partial(comm.Reduce_scatter, _spec(send, count, dtype),
                           _spec(recv, mine, dtype), counts, mop)
            kind = "reduce_scatter"
        if buffer == "numpy":
            native = _native(kind, send, recv, mine, _mpi_type(dtype), mop,
                             counts=counts if kind == "reduce_scatter" else None)
    else:
        call = partial(fn, comm, send, recv, mop)

    def check():
        _fill(send, _pattern(0, count, dtype) * _rank_factor(rank, p, dtype))
        _fill(recv, np.zeros(mine, dtype))
        call()
        expected = _pattern(displs[rank], mine, dtype) * _op_factor(op, p, dtype)
        return _agree(comm, np.array_equal(_host(recv), expected))

    return Prepared("reduce_scatter", algorithm, count, call, check, inputs=(send,),
                    outputs=(recv,), native=native)


def _allgather(comm, algorithm, count, dtype, op, buffer):
    rank, p = comm.Get_rank(), comm.Get_size()
    counts, displs = _blocks(count, p)
    mine = counts[rank]
    send, recv = allocate(mine, dtype, buffer), allocate(count, dtype, buffer)
    fn = _algorithm("allgather", algorithm)
    native = None
    if fn is None:
        if count % p == 0:
            call = partial(comm.Allgather, _spec(send, mine, dtype), _spec(recv, mine, dtype))
            kind = "allgather"
        else:
            call = partial(comm.Allgatherv, _spec(send, mine, dtype),
                           [_view(recv), (counts, displs), _mpi_type(dtype)])
            kind = "allgatherv"
        if buffer == "numpy":
            native = _native(kind, send, recv, mine, _mpi_type(dtype),
                             counts=counts if kind == "allgatherv" else None,
                             displs=displs if kind == "allgatherv" else None)
    else:
        call = partial(fn, comm, send, recv)

    def check():
        _fill(send, _pattern(displs[rank], mine, dtype) * (rank + 1))
        _fill(recv, np.zeros(count, dtype))
        call()
        owners = np.repeat(np.arange(1, p + 1, dtype=dtype), counts)
        return _agree(comm, np.array_equal(_host(recv), _pattern(0, count, dtype) * owners))

    return Prepared("allgather", algorithm, count, call, check, inputs=(send,),
                    outputs=(recv,), native=native)


def _pingpong(comm, algorithm, count, dtype, op, buffer):
    rank, p = comm.Get_rank(), comm.Get_size()
    if p != 2:
        raise ValueError(f"pingpong needs a 2-rank communicator, got {p} ranks")
    send, recv = allocate(count, dtype, buffer), allocate(count, dtype, buffer)
    sspec, rspec = _spec(send, count, dtype), _spec(recv, count, dtype)
    Send, Recv, tag = comm.Send, comm.Recv, _PINGPONG_TAG
    if rank == 0:
        def call():
            Send(sspec, 1, tag)
            Recv(rspec, 1, tag)
    elif buffer == "cupy-staged":
        # the echo of a staged message lands on the device and leaves from it
        relay = gpu.device_relay(recv)

        def call():
            Recv(rspec, 0, tag)
            relay()
            Send(rspec, 0, tag)
    else:
        # rank 1 echoes what it received: it sends its receive buffer back
        def call():
            Recv(rspec, 0, tag)
            Send(rspec, 0, tag)

    def check():
        g = _pattern(0, count, dtype)
        _fill(send, g if rank == 0 else np.zeros(count, dtype))
        _fill(recv, np.zeros(count, dtype))
        call()
        return _agree(comm, np.array_equal(_host(recv), g))

    native = _native("pingpong", send, recv, count, _mpi_type(dtype), tag=tag) \
        if buffer == "numpy" else None
    return Prepared("pingpong", algorithm, count, call, check, scale=0.5,
                    inputs=(send,) if rank == 0 else (),
                    outputs=(recv,) if rank == 0 else (), native=native)


def _reduce_local(comm, algorithm, count, dtype, op, buffer):
    from .algorithms.reductions import reducer
    if buffer == "cupy-staged":
        buffer = "cupy"  # no MPI call to stage: the kernel runs on the device
    out, inp = allocate(count, dtype, buffer), allocate(count, dtype, buffer)
    reduce = reducer(mpi_op(op), out)

    call = partial(reduce, out, inp, out)

    def check():
        g = _pattern(0, count, dtype)
        _fill(out, g)
        _fill(inp, g)
        call()
        expected = {"sum": g * 2, "max": g, "min": g}[op]
        return _agree(comm, np.array_equal(_host(out), expected))

    return Prepared("reduce_local", algorithm, count, call, check)


_BUILDERS = {"bcast": _bcast, "allreduce": _allreduce, "reduce_scatter": _reduce_scatter,
             "allgather": _allgather, "pingpong": _pingpong, "reduce_local": _reduce_local}
