"""The plan of an all-pairs links run (``python -m collectives.links``): pure, no MPI.

Endpoints
    What is measured between: one rank per node (``node``, the node's lowest world
    rank), one rank per NIC-local group (``group``: each node's ranks cut into
    ``groups_per_node`` consecutive blocks, the first rank of each block), or every rank
    (``rank``).  Endpoint ``i`` is the ``i``-th in world-rank order, so endpoint 0 is
    world rank 0 (the rank that writes).
Schedule
    A round-robin tournament by the circle method: ``n`` endpoints (one dummy added
    when ``n`` is odd, whose partner sits out the round: the bye) meet in ``m - 1``
    rounds of ``m / 2`` disjoint pairs (``m = n`` rounded up to even), every unordered
    pair exactly once.  In round ``r`` the fixed player ``m - 1`` meets ``r`` and every
    other ``i`` meets ``(2r - i) mod (m - 1)`` (``m - 1`` is odd, so each unordered pair
    has exactly one round).  A round is measured in *steps* of at most
    ``concurrent`` pairs at once: ``concurrent = 1`` is the serial schedule (one pair
    at a time), the default is the whole round at once.
Direction
    ``one``: each pair is one point per size, ``src`` the lower endpoint (symmetric
    ping-pong, half the round trip); ``both``: two points per size, ``src -> dst`` and
    ``dst -> src`` (see :mod:`collectives.links` for how a one-way time is timed).

Memory: rank 0 alone holds O(n^2) state (:class:`Ledger`: one byte per ordered pair and
size for what is done, one float32 per ordered pair and size for the summary); a round's
pairs are computed on demand in O(n) (:func:`round_pairs`), and every other rank is told
only its own pair of each step (:class:`Assignment`).  Nothing here is O(repetitions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MODES", "DIRECTIONS", "SCHEDULES", "PlanError", "Endpoint", "endpoints",
           "rounds", "round_pairs", "partner", "Plan", "Step", "Assignment", "Ledger",
           "format_duration"]

#: ``--mode`` values: one rank per node, per NIC-local group, every rank.
MODES = ("node", "group", "rank")
#: ``--direction`` values.
DIRECTIONS = ("one", "both")
#: ``schedule`` in the metadata: ``serial`` when one pair runs at a time.
SCHEDULES = ("tournament", "serial")


class PlanError(ValueError):
    """A layout or option that cannot give a links plan (a usage error: exit 2)."""


@dataclass(frozen=True)
class Endpoint:
    """One end of the measured links: ``index`` (0..n-1), ``host``, world ``rank``,
    ``group`` (index of the NIC-local group on its node; 0 in node mode, the node-local
    rank in rank mode)."""

    index: int
    host: str
    rank: int
    group: int = 0

    def to_dict(self) -> dict:
        return {"index": self.index, "host": self.host, "rank": self.rank,
                "group": self.group}


def endpoints(layout, mode: str = "node", groups_per_node: int | None = None) -> tuple:
    """The endpoints of ``layout`` (a :class:`collectives.topology.Layout`) for ``mode``.

    Raises :class:`PlanError` naming the option when fewer than 2 endpoints result or
    the groups do not fit the nodes.
    """
    if mode not in MODES:
        raise PlanError(f"--mode: unknown value {mode!r}; expected one of "
                        f"{', '.join(MODES)}")
    if groups_per_node is not None and mode != "group":
        raise PlanError("--groups-per-node is only meaningful with --mode group")
    found = []
    if mode == "node":
        for node, ranks in enumerate(layout.ranks_by_node):
            found.append((layout.names[node], ranks[0], 0))
    elif mode == "rank":
        local = {}
        for rank, node in enumerate(layout.node_of):
            found.append((layout.names[node], rank, local.get(node, 0)))
            local[node] = local.get(node, 0) + 1
    else:
        g = groups_per_node
        if g is None:
            raise PlanError("--mode group needs --groups-per-node G (the NICs, or "
                            "NIC-local groups, of each node)")
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise PlanError(f"--groups-per-node must be a whole number >= 1, got {g!r}")
        for node, ranks in enumerate(layout.ranks_by_node):
            if len(ranks) < g:
                raise PlanError(f"--groups-per-node {g}: node {layout.names[node]} holds "
                                f"only {len(ranks)} rank(s); start at least {g} ranks "
                                "per node")
            for k, block in enumerate(np.array_split(np.asarray(ranks), g)):
                found.append((layout.names[node], int(block[0]), k))
    found.sort(key=lambda e: e[1])
    if len(found) < 2:
        hint = {"node": "run on 2 or more nodes, or use --mode rank to measure between "
                        "the ranks of one node",
                "group": "start more ranks or nodes, or raise --groups-per-node",
                "rank": "start at least 2 ranks"}[mode]
        raise PlanError(f"--mode {mode}: this launch gives {len(found)} endpoint(s) "
                        f"({layout.size} rank(s) on {layout.nodes} node(s)); links need "
                        f"at least 2: {hint}")
    return tuple(Endpoint(i, h, r, k) for i, (h, r, k) in enumerate(found))


# ---------------------------------------------------------------------------------
# The tournament (circle method)
# ---------------------------------------------------------------------------------

def _players(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise PlanError(f"a tournament needs at least 2 endpoints, got {n!r}")
    return int(n) + int(n) % 2


def rounds(n: int) -> int:
    """Number of rounds for ``n`` endpoints: ``n - 1`` (even ``n``) or ``n`` (odd)."""
    return _players(n) - 1


def round_pairs(n: int, r: int) -> np.ndarray:
    """Pairs of round ``r`` as an ``(k, 2)`` int array, each row ``(a, b)`` with
    ``a < b``, rows sorted by ``a``; the bye (odd ``n``) is left out.  O(n)."""
    m = _players(n)
    if not 0 <= r < m - 1:
        raise ValueError(f"round {r} out of range 0..{m - 2}")
    k = np.arange(1, m // 2, dtype=np.int64)
    a = np.concatenate(([m - 1], (r + k) % (m - 1)))
    b = np.concatenate(([r], (r - k) % (m - 1)))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = hi < n  # the dummy player m - 1 = n (odd n) is the bye
    out = np.stack([lo[keep], hi[keep]], axis=1)
    return out[np.argsort(out[:, 0], kind="stable")]


def partner(n: int, r: int, i: int) -> int | None:
    """Endpoint ``i``'s partner in round ``r`` (None: a bye).  O(1)."""
    m = _players(n)
    if not 0 <= i < n:
        raise ValueError(f"endpoint {i} out of range 0..{n - 1}")
    if i == m - 1:
        j = r
    elif i == r:
        j = m - 1
    else:
        j = (2 * r - i) % (m - 1)
    return j if j < n else None


# ---------------------------------------------------------------------------------
# Plan, steps, assignments
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One step: ``pairs`` (k x 2 array, ``a < b``) measured at once, from ``round``."""

    index: int
    round: int
    pairs: np.ndarray


@dataclass(frozen=True)
class Assignment:
    """What one rank is told for one step: O(1) in n (no rank but 0 sees the plan).

    ``partner_rank`` is the other world rank; ``leader`` says whether this rank is the
    pair's first member (it times as rank 0 of the pair and sends the rows to world
    rank 0); ``points`` lists ``(src, dst, bytes)`` to measure in order.
    """

    step: int
    round: int
    concurrent: int
    me: int          # my endpoint index
    other: int       # the partner's endpoint index
    partner_rank: int
    leader: bool
    points: tuple


class Plan:
    """The whole schedule: ``n`` endpoints, ``sizes``, ``direction``, ``concurrent``.

    Steps are generated on demand (:meth:`steps`); nothing O(n^2) is stored.
    """

    def __init__(self, n: int, sizes, direction: str = "one", concurrent: int | None = None):
        self.n = n
        self.rounds = rounds(n)
        self.sizes = tuple(int(s) for s in sizes)
        if not self.sizes:
            raise PlanError("--sizes is empty")
        if direction not in DIRECTIONS:
            raise PlanError(f"--direction: unknown value {direction!r}; expected one of "
                            f"{', '.join(DIRECTIONS)}")
        self.direction = direction
        self.pairs_per_round = n // 2
        if concurrent is None or concurrent == 0:
            concurrent = self.pairs_per_round
        if isinstance(concurrent, bool) or not isinstance(concurrent, (int, np.integer)) \
                or concurrent < 1:
            raise PlanError(f"--concurrent must be a whole number >= 1 (0: a whole round "
                            f"at once), got {concurrent!r}")
        self.concurrent = int(min(concurrent, self.pairs_per_round))
        self.steps_per_round = -(-self.pairs_per_round // self.concurrent)

    @property
    def schedule(self) -> str:
        return "serial" if self.concurrent == 1 else "tournament"

    @property
    def directions(self) -> int:
        return 2 if self.direction == "both" else 1

    @property
    def pairs(self) -> int:
        return self.n * (self.n - 1) // 2

    @property
    def points(self) -> int:
        return self.pairs * self.directions * len(self.sizes)

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round

    def steps(self, start_round: int = 0):
        """Yield :class:`Step` in order (round by round, chunks of ``concurrent``)."""
        index = start_round * self.steps_per_round
        for r in range(start_round, self.rounds):
            pairs = round_pairs(self.n, r)
            for c in range(0, len(pairs), self.concurrent):
                yield Step(index, r, pairs[c:c + self.concurrent])
                index += 1

    def directed(self, a: int, b: int):
        """The ordered ``(src, dst)`` of the unordered pair ``a < b``."""
        return ((a, b), (b, a)) if self.direction == "both" else ((a, b),)

    def assignments(self, step: Step, ends, ledger: "Ledger | None" = None) -> dict:
        """``{world rank: Assignment}`` for the pairs of ``step`` that have something left
        to measure (per ``ledger``); ``ends`` are the :class:`Endpoint` records."""
        out = {}
        for a, b in step.pairs.tolist():
            points = tuple((s, d, size) for s, d in self.directed(a, b)
                           for size in self.sizes
                           if ledger is None or not ledger.is_done(s, d, size))
            if not points:
                continue
            ra, rb = ends[a].rank, ends[b].rank
            out[ra] = Assignment(step.index, step.round, len(step.pairs), a, b, rb,
                                 True, points)
            out[rb] = Assignment(step.index, step.round, len(step.pairs), b, a, ra,
                                 False, points)
        return out

    def estimate(self, seconds_per_point: float, remaining_points: int | None = None,
                 step_overhead: float = 0.005) -> float:
        """Rough wall time: points of a step run in parallel (pairs) but sizes and
        directions one after another, so ``steps x directions x sizes x
        seconds_per_point + steps x step_overhead`` (scaled by the share left)."""
        total = self.total_steps * (self.directions * len(self.sizes) * seconds_per_point
                                    + step_overhead)
        if remaining_points is not None and self.points:
            total *= remaining_points / self.points
        return total

    def describe(self, ends, mode: str) -> str:
        """The plan in a few lines, printed before a run starts."""
        hosts = len({e.host for e in ends})
        bye = " (one endpoint sits out each round)" if self.n % 2 else ""
        return (f"plan: {self.n} endpoints (mode {mode}, {hosts} host(s)), "
                f"{self.pairs} pairs, direction {self.direction}, {len(self.sizes)} "
                f"size(s); {self.rounds} rounds of {self.pairs_per_round} pair(s){bye}, "
                f"{self.schedule} schedule with at most {self.concurrent} pair(s) at "
                f"once ({self.total_steps} steps); {self.points} points")


class Ledger:
    """Rank 0's O(n^2) bookkeeping: which ``(src, dst, size)`` points are done, and the
    median time of each for the summary (float32, NaN until measured)."""

    def __init__(self, n: int, sizes):
        self.n = n
        self.sizes = tuple(int(s) for s in sizes)
        self._size_index = {s: k for k, s in enumerate(self.sizes)}
        self.done = np.zeros((n, n, len(self.sizes)), dtype=bool)
        self.median = np.full((n, n, len(self.sizes)), np.nan, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return self.done.nbytes + self.median.nbytes

    def index(self, src: int, dst: int, size: int) -> tuple:
        try:
            k = self._size_index[int(size)]
        except KeyError:
            raise ValueError(f"size {size} is not one of the planned sizes") from None
        if not (0 <= src < self.n and 0 <= dst < self.n) or src == dst:
            raise ValueError(f"({src}, {dst}) is not a link of {self.n} endpoints")
        return src, dst, k

    def is_done(self, src: int, dst: int, size: int) -> bool:
        return bool(self.done[self.index(src, dst, size)])

    def mark(self, src: int, dst: int, size: int, median_s=None) -> None:
        i = self.index(src, dst, size)
        self.done[i] = True
        self.median[i] = np.nan if median_s is None else float(median_s)

    def count(self) -> int:
        return int(self.done.sum())

    def remaining(self, plan: Plan) -> int:
        """Planned points not yet done."""
        if plan.direction == "both":
            mask = ~np.eye(self.n, dtype=bool)
        else:
            mask = np.triu(np.ones((self.n, self.n), dtype=bool), 1)
        return int((~self.done & mask[:, :, None]).sum())

    def first_round_left(self, plan: Plan) -> int:
        """The earliest round with a point left (``plan.rounds`` when none): a resumed
        run starts there without walking the finished rounds."""
        for r in range(plan.rounds):
            for a, b in round_pairs(plan.n, r).tolist():
                for s, d in plan.directed(a, b):
                    if not self.done[s, d].all():
                        return r
        return plan.rounds


def format_duration(seconds: float) -> str:
    """``3723`` -> ``'1h02m'``; ``75`` -> ``'1m15s'``; ``4.2`` -> ``'4.2s'``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"
