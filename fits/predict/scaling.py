"""Scaling laws: Amdahl, Gustafson, Karp–Flatt, the serial-fraction fit, toy models, cost.

Every law is one pure function, vectorized over its arguments (numpy broadcasting), with
its equation in the docstring (``../shared/reference/cost-models.md``, "Scaling laws").
``K`` (or ``p``) is the number of workers, ``s`` a serial fraction in [0, 1].
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_workers", "check_fraction", "speedup", "efficiency", "amdahl_time",
           "amdahl_speedup", "amdahl_ceiling", "gustafson_speedup", "karp_flatt",
           "fit_serial_fraction", "comm_serial_fraction", "textbook_strong_time",
           "textbook_weak_time", "textbook_optimal_workers", "run_cost",
           "cost_per_work", "work_per_cost"]


def check_workers(K, name: str = "workers") -> np.ndarray:
    """``K`` as a float array of whole numbers >= 1, else ValueError naming ``name``."""
    k = np.asarray(K, dtype=float)
    if k.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.any(~np.isfinite(k)) or np.any(k < 1) or np.any(k != np.floor(k)):
        bad = k[~np.isfinite(k) | (k < 1) | (k != np.floor(k))].ravel()[0]
        raise ValueError(f"{name} must be whole numbers >= 1, got {bad:g}")
    return k


def check_fraction(s, name: str = "serial fraction") -> np.ndarray:
    """``s`` as a float array in [0, 1], else ValueError naming ``name``."""
    s = np.asarray(s, dtype=float)
    if np.any(~np.isfinite(s)) or np.any(s < 0) or np.any(s > 1):
        raise ValueError(f"{name} must be between 0 and 1, got {s.ravel()[0]:g}"
                         if s.size == 1 else f"{name} must be between 0 and 1")
    return s


def _positive(x, name):
    x = np.asarray(x, dtype=float)
    if np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{name} must be finite and > 0")
    return x


def speedup(t1, tK):
    """Speedup ``S = T(1) / T(K)`` (times in any one unit, both > 0).

    >>> float(speedup(10.0, 2.5))
    4.0
    """
    return _positive(t1, "T(1)") / _positive(tK, "T(K)")


def efficiency(S, K):
    """Parallel efficiency ``E = S / K``.

    With a weak-scaling speedup ``S = K T(1) / T(K)`` this is the weak efficiency
    ``T(1) / T(K)``.

    >>> float(efficiency(6.0, 8))
    0.75
    """
    return np.asarray(S, dtype=float) / check_workers(K)


def amdahl_time(s, K):
    """Normalized Amdahl time ``T(K)/T(1) = s + (1 - s)/K``.

    >>> float(amdahl_time(0.1, 10))
    0.19
    """
    s = check_fraction(s)
    return s + (1 - s) / check_workers(K)


def amdahl_speedup(s, K):
    """Amdahl speedup ``S(K) = 1 / (s + (1 - s)/K)``; ``S(1) = 1``, ``S -> 1/s``.

    >>> round(float(amdahl_speedup(0.05, 20)), 6)
    10.25641
    """
    return 1.0 / amdahl_time(s, K)


def amdahl_ceiling(s):
    """Amdahl's limit ``lim S(K) = 1/s`` (``inf`` for ``s = 0``).

    >>> float(amdahl_ceiling(0.04))
    25.0
    """
    s = check_fraction(s)
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), np.inf)


def gustafson_speedup(s, K):
    """Gustafson (scaled) speedup ``S(K) = K - s (K - 1)``.

    >>> float(gustafson_speedup(0.05, 20))
    19.05
    """
    s = check_fraction(s)
    K = check_workers(K)
    return K - s * (K - 1)


def karp_flatt(S, K):
    """Karp–Flatt experimentally determined serial fraction.

    ``e = (1/S - 1/K) / (1 - 1/K)``; undefined (NaN) at ``K = 1``.  An ``e`` that grows
    with ``K`` points at communication overhead rather than a fixed serial part.

    >>> round(float(karp_flatt(amdahl_speedup(0.1, 8), 8)), 12)
    0.1
    """
    S = _positive(S, "speedup")
    K = check_workers(K)
    x = 1 - 1 / K
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(K > 1, (1 / S - 1 / K) / np.where(K > 1, x, 1.0), np.nan)


def fit_serial_fraction(K, S) -> float:
    """Least-squares Amdahl serial fraction from measured speedups.

    Fits ``1/S - 1/K = s (1 - 1/K)`` through the origin: ``s = Σ x y / Σ x²`` with
    ``x = 1 - 1/K`` and ``y = 1/S - 1/K``.  Rows with ``K = 1`` carry no information
    (``x = 0``); at least one ``K > 1`` is needed.  The estimate is not clipped: a
    negative ``s`` means super-linear speedup.

    >>> K = np.array([1, 2, 4, 8]); round(fit_serial_fraction(K, amdahl_speedup(0.2, K)), 12)
    0.2
    """
    K = check_workers(K).ravel()
    S = _positive(S, "speedup").ravel()
    if K.shape != S.shape:
        raise ValueError(f"workers and speedups must have the same length, got "
                         f"{K.size} and {S.size}")
    x = 1 - 1 / K
    if not np.any(x > 0):
        raise ValueError("fitting a serial fraction needs at least one worker count > 1")
    y = 1 / S - 1 / K
    return float(np.sum(x * y) / np.sum(x * x))


def comm_serial_fraction(t_comm, t_comp):
    """Serial fraction of a data-parallel step ``s = T_comm / (T_comp + T_comm)``.

    0 when both are 0.

    >>> float(comm_serial_fraction(1.0, 3.0))
    0.25
    """
    c = np.asarray(t_comm, dtype=float)
    p = np.asarray(t_comp, dtype=float)
    if np.any(c < 0) or np.any(p < 0):
        raise ValueError("communication and computation times must be >= 0")
    total = c + p
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, c / np.where(total > 0, total, 1.0), 0.0)


def _toy_args(s, c, K):
    s = check_fraction(s)
    c = np.asarray(c, dtype=float)
    if np.any(~np.isfinite(c)) or np.any(c < 0):
        raise ValueError("communication coefficient c must be finite and >= 0")
    return s, c, check_workers(K)


def textbook_strong_time(s, c, K):
    """Textbook strong-scaling time ``T(K) = s + (1 - s)/K + c lg K`` (T(1) = 1).

    >>> round(float(textbook_strong_time(0.1, 0.01, 4)), 12)
    0.345
    """
    s, c, K = _toy_args(s, c, K)
    return s + (1 - s) / K + c * np.log2(K)


def textbook_weak_time(s, c, K):
    """Textbook weak-scaling time ``T(K) = s + (1 - s) + c lg K`` (K-times larger problem).

    >>> float(textbook_weak_time(0.1, 0.01, 4))
    1.02
    """
    s, c, K = _toy_args(s, c, K)
    return s + (1 - s) + c * np.log2(K)


def textbook_optimal_workers(s, c):
    """Whole ``K >= 1`` minimizing :func:`textbook_strong_time`.

    ``dT/dK = -(1-s)/K² + c/(K ln 2) = 0`` gives ``K* = (1 - s) ln 2 / c``; the answer is
    the better of ``floor(K*)`` and ``ceil(K*)`` (at least 1); ``inf`` when ``c = 0`` and
    ``s < 1`` (the time keeps falling).

    >>> float(textbook_optimal_workers(0.0, np.log(2) / 10))
    10.0
    """
    s, c, _ = _toy_args(s, c, 1)
    s, c = np.broadcast_arrays(s, c)
    out = np.empty(s.shape)
    for i, (si, ci) in enumerate(zip(s.ravel(), c.ravel())):
        if ci == 0:
            out.flat[i] = np.inf if si < 1 else 1.0
            continue
        k = (1 - si) * np.log(2) / ci
        lo, hi = max(1.0, np.floor(k)), max(1.0, np.ceil(k))
        out.flat[i] = lo if textbook_strong_time(si, ci, lo) <= \
            textbook_strong_time(si, ci, hi) else hi
    return out if out.ndim else float(out)


def run_cost(rate_per_hour, seconds):
    """Cost of a run ``C = rate × time`` (rate per hour, time in seconds).

    >>> float(run_cost(3.6, 100))
    0.1
    """
    r = np.asarray(rate_per_hour, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r < 0):
        raise ValueError("rate per hour must be finite and >= 0")
    return r * _positive(seconds, "seconds") / 3600.0


def cost_per_work(cost, work):
    """Cost per unit of work ``C / W``.

    >>> float(cost_per_work(2.0, 8))
    0.25
    """
    return np.asarray(cost, dtype=float) / _positive(work, "work")


def work_per_cost(work, cost):
    """Work per unit of money ``W / C`` (``inf`` when the cost is 0).

    >>> float(work_per_cost(8, 2.0))
    4.0
    """
    w = _positive(work, "work")
    c = np.asarray(cost, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(c > 0, w / np.where(c > 0, c, 1.0), np.inf)
