"""Broadcast: binomial tree, and binomial scatter + ring allgather (van de Geijn).

``bcast(comm, buf, root=0)`` works in place: ``buf`` is the whole vector on every rank,
the root's content is copied to all.  Both algorithms work on ranks relative to the
root (``v = (rank - root) mod p``).
"""
from __future__ import annotations

import functools

from collectives.arrays import synchronize

from . import arguments, messages
from .allgather import ring_inplace
from .blocks import layout

__all__ = ["binomial", "scatter_allgather", "binomial_inplace"]


@functools.lru_cache(maxsize=256)
def _rotation(p, root):
    """Communicator rank of each relative rank ``v`` (``members[v] = (v + root) mod p``)."""
    return tuple((v + root) % p for v in range(p))


def _setup(comm, buf, root):
    arguments.check_vector("buf", buf)
    ctx = messages.context(comm)
    p = ctx.p
    arguments.check_root(root, p)
    synchronize(buf)
    return ctx.private, p, (ctx.rank - root) % p, _rotation(p, int(root))


def binomial_inplace(comm, buf, v, members, dtype):
    """Binomial-tree broadcast of ``buf`` from virtual rank 0.

    A rank receives once from ``v - 2**k`` (``2**k`` its lowest set bit), then sends to
    ``v + 2**j`` for ``j < k``, largest first: the root sends ``ceil(lg p)`` messages.
    """
    p = len(members)
    mask = 1
    while mask < p:
        if v & mask:
            messages.recv(comm, buf, members[v - mask], dtype)
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if v + mask < p:
            messages.send(comm, buf, members[v + mask], dtype)
        mask >>= 1


def binomial(comm, buf, root=0):
    """Binomial-tree broadcast: ceil(lg p) rounds of the whole vector."""
    comm, p, v, members = _setup(comm, buf, root)
    binomial_inplace(comm, buf, v, members, messages.datatype(buf))


def scatter_allgather(comm, buf, root=0):
    """Van de Geijn broadcast: binomial scatter of p blocks, then ring allgather.

    Blocks are indexed by relative rank, so every subtree's blocks are contiguous.
    """
    comm, p, v, members = _setup(comm, buf, root)
    dtype = messages.datatype(buf)
    counts, displs = layout(buf.size, p)

    def blocks(first, last):
        last = min(last, p)
        return buf[displs[first]:displs[last - 1] + counts[last - 1]]

    mask = 1
    while mask < p:
        if v & mask:
            messages.recv(comm, blocks(v, v + mask), members[v - mask], dtype)
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if v + mask < p:
            messages.send(comm, blocks(v + mask, v + 2 * mask), members[v + mask], dtype)
        mask >>= 1
    ring_inplace(comm, buf, counts, displs, v, members, dtype)
