"""Bootstrap of the measured points: resampled medians, launch weights, intervals.

One bootstrap replicate of a point table is built in two stages, following
``shared/reference/cost-models.md``:

1. when the points come from several launches (``launch`` column), whole launches are
   drawn with replacement; a point's weight in the replicate is the number of times its
   launch was drawn (0 drops it) -- launch-to-launch variance is usually the larger one;
2. within each point, its repetitions (``samples["max"]``) are drawn with replacement and
   their median is the replicate's time for that point;
3. optionally (``points=True``, the fitter's default) each point also gets an
   independent Poisson(1) multiplicity -- the Poisson form of resampling the points
   themselves.  Repetitions cannot show noise shared by all repetitions of a point
   (the size-to-size and launch-to-launch effects that dominate on shared machines);
   without this stage the 95% intervals covered the truth in only 30-60% of synthetic
   sweeps with 5% per-point noise and one launch (``benchmarks/bench_fit_accuracy.py``).

The fitter refits every replicate (with the breakpoints found on the full data held
fixed) and reports basic bootstrap intervals of the constants
(:func:`fits.headline.assess`; :func:`percentile_interval` gives their quantiles).

Memory: the replicate tables hold ``B × m`` times and weights (16 bytes each, and the
fitter's per-entry subsets copy them again), so ``B × m`` is bounded by
:data:`MAX_CELLS` (5·10^7: 800 MB of tables; 10^6 points allow 50 replicates, 10^5
points 500): :func:`check_size` refuses more, naming ``--bootstrap``, before anything
is allocated.  Each point's repetition resampling is drawn in chunks of replicates
(at most :data:`CHUNK_CELLS` indices at a time), which draws the same numbers as one
``B × k`` draw, so a seed gives the same intervals as before.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["Replicates", "replicate_points", "percentile_interval", "check_size",
           "MAX_CELLS", "CHUNK_CELLS"]

#: Most replicate values ``B × m`` (replicates × points) held at once.
MAX_CELLS = 50_000_000
#: Most resampling indices drawn at once for one point (chunks of replicates).
CHUNK_CELLS = 1_000_000


def check_size(count: int, points: int) -> None:
    """``ValueError`` naming ``--bootstrap`` when ``count × points`` exceeds
    :data:`MAX_CELLS` (call before allocating the replicates)."""
    if count * points > MAX_CELLS:
        most = MAX_CELLS // max(points, 1)
        raise ValueError(
            f"--bootstrap {count} with {points} points needs {count * points:.3g} "
            f"replicate values, more than the limit {MAX_CELLS:.3g} "
            f"(fits.bootstrap.MAX_CELLS, about {MAX_CELLS * 16 / 1e9:.1g} GB): use "
            f"--bootstrap {most} or fewer"
            + (" (or --bootstrap 0)" if most < 1 else "")
            + ", or fit fewer points (--topology, fewer runs)")


class Replicates:
    """``B`` bootstrap replicates of ``m`` points.

    Attributes ``times`` (B × m resampled medians) and ``weights`` (B × m launch
    multiplicities, all 1 for a single launch); ``count`` is B.
    """

    def __init__(self, times: np.ndarray, weights: np.ndarray):
        self.times = times
        self.weights = weights

    @property
    def count(self) -> int:
        return self.times.shape[0]

    def subset(self, rows) -> "Replicates":
        """Replicates restricted to the points selected by ``rows`` (mask or indices)."""
        return Replicates(self.times[:, rows], self.weights[:, rows])


def _median_resamples(samples: np.ndarray, B: int, rng: np.random.Generator) -> np.ndarray:
    k = samples.size
    rows = max(1, CHUNK_CELLS // k)  # same draws as one (B, k) call, bounded memory
    out = np.empty(B)
    for start in range(0, B, rows):
        stop = min(B, start + rows)
        idx = rng.integers(0, k, size=(stop - start, k))
        out[start:stop] = np.median(samples[idx], axis=1)
    return out


def replicate_points(samples, medians, launches, count: int,
                     rng: np.random.Generator, *, points: bool = False) -> Replicates:
    """Draw ``count`` replicates of a point table.

    Parameters
    ----------
    samples : sequence of 1-D arrays, the per-repetition seconds of each point (an empty
        array keeps that point's median fixed: nothing to resample).
    medians : (m,) the points' medians (used where ``samples`` is empty).
    launches : (m,) launch id of each point.
    count : number of replicates B (>= 1).
    rng : numpy Generator (the caller's seed makes the intervals reproducible).
    points : also give each point a Poisson(1) multiplicity (stage 3 above).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a whole number >= 1, got {count!r}")
    medians = np.asarray(medians, dtype=float)
    m = medians.size
    if len(samples) != m or len(launches) != m:
        raise ValueError(f"samples, medians and launches must have one entry per point; "
                         f"got {len(samples)}, {m}, {len(launches)}")
    check_size(count, m)
    times = np.empty((count, m))
    for i, s in enumerate(samples):
        s = np.asarray(s, dtype=float)
        if s.size == 0:
            times[:, i] = medians[i]
        else:
            if not np.all(np.isfinite(s)):
                raise ValueError(f"point {i} has non-finite samples")
            times[:, i] = _median_resamples(s, count, rng)
    ids, index = np.unique(np.asarray(launches, dtype=str), return_inverse=True)
    if ids.size > 1:
        drawn = rng.multinomial(ids.size, np.full(ids.size, 1.0 / ids.size), size=count)
        weights = drawn[:, index].astype(float)
    else:
        weights = np.ones((count, m))
    if points:
        weights = weights * rng.poisson(1.0, size=(count, m))
    return Replicates(times, weights)


def percentile_interval(values, confidence: float = 0.95, axis: int = 0):
    """Percentile interval ``(low, high)`` of bootstrap ``values`` along ``axis``.

    NaN replicates (a segment left without points in some replicate) are ignored; an
    all-NaN column gives NaN bounds.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = np.asarray(values, dtype=float)
    tail = 100 * (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        lo, hi = np.nanpercentile(values, [tail, 100 - tail], axis=axis)
    return lo, hi
