"""Fit α, β, γ per topology and algorithm from measured points: the library entry point.

:func:`fit_runs` (run directories) and :func:`fit_points` (a point table) return a
:class:`FitResult` whose ``constants`` is the constants-file object
(``docs/formats.md``) and whose ``entries`` carry what plots and reports need.

Per topology (``intra``, ``inter``, ``world``):

1. **p2p** -- Hockney ``α + nβ`` from ``pingpong`` points, segmented by size.
2. **γ** -- from ``reduce_local`` points (``T = n γ`` plus a per-call harness overhead,
   a nuisance term the registry does not model), else from ring reduce-scatter fitted
   jointly with ring allgather (they share α and β terms, so the difference identifies
   γ), else not identifiable.  Its value is that of the largest-size segment.
3. **each (collective, algorithm)** -- the registry's design ``[a, b n, c n]``.  The
   design's numerical rank decides which constants the points identify
   (:func:`fits.model.identifiable_columns`): where γ is measured (step 2) ``c n γ`` is
   subtracted and α, β are fitted; where it is not measured but identifiable it is
   fitted; otherwise γ is reported as not identifiable (β then absorbs ``c/b · γ``).
   Native algorithms have no registry formula: Hockney ``α + nβ`` per rank count
   (``"model": "hockney-per-p"``).

Then, per topology:

4. **headline** -- latency (small-message intercept) and bandwidth (``1/β`` of the
   large-message regime, free intercept) of the ping-pong, with intervals and status
   (:mod:`fits.headline`), printed first by the summary;
5. **joint** -- one set of α, β, γ (plus our Python algorithms' software costs) fitted
   from the ping-pong, the kernel and every registry algorithm together, with each
   collective's prediction error (:mod:`fits.joint`);
6. **native identification** -- per size segment, the registry algorithm whose shape in
   p explains the library's collective on the joint constants plus a per-call cost, with
   BIC weights and leave-one-rank-out errors (:mod:`fits.native`); it predicts the
   native collective at unmeasured rank counts.

Every constant carries a ``status`` (identified / at_bound with a one-sided interval /
not_identified: :func:`fits.headline.assess`).

Every fit: relative-error weighting, constants ≥ 0, optional robust loss, segments by
BIC (:mod:`fits.segments`), basic bootstrap intervals (:mod:`fits.bootstrap`: one
set of replicates for the whole table, so γ's uncertainty propagates into the α, β that
use it), and the validation figures of :mod:`fits.validate`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from collectives import costs

from . import __version__, bootstrap, headline, joint, model, native, segments, validate

__all__ = ["FitOptions", "FitError", "FitResult", "EntryFit", "Part", "fit_points",
           "fit_runs", "read_runs", "REQUIRED_COLUMNS"]

#: Columns of the point table the fitter reads.
REQUIRED_COLUMNS = ("collective", "algorithm", "topology", "ranks", "bytes", "median_s")
#: Point fields that must be uniform within one topology (γ depends on dtype and op...).
UNIFORM_COLUMNS = ("dtype", "op", "buffer", "sync")
PARAMS = model.PARAMETERS


class FitError(ValueError):
    """Input the fitter cannot use (the message says what and where)."""


@dataclass(frozen=True)
class FitOptions:
    """How to fit: ``loss`` (:data:`fits.model.LOSSES`), ``segments`` ("auto" or 1..3),
    ``bootstrap`` replicates (0 disables intervals), ``confidence`` of the intervals,
    ``seed`` of the bootstrap, ``topologies`` to fit (None: all present),
    ``bootstrap_points``: also resample the points themselves (see
    :mod:`fits.bootstrap`; off = repetitions and launches only)."""

    loss: str = "linear"
    segments: object = "auto"
    bootstrap: int = 200
    confidence: float = 0.95
    seed: int = 0
    topologies: tuple | None = None
    bootstrap_points: bool = True

    def __post_init__(self):
        if self.loss not in model.LOSSES:
            raise ValueError(f"loss must be one of {', '.join(model.LOSSES)}, "
                             f"got {self.loss!r}")
        segments._segments_arg(self.segments)
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) \
                or self.bootstrap < 0:
            raise ValueError(f"bootstrap must be a whole number >= 0, got {self.bootstrap!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")

    def as_dict(self) -> dict:
        return {"loss": self.loss, "segments": str(self.segments),
                "bootstrap": self.bootstrap, "confidence": self.confidence,
                "seed": self.seed, "bootstrap_points": self.bootstrap_points}


@dataclass
class Part:
    """One fitted model: a design function, segments, constants and their replicates.

    ``ranks`` is None when the part covers every rank count (registry model) or the one
    rank count it was fitted on (hockney-per-p).  ``thetas`` (S × 3) hold the constants
    used to predict, γ included where it was taken from the topology; ``replicates``
    (B × S × 3) or None.
    """

    design: Callable
    fit: segments.SegmentFit
    thetas: np.ndarray
    replicates: np.ndarray | None
    ranks: int | None = None
    #: (B × S × 3) unconstrained refits (for constants sitting on their bound), or None.
    free_replicates: np.ndarray | None = None
    #: (S × 3) unconstrained estimates, or None.
    free_thetas: np.ndarray | None = None
    #: Status of a column held fixed (γ taken from the topology), by column index.
    fixed_status: dict = field(default_factory=dict)
    #: Columns fitted (the others are held at 0 or taken from elsewhere), or None.
    active: np.ndarray | None = None

    def predict(self, ranks, nbytes) -> np.ndarray:
        """Model times at (ranks, nbytes)."""
        X = self.design(ranks, nbytes)
        return validate.fitted_times(X, nbytes, self.fit.breakpoints, self.thetas)

    def predict_replicates(self, ranks, nbytes) -> np.ndarray | None:
        """(B × m) model times of every bootstrap replicate, or None."""
        if self.replicates is None:
            return None
        X = self.design(ranks, nbytes)
        seg = segments.assign(nbytes, self.fit.breakpoints)
        return np.einsum("mk,bmk->bm", X, self.replicates[:, seg, :])


@dataclass
class EntryFit:
    """A fitted entry: ``kind`` is ``p2p``, ``gamma`` or ``algorithm``."""

    topology: str
    collective: str
    algorithm: str
    kind: str
    points: pd.DataFrame
    parts: list
    entry: dict
    headline: dict | None = None

    def part_for(self, p) -> Part:
        for part in self.parts:
            if part.ranks is None or part.ranks == p:
                return part
        raise KeyError(f"no fit for {p} ranks in {self.collective}/{self.algorithm}")

    def predict(self, ranks, nbytes) -> np.ndarray:
        """Model times at (ranks, nbytes), per-p parts where the model is per p."""
        ranks = np.asarray(ranks)
        nbytes = np.asarray(nbytes, dtype=float)
        out = np.empty(nbytes.shape)
        for p in np.unique(ranks):
            sel = ranks == p
            out[sel] = self.part_for(p).predict(ranks[sel], nbytes[sel])
        return out


@dataclass
class FitResult:
    """``constants`` (the constants-file object) and the fitted ``entries``."""

    constants: dict
    entries: list = field(default_factory=list)


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------

def _num(x):
    """float, or None for NaN/inf/None (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _where(row) -> str:
    return (f"{row['topology']} {row['collective']}/{row['algorithm']} "
            f"p={int(row['ranks'])} bytes={int(row['bytes'])}")


def _check_frame(frame: pd.DataFrame) -> pd.DataFrame:
    if frame is None or len(frame) == 0:
        raise FitError("the run has no points to fit (empty run)")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise FitError(f"point table lacks column(s) {', '.join(missing)}")
    frame = frame.reset_index(drop=True).copy()
    t = pd.to_numeric(frame["median_s"], errors="coerce")
    bad = ~np.isfinite(t.to_numpy(dtype=float))
    if bad.any():
        rows = "; ".join(_where(r) for _, r in frame[bad].head(3).iterrows())
        raise FitError(f"{int(bad.sum())} point(s) have a NaN or infinite median_s "
                       f"(first: {rows})")
    if (t <= 0).any():
        rows = "; ".join(_where(r) for _, r in frame[t <= 0].head(3).iterrows())
        raise FitError(f"{int((t <= 0).sum())} point(s) have median_s <= 0 (first: {rows})")
    frame["median_s"] = t.astype(float)
    for c in ("ranks", "bytes"):
        v = pd.to_numeric(frame[c], errors="coerce")
        if v.isna().any() or (v < (1 if c == "ranks" else 0)).any():
            raise FitError(f"column {c} has missing or out-of-range values")
        frame[c] = v.astype(np.int64)
    if "launch" not in frame.columns:
        frame["launch"] = "launch-0"
    frame["launch"] = frame["launch"].fillna("launch-0").astype(str)
    if "samples" not in frame.columns:
        frame["samples"] = None
    for c in ("ci_low_s", "ci_high_s"):
        if c not in frame.columns:
            frame[c] = np.nan
    return frame


def _samples_max(frame: pd.DataFrame) -> list:
    out = []
    for _, row in frame.iterrows():
        s = row["samples"]
        vals = np.asarray(s.get("max", []) if isinstance(s, dict) else [], dtype=float)
        if vals.size and not np.all(np.isfinite(vals)):
            raise FitError(f"point {_where(row)} has NaN or infinite samples")
        out.append(vals)
    return out


def _need_sizes(nbytes, what):
    sizes = np.unique(nbytes)
    if sizes.size < 2:
        raise FitError(f"{what}: only one size ({int(sizes[0])} bytes) was measured; "
                       "α and β need at least two sizes")


def _assess(value, reps, free_value, free_reps, confidence, fixed=None):
    """:func:`fits.headline.assess` (one rule for every constant)."""
    return headline.assess(value, reps, free_value, free_reps, confidence, fixed)


def _segment_entries(part: Part, confidence, names) -> list:
    out = []
    for s, (lo, hi) in enumerate(part.fit.bounds):
        seg = {"min_bytes": int(lo), "max_bytes": int(hi)}
        for j, name in names:
            if (part.active is not None and not part.active[j]
                    and j not in part.fixed_status):
                # held at 0 because the points cannot separate it: not a bound that binds
                seg.update({name: None, name + "_ci": None,
                            name + "_status": "not_identified",
                            name + "_note": "the points cannot separate it (held at 0 "
                                            "in the fit)"})
                continue
            value = _num(part.thetas[s, j])
            reps = None if part.replicates is None else part.replicates[:, s, j]
            free_v = None if part.free_thetas is None else _num(part.free_thetas[s, j])
            free_r = (None if part.free_replicates is None
                      else part.free_replicates[:, s, j])
            ci, status, note = _assess(value, reps, free_v, free_r, confidence,
                                       part.fixed_status.get(j))
            seg[name] = value
            seg[name + "_ci"] = ci
            seg[name + "_status"] = status
            if note:
                seg[name + "_note"] = note
        out.append(seg)
    return out


def _top_level(segs, names) -> dict:
    top = segs[-1]
    out = {}
    for _, name in names:
        for key in (name, name + "_ci", name + "_status"):
            out[key] = top.get(key)
    return out


def _fit_part(design, X, t, nbytes, reps, opts, *, active, gamma=None,
              gamma_reps=None, ranks=None) -> Part:
    """Segmented fit + bootstrap refits of one design; γ (if given) is subtracted."""
    offset = None if gamma is None else X[:, 2] * gamma
    fit = segments.fit_segments(X, t, nbytes, segments=opts.segments, loss=opts.loss,
                                active=active, offset=offset)
    thetas = fit.thetas.copy()
    if gamma is not None:
        thetas[:, 2] = gamma
    replicates = None
    if reps is not None:
        S = len(fit.bounds)
        replicates = np.empty((reps.count, S, X.shape[1]))
        for b in range(reps.count):
            g = None if gamma is None else (gamma_reps[b] if gamma_reps is not None
                                            else gamma)
            if g is not None and not np.isfinite(g):  # γ's replicate had no points
                replicates[b] = np.nan
                continue
            off = None if g is None else X[:, 2] * g
            th = segments.fit_fixed(X, reps.times[b], nbytes, fit.breakpoints,
                                    loss=opts.loss, weights=reps.weights[b],
                                    active=active, offset=off)
            if g is not None:
                th[:, 2] = np.where(np.isnan(th[:, 0]), np.nan, g)
            replicates[b] = th
    part = Part(design, fit, thetas, replicates, ranks,
                active=np.asarray(active, bool).copy())
    fitted = np.asarray(active, bool).copy()
    if gamma is not None:
        fitted[2] = False
    if np.any(thetas[:, fitted] <= 0):  # a bound binds: unconstrained refits
        part.free_thetas = segments.fit_fixed(X, t, nbytes, fit.breakpoints,
                                              active=fitted, offset=offset, free=True)
        if reps is not None:
            free = np.full((reps.count, len(fit.bounds), X.shape[1]), np.nan)
            for b in range(reps.count):
                g = None if gamma is None else (gamma_reps[b] if gamma_reps is not None
                                                else gamma)
                if g is not None and not np.isfinite(g):
                    continue
                off = None if g is None else X[:, 2] * g
                free[b] = segments.fit_fixed(X, reps.times[b], nbytes, fit.breakpoints,
                                             weights=reps.weights[b], active=fitted,
                                             offset=off, free=True)
            part.free_replicates = free
    return part


def _registry_design(collective, algorithm):
    return lambda ranks, nbytes: model.design(collective, algorithm, ranks, nbytes)


def _hockney(ranks, nbytes):
    return model.hockney_design(nbytes)


def _probe_design(ranks, nbytes):
    """reduce_local: registry ``c n`` plus a per-call overhead in the α column."""
    X = model.design("reduce_local", costs.NATIVE, ranks, nbytes)
    if np.all(X[:, 0] == 0):
        X[:, 0] = 1.0
    return X


def _sub(frame, idx, reps):
    pts = frame.loc[idx]
    return (pts, pts["ranks"].to_numpy(), pts["bytes"].to_numpy(dtype=float),
            pts["median_s"].to_numpy(), None if reps is None else reps.subset(idx))


# ----------------------------------------------------------------------------------
# the three kinds of entry
# ----------------------------------------------------------------------------------

def _fit_p2p(frame, idx, reps, opts, topology) -> EntryFit:
    pts, ranks, n, t, r = _sub(frame, idx, reps)
    what = f"{topology} pingpong"
    _need_sizes(n, what)
    X = _hockney(ranks, n)
    part = _fit_part(_hockney, X, t, n, r, opts, active=np.array([True, True, False]))
    names = [(0, "alpha"), (1, "beta")]
    segs = _segment_entries(part, opts.confidence, names)
    entry = _top_level(segs, names)
    entry.update({"segments": segs, "breakpoints": [int(b) for b in part.fit.breakpoints],
                  "ranks": sorted(int(p) for p in np.unique(ranks)),
                  "bytes_range": [int(n.min()), int(n.max())], "points": int(len(t)),
                  "errors": validate.error_summary(part.predict(ranks, n), t),
                  "busbw_check": validate.busbw_check("pingpong", costs.NATIVE, ranks, n,
                                                      t, entry["beta"])})
    lo, hi = segs[-1]["min_bytes"], segs[-1]["max_bytes"]
    entry["alpha_note"] = (f"alpha is the intercept of the largest-size segment ({lo}-{hi}"
                           " B), kept under this key for compatibility; it is not a "
                           "latency: the latency is headline.latency")
    efit = EntryFit(topology, "pingpong", costs.NATIVE, "p2p", pts, [part], entry)
    efit.headline = headline.p2p_headline(
        n, t, r, confidence=opts.confidence, breakpoints=part.fit.breakpoints,
        segments_option=opts.segments, ranks=np.unique(ranks))
    return efit


def _gamma_from_probe(frame, idx, reps, opts, topology):
    pts, ranks, n, t, r = _sub(frame, idx, reps)
    _need_sizes(n, f"{topology} reduce_local")
    X = _probe_design(ranks, n)
    part = _fit_part(_probe_design, X, t, n, r, opts, active=np.array([True, False, True]))
    g = part.thetas[-1, 2]
    g_reps = None if part.replicates is None else part.replicates[:, -1, 2]
    names = [(0, "overhead_s"), (2, "gamma")]
    segs = _segment_entries(part, opts.confidence, names)
    top = segs[-1]
    entry = {"value": _num(g), "ci": top["gamma_ci"], "status": top["gamma_status"],
             "identifiable": top["gamma_status"] == "identified",
             "source": "reduce_local",
             "reason": "timed local reduction kernel; value of the largest-size segment"
                       + (f" ({top['gamma_note']})" if top.get("gamma_note") else ""),
             "overhead_s": _num(part.thetas[-1, 0]), "segments": segs,
             "breakpoints": [int(b) for b in part.fit.breakpoints],
             "errors": validate.error_summary(part.predict(ranks, n), t)}
    fit = EntryFit(topology, "reduce_local", costs.NATIVE, "gamma", pts, [part], entry)
    return g, g_reps, fit


def _gamma_from_rs_ag(frame, idx, reps, opts, topology):
    """Ring reduce-scatter and ring allgather fitted jointly with shared α, β."""
    pts, ranks, n, t, r = _sub(frame, idx, reps)
    colls = pts["collective"].to_numpy()
    X = np.empty((len(t), 3))
    for coll in ("reduce_scatter", "allgather"):
        sel = colls == coll
        X[sel] = model.design(coll, "ring", ranks[sel], n[sel])
    ident = model.identifiable_columns(X, t)
    if not ident[2]:
        return None, None, {"why": "ring reduce-scatter and allgather points do not "
                                   "separate γ"}
    _need_sizes(n, f"{topology} ring reduce_scatter/allgather")
    fit = segments.fit_segments(X, t, n, segments=opts.segments, loss=opts.loss,
                                active=ident)
    g = fit.thetas[-1, 2]
    g_reps = free_reps = None
    free = segments.fit_fixed(X, t, n, fit.breakpoints, active=ident, free=True)[-1, 2]
    if r is not None:
        g_reps = np.array([segments.fit_fixed(X, r.times[b], n, fit.breakpoints,
                                              loss=opts.loss, weights=r.weights[b],
                                              active=ident)[-1, 2]
                           for b in range(r.count)])
        if g <= 0:
            free_reps = np.array([segments.fit_fixed(
                X, r.times[b], n, fit.breakpoints, weights=r.weights[b], active=ident,
                free=True)[-1, 2] for b in range(r.count)])
    ci, status, note = _assess(_num(g), g_reps, _num(free), free_reps, opts.confidence)
    lo, hi = fit.bounds[-1]
    cross = {"source": "rs_minus_ag", "value": _num(g), "ci": ci, "status": status,
             "note": (f"ring reduce-scatter minus ring allgather over {int(lo)}-{int(hi)} "
                      "B (their shared α, β cancel; γ is the small difference of two "
                      "large times, so its interval is often wide)"
                      + (f"; {status.replace('_', ' ')}: {note}" if note else ""))}
    return g, g_reps, cross


def _fit_gamma(frame, topo_idx, reps, opts, topology):
    """γ of a topology: (entry, value, replicates, EntryFit or None)."""
    sub = frame.loc[topo_idx]
    probe = sub.index[sub["collective"] == "reduce_local"]
    if len(probe) == 0:  # the kernel is local: borrow another topology's probe
        probe = frame.index[frame["collective"] == "reduce_local"]
    rs_ag = sub.index[(sub["algorithm"] == "ring")
                      & sub["collective"].isin(["reduce_scatter", "allgather"])]
    has_both = (len(rs_ag) and set(frame.loc[rs_ag, "collective"])
                == {"reduce_scatter", "allgather"})
    cross, why = None, None
    if has_both:
        g2, g2_reps, info = _gamma_from_rs_ag(frame, rs_ag, reps, opts, topology)
        if g2 is not None:
            cross = info
        else:
            why = info["why"]
    if len(probe):
        g, g_reps, efit = _gamma_from_probe(frame, probe, reps, opts, topology)
        efit.entry["cross_check"] = cross
        return efit.entry, g, g_reps, efit
    if cross is not None:
        ok = cross["status"] == "identified"
        entry = {"value": cross["value"], "ci": cross["ci"], "status": cross["status"],
                 "identifiable": ok, "source": "rs_minus_ag",
                 "reason": "ring reduce-scatter fitted jointly with ring allgather "
                           "(shared α, β); value of the largest-size segment"
                           + ("" if ok else "; " + cross["note"].split("; ", 1)[-1]
                              + ": time the local kernel (reduce_local) for a usable γ")}
        return entry, g2, g2_reps, None
    reason = ("not identifiable: no reduce_local points and no ring reduce_scatter with "
              "ring allgather in this topology" if not has_both else why)
    return ({"value": None, "ci": None, "status": "not_identified", "identifiable": False,
             "source": None, "reason": reason}, None, None, None)


def _fit_registry(frame, idx, reps, opts, topology, collective, algorithm, gamma,
                  gamma_reps, gamma_source, p2p, gamma_status=None) -> EntryFit:
    pts, ranks, n, t, r = _sub(frame, idx, reps)
    what = f"{topology} {collective}/{algorithm}"
    _need_sizes(n, what)
    design = _registry_design(collective, algorithm)
    X = design(ranks, n)
    has_gamma = bool(np.any(X[:, 2] > 0))
    ident = model.identifiable_columns(X, t)
    if not (ident[0] and ident[1]):
        raise FitError(f"{what}: the points cannot separate α from β "
                       "(measure more sizes or rank counts)")
    active = np.array([True, True, False])
    use_gamma, source = None, None
    if has_gamma and gamma is not None:
        use_gamma, source = gamma, gamma_source
    elif has_gamma and ident[2]:
        active, source = ident, "fit"
    part = _fit_part(design, X, t, n, r, opts, active=active, gamma=use_gamma,
                     gamma_reps=gamma_reps if use_gamma is not None else None)
    if use_gamma is not None:
        part.fixed_status[2] = gamma_status or "not_identified"
    names = [(0, "alpha"), (1, "beta")] + ([(2, "gamma")] if has_gamma else [])
    segs = _segment_entries(part, opts.confidence, names)
    entry = _top_level(segs, names)
    if not has_gamma:
        entry.update({"gamma": None, "gamma_ci": None})
        reason = "no reduction in this algorithm (γ coefficient is 0)"
    elif source is None:
        entry.update({"gamma": None, "gamma_ci": None})
        reason = ("not identifiable: γ's coefficient is proportional to β's at these "
                  "rank counts and no γ was measured; β includes c/b·γ")
    elif source == "fit":
        reason = "fitted from this algorithm's points (design has full rank)"
    else:
        reason = (f"γ from {source} subtracted; "
                  + ("the design alone would also identify it" if ident[2] else
                     "this algorithm's points alone cannot separate it from β"))
    pred = part.predict(ranks, n)
    entry.update({
        "model": "registry",
        "gamma_identifiable": bool(has_gamma and ident[2]),
        "gamma_source": source, "gamma_reason": reason,
        "segments": segs, "breakpoints": [int(b) for b in part.fit.breakpoints],
        "ranks": sorted(int(p) for p in np.unique(ranks)),
        "bytes_range": [int(n.min()), int(n.max())], "points": int(len(t)),
        "errors": dict(validate.error_summary(pred, t), leave_one_rank_out={
            k: _num(v) for k, v in validate.leave_one_rank_out(
                X, t, n, ranks, part.fit.breakpoints, loss=opts.loss, active=active,
                offset=None if use_gamma is None else X[:, 2] * use_gamma).items()}),
        "busbw_check": validate.busbw_check(collective, algorithm, ranks, n, t,
                                            entry["beta"]),
        "from_p2p": None if p2p is None else validate.from_p2p(
            collective, algorithm, ranks, n, t, p2p.parts[0].fit.breakpoints,
            p2p.parts[0].thetas, gamma),
    })
    return EntryFit(topology, collective, algorithm, "algorithm", pts, [part], entry)


def _fit_native(frame, idx, reps, opts, topology, collective) -> EntryFit:
    pts, ranks, n, t, r = _sub(frame, idx, reps)
    names = [(0, "alpha"), (1, "beta")]
    parts, per_ranks = [], {}
    for p in np.unique(ranks):
        sel = ranks == p
        what = f"{topology} {collective}/native at {int(p)} ranks"
        _need_sizes(n[sel], what)
        part = _fit_part(_hockney, _hockney(ranks[sel], n[sel]), t[sel], n[sel],
                         None if r is None else r.subset(sel), opts,
                         active=np.array([True, True, False]), ranks=int(p))
        segs = _segment_entries(part, opts.confidence, names)
        one = _top_level(segs, names)
        one.update({"segments": segs,
                    "breakpoints": [int(b) for b in part.fit.breakpoints],
                    "points": int(sel.sum()),
                    "errors": validate.error_summary(part.predict(ranks[sel], n[sel]),
                                                     t[sel]),
                    "busbw_check": validate.busbw_check(collective, costs.NATIVE,
                                                        ranks[sel], n[sel], t[sel],
                                                        one["beta"])})
        per_ranks[str(int(p))] = one
        parts.append(part)
    efit = EntryFit(topology, collective, costs.NATIVE, "algorithm", pts, parts, {})
    efit.entry = {"model": "hockney-per-p", "per_ranks": per_ranks,
                  "ranks": sorted(int(p) for p in np.unique(ranks)),
                  "bytes_range": [int(n.min()), int(n.max())], "points": int(len(t)),
                  "errors": dict(validate.error_summary(efit.predict(ranks, n), t),
                                 leave_one_rank_out=None),
                  "from_p2p": None}
    return efit


def _identify_native(frame, sub, topology, collective, jfit) -> dict:
    """Which registry algorithm explains the native collective (:mod:`fits.native`)."""
    if jfit is None:
        return {"segments": [], "status": "not_identified",
                "reason": "no joint constants for this topology (no "
                "ping-pong and no registry algorithm measured)"}
    pts = sub[(sub["collective"] == collective) & (sub["algorithm"] == costs.NATIVE)]
    try:
        return native.identify(jfit.entry, collective, pts["ranks"].to_numpy(),
                               pts["bytes"].to_numpy(dtype=float),
                               pts["median_s"].to_numpy(dtype=float),
                               weights=joint.point_weights(pts))
    except ValueError as exc:
        return {"segments": [], "status": "not_identified", "reason": str(exc)}


def _fit_joint(frame, sub, reps, opts, topology, p2p, gfit):
    """The topology's joint constants (:mod:`fits.joint`), or None."""
    colls, algs = sub["collective"], sub["algorithm"]
    registry = ~colls.isin(costs.AUXILIARY) & (algs != costs.NATIVE)
    idx = sub.index[(colls == "pingpong") | registry]
    if not registry.any() and p2p is None:
        return None
    probe = gfit.points.index if gfit is not None else sub.index[:0]
    rows = idx.union(probe)
    r = None if reps is None else reps.subset(rows)
    return joint.fit_joint(
        frame.loc[rows], r, confidence=opts.confidence, topology=topology,
        p2p_breakpoints=() if p2p is None else p2p.parts[0].fit.breakpoints,
        gamma_breakpoints=() if gfit is None else gfit.parts[0].fit.breakpoints)


# ----------------------------------------------------------------------------------
# public entry points
# ----------------------------------------------------------------------------------

def fit_points(frame: pd.DataFrame, options: FitOptions | None = None, *,
               metadata: dict | None = None, provenance_runs: list | None = None,
               progress: Callable[[str], None] | None = None) -> FitResult:
    """Fit every topology, collective and algorithm of a point table.

    Parameters
    ----------
    frame : points (docs/formats.md columns; at least :data:`REQUIRED_COLUMNS`;
        ``samples`` and ``launch`` for the bootstrap).
    options : :class:`FitOptions` (defaults if None).
    metadata : the run's metadata (for ``ranks_per_node``), optional.
    provenance_runs : the ``provenance.runs`` list of the constants file.
    progress : called with one line per fitted entry (the CLI prints it to stderr).

    Raises :class:`FitError` for unusable input (empty, NaN, a single size, ...).
    """
    opts = options or FitOptions()
    frame = _check_frame(frame)
    say = progress or (lambda msg: None)
    topologies = sorted(frame["topology"].unique())
    if opts.topologies:
        unknown = [tp for tp in opts.topologies if tp not in topologies]
        if unknown:
            raise FitError(f"topology {', '.join(unknown)} not in the points "
                           f"(present: {', '.join(topologies)})")
        topologies = [tp for tp in topologies if tp in opts.topologies]
        frame = frame[frame["topology"].isin(topologies)
                      | (frame["collective"] == "reduce_local")].reset_index(drop=True)
    reps = None
    if opts.bootstrap:
        try:  # bounded before the replicate tables are allocated
            bootstrap.check_size(opts.bootstrap, len(frame))
        except ValueError as exc:
            raise FitError(str(exc)) from None
        rng = np.random.default_rng(opts.seed)
        reps = bootstrap.replicate_points(_samples_max(frame), frame["median_s"].to_numpy(),
                                          frame["launch"].to_numpy(), opts.bootstrap, rng,
                                          points=opts.bootstrap_points)
    meta = metadata or {}
    out_topologies, entries = {}, []
    for topology in topologies:
        tidx = frame.index[frame["topology"] == topology]
        sub = frame.loc[tidx]
        for col in UNIFORM_COLUMNS:
            if col in sub.columns and sub[col].nunique(dropna=True) > 1:
                raise FitError(f"{topology} points mix {col} values "
                               f"{sorted(map(str, sub[col].unique()))}; fit them "
                               "separately")
        p2p_idx = sub.index[sub["collective"] == "pingpong"]
        p2p = _fit_p2p(frame, p2p_idx, reps, opts, topology) if len(p2p_idx) else None
        if p2p is not None:
            entries.append(p2p)
            say(f"{topology} p2p: alpha={p2p.entry['alpha']:.3g} s "
                f"beta={p2p.entry['beta']:.3g} s/B, {len(p2p.parts[0].fit.bounds)} "
                "segment(s)")
        gentry, gamma, gamma_reps, gfit = _fit_gamma(frame, tidx, reps, opts, topology)
        if gfit is not None:
            entries.append(gfit)
        say(f"{topology} gamma: {gentry['value']} ({gentry['source']})")
        algos = {}
        keys = (sub[~sub["collective"].isin(costs.AUXILIARY)]
                .groupby(["collective", "algorithm"]).groups)
        for (collective, algorithm), idx in sorted(keys.items()):
            if algorithm == costs.NATIVE and (collective, algorithm) not in costs.COSTS:
                efit = _fit_native(frame, idx, reps, opts, topology, collective)
            else:
                try:
                    costs.cost_model(collective, algorithm)
                except ValueError as exc:
                    raise FitError(f"{topology}: {exc}") from None
                efit = _fit_registry(frame, idx, reps, opts, topology, collective,
                                     algorithm, gamma, gamma_reps, gentry["source"], p2p,
                                     gentry.get("status"))
            entries.append(efit)
            algos.setdefault(collective, {})[algorithm] = efit.entry
            say(f"{topology} {collective}/{algorithm}: median rel. error "
                f"{efit.entry['errors']['median_rel']:.1%}")
        jfit = _fit_joint(frame, sub, reps, opts, topology, p2p, gfit)
        for collective, e in algos.items():
            if costs.NATIVE in e and e[costs.NATIVE].get("model") == "hockney-per-p":
                e[costs.NATIVE]["identified"] = _identify_native(
                    frame, sub, topology, collective, jfit)
                ident = e[costs.NATIVE]["identified"]
                if ident.get("segments"):
                    say(f"{topology} {collective}/native is "
                        + ", ".join(f"{s['algorithm']}"
                                    + "".join(f"|{a}" for a in s["equivalent"])
                                    + f" ({s['min_bytes']}-"
                                    f"{s['max_bytes']} B, weight {s['weight']:.2f})"
                                    for s in ident["segments"])
                        + ("" if ident.get("status") != "not_identified" else
                           f"; NOT identified: {ident.get('reason')}"))
        if jfit is not None:
            for key, err in jfit.entry["errors"]["per_entry"].items():
                collective, algorithm = key.split("/")
                if collective in algos and algorithm in algos[collective]:
                    algos[collective][algorithm]["joint"] = err
            big = jfit.entry["errors"]["median_of_entries_large"]
            say(f"{topology} joint constants: median over "
                f"{jfit.entry['errors']['entries']} collectives of the median error at "
                f">= {joint.LARGE_BYTES} B: " + ("-" if big is None else f"{big:.1%}"))
        out_topologies[topology] = {
            "headline": None if p2p is None else p2p.headline,
            "joint": None if jfit is None else jfit.entry,
            "ranks_per_node": (int(meta["ranks_per_node"]) if topology != "inter"
                               and isinstance(meta.get("ranks_per_node"), int)
                               else (1 if topology == "inter" else None)),
            "nodes": (int(sub["nodes"].max()) if "nodes" in sub.columns else None),
            "p2p": None if p2p is None else p2p.entry,
            "gamma": gentry,
            "algorithms": algos,
        }
    constants = {
        "schema_version": 1,
        "kind": "collcost-constants",
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "collcost_version": __version__,
        "units": {"alpha": "s", "beta": "s/B", "gamma": "s/B", "bytes": "B"},
        "provenance": {"runs": provenance_runs or [],
                       "options": opts.as_dict()},
        "topologies": out_topologies,
    }
    return FitResult(constants, entries)


def _library(meta: dict):
    """``"MPICH 5.0.2"``: the library name and the first version number it prints."""
    mpi = meta.get("mpi") or {}
    found = re.search(r"\d+(\.\d+)+", mpi.get("version") or "")
    parts = [mpi.get("library"), found.group(0) if found else None]
    return " ".join(x for x in parts if x) or None


def read_runs(paths) -> tuple:
    """Read run directories and pool their points: ``(points, metadata, provenance)``.

    Refuses (``FitError``) runs whose checked metadata disagree (the rules of
    :func:`collectives.results.merge_runs`) and the same launch given twice.
    """
    from collectives import results

    paths = list(paths)
    if not paths:
        raise FitError("no run directory given")
    runs = [results.read_run(p) for p in paths]
    named = [(str(r.path), r.metadata) for r in runs]
    problems = (results.metadata_differences(named) + results.option_differences(named)) \
        if len(runs) > 1 else []
    if problems:
        raise FitError("refusing to fit runs with different metadata together:\n  "
                       + "\n  ".join(problems))
    seen = {}
    frames, provenance = [], []
    for run in runs:
        for launch in run.launches:
            if launch in seen:
                raise FitError(f"launch {launch} appears in both {seen[launch]} and "
                               f"{run.path}")
            seen[launch] = run.path
        frames.append(run.points)
        meta = run.metadata
        provenance.append({"path": str(run.path), "run_id": meta.get("run_id"),
                           "date_utc": meta.get("date_utc"),
                           "mpi_library": _library(meta),
                           "hosts": meta.get("hosts"),
                           "launches": max(1, len(run.launches))})
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return points, runs[0].metadata, provenance


def fit_runs(paths, options: FitOptions | None = None, *, progress=None) -> FitResult:
    """Read run directories (:func:`read_runs`) and fit them (:func:`fit_points`)."""
    points, metadata, provenance = read_runs(paths)
    return fit_points(points, options, metadata=metadata, provenance_runs=provenance,
                      progress=progress)
