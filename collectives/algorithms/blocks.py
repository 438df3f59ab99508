"""Block partition of a vector over ranks.

Every algorithm splits a vector of ``count`` elements into ``p`` contiguous blocks of
``count // p`` elements, the first ``count % p`` blocks one element larger (the common
convention of MPI libraries).  Block ``i`` spans ``[displs[i], displs[i] + counts[i])``.
Counts smaller than ``p`` (even 0) give empty blocks; algorithms still exchange them as
zero-length messages, so the number of messages never depends on the count.
"""
from __future__ import annotations

import functools

__all__ = ["block_counts", "block_displs", "block_range", "merge_ranges", "layout",
           "merged_layout"]


def _check(count, p):
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"count must be a whole number >= 0, got {count!r}")
    if not isinstance(p, int) or isinstance(p, bool) or p < 1:
        raise ValueError(f"p (number of blocks) must be a whole number >= 1, got {p!r}")


def block_counts(count: int, p: int) -> list[int]:
    """Sizes of the ``p`` blocks of a ``count``-element vector.

    >>> block_counts(10, 4)
    [3, 3, 2, 2]
    """
    _check(count, p)
    q, r = divmod(count, p)
    return [q + 1 if i < r else q for i in range(p)]


def block_displs(count: int, p: int) -> list[int]:
    """Offsets of the ``p`` blocks (element index where each block starts).

    >>> block_displs(10, 4)
    [0, 3, 6, 8]
    """
    counts = block_counts(count, p)
    displs, at = [], 0
    for c in counts:
        displs.append(at)
        at += c
    return displs


def block_range(count: int, p: int, i: int) -> tuple[int, int]:
    """``(start, stop)`` of block ``i``."""
    _check(count, p)
    if not 0 <= i < p:
        raise ValueError(f"block index i must be in [0, {p}), got {i!r}")
    q, r = divmod(count, p)
    start = i * q + min(i, r)
    return start, start + q + (1 if i < r else 0)


def merge_ranges(displs, counts, groups):
    """Counts and displacements of the unions of consecutive blocks.

    ``groups`` lists, for each merged part, the number of consecutive blocks it covers
    (they must add up to ``len(counts)``).

    >>> merge_ranges([0, 3, 6, 8], [3, 3, 2, 2], [2, 1, 1])
    ([6, 2, 2], [0, 6, 8])
    """
    if sum(groups) != len(counts):
        raise ValueError(f"groups must cover all {len(counts)} blocks, got {sum(groups)}")
    out_counts, out_displs, i = [], [], 0
    for g in groups:
        out_displs.append(displs[i])
        out_counts.append(sum(counts[i:i + g]))
        i += g
    return out_counts, out_displs


@functools.lru_cache(maxsize=1024)
def layout(count: int, p: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(counts, displs)`` of :func:`block_counts` and :func:`block_displs` as tuples,
    cached (the algorithms need them on every call).

    >>> layout(10, 4)
    ((3, 3, 2, 2), (0, 3, 6, 8))
    """
    return tuple(block_counts(count, p)), tuple(block_displs(count, p))


@functools.lru_cache(maxsize=1024)
def merged_layout(count: int, p: int, groups: tuple[int, ...]):
    """``(counts, displs)`` tuples of :func:`merge_ranges` over ``layout(count, p)``, cached.

    >>> merged_layout(10, 4, (2, 1, 1))
    ((6, 2, 2), (0, 6, 8))
    """
    counts, displs = layout(count, p)
    merged_counts, merged_displs = merge_ranges(displs, counts, groups)
    return tuple(merged_counts), tuple(merged_displs)
