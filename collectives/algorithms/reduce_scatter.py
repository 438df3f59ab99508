"""Reduce-scatter: ring, pairwise exchange, recursive halving (with the fold).

``reduce_scatter(comm, sendbuf, recvbuf, op)``: ``sendbuf`` is the whole vector
(``count`` elements, left unchanged), ``recvbuf`` receives this rank's block of
``block_counts(count, p)[rank]`` elements, reduced over all ranks with ``op``.
The kernels are shared with :mod:`.allreduce`.
"""
from __future__ import annotations

import functools

from collectives.arrays import synchronize

from . import arguments, messages, reductions
from .blocks import layout, merged_layout
from .fold import fold

__all__ = ["ring", "pairwise", "recursive_halving", "ring_kernel", "halving_kernel"]


@functools.lru_cache(maxsize=1024)
def _ring_plan(counts, displs, me, members):
    """``(right, left, first, steps)`` of :func:`ring_kernel`: ``first`` the span of the
    part sent at step 0, a step ``(part received, its start, its stop, last?)``."""
    p = len(members)
    s = (me - 1) % p
    steps = tuple(((me - k - 2) % p,) + _span(counts, displs, (me - k - 2) % p,
                                               (me - k - 2) % p + 1) + (k == p - 2,)
                  for k in range(p - 1))
    return (members[(me + 1) % p], members[(me - 1) % p], _span(counts, displs, s, s + 1),
            steps)


def ring_kernel(comm, src, counts, displs, me, members, reduce, dtype, tmp, dest):
    """Ring reduce-scatter of ``src`` over the virtual group ``members``.

    Step ``k`` sends the partial result of part ``me-k-1`` to the right neighbour,
    receives part ``me-k-2`` into ``tmp`` and reduces it with this rank's own copy into
    ``dest(part, last)`` (a view; ``last`` is True on the final step, whose part is
    ``me``).  ``len(members) - 1`` steps of one part each.  ``counts``, ``displs`` and
    ``members`` are tuples (the step plan is cached on them).
    """
    right, left, (s0, s1), steps = _ring_plan(counts, displs, me, members)
    sendrecv = messages.sendrecv
    outgoing = src[s0:s1]
    for r, r0, r1, last in steps:
        incoming = tmp[:r1 - r0]
        sendrecv(comm, outgoing, right, incoming, left, dtype)
        outgoing = dest(r, last)
        reduce(src[r0:r1], incoming, outgoing)


def _span(counts, displs, first, last):
    return displs[first], displs[last - 1] + counts[last - 1]


@functools.lru_cache(maxsize=1024)
def _halving_plan(counts, displs, me, members):
    """``(whole, steps)`` of :func:`halving_kernel`: the span of all parts, and per
    step ``(partner, kept start, kept stop, given start, given stop)``."""
    steps, lo, hi, mask = [], 0, len(members), len(members) >> 1
    while mask:
        partner = me ^ mask
        mid = lo + mask
        keep, give = ((lo, mid), (mid, hi)) if me < partner else ((mid, hi), (lo, mid))
        steps.append((members[partner],) + _span(counts, displs, *keep)
                     + _span(counts, displs, *give))
        lo, hi = keep
        mask >>= 1
    return _span(counts, displs, 0, len(members)), tuple(steps)


def halving_kernel(comm, src, acc, counts, displs, me, members, reduce, dtype, tmp,
                   last_out=None):
    """Recursive-halving reduce-scatter over a power-of-two virtual group.

    ``src`` is the whole input vector; ``acc = (array, base)`` stores partial results,
    element ``i`` of the vector at ``array[i - base]``.  Step ``k`` splits the parts
    still held in two halves, sends the half of ``me ^ mask`` and reduces the half kept
    (received into ``tmp``).  The final step writes into ``last_out`` when given.
    Returns the view holding part ``me`` fully reduced.  ``counts``, ``displs`` and
    ``members`` are tuples (the step plan is cached on them).
    """
    whole, steps = _halving_plan(counts, displs, me, members)
    if not steps:
        return src[whole[0]:whole[1]]
    arr, base = src, 0
    final = len(steps) - 1
    sendrecv = messages.sendrecv
    for k, (partner, a, b, g0, g1) in enumerate(steps):
        incoming = tmp[:b - a]
        sendrecv(comm, arr[g0 - base:g1 - base], partner, incoming, partner, dtype)
        if k == final and last_out is not None:
            result = last_out
        else:
            result = acc[0][a - acc[1]:b - acc[1]]
        reduce(arr[a - base:b - base], incoming, result)
        arr, base = acc
    return result


def first_half(counts, displs, me, p):
    """``(start, stop)`` of the half of the parts virtual rank ``me`` keeps first."""
    half = p // 2
    return _span(counts, displs, *((0, half) if me < half else (half, p)))


def _setup(comm, sendbuf, recvbuf, op):
    """Validate; return (context, counts, displs, reduce)."""
    arguments.check_vector("sendbuf", sendbuf)
    arguments.check_vector("recvbuf", recvbuf)
    arguments.check_same_dtype(sendbuf, recvbuf)
    arguments.check_op(op)
    ctx = messages.context(comm)
    p, rank = ctx.p, ctx.rank
    counts, displs = layout(sendbuf.size, p)
    if recvbuf.size != counts[rank]:
        arguments.check_size("recvbuf", recvbuf, counts[rank],
                             f"block {rank} of {sendbuf.size} elements over {p} ranks")
    synchronize(sendbuf)
    synchronize(recvbuf)
    return ctx, counts, displs, reductions.reducer(op, recvbuf)


def ring(comm, sendbuf, recvbuf, op):
    """Ring reduce-scatter: p-1 steps of one block each."""
    ctx, counts, displs, reduce = _setup(comm, sendbuf, recvbuf, op)
    if ctx.p == 1:
        reductions.copy(recvbuf, sendbuf)
        return
    tmp = reductions.scratch(recvbuf, counts[0], ctx.scratch, 0)
    work = reductions.scratch(recvbuf, counts[0], ctx.scratch, 1)
    ring_kernel(ctx.private, sendbuf, counts, displs, ctx.rank, ctx.members, reduce,
                messages.datatype(recvbuf), tmp,
                lambda b, last: recvbuf if last else work[:counts[b]])


def pairwise(comm, sendbuf, recvbuf, op):
    """Pairwise exchange: step k sends block rank+k to rank+k, receives from rank-k."""
    ctx, counts, displs, reduce = _setup(comm, sendbuf, recvbuf, op)
    comm, p, rank = ctx.private, ctx.p, ctx.rank
    if p == 1:
        reductions.copy(recvbuf, sendbuf)
        return
    dtype = messages.datatype(recvbuf)
    tmp = reductions.scratch(recvbuf, counts[rank], ctx.scratch, 0)
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
    ctx, counts, displs, reduce = _setup(comm, sendbuf, recvbuf, op)
    comm, p, rank = ctx.private, ctx.p, ctx.rank
    if p == 1:
        reductions.copy(recvbuf, sendbuf)
        return
    dtype = messages.datatype(recvbuf)
    f = fold(p)
    if f.sits_out(rank):
        messages.send(comm, sendbuf, rank + 1, dtype)
        messages.recv(comm, recvbuf, rank + 1, dtype)
        return
    pcounts, pdispls = merged_layout(sendbuf.size, p, f.groups)
    me = f.newrank(rank)
    a, b = first_half(pcounts, pdispls, me, f.pp)
    tmp = reductions.scratch(recvbuf, b - a, ctx.scratch, 0)
    if f.absorbs(rank):
        whole = reductions.scratch(recvbuf, sendbuf.size, ctx.scratch, 1)
        messages.recv(comm, whole, rank - 1, dtype)
        reduce(sendbuf, whole, whole)
        mine = halving_kernel(comm, whole, (whole, 0), pcounts, pdispls, me, f.members,
                              reduce, dtype, tmp)
        messages.send(comm, mine[:counts[rank - 1]], rank - 1, dtype)
        reductions.copy(recvbuf, mine[counts[rank - 1]:])
    else:
        acc = (reductions.scratch(recvbuf, b - a, ctx.scratch, 1), a)
        halving_kernel(comm, sendbuf, acc, pcounts, pdispls, me, f.members, reduce,
                       dtype, tmp, last_out=recvbuf)
