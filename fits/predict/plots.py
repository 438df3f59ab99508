"""PNG plots of the predictor: speedup, efficiency, step-time breakdown.

matplotlib is an optional extra (``pip install 'collcost[plot]'``); it is imported only
when a plot is drawn, with the Agg backend.  Each file is written atomically (temporary
file in the same directory, then renamed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["speedup_plot", "efficiency_plot", "breakdown_plot"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install 'collcost[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> Path:
    from collectives.files import atomic_path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    finally:
        fig.clf()
        import matplotlib.pyplot as plt
        plt.close(fig)
    return path


def speedup_plot(path, workers, curves: dict, *, ceilings: dict | None = None,
                 styles: dict | None = None, title: str = "Speedup") -> Path:
    """Speedup vs K: one line per ``curves`` label, the ideal ``S = K`` and ceilings.

    ``styles``: optional label -> matplotlib line keyword arguments.
    """
    plt = _pyplot()
    K = np.asarray(workers, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(K, K, "k--", lw=1, label="ideal (S = K)")
    for label, S in curves.items():
        style = {"marker": "o", "ms": 3, **(styles or {}).get(label, {})}
        ax.plot(K, S, label=label, **style)
    for label, c in (ceilings or {}).items():
        if np.isfinite(c):
            ax.axhline(c, ls=":", lw=1, color="gray")
            ax.annotate(f"{label} ceiling {c:.3g}", (K.max(), c), fontsize=7,
                        va="bottom", ha="right", color="gray")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("workers K")
    ax.set_ylabel("speedup")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def efficiency_plot(path, workers, curves: dict, *, threshold: float | None = None,
                    title: str = "Efficiency") -> Path:
    """Efficiency vs K, with the recommendation threshold as a horizontal line."""
    plt = _pyplot()
    K = np.asarray(workers, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, E in curves.items():
        ax.plot(K, E, "o-", ms=3, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, max(1.05, max((np.nanmax(E) for E in curves.values()), default=1) * 1.05))
    ax.set_xlabel("workers K")
    ax.set_ylabel("efficiency")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def breakdown_plot(path, workers, *, compute, exposed_comm, serial,
                   title: str = "Step time") -> Path:
    """Stacked bars per K: compute, exposed communication, serial time (seconds)."""
    plt = _pyplot()
    K = np.asarray(workers)
    x = np.arange(len(K))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.35 * len(K)), 4.4))
    bottom = np.zeros(len(K))
    for label, part in (("compute", compute), ("exposed communication", exposed_comm),
                        ("serial", serial)):
        part = np.asarray(part, dtype=float)
        ax.bar(x, part, bottom=bottom, label=label)
        bottom += part
    ax.set_xticks(x, [str(int(k)) for k in K], fontsize=7)
    ax.set_xlabel("workers K")
    ax.set_ylabel("seconds per step")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path)
