"""Allgather: ring and recursive doubling, plus the in-place kernels other algorithms use.

``allgather(comm, sendbuf, recvbuf)``: ``sendbuf`` is this rank's block of
``block_counts(recvbuf.size, p)[rank]`` elements (or ``MPI.IN_PLACE`` when the block is
already in ``recvbuf``), ``recvbuf`` the whole vector.  The kernels work on a "virtual"
group: ``members[i]`` is the communicator rank playing virtual rank ``i`` and
``counts``/``displs`` give the part of the vector each virtual rank owns.
"""
from __future__ import annotations

from collectives.arrays import synchronize
from collectives.mpi import MPI

from . import arguments, messages, reductions
from .blocks import block_counts, block_displs, merge_ranges
from .fold import fold

__all__ = ["ring", "recursive_doubling", "ring_inplace", "doubling_inplace"]


def _part(buf, counts, displs, first, last):
    """View of parts ``first..last-1`` (contiguous)."""
    return buf[displs[first]:displs[last - 1] + counts[last - 1]]


def ring_inplace(comm, buf, counts, displs, me, members, dtype):
    """Ring allgather in ``buf``: part ``me`` is present, all parts are on return.

    Step ``k`` sends part ``me-k`` to the right neighbour and receives part ``me-k-1``
    from the left one: ``len(members) - 1`` steps of one part each.
    """
    p = len(members)
    right, left = members[(me + 1) % p], members[(me - 1) % p]
    for k in range(p - 1):
        s, r = (me - k) % p, (me - k - 1) % p
        messages.sendrecv(comm, _part(buf, counts, displs, s, s + 1), right,
                          _part(buf, counts, displs, r, r + 1), left, dtype)


def doubling_inplace(comm, buf, counts, displs, me, members, dtype):
    """Recursive-doubling allgather in ``buf`` over a power-of-two group.

    Step ``k`` exchanges the ``2**k`` parts gathered so far with virtual rank
    ``me ^ 2**k``: ``lg p`` steps.
    """
    p = len(members)
    mask = 1
    while mask < p:
        partner = me ^ mask
        mine, theirs = me & ~(mask - 1), partner & ~(mask - 1)
        messages.sendrecv(comm, _part(buf, counts, displs, mine, mine + mask),
                          members[partner],
                          _part(buf, counts, displs, theirs, theirs + mask),
                          members[partner], dtype)
        mask <<= 1


def _prepare(comm, sendbuf, recvbuf):
    """Validate, copy this rank's block into place, return what the kernels need."""
    arguments.check_vector("recvbuf", recvbuf)
    comm = messages.private(comm)
    p, rank = comm.Get_size(), comm.Get_rank()
    counts, displs = block_counts(recvbuf.size, p), block_displs(recvbuf.size, p)
    mine = recvbuf[displs[rank]:displs[rank] + counts[rank]]
    synchronize(recvbuf)
    if sendbuf is not MPI.IN_PLACE:
        arguments.check_vector("sendbuf", sendbuf)
        arguments.check_same_dtype(sendbuf, recvbuf)
        arguments.check_size("sendbuf", sendbuf, counts[rank],
                             f"block {rank} of {recvbuf.size} elements over {p} ranks")
        reductions.copy(mine, sendbuf)
    return comm, p, rank, counts, displs


def ring(comm, sendbuf, recvbuf):
    """Ring allgather: p-1 steps, each rank sending one block per step."""
    comm, p, rank, counts, displs = _prepare(comm, sendbuf, recvbuf)
    ring_inplace(comm, recvbuf, counts, displs, rank, list(range(p)),
                 messages.datatype(recvbuf))


def recursive_doubling(comm, sendbuf, recvbuf):
    """Recursive-doubling allgather; other p fold first (see :mod:`.fold`).

    Folded: each even rank below ``2 rem`` sends its block to the rank above it, the
    ``p'`` survivors double over their (one- or two-block) parts, then send the whole
    vector back.
    """
    comm, p, rank, counts, displs = _prepare(comm, sendbuf, recvbuf)
    dtype = messages.datatype(recvbuf)
    f = fold(p)
    if f.sits_out(rank):
        messages.send(comm, _part(recvbuf, counts, displs, rank, rank + 1), rank + 1, dtype)
        messages.recv(comm, recvbuf, rank + 1, dtype)
        return
    if f.absorbs(rank):
        messages.recv(comm, _part(recvbuf, counts, displs, rank - 1, rank), rank - 1, dtype)
    pcounts, pdispls = merge_ranges(displs, counts, f.groups)
    doubling_inplace(comm, recvbuf, pcounts, pdispls, f.newrank(rank), f.members, dtype)
    if f.absorbs(rank):
        messages.send(comm, recvbuf, rank - 1, dtype)
