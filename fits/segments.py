"""Protocol segments: size breakpoints and one set of constants per size range.

MPI switches protocol with the message size (eager → rendezvous, algorithm switches in
native collectives), so one straight line over all sizes biases α and β.  We fit
piecewise: the measured sizes, sorted, are cut into 1..``max_segments`` contiguous
ranges, each with its own constants.  Every cut between two consecutive measured sizes
is tried (exhaustively, by dynamic programming over the cost of every contiguous range),
and the number of segments minimises the Bayesian information criterion on relative
residuals::

    BIC(S) = m ln(RSS_S / m) + (S k + 3 (S - 1)) ln m

with ``m`` points (bootstrap multiplicities counted) and ``k`` fitted constants per
segment.  Each of the ``S - 1`` breakpoints counts as 3 parameters rather than 1: its
position is the best of many tried, which plain BIC does not charge for.  On 100
synthetic ping-pongs (26 sizes, one point each, 5% noise) with one true breakpoint,
1 parameter per breakpoint chose a spurious third segment 20 times, 3 parameters 5
times; on a straight line, 15 and 2 spurious breakpoints
(``benchmarks/bench_fit_accuracy.py`` reports the rate on whole sweeps).  Each
segment spans at least 4 measured sizes.  The search uses the linear loss; the chosen segments are then refitted with the requested
loss.  A breakpoint is reported as the first measured size of the upper segment, so a
size ``n`` belongs to segment ``searchsorted(breakpoints, n, side="right")``.

Breakpoints are in the collective's ``bytes`` and shared by all rank counts of one
algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import model

__all__ = ["SegmentFit", "fit_segments", "fit_fixed", "assign", "SEGMENT_CHOICES"]

#: Values accepted for the number of segments (``"auto"`` = chosen by BIC up to 3).
SEGMENT_CHOICES = ("auto", "1", "2", "3")
#: Parameters charged for each searched breakpoint in the BIC.
BREAKPOINT_PARAMETERS = 3
#: Relative residuals below this (rms) are treated as this: differences in fit quality
#: under 0.01% are rounding, not a reason for another segment.
RESIDUAL_FLOOR = 1e-4
#: Upper limit of the BIC search with ``segments="auto"``.
MAX_AUTO_SEGMENTS = 3


@dataclass(frozen=True)
class SegmentFit:
    """Result of a segmented fit.

    ``breakpoints`` (bytes, increasing; empty for one segment), ``thetas`` (S × k
    constants, one row per segment), ``bounds`` ((min_bytes, max_bytes) measured in each
    segment), ``bic`` (number of segments -> BIC for every count tried).
    """

    breakpoints: tuple
    thetas: np.ndarray
    bounds: tuple
    bic: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.bounds)


def assign(nbytes, breakpoints) -> np.ndarray:
    """Segment index of each size (0 for sizes below the first breakpoint)."""
    return np.searchsorted(np.asarray(breakpoints, dtype=float),
                           np.asarray(nbytes, dtype=float), side="right")


def _segments_arg(segments):
    if isinstance(segments, str):
        if segments == "auto":
            return None
        if segments.isdigit():
            segments = int(segments)
        else:
            raise ValueError(f"segments must be 'auto' or a whole number >= 1, "
                             f"got {segments!r}")
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) \
            or segments < 1:
        raise ValueError(f"segments must be 'auto' or a whole number >= 1, got {segments!r}")
    return int(segments)


def fit_fixed(X, t, nbytes, breakpoints, *, loss="linear", weights=None, active=None,
              offset=None, free=False) -> np.ndarray:
    """Constants of each segment for given breakpoints (S × k array).

    A segment with no point of positive weight, or with a single size when two or more
    constants are fitted (possible in a bootstrap replicate), gets NaN constants: such a
    replicate cannot separate them and would pile up on a bound.  ``free=True``: unconstrained linear least squares
    (:func:`fits.model.solve_free`) instead of the bounded fit.
    """
    X = np.asarray(X, dtype=float)
    t = np.asarray(t, dtype=float)
    seg = assign(nbytes, breakpoints)
    w = np.ones_like(t) if weights is None else np.asarray(weights, dtype=float)
    off = np.zeros_like(t) if offset is None else np.broadcast_to(offset, t.shape)
    out = np.full((len(breakpoints) + 1, X.shape[1]), np.nan)
    act = (np.linalg.norm(X, axis=0) > 0) if active is None else np.asarray(active, bool)
    need = min(2, int(act.sum()))
    for s in range(out.shape[0]):
        rows = (seg == s) & (w > 0)
        if np.unique(np.asarray(nbytes)[rows]).size < need:
            continue  # a replicate left this segment one size: it cannot separate α, β
        if rows.any() and free:
            out[s] = model.solve_free(X[rows], t[rows], weights=w[rows], active=active,
                                      offset=off[rows])
        elif rows.any():
            out[s] = model.solve(X[rows], t[rows], loss=loss, weights=w[rows],
                                 active=active, offset=off[rows])
    return out


def _range_costs(X, t, w, off, sizes, inverse, active, min_sizes):
    """RSS of the linear fit over every contiguous range [i, j) of distinct sizes."""
    S = sizes.size
    cost = np.full((S + 1, S + 1), np.inf)
    for i in range(S):
        for j in range(i + min_sizes, S + 1):
            rows = (inverse >= i) & (inverse < j)
            theta = model.solve(X[rows], t[rows], weights=w[rows], active=active,
                                offset=off[rows])
            r = model.relative_residuals(X[rows], t[rows], theta, off[rows])
            cost[i, j] = float(np.sum(w[rows] * r * r))
    return cost


def fit_segments(X, t, nbytes, *, segments="auto", loss="linear", weights=None,
                 active=None, offset=None, min_sizes=None) -> SegmentFit:
    """Find breakpoints and fit one set of constants per segment.

    Parameters
    ----------
    X, t : design (m × k) and times (m,), as for :func:`fits.model.solve`.
    nbytes : (m,) sizes of the points (the breakpoints are searched among them).
    segments : ``"auto"`` (BIC over 1..3) or a fixed number of segments.
    loss, weights, active, offset : passed to :func:`fits.model.solve`.
    min_sizes : fewest distinct sizes in one segment (default: fitted constants + 2,
        at least 4: a segment of 3 sizes for 2 constants is mostly noise).

    Raises ``ValueError`` when there are too few distinct sizes for the segments asked.
    """
    X = np.asarray(X, dtype=float)
    t = np.asarray(t, dtype=float)
    nbytes = np.asarray(nbytes, dtype=float)
    wanted = _segments_arg(segments)
    w = np.ones_like(t) if weights is None else np.asarray(weights, dtype=float)
    off = np.zeros_like(t) if offset is None else np.broadcast_to(
        np.asarray(offset, dtype=float), t.shape)
    act = (np.linalg.norm(X, axis=0) > 0) if active is None else np.asarray(active, bool)
    k = int(act.sum())
    if min_sizes is None:
        min_sizes = max(4, k + 2)
    sizes, inverse = np.unique(nbytes, return_inverse=True)
    if sizes.size < 2:
        raise ValueError(f"need at least 2 distinct sizes to fit, got {sizes.size}")
    top = wanted if wanted is not None else MAX_AUTO_SEGMENTS
    feasible = max(1, sizes.size // min_sizes)
    if wanted is not None and wanted > feasible:
        raise ValueError(f"{wanted} segments need at least {wanted * min_sizes} distinct "
                         f"sizes, got {sizes.size}")
    top = min(top, feasible)
    m = float(w.sum())
    if top == 1:
        cuts_by_count = {1: [0, sizes.size]}
        rss = {1: None}
    else:
        cost = _range_costs(X, t, w, off, sizes, inverse, act, min_sizes)
        # best[s][j]: least RSS covering sizes [0, j) with s segments; arg keeps cuts.
        best = np.full((top + 1, sizes.size + 1), np.inf)
        arg = np.zeros((top + 1, sizes.size + 1), dtype=int)
        best[0, 0] = 0.0
        for s in range(1, top + 1):
            for j in range(1, sizes.size + 1):
                cand = best[s - 1, :j] + cost[:j, j]
                i = int(np.argmin(cand))
                best[s, j], arg[s, j] = cand[i], i
        cuts_by_count, rss = {}, {}
        for s in range(1, top + 1):
            if not np.isfinite(best[s, sizes.size]):
                continue
            cuts, j = [sizes.size], sizes.size
            for ss in range(s, 0, -1):
                j = arg[ss, j]
                cuts.append(j)
            cuts_by_count[s] = cuts[::-1]
            rss[s] = best[s, sizes.size]
    bic = {}
    if len(cuts_by_count) > 1:
        for s, r in rss.items():
            q = s * k + BREAKPOINT_PARAMETERS * (s - 1)
            bic[s] = m * np.log(max(r / m, RESIDUAL_FLOOR ** 2)) + q * np.log(m)
        chosen = wanted if wanted is not None else min(bic, key=bic.get)
    else:
        chosen = next(iter(cuts_by_count))
    cuts = cuts_by_count[chosen]
    breakpoints = tuple(float(sizes[c]) for c in cuts[1:-1])
    bounds = tuple((float(sizes[a]), float(sizes[b - 1])) for a, b in zip(cuts, cuts[1:]))
    thetas = fit_fixed(X, t, nbytes, breakpoints, loss=loss, weights=w, active=act,
                       offset=off)
    return SegmentFit(breakpoints, thetas, bounds, {int(s): float(v) for s, v in bic.items()})
