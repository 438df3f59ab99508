"""Allgather: ring and recursive doubling, plus the in-place kernels other algorithms use.

``allgather(comm, sendbuf, recvbuf)``: ``sendbuf`` is this rank's block of
``block_counts(recvbuf.size, p)[rank]`` elements (or ``MPI.IN_PLACE`` when the block is
already in ``recvbuf``), ``recvbuf`` the whole vector.  The kernels work on a "virtual"
group: ``members[i]`` is the communicator rank playing virtual rank ``i`` and
``counts``/``displs`` give the part of the vector each virtual rank owns (all three
tuples: the kernels' message plans are cached on them).
"""
from __future__ import annotations

import functools

from collectives.arrays import synchronize
from collectives.mpi import MPI

from . import arguments, messages, reductions
from .blocks import layout, merged_layout
from .fold import fold

__all__ = ["ring", "recursive_doubling", "ring_inplace", "doubling_inplace"]


def _span(counts, displs, first, last):
    """``(start, stop)`` of parts ``first..last-1`` (contiguous)."""
    return displs[first], displs[last - 1] + counts[last - 1]


@functools.lru_cache(maxsize=1024)
def _ring_plan(counts, displs, me, members):
    """``(right, left, steps)`` of :func:`ring_inplace`; a step is the ``(start, stop)``
    of the part sent and of the part received."""
    p = len(members)
    steps = tuple(_span(counts, displs, (me - k) % p, (me - k) % p + 1)
                  + _span(counts, displs, (me - k - 1) % p, (me - k - 1) % p + 1)
                  for k in range(p - 1))
    return members[(me + 1) % p], members[(me - 1) % p], steps


def ring_inplace(comm, buf, counts, displs, me, members, dtype):
    """Ring allgather in ``buf``: part ``me`` is present, all parts are on return.

    Step ``k`` sends part ``me-k`` to the right neighbour and receives part ``me-k-1``
    from the left one: ``len(members) - 1`` steps of one part each.
    """
    right, left, steps = _ring_plan(counts, displs, me, members)
    sendrecv = messages.sendrecv
    for s0, s1, r0, r1 in steps:
        sendrecv(comm, buf[s0:s1], right, buf[r0:r1], left, dtype)


@functools.lru_cache(maxsize=1024)
def _doubling_plan(counts, displs, me, members):
    """Steps ``(partner, send start, send stop, receive start, receive stop)`` of
    :func:`doubling_inplace`."""
    steps, mask = [], 1
    while mask < len(members):
        partner = me ^ mask
        mine, theirs = me & ~(mask - 1), partner & ~(mask - 1)
        steps.append((members[partner],) + _span(counts, displs, mine, mine + mask)
                     + _span(counts, displs, theirs, theirs + mask))
        mask <<= 1
    return tuple(steps)


def doubling_inplace(comm, buf, counts, displs, me, members, dtype):
    """Recursive-doubling allgather in ``buf`` over a power-of-two group.

    Step ``k`` exchanges the ``2**k`` parts gathered so far with virtual rank
    ``me ^ 2**k``: ``lg p`` steps.
    """
    sendrecv = messages.sendrecv
    for partner, s0, s1, r0, r1 in _doubling_plan(counts, displs, me, members):
        sendrecv(comm, buf[s0:s1], partner, buf[r0:r1], partner, dtype)


def _prepare(comm, sendbuf, recvbuf):
    """Validate, copy this rank's block into place, return what the kernels need."""
    arguments.check_vector("recvbuf", recvbuf)
    ctx = messages.context(comm)
    p, rank = ctx.p, ctx.rank
    counts, displs = layout(recvbuf.size, p)
    synchronize(recvbuf)
    if sendbuf is not MPI.IN_PLACE:
        arguments.check_vector("sendbuf", sendbuf)
        arguments.check_same_dtype(sendbuf, recvbuf)
        if sendbuf.size != counts[rank]:
            arguments.check_size("sendbuf", sendbuf, counts[rank],
                                 f"block {rank} of {recvbuf.size} elements over {p} ranks")
        reductions.copy(recvbuf[displs[rank]:displs[rank] + counts[rank]], sendbuf)
    return ctx, counts, displs


def ring(comm, sendbuf, recvbuf):
    """Ring allgather: p-1 steps, each rank sending one block per step."""
    ctx, counts, displs = _prepare(comm, sendbuf, recvbuf)
    ring_inplace(ctx.private, recvbuf, counts, displs, ctx.rank, ctx.members,
                 messages.datatype(recvbuf))


def recursive_doubling(comm, sendbuf, recvbuf):
    """Recursive-doubling allgather; other p fold first (see :mod:`.fold`).

    Folded: each even rank below ``2 rem`` sends its block to the rank above it, the
    ``p'`` survivors double over their (one- or two-block) parts, then send the whole
    vector back.
    """
    ctx, counts, displs = _prepare(comm, sendbuf, recvbuf)
    comm, rank = ctx.private, ctx.rank
    dtype = messages.datatype(recvbuf)
    f = fold(ctx.p)
    if f.sits_out(rank):
        messages.send(comm, recvbuf[slice(*_span(counts, displs, rank, rank + 1))],
                      rank + 1, dtype)
        messages.recv(comm, recvbuf, rank + 1, dtype)
        return
    if f.absorbs(rank):
        messages.recv(comm, recvbuf[slice(*_span(counts, displs, rank - 1, rank))],
                      rank - 1, dtype)
    pcounts, pdispls = merged_layout(recvbuf.size, ctx.p, f.groups)
    doubling_inplace(comm, recvbuf, pcounts, pdispls, f.newrank(rank), f.members, dtype)
    if f.absorbs(rank):
        messages.send(comm, recvbuf, rank - 1, dtype)
