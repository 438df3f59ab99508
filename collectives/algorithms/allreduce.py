"""All-reduce: ring, binomial tree, recursive doubling, Rabenseifner.

``allreduce(comm, sendbuf, recvbuf, op)``: whole vectors on every rank.  ``sendbuf`` may
be ``recvbuf`` itself or ``MPI.IN_PLACE`` (in place); otherwise it is left unchanged.
Every rank ends with bitwise the same result (each partial result is computed once and
copied, or computed symmetrically with a commutative op).
"""
from __future__ import annotations

from collectives.arrays import synchronize

from . import arguments, messages, reductions
from .allgather import doubling_inplace, ring_inplace
from .bcast import binomial_inplace
from .blocks import layout
from .fold import fold
from .reduce_scatter import first_half, halving_kernel, ring_kernel

__all__ = ["ring", "binomial", "recursive_doubling", "rabenseifner"]


def _setup(comm, sendbuf, recvbuf, op):
    """Validate; return (context, sendbuf, reduce, dtype) or None when p=1."""
    arguments.check_vector("recvbuf", recvbuf)
    sendbuf = arguments.in_place(sendbuf, recvbuf)
    arguments.check_vector("sendbuf", sendbuf)
    arguments.check_same_dtype(sendbuf, recvbuf)
    if recvbuf.size != sendbuf.size:
        arguments.check_size("recvbuf", recvbuf, sendbuf.size,
                             "the whole vector, like sendbuf")
    arguments.check_op(op)
    ctx = messages.context(comm)
    synchronize(sendbuf)
    synchronize(recvbuf)
    if ctx.p == 1:
        if sendbuf is not recvbuf:
            reductions.copy(recvbuf, sendbuf)
        return None
    return ctx, sendbuf, reductions.reducer(op, recvbuf), messages.datatype(recvbuf)


def ring(comm, sendbuf, recvbuf, op):
    """Ring reduce-scatter then ring allgather, both in ``recvbuf``: 2(p-1) steps."""
    args = _setup(comm, sendbuf, recvbuf, op)
    if args is None:
        return
    ctx, sendbuf, reduce, dtype = args
    comm, rank, members = ctx.private, ctx.rank, ctx.members
    counts, displs = layout(recvbuf.size, ctx.p)
    ring_kernel(comm, sendbuf, counts, displs, rank, members, reduce, dtype,
                reductions.scratch(recvbuf, counts[0], ctx.scratch, 0),
                lambda b, last: recvbuf[displs[b]:displs[b] + counts[b]])
    ring_inplace(comm, recvbuf, counts, displs, rank, members, dtype)


def binomial(comm, sendbuf, recvbuf, op):
    """Binomial-tree reduce to rank 0, then binomial broadcast: 2 ceil(lg p) rounds."""
    args = _setup(comm, sendbuf, recvbuf, op)
    if args is None:
        return
    ctx, current, reduce, dtype = args
    comm, p, rank = ctx.private, ctx.p, ctx.rank
    tmp = None
    mask = 1
    while mask < p:
        if rank & mask:
            messages.send(comm, current, rank - mask, dtype)
            break
        if rank + mask < p:
            if tmp is None:
                tmp = reductions.scratch(recvbuf, recvbuf.size, ctx.scratch, 0)
            messages.recv(comm, tmp, rank + mask, dtype)
            reduce(current, tmp, recvbuf)
            current = recvbuf
        mask <<= 1
    binomial_inplace(comm, recvbuf, rank, ctx.members, dtype)


def _folded(ctx, f, current, recvbuf, reduce, dtype, scratch_size, survivors):
    """Run ``survivors(current, tmp, newrank)`` on the ``p'`` survivors of the fold.

    Fold in: each even rank below ``2 rem`` sends its whole vector to the rank above,
    which reduces it into ``recvbuf``; fold out: that rank sends the result back.
    ``tmp`` holds at least ``scratch_size`` elements (the whole vector on absorbing
    ranks, which receive into it first).
    """
    comm, rank = ctx.private, ctx.rank
    if f.sits_out(rank):
        messages.send(comm, current, rank + 1, dtype)
        messages.recv(comm, recvbuf, rank + 1, dtype)
        return
    if f.absorbs(rank):
        tmp = reductions.scratch(recvbuf, recvbuf.size, ctx.scratch, 0)
        messages.recv(comm, tmp, rank - 1, dtype)
        reduce(current, tmp, recvbuf)
        current = recvbuf
    else:
        tmp = reductions.scratch(recvbuf, scratch_size, ctx.scratch, 0)
    survivors(current, tmp, f.newrank(rank))
    if f.absorbs(rank):
        messages.send(comm, recvbuf, rank - 1, dtype)


def recursive_doubling(comm, sendbuf, recvbuf, op):
    """Recursive doubling of the whole vector; other p fold first (see :mod:`.fold`).

    ``lg p'`` exchanges of the whole vector, plus the fold in and out when p is not a
    power of two.
    """
    args = _setup(comm, sendbuf, recvbuf, op)
    if args is None:
        return
    ctx, current, reduce, dtype = args
    comm, f = ctx.private, fold(ctx.p)

    def survivors(current, tmp, me):
        mask = 1
        while mask < f.pp:
            partner = f.members[me ^ mask]
            messages.sendrecv(comm, current, partner, tmp, partner, dtype)
            reduce(current, tmp, recvbuf)
            current = recvbuf
            mask <<= 1

    _folded(ctx, f, current, recvbuf, reduce, dtype, recvbuf.size, survivors)


def rabenseifner(comm, sendbuf, recvbuf, op):
    """Recursive-halving reduce-scatter then recursive-doubling allgather (Rabenseifner).

    The ``p'`` survivors of the fold split the vector into ``p'`` equal parts (any count:
    ``block_counts(count, p')``), so only the fold itself moves whole vectors.
    """
    args = _setup(comm, sendbuf, recvbuf, op)
    if args is None:
        return
    ctx, current, reduce, dtype = args
    comm, f = ctx.private, fold(ctx.p)
    counts, displs = layout(recvbuf.size, f.pp)
    a, b = first_half(counts, displs, max(f.newrank(ctx.rank), 0), f.pp)

    def survivors(current, tmp, me):
        halving_kernel(comm, current, (recvbuf, 0), counts, displs, me, f.members, reduce,
                       dtype, tmp)
        doubling_inplace(comm, recvbuf, counts, displs, me, f.members, dtype)

    _folded(ctx, f, current, recvbuf, reduce, dtype, b - a, survivors)
