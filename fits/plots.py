"""PNG plots of fitted entries: time vs size (log-log) with fitted curves, bootstrap
band and breakpoints, and relative residuals underneath.

matplotlib is an optional extra (``pip install 'collcost[plot]'``), imported only when a
plot is drawn, with the Agg backend (no display needed).  Zero-byte points cannot sit on
a log axis and are left out of the plots (they are in the fit).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_entry", "plot_all", "require_matplotlib"]


def require_matplotlib():
    """Import matplotlib with the Agg backend, or raise a RuntimeError saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plots need matplotlib, which is not installed: "
                           "pip install 'collcost[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _file_name(efit) -> str:
    return f"{efit.topology}-{efit.collective}-{efit.algorithm}.png"


def plot_entry(efit, path, *, confidence: float = 0.95) -> Path:
    """Draw one entry (:class:`fits.fit.EntryFit`) to ``path`` (PNG); returns the path."""
    plt = require_matplotlib()
    pts = efit.points
    pts = pts[pts["bytes"] > 0]
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.3]})
    try:
        ranks = sorted(int(p) for p in np.unique(pts["ranks"]))
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(ranks), 1)))
        lo_q = 100 * (1 - confidence) / 2
        for color, p in zip(colors, ranks):
            sub = pts[pts["ranks"] == p].sort_values("bytes")
            n = sub["bytes"].to_numpy(dtype=float)
            t = sub["median_s"].to_numpy()
            lo = sub["ci_low_s"].to_numpy(dtype=float)
            hi = sub["ci_high_s"].to_numpy(dtype=float)
            yerr = np.vstack([np.clip(t - lo, 0, None), np.clip(hi - t, 0, None)])
            yerr = np.where(np.isfinite(yerr), yerr, 0)
            ax.errorbar(n, t, yerr=yerr, fmt="o", ms=3.5, color=color, label=f"p={p}")
            grid = np.geomspace(n.min(), n.max(), 200)
            part = efit.part_for(p)
            ax.plot(grid, part.predict(np.full(grid.shape, p), grid), "-", color=color,
                    lw=1.2)
            reps = part.predict_replicates(np.full(grid.shape, p), grid)
            if reps is not None:
                with np.errstate(all="ignore"):
                    band = np.nanpercentile(reps, [lo_q, 100 - lo_q], axis=0)
                ax.fill_between(grid, band[0], band[1], color=color, alpha=0.2, lw=0)
            fitted = part.predict(sub["ranks"].to_numpy(), n)
            axr.plot(n, t / fitted - 1, "o-", ms=3, lw=0.8, color=color)
        per_p = len(efit.parts) > 1  # per-rank-count models: breakpoints in p's colour
        for color, p in zip(colors, ranks):
            part = efit.part_for(p)
            for b in part.fit.breakpoints:
                for a in (ax, axr):
                    a.axvline(b, color=color if per_p else "grey", ls="--", lw=0.8)
            if not per_p:
                break
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylabel("time per call [s]")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        e = efit.entry
        head = getattr(efit, "headline", None)
        if head and head["latency"].get("value") is not None \
                and head["bandwidth"].get("value") is not None:
            label = (f"latency {head['latency']['value'] * 1e6:.3g} µs "
                     f"({head['latency']['status']}), bandwidth "
                     f"{head['bandwidth']['value'] * 1e-9:.3g} GB/s "
                     f"({head['bandwidth']['status']})")
        elif "alpha" in e and e.get("alpha") is not None:
            top = (e.get("segments") or [{}])[-1]
            where = (f"{int(top['min_bytes'])}-{int(top['max_bytes'])} B: "
                     if "min_bytes" in top else "")
            # a segment's intercept, not a latency: never headed plainly α
            label = (f"{where}intercept {e['alpha'] * 1e6:.3g} µs  "
                     f"β={e['beta'] * 1e12:.3g} ps/B"
                     + (f"  γ={e['gamma'] * 1e12:.3g} ps/B" if e.get("gamma") else ""))
        elif "value" in e:
            label = f"γ={e['value'] * 1e12:.3g} ps/B (largest sizes)"
        else:
            label = "Hockney α + nβ per rank count"
        ax.set_title(f"{efit.topology} {efit.collective}/{efit.algorithm}\n{label}",
                     fontsize=10)
        axr.axhline(0, color="black", lw=0.8)
        axr.set_xscale("log", base=2)
        axr.set_xlabel("bytes")
        axr.set_ylabel("measured/fit − 1")
        axr.grid(True, alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        from collectives.files import atomic_path
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return path


def plot_all(entries, directory, *, confidence: float = 0.95, progress=None) -> list:
    """One PNG per entry in ``directory`` (created if missing); returns the paths."""
    require_matplotlib()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for efit in entries:
        if not (efit.points["bytes"] > 0).any():
            continue
        paths.append(plot_entry(efit, directory / _file_name(efit), confidence=confidence))
        if progress:
            progress(f"plot {paths[-1]}")
    return paths
