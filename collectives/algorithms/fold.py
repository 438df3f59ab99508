"""The fold that lets power-of-two algorithms run on any number of ranks.

With ``p' = 2**floor(lg p)`` and ``rem = p - p'``: among the first ``2 rem`` ranks each
even rank hands its data to the odd rank above it and sits out; the ``p'`` survivors
(odd ranks below ``2 rem`` and every rank from ``2 rem`` on) run the power-of-two
algorithm under new ranks ``0..p'-1``; at the end each survivor below ``2 rem`` hands the
result back to the rank it absorbed.  Survivor ``j < rem`` speaks for the original blocks
``2j`` and ``2j+1``, survivor ``j >= rem`` for block ``j + rem``, so each survivor's
blocks are contiguous (the layout MPICH uses).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = ["Fold", "fold"]


@dataclass(frozen=True)
class Fold:
    """Rank mapping of the fold for ``p`` ranks (see the module docstring)."""

    p: int
    pp: int          # p' survivors, a power of two
    rem: int         # p - p'

    @functools.cached_property
    def members(self) -> tuple[int, ...]:
        """Original rank of each new rank ``0..p'-1``."""
        return tuple(2 * j + 1 if j < self.rem else j + self.rem for j in range(self.pp))

    @functools.cached_property
    def groups(self) -> tuple[int, ...]:
        """Number of original blocks each survivor speaks for (2 or 1)."""
        return (2,) * self.rem + (1,) * (self.pp - self.rem)

    def newrank(self, rank: int) -> int:
        """New rank of ``rank``, or -1 when it sits out."""
        if rank < 2 * self.rem:
            return -1 if rank % 2 == 0 else rank // 2
        return rank - self.rem

    def sits_out(self, rank: int) -> bool:
        """True for the even ranks below ``2 rem``."""
        return rank < 2 * self.rem and rank % 2 == 0

    def absorbs(self, rank: int) -> bool:
        """True for the odd ranks below ``2 rem`` (they take over ``rank - 1``)."""
        return rank < 2 * self.rem and rank % 2 == 1


@functools.lru_cache(maxsize=256)
def fold(p: int) -> Fold:
    """The fold of ``p >= 1`` ranks (cached: one object per ``p``)."""
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    pp = 1 << (p.bit_length() - 1)
    return Fold(p, pp, p - pp)
