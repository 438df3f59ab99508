"""Synthetic measurements from known constants: the fitter's ground truth.

:func:`synthetic_points` draws point rows (``docs/formats.md`` fields, with samples)
whose times follow the registry model with given α, β per size segment and a given γ,
times multiplicative lognormal noise.  Two noise levels:

* ``noise`` -- per repetition (σ of ``ln``), what the median of a point averages out;
* ``point_noise`` -- one factor per point shared by all its repetitions (launch-to-launch
  and size-to-size effects that no number of repetitions removes).

Used by the tests, ``benchmarks/bench_fit_accuracy.py`` and anyone wanting to check a
fitting option on data whose answer is known.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collectives import costs

__all__ = ["Truth", "synthetic_points", "write_run", "DEFAULT_SIZES"]

#: 0, then powers of two from 8 B to 16 MiB.
DEFAULT_SIZES = (0,) + tuple(2 ** k for k in range(3, 25))


@dataclass(frozen=True)
class Truth:
    """Known constants.

    ``segments``: ``((min_bytes, alpha, beta), ...)`` increasing in ``min_bytes``, the
    first at 0 -- used for p2p and every algorithm without an entry in ``algorithms``
    (``(collective, algorithm) -> segments``).  ``gamma``: s/B.  ``overhead``: per-call
    time of the ``reduce_local`` probe.  ``native``: ``(collective, p) -> segments``.
    """

    segments: tuple = ((0, 2e-6, 2e-10), (65536, 1e-5, 1e-10))
    gamma: float = 3e-11
    overhead: float = 5e-7
    algorithms: dict = field(default_factory=dict)
    native: dict = field(default_factory=dict)
    #: ``collective -> ((min_bytes, registry algorithm), ...)``: the library's collective
    #: runs that algorithm from that size on, priced with ``segments`` (the step's
    #: message size picks the segment), γ and ``native_call`` per call.  Takes
    #: precedence over ``native`` for that collective.
    native_algorithms: dict = field(default_factory=dict)
    native_call: float = 0.0

    def constants(self, collective, algorithm, p, nbytes):
        """(alpha, beta) arrays of the segment covering each size."""
        if algorithm == costs.NATIVE and collective in costs.COLLECTIVES:
            segs = self.native.get((collective, int(p)), self.segments)
        else:
            segs = self.algorithms.get((collective, algorithm), self.segments)
        starts = np.array([s[0] for s in segs], dtype=float)
        i = np.searchsorted(starts, np.asarray(nbytes, dtype=float), side="right") - 1
        return (np.array([s[1] for s in segs])[i], np.array([s[2] for s in segs])[i])

    def native_algorithm(self, collective, nbytes):
        """Registry algorithm of the native ``collective`` at each size (array)."""
        table = self.native_algorithms[collective]
        starts = np.array([s[0] for s in table], dtype=float)
        i = np.searchsorted(starts, np.asarray(nbytes, dtype=float), side="right") - 1
        return np.array([s[1] for s in table], dtype=object)[i]

    def time(self, collective, algorithm, p, nbytes):
        """Noise-free time of one call (seconds)."""
        nbytes = np.asarray(nbytes, dtype=float)
        if algorithm == costs.NATIVE and collective in self.native_algorithms:
            algs = self.native_algorithm(collective, nbytes)
            out = np.empty(nbytes.shape)
            for alg in set(np.atleast_1d(algs).tolist()):
                sel = np.atleast_1d(algs == alg)
                n = np.atleast_1d(nbytes)[sel]
                m = costs.step_bytes(collective, alg, p, n)
                a, b = self.constants("pingpong", costs.NATIVE, 2, m)
                np.atleast_1d(out)[sel] = costs.predict_steps(
                    collective, alg, p, n, a, b, self.gamma, call_cost=self.native_call)
            return out if out.shape else float(out)
        alpha, beta = self.constants(collective, algorithm, p, nbytes)
        if collective == "reduce_local":
            return self.overhead + costs.predict(collective, algorithm, 1, nbytes, 0, 0,
                                                 self.gamma)
        if algorithm == costs.NATIVE and collective in costs.COLLECTIVES:
            return costs.predict("pingpong", costs.NATIVE, 1, nbytes, alpha, beta)
        return costs.predict(collective, algorithm, p, nbytes, alpha, beta, self.gamma)


def _median_ci(s: np.ndarray):
    n = s.size
    lo = int(np.floor((n - 1.96 * np.sqrt(n)) / 2))
    hi = int(np.ceil(1 + (n + 1.96 * np.sqrt(n)) / 2))
    srt = np.sort(s)
    return srt[max(lo, 1) - 1], srt[min(hi, n) - 1]


def synthetic_points(truth: Truth, entries, *, ranks=(2, 3, 4, 5, 8),
                     sizes=DEFAULT_SIZES, repetitions: int = 21, noise: float = 0.05,
                     point_noise: float = 0.0, topology: str = "intra",
                     launch: str = "synthetic", seed=0) -> list[dict]:
    """Point rows for ``entries`` (``(collective, algorithm)`` pairs).

    ``pingpong`` is generated at 2 ranks and ``reduce_local`` at 1 whatever ``ranks``
    says.  Returns dicts with every field of a run's ``points.jsonl`` row.
    """
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    if noise < 0 or point_noise < 0:
        raise ValueError("noise and point_noise must be >= 0")
    rng = np.random.default_rng(seed)
    rows = []
    for collective, algorithm in entries:
        costs.size_convention(collective)
        plist = ((2,) if collective == "pingpong" else (1,)
                 if collective == "reduce_local" else tuple(ranks))
        for p in plist:
            for n in sizes:
                true = float(truth.time(collective, algorithm, p, n))
                factor = rng.lognormal(0.0, point_noise) if point_noise else 1.0
                s = true * factor * rng.lognormal(0.0, noise, repetitions)
                lo, hi = _median_ci(s)
                rows.append({
                    "collective": collective, "algorithm": algorithm,
                    "topology": topology, "ranks": int(p), "nodes": 1,
                    "bytes": int(n), "count": int(n) // 4, "dtype": "float32",
                    "op": "sum", "buffer": "numpy", "sync": "barrier",
                    "launch": launch, "median_s": float(np.median(s)),
                    "ci_low_s": float(lo), "ci_high_s": float(hi),
                    "mean_s": float(s.mean()), "min_s": float(s.min()),
                    "p95_s": float(np.percentile(s, 95)),
                    "p99_s": float(np.percentile(s, 99)),
                    "repetitions": repetitions, "discarded": 0, "warmup": 1,
                    "stop_rule": "max", "unstable": False, "correct": True,
                    "samples": {"max": s.tolist(), "min": (s * 0.9).tolist(),
                                "mean": (s * 0.95).tolist()},
                    "timestamp_utc": "2026-01-01T00:00:00.000000Z",
                })
    return rows



def write_run(path, rows, *, metadata: dict | None = None):
    """Write ``rows`` as a run directory through :class:`collectives.results.RunWriter`.

    ``metadata`` entries override a small synthetic default (single node, MPICH-like).
    Returns the run directory's path.
    """
    from collectives.results import RunWriter

    meta = {"command_line": "fits.synthetic", "git_commit": None,
            "collcost_version": "synthetic", "world_size": 8, "nodes": 1,
            "ranks_per_node": 8, "hosts": {"synthetic": 8},
            "mpi": {"library": "synthetic", "version": "synthetic 0", "standard": "4.0"},
            "env": {}, "gpu": None,
            "options": {"dtype": "float32", "op": "sum", "sync": "barrier",
                        "buffer": "numpy"}}
    meta.update(metadata or {})
    writer = RunWriter.create(path, meta)
    with writer:
        for row in rows:
            writer.append(row)
    writer.finish()
    return writer.path
