"""Scaling rubric: judge a measured table of (workers, seconds) runs.

Input: a table with columns ``p`` (workers) and ``seconds`` (wall time of the run) and,
optionally, ``rate_per_hour`` (price per hour of the whole allocation used by that row),
``quality`` (a result metric recorded in the same run, e.g. final loss) and ``work``
(units of work the run did, e.g. samples; default 1 per row).

Speedups are throughput ratios against the baseline row (the smallest ``p``)::

    S(p) = p_b · (W_p / T_p) / (W_b / T_b)

which is ``T(1)/T(p)`` for a strong-scaling table with a ``p = 1`` row and the scaled
speedup when ``work`` grows with ``p`` (a baseline above 1 assumes perfect scaling up to
it).  Then efficiency ``S/p``, the least-squares Amdahl serial fraction and its ceiling,
the model speedup, Karp–Flatt per ``p``, cost per run / per unit of work / work per unit
of money, the quality gate, and recommendations made only from rows that pass it.
All laws come from :mod:`fits.predict.scaling`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import scaling

__all__ = ["REQUIRED", "OPTIONAL", "DEFAULT_THRESHOLD", "DEFAULT_QUALITY_TOL",
           "RubricResult", "read_table", "validate_table", "evaluate"]

REQUIRED = ("p", "seconds")
OPTIONAL = ("rate_per_hour", "quality", "work")
DEFAULT_THRESHOLD = 0.70
#: Allowed relative drift of ``quality`` from the baseline row.
DEFAULT_QUALITY_TOL = 0.01


@dataclass(frozen=True)
class RubricResult:
    """Per-``p`` table and the summary of one rubric evaluation."""

    table: pd.DataFrame
    baseline_p: int
    serial_fraction: float
    ceiling: float
    threshold: float
    largest_efficient_p: int | None
    cheapest_p: int | None
    cost_unit: str
    drifting: tuple
    karp_flatt_trend: str
    verdict: str
    notes: tuple = field(default_factory=tuple)

    def summary(self) -> dict:
        """JSON-ready summary (everything but the table)."""
        return {"baseline_p": self.baseline_p, "serial_fraction": self.serial_fraction,
                "amdahl_ceiling": self.ceiling, "threshold": self.threshold,
                "largest_efficient_p": self.largest_efficient_p,
                "cheapest_p": self.cheapest_p, "cost_unit": self.cost_unit,
                "drifting_p": list(self.drifting),
                "karp_flatt_trend": self.karp_flatt_trend, "verdict": self.verdict,
                "notes": list(self.notes)}


def read_table(path) -> pd.DataFrame:
    """Read and validate a rubric CSV (see :func:`validate_table`)."""
    try:
        df = pd.read_csv(path, skipinitialspace=True, comment="#")
    except FileNotFoundError:
        raise ValueError(f"rubric table {path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"rubric table {path}: not a readable CSV ({exc})") from None
    return validate_table(df, source=str(path))


def _numeric(df, col, source):
    vals = pd.to_numeric(df[col], errors="coerce")
    bad = vals.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{source}: column {col!r} row {row + 1} is not a number: "
                         f"{df[col].iloc[row]!r}")
    return vals.astype(float)


def validate_table(df: pd.DataFrame, *, source: str = "rubric table") -> pd.DataFrame:
    """Checked copy of a rubric table, sorted by ``p``; errors name the column and row."""
    df = df.rename(columns=lambda c: str(c).strip())
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)} (have: "
                         f"{', '.join(df.columns) or 'none'}); required: p, seconds")
    if len(df) == 0:
        raise ValueError(f"{source}: no rows")
    out = pd.DataFrame(index=df.index)
    for col in REQUIRED + OPTIONAL:
        if col in df.columns:
            out[col] = _numeric(df, col, source)
    p = out["p"].to_numpy()
    bad = ~np.isfinite(p) | (p < 1) | (p != np.floor(p))
    if bad.any():
        raise ValueError(f"{source}: column 'p' must hold whole numbers >= 1, got "
                         f"{p[bad][0]:g}")
    sec = out["seconds"].to_numpy()
    bad = ~np.isfinite(sec) | (sec <= 0)
    if bad.any():
        raise ValueError(f"{source}: column 'seconds' must be > 0 and finite, got "
                         f"{sec[bad][0]:g}")
    if "rate_per_hour" in out and np.any(~np.isfinite(out["rate_per_hour"])
                                         | (out["rate_per_hour"] < 0)):
        raise ValueError(f"{source}: column 'rate_per_hour' must be finite and >= 0")
    if "work" in out and np.any(~np.isfinite(out["work"]) | (out["work"] <= 0)):
        raise ValueError(f"{source}: column 'work' must be finite and > 0")
    dup = out["p"].duplicated()
    if dup.any():
        raise ValueError(f"{source}: p={int(out['p'][dup].iloc[0])} appears more than "
                         f"once; aggregate repetitions (e.g. their median) first")
    out["p"] = out["p"].astype(int)
    return out.sort_values("p").reset_index(drop=True)


def _drift(quality: np.ndarray, base: float) -> np.ndarray:
    """Relative drift from the baseline quality (absolute when the baseline is 0)."""
    return np.abs(quality - base) / (abs(base) if base != 0 else 1.0)


def _trend(p, e) -> str:
    ok = np.isfinite(e)
    p, e = p[ok], e[ok]
    if len(e) < 2:
        return "undetermined (needs two rows with p > 1)"
    slope = np.polyfit(p, e, 1)[0] if len(e) > 2 else e[-1] - e[0]
    if slope > 0 and e[-1] > e[0] + 0.1 * abs(e[0]) + 1e-12:
        return "rising with p: communication overhead grows"
    return "flat or falling: a fixed serial part"


def evaluate(table: pd.DataFrame, *, threshold: float = DEFAULT_THRESHOLD,
             quality_tol: float = DEFAULT_QUALITY_TOL,
             rate_per_worker_hour: float | None = None) -> RubricResult:
    """Evaluate a rubric table (validated with :func:`validate_table` first).

    ``threshold``: efficiency a recommended ``p`` must keep (0 < threshold <= 1).
    ``quality_tol``: largest allowed relative drift of ``quality`` from the baseline row.
    ``rate_per_worker_hour``: price per worker-hour, used when the table has no
    ``rate_per_hour`` column (cost = rate × p × seconds / 3600).  Without any rate, costs
    are in worker-seconds.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if not quality_tol >= 0:
        raise ValueError(f"quality tolerance must be >= 0, got {quality_tol}")
    if rate_per_worker_hour is not None and not rate_per_worker_hour >= 0:
        raise ValueError(f"rate per worker-hour must be >= 0, got {rate_per_worker_hour}")
    df = validate_table(table)
    notes = []
    p = df["p"].to_numpy(dtype=float)
    t = df["seconds"].to_numpy()
    work = df["work"].to_numpy() if "work" in df else np.ones_like(t)
    base = 0
    pb = int(p[base])
    if pb > 1:
        notes.append(f"no p = 1 row: speedups are relative to p = {pb}, assuming "
                     f"perfect scaling up to it")
    rate = work / t
    S = pb * rate / rate[base]
    out = df.copy()
    out["speedup"] = S
    out["efficiency"] = scaling.efficiency(S, p)
    out["karp_flatt"] = scaling.karp_flatt(S, p)

    if "quality" in df:
        drift = _drift(df["quality"].to_numpy(), float(df["quality"].iloc[base]))
        out["quality_drift"] = drift
        ok = drift <= quality_tol
    else:
        ok = np.ones(len(df), dtype=bool)
    out["quality_ok"] = ok
    drifting = tuple(int(x) for x in p[~ok])
    if drifting:
        notes.append(f"p = {', '.join(map(str, drifting))}: quality drifts beyond "
                     f"{quality_tol:g}; excluded from the fit and the recommendations")

    fit_rows = ok & (p > 1)
    if fit_rows.any():
        s = scaling.fit_serial_fraction(p[ok], S[ok])
    else:
        s = float("nan")
        notes.append("no usable row with p > 1: serial fraction not fitted")
    s_model = float(np.clip(s, 0.0, 1.0)) if np.isfinite(s) else float("nan")
    ceiling = float(scaling.amdahl_ceiling(s_model)) if np.isfinite(s_model) else float("nan")
    out["model_speedup"] = (scaling.amdahl_speedup(s_model, p) if np.isfinite(s_model)
                            else np.nan)

    if "rate_per_hour" in df:
        cost = scaling.run_cost(df["rate_per_hour"].to_numpy(), t)
        unit = "currency"
    elif rate_per_worker_hour is not None:
        cost = scaling.run_cost(rate_per_worker_hour * p, t)
        unit = "currency"
    else:
        cost = p * t
        unit = "worker-seconds"
    out["cost_per_run"] = cost
    out["cost_per_work"] = scaling.cost_per_work(cost, work)
    out["work_per_cost"] = scaling.work_per_cost(work, cost)

    eff_ok = ok & (out["efficiency"].to_numpy() >= threshold)
    largest = int(p[eff_ok].max()) if eff_ok.any() else None
    if ok.any():
        cpw = out["cost_per_work"].to_numpy()
        order = np.lexsort((t, cpw))  # cheapest, then fastest
        cheapest = int(p[[i for i in order if ok[i]][0]])
    else:
        cheapest = None
    trend = _trend(p[ok & (p > 1)], out["karp_flatt"].to_numpy()[ok & (p > 1)])

    parts = []
    if largest is not None and largest > pb:
        e = float(out.loc[df["p"] == largest, "efficiency"].iloc[0])
        parts.append(f"scales to p={largest} at efficiency {e:.2f} (>= {threshold:g})")
    else:
        parts.append(f"no p above {pb} keeps efficiency >= {threshold:g}")
    if np.isfinite(s):
        parts.append(f"Amdahl s={s:.3g}, ceiling {ceiling:.3g}x")
    if cheapest is not None:
        parts.append(f"cheapest p={cheapest} ({unit})")
    parts.append(f"Karp-Flatt {trend.split(':')[0]}")
    if drifting:
        parts.append(f"{len(drifting)} row(s) excluded for quality drift")
    return RubricResult(table=out, baseline_p=pb, serial_fraction=s, ceiling=ceiling,
                        threshold=threshold, largest_efficient_p=largest,
                        cheapest_p=cheapest, cost_unit=unit, drifting=drifting,
                        karp_flatt_trend=trend, verdict="; ".join(parts),
                        notes=tuple(notes))
