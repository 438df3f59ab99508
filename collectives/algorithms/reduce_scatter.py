"""Reduce-scatter: ring, pairwise exchange, recursive halving (with the fold).

``reduce_scatter(comm, sendbuf, recvbuf, op)``: ``sendbuf`` is the whole vector
(``count`` elements, left unchanged), ``recvbuf`` receives this rank's block of
``block_counts(count, p)[rank]`` elements, reduced over all ranks with ``op``.
The kernels are shared with :mod:`.allreduce`.
"""
from __future__ import annotations

from collectives.arrays import synchronize

from . import arguments, messages, reductions
from .blocks import block_counts, block_displs, merge_ranges
from .fold import fold

__all__ = ["ring", "pairwise", "recursive_halving", "ring_kernel", "halving_kernel"]


def ring_kernel(comm, src, counts, displs, me, members, reduce, dtype, tmp, dest):
    """Ring reduce-scatter of ``src`` over the virtual group ``members``.

    Step ``k`` sends the partial result of part ``me-k-1`` to the right neighbour,
    receives part ``me-k-2`` into ``tmp`` and reduces it with this rank's own copy into
    ``dest(part, last)`` (a view; ``last`` is True on the final step, whose part is
    ``me``).  ``len(members) - 1`` steps of one part each.
    """
    p = len(members)
    right, left = members[(me + 1) % p], members[(me - 1) % p]

    def part(buf, i):
        return buf[displs[i]:displs[i] + counts[i]]

    outgoing = None
    for k in range(p - 1):
        s, r = (me - k - 1) % p, (me - k - 2) % p
        incoming = tmp[:counts[r]]
        messages.sendrecv(comm, part(src, s) if k == 0 else outgoing, right,
                          incoming, left, dtype)
        outgoing = dest(r, k == p - 2)
        reduce(part(src, r), incoming, outgoing)


def _span(counts, displs, first, last):
    return displs[first], displs[last - 1] + counts[last - 1]


def halving_kernel(comm, src, acc, counts, displs, me, members, reduce, dtype, tmp,
                   last_out=None):
    """Recursive-halving reduce-scatter over a power-of-two virtual group.

    ``src`` is the whole input vector; ``acc = (array, base)`` stores partial results,
    element ``i`` of the vector at ``array[i - base]``.  Step ``k`` splits the parts
    still held in two halves, sends the half of ``me ^ mask`` and reduces the half kept
    (received into ``tmp``).  The final step writes into ``last_out`` when given.
    Returns the view holding part ``me`` fully reduced.
    """
    p = len(members)
    arr, base = src, 0
    lo, hi, mask = 0, p, p >> 1
    result = src[slice(*_span(counts, displs, 0, p))]
    while mask:
        partner = me ^ mask
        mid = lo + mask
        keep, give = ((lo, mid), (mid, hi)) if me < partner else ((mid, hi), (lo, mid))
        a, b = _span(counts, displs, *keep)
        g0, g1 = _span(counts, displs, *give)
        incoming = tmp[:b - a]
        messages.sendrecv(comm, arr[g0 - base:g1 - base], members[partner], incoming,
                          members[partner], dtype)
        if mask == 1 and last_out is not None:
            result = last_out
        else:
            result = acc[0][a - acc[1]:b - acc[1]]
        reduce(arr[a - base:b - base], incoming, result)
        arr, base = acc
        lo, hi = keep
        mask >>= 1
    return result


def first_half(counts, displs, me, p):
    """``(start, stop)`` of the half of the parts virtual rank ``me`` keeps first."""
    half = p // 2
    return _span(counts, displs, *((0, half) if me < half else (half, p)))


def _setup(comm, sendbuf, recvbuf, op):
    arguments.check_vector("sendbuf", sendbuf)
    arguments.check_vector("recvbuf", recvbuf)
    arguments.check_same_dtype(sendbuf, recvbuf)
    arguments.check_op(op)
    comm = messages.private(comm)
    p, rank = comm.Get_size(), comm.Get_rank()
    counts, displs = block_counts(sendbuf.size, p), block_displs(sendbuf.size, p)
    arguments.check_size("recvbuf", recvbuf, counts[rank],
                         f"block {rank} of {sendbuf.size} elements over {p} ranks")
    synchronize(sendbuf)
    synchronize(recvbuf)
    return comm, p, rank, counts, displs, reductions.reducer(op, recvbuf)


def ring(comm, sendbuf, recvbuf, op):
    """Ring reduce-scatter: p-1 steps of one block each."""
    comm, p, rank, counts, displs, reduce = _setup(comm, sendbuf, recvbuf, op)
    if p == 1:
        reductions.copy(recvbuf, sendbuf)
        return
    tmp, work = reductions.scratch(recvbuf, counts[0]), reductions.scratch(recvbuf, counts[0])
    ring_kernel(comm, sendbuf, counts, displs, rank, list(range(p)), reduce,
                messages.datatype(recvbuf), tmp,
                lambda b, last: recvbuf if last else work[:counts[b]])


def pairwise(comm, sendbuf, recvbuf, op):
    """Pairwise exchange: step k sends block rank+k to rank+k, receives from rank-k."""
    comm, p, rank, counts, displs, reduce = _setup(comm, sendbuf, recvbuf, op)
    if p == 1:
        reductions.copy(recvbuf, sendbuf)
        return
    dtype = messages.datatype(recvbuf)
    tmp = reductions.scratch(recvbuf, counts[rank])
    own = sendbuf[displs[rank]:displs[rank] + counts[rank]]
    for k in range(1, p):
        dest, source = (rank + k) % p, (rank - k) % p
        messages.sendrecv(comm, sendbuf[displs[dest]:displs[dest] + counts[dest]], dest,
                          tmp, source, dtype)
        reduce(own if k == 1 else recvbuf, tmp, recvbuf)


def recursive_halving(comm, sendbuf, recvbuf, op):
    """Recursive halving (commutative ops); other p fold first (see :mod:`.fold`).

    Folded: each even rank below ``2 rem`` sends its whole vector to the rank above,
    which reduces it; the ``p'`` survivors halve over their one- or two-block parts;
    each survivor below ``2 rem`` finally sends the absorbed rank its block.
    """
    comm, p, rank, counts, displs, reduce = _setup(comm, sendbuf, recvbuf, op)
    if p == 1:
        reductions.copy(recvbuf, sendbuf)
        return
    dtype = messages.datatype(recvbuf)
    f = fold(p)
    if f.sits_out(rank):
        messages.send(comm, sendbuf, rank + 1, dtype)
        messages.recv(comm, recvbuf, rank + 1, dtype)
        return
    pcounts, pdispls = merge_ranges(displs, counts, f.groups)
    me = f.newrank(rank)
    a, b = first_half(pcounts, pdispls, me, f.pp)
    tmp = reductions.scratch(recvbuf, b - a)
    if f.absorbs(rank):
        whole = reductions.scratch(recvbuf, sendbuf.size)
        messages.recv(comm, whole, rank - 1, dtype)
        reduce(sendbuf, whole, whole)
        mine = halving_kernel(comm, whole, (whole, 0), pcounts, pdispls, me, f.members,
                              reduce, dtype, tmp)
        messages.send(comm, mine[:counts[rank - 1]], rank - 1, dtype)
        reductions.copy(recvbuf, mine[counts[rank - 1]:])
    else:
        acc = (reductions.scratch(recvbuf, b - a), a)
        halving_kernel(comm, sendbuf, acc, pcounts, pdispls, me, f.members, reduce,
                       dtype, tmp, last_out=recvbuf)
