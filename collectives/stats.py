"""Statistics of repeated timings: the median, its nonparametric CI, and when to stop.

Pure numpy/scipy functions with no MPI, so the harness's decisions are testable on
synthetic samples (``tests/test_stats.py``).

Median confidence interval (Hoefler & Belli, SC15; ``shared/reference/measurement.md``):
with the ``n`` samples sorted, ``x(1) <= ... <= x(n)``, the interval
``[x(l), x(u)]`` with 1-based ranks ::

    l = floor((n - z sqrt(n)) / 2)        u = ceil(1 + (n + z sqrt(n)) / 2)

covers the population median with probability about ``confidence`` whatever the
distribution (z = 1.96 for 95%).  ``z`` is the normal quantile rounded to two decimals,
as in printed tables, so 0.95 gives exactly the textbook 1.96.  For small ``n`` the
ranks fall outside ``1..n``; they are clamped to the sample minimum and maximum as long as
that interval still has the requested coverage (``1 - 2 * 0.5**n >= confidence``, i.e.
``n >= 6`` at 95%); below that no order-statistic interval reaches it and the bounds are
NaN.

Stopping rule (:func:`stop_reason`): a point stops when, with at least ``min_reps``
repetitions, the relative half-width of the median's CI (:func:`relative_halfwidth`) is
within ``target_ci`` (``"ci"``), or the repetition count reaches ``max_reps``
(``"max"``), or the time budget is spent (``"budget"``), in that order of precedence.
``min_reps`` wins over the budget -- a point gets ``min_reps`` repetitions -- unless
``HARD_LIMIT`` times the budget is spent (repetitions that keep being discarded, a
call far slower than the budget): then it stops with ``"budget"`` whatever the count.

Unstable points (:func:`summarize`, key ``unstable``): the CI target was not reached
(including a CI that cannot be computed, n < 6 at 95%), or the tail is heavy:
``p99 > TAIL_RATIO * median``.  The median of such a point is still reported; the flag
says it should not be trusted for fitting without a look.
"""
from __future__ import annotations

import functools
import math

import statistics

import numpy as np

__all__ = ["median_ci", "ci_ranks", "relative_halfwidth", "summarize", "stop_reason",
           "next_batch_size", "TAIL_RATIO", "HARD_LIMIT", "STOP_RULES"]

#: ``p99 / median`` above which a point is flagged unstable (heavy tail).
TAIL_RATIO = 10.0
#: Multiple of the time budget after which a point stops even below ``min_reps``.
HARD_LIMIT = 10.0
#: Names of the stopping rules, as recorded in ``stop_rule``.
STOP_RULES = ("ci", "budget", "max")


def _check_confidence(confidence) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


@functools.lru_cache(maxsize=16)
def _z(confidence: float) -> float:
    # stdlib normal quantile: importing scipy.stats costs seconds per MPI rank
    return round(statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0), 2)


def ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """1-based order-statistic ranks ``(l, u)`` of the median's CI for ``n`` samples.

    Ranks outside ``1..n`` are clamped when ``[x(1), x(n)]`` still has the requested
    coverage; returns None when no order-statistic interval reaches it (tiny ``n``).

    >>> ci_ranks(100)
    (40, 61)
    >>> ci_ranks(10)
    (1, 10)
    """
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    n = int(n)
    confidence = _check_confidence(confidence)
    if n == 0 or 1.0 - 2.0 * 0.5 ** n < confidence:
        return None
    z = _z(confidence)
    root = z * math.sqrt(n)
    lo = math.floor((n - root) / 2.0)
    hi = math.ceil(1.0 + (n + root) / 2.0)
    return max(lo, 1), min(hi, n)


def _samples(samples) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"samples must be one-dimensional, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite (no NaN or inf)")
    return x


def median_ci(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Nonparametric CI ``(low, high)`` of the median of ``samples`` (NaN if n too small).

    >>> median_ci(range(1, 101))
    (40.0, 61.0)
    """
    x = _samples(samples)
    ranks = ci_ranks(x.size, confidence)
    if ranks is None:
        return math.nan, math.nan
    lo, hi = ranks
    part = np.partition(x, (lo - 1, hi - 1))
    return float(part[lo - 1]), float(part[hi - 1])


def relative_halfwidth(median: float, low: float, high: float) -> float:
    """Larger distance from the median to a CI bound, relative to the median.

    The CI of a median is not symmetric; the wider side is the honest half-width.
    Returns inf when the CI is undefined (NaN) or the median is not positive.
    """
    if not (median > 0) or math.isnan(low) or math.isnan(high):
        return math.inf
    return max(median - low, high - median) / median


def summarize(samples, *, target_ci: float = 0.05, confidence: float = 0.95) -> dict:
    """Statistics of one point's per-repetition times (seconds).

    Keys: ``median_s``, ``ci_low_s``, ``ci_high_s``, ``mean_s``, ``min_s``, ``p95_s``,
    ``p99_s`` (numpy's default linear interpolation between order statistics),
    ``repetitions``, ``ci_rel`` (relative half-width) and ``unstable`` (module
    docstring).  An empty sample gives NaN statistics and ``unstable=True``.
    """
    x = _samples(samples)
    if not target_ci > 0:
        raise ValueError(f"target_ci must be > 0, got {target_ci}")
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return {"median_s": nan, "ci_low_s": nan, "ci_high_s": nan, "mean_s": nan,
                "min_s": nan, "p95_s": nan, "p99_s": nan, "repetitions": 0,
                "ci_rel": math.inf, "unstable": True}
    med = float(np.median(x))
    lo, hi = median_ci(x, confidence)
    p95, p99 = (float(v) for v in np.percentile(x, [95, 99]))
    rel = relative_halfwidth(med, lo, hi)
    heavy = med > 0 and p99 > TAIL_RATIO * med
    return {"median_s": med, "ci_low_s": lo, "ci_high_s": hi, "mean_s": float(x.mean()),
            "min_s": float(x.min()), "p95_s": p95, "p99_s": p99, "repetitions": n,
            "ci_rel": rel, "unstable": bool(rel > target_ci or heavy)}


def _check_limits(min_reps, max_reps, time_budget, target_ci):
    if int(min_reps) != min_reps or min_reps < 1:
        raise ValueError(f"min_reps must be a whole number >= 1, got {min_reps!r}")
    if int(max_reps) != max_reps or max_reps < min_reps:
        raise ValueError(f"max_reps must be a whole number >= min_reps ({min_reps}), "
                         f"got {max_reps!r}")
    if not time_budget > 0:
        raise ValueError(f"time_budget must be > 0 seconds, got {time_budget!r}")
    if not target_ci > 0:
        raise ValueError(f"target_ci must be > 0, got {target_ci!r}")


def stop_reason(samples, elapsed_s: float, *, target_ci: float = 0.05,
                time_budget: float = 1.0, min_reps: int = 10, max_reps: int = 100000,
                confidence: float = 0.95) -> str | None:
    """Which rule stops a point now: ``"ci"``, ``"max"``, ``"budget"`` or None (go on).

    ``samples`` are the kept repetition times so far, ``elapsed_s`` the time spent on the
    point.  Precedence and the role of ``min_reps`` are in the module docstring.
    """
    _check_limits(min_reps, max_reps, time_budget, target_ci)
    x = _samples(samples)
    n = x.size
    if n < min_reps:
        return "budget" if elapsed_s >= HARD_LIMIT * time_budget else None
    lo, hi = median_ci(x, confidence)
    if relative_halfwidth(float(np.median(x)), lo, hi) <= target_ci:
        return "ci"
    if n >= max_reps:
        return "max"
    if elapsed_s >= time_budget:
        return "budget"
    return None


def next_batch_size(done: int, elapsed_s: float, *, min_reps: int = 10,
                    max_reps: int = 100000, time_budget: float = 1.0,
                    growth: float = 0.25) -> int:
    """Repetitions to run before the next stop check.

    First ``min_reps``; then ``growth`` times the count so far (so the CI is evaluated a
    logarithmic number of times), cut so the batch neither passes ``max_reps`` nor,
    at the rate observed so far, overruns the time budget by more than one repetition.
    Always at least 1 while ``done < max_reps``; 0 when ``max_reps`` is reached.
    """
    _check_limits(min_reps, max_reps, time_budget, 1.0)
    if done < 0 or elapsed_s < 0:
        raise ValueError(f"done and elapsed_s must be >= 0, got {done}, {elapsed_s}")
    if done >= max_reps:
        return 0
    if done < min_reps:
        return int(min_reps - done)
    want = max(1, int(done * growth))
    if elapsed_s > 0:
        left = time_budget - elapsed_s
        want = min(want, max(1, int(left / (elapsed_s / done))))
    return int(min(want, max_reps - done))
