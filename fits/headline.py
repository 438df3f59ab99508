"""The headline of a topology: latency and bandwidth a user can compare with a datasheet.

``topologies[T]["headline"]`` of the constants file (``docs/formats.md``)::

    {"latency":   {"value": s,   "ci": [lo, hi], "status": ..., "bytes_range": [a, b],
                   "ranks": [2], "note": "..."},
     "bandwidth": {"value": B/s, "ci": [lo, hi], "status": ..., "bytes_range": [a, b],
                   "ranks": [2], "note": "...", "beta": s/B, "beta_ci": [..],
                   "intercept_s": s, "intercept_ci": [..]}}

* **latency** -- the intercept α of a Hockney line ``α + n β`` fitted (α, β ≥ 0) to the
  *small-message regime* of the ping-pong: the sizes of its first protocol segment
  (:mod:`fits.segments`) up to :data:`LATENCY_MAX_BYTES`.  A large-message segment's
  intercept is never called latency: past a protocol switch it measures handshakes,
  pipelining or (under a token-bucket emulation) a negative burst credit.
* **bandwidth** -- ``1/β`` of the *large-message regime*: the ping-pong's last size
  segment (the later of the bounded fit's and a free-intercept fit's last breakpoints,
  keeping at least :data:`LARGE_MIN_SIZES` sizes; within it the sizes from
  :data:`BANDWIDTH_MIN_BYTES` on when there are enough, else its largest
  :data:`LARGE_MIN_SIZES`), fitted with a free intercept (the design ``[1, -1, n]`` lets the intercept
  take either sign), so that a negative intercept such as ``-burst/rate`` under a
  ``tc tbf`` link does not tilt β.  The intercept is kept as ``intercept_s`` (a
  nuisance: not a latency).

Each gets a basic bootstrap interval (the fitter's replicates, :func:`_interval`) and
a ``status`` from :func:`status_of`.
"""
from __future__ import annotations

import numpy as np

from . import bootstrap, model, segments

__all__ = ["STATUSES", "LATENCY_MAX_BYTES", "LARGE_MIN_SIZES", "status_of",
           "bound_interval", "assess", "p2p_headline"]

#: Values of ``status``.
STATUSES = ("identified", "at_bound", "not_identified")
#: Largest size used for the latency fit (the small-message regime).
LATENCY_MAX_BYTES = 4096
#: Smallest size of the bandwidth fit when at least LARGE_MIN_SIZES sizes reach it.
BANDWIDTH_MIN_BYTES = 65536
#: Fewest distinct sizes of the latency fit and of the bandwidth regime.
LATENCY_MIN_SIZES = 3
LARGE_MIN_SIZES = 3
#: A constant whose estimate is below this fraction of the scale of its column counts as
#: sitting on its bound 0.
BOUND_TOL = 1e-9


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def status_of(value, ci) -> tuple:
    """``(status, reason)`` of a constant from its estimate and two-sided interval.

    ``not_identified`` when the interval is missing, contains 0 or is wider (half-width)
    than half the value; else ``identified``.  (``at_bound`` is decided by the caller,
    which knows whether the bound binds.)
    """
    if value is None or not ci or ci[0] is None or ci[1] is None:
        return "not_identified", ("no interval (bootstrap off, too few points, or "
                                  "replicates that do not vary: nothing to resample)")
    lo, hi = float(ci[0]), float(ci[1])
    if lo <= 0 <= hi:
        return "not_identified", "its interval contains 0"
    half = (hi - lo) / 2
    if half > abs(value) / 2:
        return "not_identified", "its interval's half-width exceeds half its value"
    return "identified", ""


def bound_interval(free_reps, confidence) -> list:
    """One-sided interval ``[0, upper]`` of a constant that sits on its bound 0.

    ``upper`` is the ``confidence`` percentile of the *unconstrained* refits (the
    constrained replicates pile up at 0 and would collapse the interval to a point);
    never below 0, and never equal to it: when the free fits lie below 0 too, the upper
    end is ``None`` -- the data do not bound the constant from above within the
    model, which the note says.
    """
    reps = np.asarray(free_reps, dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return [0.0, None]
    upper = float(np.percentile(reps, 100 * confidence))
    return [0.0, upper if upper > 0 else None]


def assess(value, reps, free_value, free_reps, confidence, fixed=None):
    """``(ci, status, note)`` of one fitted constant.

    At its bound 0 the interval is one-sided (:func:`bound_interval` of the
    unconstrained refits ``free_reps``) and the status ``at_bound``; else the basic
    bootstrap interval (:func:`_interval`) of the bounded refits ``reps`` and
    :func:`status_of`.  ``fixed``: the status of a constant taken from elsewhere (γ of
    the topology).
    """
    ci = (None if reps is None else
          _interval(reps, confidence, value if value is not None and value > 0
                    else None, floor=0.0))
    if fixed is not None:
        return ci, fixed, "taken from the topology's γ"
    if value is None:
        return ci, "not_identified", "no value"
    if value <= 0:
        one = None if free_reps is None else bound_interval(free_reps, confidence)
        note = "at its bound 0"
        if free_value is not None:
            note += f" (unconstrained fit {free_value:.3g})"
        return one, "at_bound", note + "; the interval is one-sided"
    status, reason = status_of(value, ci)
    return ci, status, reason


def _interval(values, confidence, estimate=None, floor=None):
    """Bootstrap interval of a constant, or None when there is none to give: no finite
    replicate, or replicates that do not vary (one replicate; one repetition per point
    and one launch without point resampling): their zero-width interval would read as
    certainty when it only says that nothing was resampled.

    With the full-data ``estimate``, the *basic* (reverse percentile) interval
    ``[2 θ̂ - q_hi, 2 θ̂ - q_lo]``: where the fit is biased (relative-error least squares,
    nuisance constants held at their bound 0 in the joint fit) the refits are biased
    by as much again, and a plain percentile interval sits twice the bias away from the
    truth -- the joint constants' 95% percentile intervals covered α in 63% of
    synthetic runs, the basic ones in 97% (``tests/test_fits_interval_coverage.py``).
    Without ``estimate``: the percentile interval ``[q_lo, q_hi]``.  ``floor``: the
    constant's bound (0 for the constants fitted ≥ 0): the interval never reaches below
    it (its low end is then the bound, and :func:`status_of` sees that it contains 0).
    """
    lo, hi = bootstrap.percentile_interval(values, confidence)
    lo, hi = _num(lo), _num(hi)
    if lo is None or hi is None or not hi > lo:
        return None
    if estimate is not None:
        lo, hi = 2 * float(estimate) - hi, 2 * float(estimate) - lo
    if floor is not None:
        lo, hi = max(lo, floor), max(hi, floor)
        if not hi > lo:
            return None
    return [lo, hi]


def _latency(n, t, reps, confidence, breakpoints, ranks):
    sizes = np.unique(n)
    first = sizes[sizes < breakpoints[0]] if len(breakpoints) else sizes
    # only sizes of the small-message regime, however few: the first segment's larger
    # sizes would bring a large-message intercept into the latency
    small = first[first <= LATENCY_MAX_BYTES]
    if small.size < 2:
        return {"value": None, "ci": None, "status": "not_identified",
                "bytes_range": ([int(small[0]), int(small[0])] if small.size
                                else [int(sizes[0]), int(sizes[0])]), "ranks": ranks,
                "note": f"{small.size} size(s) up to {LATENCY_MAX_BYTES} B in the "
                        "first size segment, a latency needs 2 (a larger size's "
                        "intercept is not a latency)"}
    sel = np.isin(n, small)
    X = model.hockney_design(n[sel])[:, :2]
    theta = model.solve(X, t[sel])
    alpha = float(theta[0])
    free = model.solve_free(X, t[sel])
    scale = float(np.median(t[sel]))
    out = {"bytes_range": [int(small.min()), int(small.max())], "ranks": ranks,
           "beta_small": _num(theta[1])}
    why = (f"Hockney fit (α, β ≥ 0) of the ping-pong's {small.size} smallest sizes "
           f"({int(small.min())}-{int(small.max())} B: the first size segment"
           + (f", which ends before {int(breakpoints[0])} B" if len(breakpoints) else "")
           + f", at most {LATENCY_MAX_BYTES} B)")
    at_bound = alpha <= BOUND_TOL * scale
    ci, free_reps = None, None
    if reps is not None:
        rt, rw = reps.times[:, sel], reps.weights[:, sel]
        cons = np.full(reps.count, np.nan)
        free_reps = np.full(reps.count, np.nan)
        for b in range(reps.count):
            keep = rw[b] > 0
            if np.unique(n[sel][keep]).size < 2:
                continue
            cons[b] = model.solve(X[keep], rt[b, keep], weights=rw[b, keep])[0]
            free_reps[b] = model.solve_free(X[keep], rt[b, keep],
                                             weights=rw[b, keep])[0]
        ci = _interval(cons, confidence, alpha, floor=0.0)
    if at_bound:
        out.update({"value": 0.0, "status": "at_bound",
                    "ci": None if free_reps is None else bound_interval(free_reps,
                                                                       confidence),
                    "free_value": _num(free[0]),
                    "note": why + f"; α sits on its bound 0 (free fit {free[0]:.3g} s): "
                            "the interval is one-sided"})
        return out
    status, reason = status_of(alpha, ci)
    out.update({"value": alpha, "ci": ci, "status": status,
                "note": why + (f"; not identified: {reason}" if reason else "")})
    return out


def _bandwidth(n, t, reps, confidence, opts_segments, ranks, p2p_breakpoints=()):
    sizes = np.unique(n)
    # free intercept: α+ - α- + n β, all >= 0 for the solver
    X = np.column_stack([np.ones_like(n), -np.ones_like(n), n])
    fit = segments.fit_segments(X, t, n, segments=opts_segments, loss="linear",
                                min_sizes=max(4, LARGE_MIN_SIZES + 1)) \
        if sizes.size >= 2 else None
    bps = tuple(fit.breakpoints) if fit is not None else ()
    # the later of the two segmentations' last breakpoints that leaves enough sizes
    starts = [b for b in (bps[-1:] + tuple(p2p_breakpoints)[-1:])
              if np.sum(sizes >= b) >= LARGE_MIN_SIZES]
    start = max(starts) if starts else None
    bps = bps if start is None else tuple(b for b in bps if b < start) + (start,)
    large = sizes[sizes >= start] if start is not None else sizes
    # the large-message regime proper: sizes from BANDWIDTH_MIN_BYTES on, else the
    # segment's largest sizes (a segment reaching down to 8 B would let the small
    # sizes, which relative errors weigh alike, set the slope)
    big = large[large >= BANDWIDTH_MIN_BYTES]
    large = big if big.size >= LARGE_MIN_SIZES else large[-LARGE_MIN_SIZES:]
    sel = np.isin(n, large)
    Xh = model.hockney_design(n[sel])[:, :2]
    free = model.solve_free(Xh, t[sel])
    beta, intercept = float(free[1]), float(free[0])
    out = {"bytes_range": [int(large.min()), int(large.max())], "ranks": ranks}
    note = (f"1/β of a line with free intercept over the ping-pong's largest size "
            f"segment, from {BANDWIDTH_MIN_BYTES} B where it has {LARGE_MIN_SIZES} such "
            f"sizes ({large.size} sizes, {int(large.min())}-{int(large.max())} B"
            + (f", from the breakpoint at {int(bps[-1])} B" if bps else
               ", no breakpoint found") + f"); intercept {intercept * 1e6:.3g} µs")
    if intercept < 0:
        note += (" is negative (e.g. a token bucket's burst credit, or a protocol "
                 "switch): it is a nuisance, not a latency")
    ci_beta = ci_icpt = None
    if reps is not None:
        rt, rw = reps.times[:, sel], reps.weights[:, sel]
        sol = np.full((reps.count, 2), np.nan)
        for b in range(reps.count):
            keep = rw[b] > 0
            if np.unique(n[sel][keep]).size < 2:
                continue
            sol[b] = model.solve_free(Xh[keep], rt[b, keep], weights=rw[b, keep])
        ci_beta = _interval(sol[:, 1], confidence, beta)
        ci_icpt = _interval(sol[:, 0], confidence, intercept)
    out.update({"beta": _num(beta) if beta > 0 else None, "beta_ci": ci_beta,
                "intercept_s": _num(intercept), "intercept_ci": ci_icpt,
                "segment_breakpoints": [int(b) for b in bps]})
    if large.size < 2 or beta <= 0:
        out.update({"value": None, "ci": None, "status": "not_identified",
                    "note": note + "; the slope is not positive: no bandwidth"})
        return out
    status, reason = status_of(beta, ci_beta)
    above = int(np.sum(large > LATENCY_MAX_BYTES))
    if above < 2:
        status, reason = "not_identified", (
            f"{above} size(s) above {LATENCY_MAX_BYTES} B in the fit: the large-message "
            "regime needs at least 2 (a line through small sizes carries their latency "
            "into the slope)")
    ci = None
    if ci_beta is not None:
        lo, hi = ci_beta
        ci = [1.0 / hi if hi > 0 else None, 1.0 / lo if lo > 0 else None]
    out.update({"value": 1.0 / beta, "ci": ci, "status": status,
                "note": note + (f"; not identified: {reason} (β)" if reason else "")})
    return out


def p2p_headline(nbytes, times, reps, *, confidence=0.95, breakpoints=(),
                 segments_option="auto", ranks=(2,)) -> dict:
    """``{"latency": ..., "bandwidth": ...}`` from ping-pong points.

    Parameters
    ----------
    nbytes, times : the ping-pong points (bytes, median seconds).
    reps : :class:`fits.bootstrap.Replicates` of these points, or None (no intervals).
    breakpoints : the ping-pong's protocol breakpoints (:mod:`fits.segments`), which
        bound the small-message regime.
    segments_option : ``"auto"`` or a number, for the large-regime segmentation.
    """
    n = np.asarray(nbytes, dtype=float)
    t = np.asarray(times, dtype=float)
    ranks = sorted(int(p) for p in ranks)
    return {"latency": _latency(n, t, reps, confidence, tuple(breakpoints), ranks),
            "bandwidth": _bandwidth(n, t, reps, confidence, segments_option, ranks,
                                    tuple(breakpoints))}
