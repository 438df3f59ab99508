"""Compare two runs or two constants files: what changed, is it significant, is it a
regression.

``python -m fits.compare BASE NEW`` where BASE and NEW are both sweep run directories,
both links run directories, or both constants files:

* **per point** (runs): every point present in both, matched by its identity
  (``collectives.results.KEY_FIELDS``; for links runs ``src``, ``dst``, ``bytes``), the
  change of the median time ``new/base − 1`` and a two-sided Mann–Whitney U test on the
  raw repetitions (``samples.max``; launches of a merged run pooled), its p-values
  adjusted for the number of points by Benjamini–Hochberg (false discovery rate,
  ``scipy.stats.false_discovery_control``).  Tests run vectorized, points grouped by
  their repetition counts (exact p-values up to 40 repetitions a side, the normal
  approximation above); 12 096 links-run points took 0.9 s of CPU here (linear in the
  points: minutes at 10^6).
* **per constant**: the constants of both sides (constants files as given; sweep runs
  fitted with :func:`fits.fit.fit_runs`, ``--bootstrap`` replicates; links runs analysed
  with :func:`fits.links.analyze`, one α and β per tier and per link) with their
  intervals; the change's interval is the conservative ratio of the interval ends
  (``[new_lo/base_hi, new_hi/base_lo] − 1``), and a change is *significant* when the
  two intervals do not overlap.
* **regressions**: a point slower by more than ``--threshold`` with adjusted p below
  ``--alpha``; a constant worse (time-like constants larger, bandwidth smaller) by more
  than ``--threshold`` with disjoint intervals.

Exit status: 0 no regression, 1 regression(s), 2 bad input (including two runs of
different layouts, a run and a constants file, nothing in common); nothing is written
then.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from collectives.files import UsageError, atomic_write_json, check_input, check_output

__all__ = ["Comparison", "load_side", "compare", "compare_points", "compare_constants",
           "constants_rows", "format_text", "plot_comparison", "main"]

EXIT_REGRESSION = 1
#: Most links listed per constant in a links comparison.
LINK_ROWS = 200
EXIT_USAGE = 2


# -- inputs -----------------------------------------------------------------------------

@dataclass
class Side:
    """One input: ``kind`` (``sweep`` | ``links`` | ``constants``), ``path``, and what
    was read: ``run`` (sweep Run), ``links`` (LinksData), ``constants`` (dict)."""
    kind: str
    path: Path
    label: str
    run: object = None
    links: object = None
    constants: dict | None = None


def _kind(path: Path) -> str:
    if path.is_file():
        return "constants"
    meta = path / "metadata.json"
    if not meta.is_file():
        raise UsageError(f"{path}: neither a constants file nor a run directory "
                         "(no metadata.json)")
    try:
        kind = json.loads(meta.read_text(encoding="utf-8")).get("kind")
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{meta}: not valid JSON ({exc})") from None
    if kind == "collcost-run":
        return "sweep"
    if kind == "collcost-links":
        return "links"
    raise UsageError(f"{meta}: unknown kind {kind!r} (expected collcost-run or "
                     "collcost-links)")


def load_side(path, label: str) -> Side:
    """Read one input (raises UsageError for anything unreadable)."""
    p = Path(path)
    kind = _kind(p)
    side = Side(kind=kind, path=p, label=label)
    try:
        if kind == "constants":
            from . import constants
            side.constants = constants.load(p)
        elif kind == "sweep":
            from collectives.results import read_run
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                side.run = read_run(p)
        else:
            from .links import read_links_run
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                side.links = read_links_run(p, samples=True)
    except UsageError:
        raise
    except ValueError as exc:  # RunFormatError, ConstantsError, LinksFormatError
        raise UsageError(f"{label} {p}: {exc}") from None
    return side


def check_layouts(base: Side, new: Side) -> list:
    """Raise UsageError when the two inputs cannot be compared; return notes."""
    if base.kind != new.kind:
        raise UsageError(f"BASE {base.path} is a {base.kind} "
                         f"{'file' if base.kind == 'constants' else 'run'} and NEW "
                         f"{new.path} a {new.kind} "
                         f"{'file' if new.kind == 'constants' else 'run'}: compare like "
                         "with like")
    notes = []
    if base.kind == "sweep":
        for key in ("world_size", "nodes", "ranks_per_node"):
            a, b = base.run.metadata.get(key), new.run.metadata.get(key)
            if a != b:
                raise UsageError(f"BASE and NEW have different layouts: {key} {a} vs {b}")
    elif base.kind == "links":
        la, lb = base.links.layout(), new.links.layout()
        if len(la["endpoints"]) != len(lb["endpoints"]):
            raise UsageError(f"BASE and NEW have different layouts: "
                             f"{len(la['endpoints'])} vs {len(lb['endpoints'])} endpoints")
        if la["mode"] != lb["mode"]:
            raise UsageError(f"BASE and NEW have different layouts: links mode "
                             f"{la['mode']} vs {lb['mode']}")
        if la["direction"] != lb["direction"]:
            raise UsageError(f"BASE and NEW measure different times: links direction "
                             f"{la['direction']} vs {lb['direction']} (one: half a "
                             "symmetric round trip; both: each direction's one-way time)")
        diff = [k for k, (x, y) in enumerate(zip(la["endpoints"], lb["endpoints"]))
                if x != y]
        if diff:
            k = diff[0]
            raise UsageError(f"BASE and NEW have different layouts: endpoint {k} is "
                             f"{la['endpoints'][k]} vs {lb['endpoints'][k]} "
                             f"({len(diff)} endpoint(s) differ)")
    else:
        common = set(base.constants["topologies"]) & set(new.constants["topologies"])
        if not common:
            raise UsageError("BASE and NEW constants have no topology in common "
                             f"({', '.join(base.constants['topologies'])} vs "
                             f"{', '.join(new.constants['topologies'])})")
        for t in sorted(common):
            a, b = base.constants["topologies"][t], new.constants["topologies"][t]
            for key in ("nodes", "ranks_per_node"):
                if a.get(key) != b.get(key):
                    notes.append(f"{t}: {key} {a.get(key)} vs {b.get(key)} (constants "
                                 "fitted on different layouts)")
    return notes


# -- per point --------------------------------------------------------------------------

def _mwu_grouped(base_samples, new_samples):
    """Two-sided Mann–Whitney U p-values, one per pair of sample arrays, vectorized over
    pairs with equal sizes (NaN where a side has < 2 repetitions)."""
    from scipy import stats
    p = np.full(len(base_samples), np.nan)
    groups: dict = {}
    for i, (a, b) in enumerate(zip(base_samples, new_samples)):
        if len(a) >= 2 and len(b) >= 2:
            groups.setdefault((len(a), len(b)), []).append(i)
    for (na, nb), idx in groups.items():
        for c in range(0, len(idx), 50_000):
            part = idx[c:c + 50_000]
            A = np.stack([base_samples[i] for i in part])
            B = np.stack([new_samples[i] for i in part])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # exact for small samples: its smallest p-value (2/C(na+nb, na))
                # is far below the normal approximation's, which matters when 10^6
                # points share one false-discovery budget
                res = stats.mannwhitneyu(A, B, alternative="two-sided", axis=1,
                                         method="exact" if max(na, nb) <= 40
                                         else "asymptotic")
            p[part] = res.pvalue
    return p


def compare_points(keys, base_samples, new_samples, *, threshold: float, alpha: float,
                   key_names) -> pd.DataFrame:
    """One row per matched point: key columns, base and new medians (s), ``change``
    (fraction), ``p`` (Mann–Whitney), ``p_adj`` (Benjamini–Hochberg), ``significant``,
    ``regression`` (slower by > threshold and significant), ``improvement``."""
    from scipy import stats
    bm = np.asarray([np.median(a) if len(a) else np.nan for a in base_samples])
    nm = np.asarray([np.median(b) if len(b) else np.nan for b in new_samples])
    p = _mwu_grouped(base_samples, new_samples)
    padj = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        padj[ok] = stats.false_discovery_control(p[ok], method="bh")
    with np.errstate(all="ignore"):
        change = nm / bm - 1
    sig = np.nan_to_num(padj, nan=1.0) < alpha
    frame = pd.DataFrame(list(keys), columns=list(key_names))
    frame["base_s"] = bm
    frame["new_s"] = nm
    frame["change"] = change
    frame["p"] = p
    frame["p_adj"] = padj
    frame["significant"] = sig
    frame["regression"] = sig & (change > threshold)
    frame["improvement"] = sig & (change < -threshold)
    return frame


def _sweep_samples(run):
    from collectives.results import KEY_FIELDS
    pooled: dict = {}
    for key, samples in zip(run.points[list(KEY_FIELDS)].itertuples(index=False, name=None),
                            run.points["samples"]):
        vals = (samples or {}).get("max") or []
        pooled.setdefault(tuple(_plain(k) for k in key), []).extend(vals)
    return {k: np.asarray(v, dtype=float) for k, v in pooled.items()}


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _links_samples(data):
    out = {}
    for i, key in enumerate(zip(data.src.tolist(), data.dst.tolist(),
                                data.nbytes.tolist())):
        s = data.row_samples(i)
        out[key] = np.concatenate([out[key], s]) if key in out else s
    return out


def _points(base: Side, new: Side, threshold, alpha):
    if base.kind == "sweep":
        from collectives.results import KEY_FIELDS
        a, b, names = _sweep_samples(base.run), _sweep_samples(new.run), KEY_FIELDS
    else:
        a, b = _links_samples(base.links), _links_samples(new.links)
        names = ("src", "dst", "bytes")
    common = sorted(set(a) & set(b), key=lambda k: tuple(str(x) for x in k))
    frame = compare_points(common, [a[k] for k in common], [b[k] for k in common],
                           threshold=threshold, alpha=alpha, key_names=names)
    return frame, len(set(a) - set(b)), len(set(b) - set(a))


# -- per constant -----------------------------------------------------------------------

#: direction of "worse": +1 when a larger value is worse (times), -1 (bandwidths)
def constants_rows(doc: dict) -> dict:
    """Flatten a constants dict: ``{name: (value, ci, worse_sign, unit)}`` for the
    headline, point-to-point, γ and every algorithm entry of every topology."""
    out = {}

    def put(name, value, ci, sign, unit):
        if value is None:
            return
        out[name] = (float(value), list(ci) if ci else [None, None], sign, unit)

    from . import constants as cfile
    for topo, t in (doc.get("topologies") or {}).items():
        h = cfile.headline(doc, topo) if "headline" in t else None
        if h:
            put(f"{topo} headline latency", h["latency"].get("value"),
                h["latency"].get("ci"), +1, "s")
            put(f"{topo} headline bandwidth", h["bandwidth"].get("value"),
                h["bandwidth"].get("ci"), -1, "B/s")
        p2p = t.get("p2p") or {}
        for c in ("alpha", "beta"):
            put(f"{topo} p2p {c}", p2p.get(c), p2p.get(f"{c}_ci"), +1,
                "s" if c == "alpha" else "s/B")
        g = t.get("gamma") or {}
        put(f"{topo} gamma", g.get("value"), g.get("ci"), +1, "s/B")
        for coll, algs in (t.get("algorithms") or {}).items():
            for alg, e in algs.items():
                if e.get("model") == "hockney-per-p":
                    for p, pe in (e.get("per_ranks") or {}).items():
                        for c in ("alpha", "beta"):
                            put(f"{topo} {coll}/{alg} p={p} {c}", pe.get(c),
                                pe.get(f"{c}_ci"), +1, "s" if c == "alpha" else "s/B")
                else:
                    for c in ("alpha", "beta", "gamma"):
                        put(f"{topo} {coll}/{alg} {c}", e.get(c), e.get(f"{c}_ci"), +1,
                            "s" if c == "alpha" else "s/B")
    return out


def compare_constants(base: dict, new: dict, *, threshold: float) -> pd.DataFrame:
    """One row per constant present on both sides (``constants_rows`` dicts)."""
    rows = []
    for name in [k for k in base if k in new]:
        bv, bci, sign, unit = base[name]
        nv, nci, _, _ = new[name]
        with np.errstate(all="ignore"):
            change = nv / bv - 1 if bv else math.nan
        lo = hi = math.nan
        if None not in bci and None not in nci and bci[0] and bci[1]:
            lo, hi = nci[0] / bci[1] - 1, nci[1] / bci[0] - 1 if bci[0] > 0 else math.inf
        disjoint = (None not in bci and None not in nci
                    and (nci[0] > bci[1] or nci[1] < bci[0]))
        worse = change * sign > threshold
        rows.append({"constant": name, "unit": unit, "base": bv, "base_lo": bci[0],
                     "base_hi": bci[1], "new": nv, "new_lo": nci[0], "new_hi": nci[1],
                     "change": change, "change_lo": lo, "change_hi": hi,
                     "significant": bool(disjoint), "regression": bool(disjoint and worse),
                     "improvement": bool(disjoint and change * sign < -threshold)})
    return pd.DataFrame(rows, columns=["constant", "unit", "base", "base_lo", "base_hi",
                                       "new", "new_lo", "new_hi", "change", "change_lo",
                                       "change_hi", "significant", "regression",
                                       "improvement"])


def _links_constants(an, *, per_link_limit: int = 2000) -> dict:
    out = {}
    for t in an.tiers:
        out[f"tier{t['tier']} alpha"] = (t["alpha"], t["alpha_ci"], +1, "s")
        out[f"tier{t['tier']} beta"] = (t["beta"], t["beta_ci"], +1, "s/B")
    return out


def _link_rows(ba, na, threshold):
    """Per-link β and α changes with disjoint intervals (vectorized): rows for at most
    :data:`LINK_ROWS` links per constant (largest changes first) and, per constant,
    ``(links changed, links worse, listed links worse)`` in total."""
    totals = {}
    n = ba.data.nodes
    kb = ba.fit.src.astype(np.int64) * n + ba.fit.dst
    kn = na.fit.src.astype(np.int64) * n + na.fit.dst
    common, ib, inn = np.intersect1d(kb, kn, return_indices=True)
    rows = []
    for c, unit in (("beta", "s/B"), ("alpha", "s")):
        bv, nv = getattr(ba.fit, c)[ib], getattr(na.fit, c)[inn]
        bci, nci = getattr(ba.fit, f"{c}_ci")[ib], getattr(na.fit, f"{c}_ci")[inn]
        with np.errstate(all="ignore"):
            change = nv / bv - 1
        disjoint = (nci[:, 0] > bci[:, 1]) | (nci[:, 1] < bci[:, 0])
        hit = np.flatnonzero(disjoint & (np.abs(change) > threshold))
        worse = int(np.sum(change[hit] > threshold))
        hit = hit[np.argsort(-np.abs(change[hit]))][:LINK_ROWS]
        totals[c] = (int(np.sum(disjoint & (np.abs(change) > threshold))), worse,
                     int(np.sum(change[hit] > threshold)))
        for h in hit:
            s, d = int(common[h] // n), int(common[h] % n)
            rows.append({"constant": f"link {ba.data.hosts[s]}->{ba.data.hosts[d]} {c}",
                         "unit": unit, "base": bv[h], "base_lo": bci[h, 0],
                         "base_hi": bci[h, 1], "new": nv[h], "new_lo": nci[h, 0],
                         "new_hi": nci[h, 1], "change": change[h],
                         "change_lo": nci[h, 0] / bci[h, 1] - 1 if bci[h, 1] else math.nan,
                         "change_hi": nci[h, 1] / bci[h, 0] - 1 if bci[h, 0] else math.inf,
                         "significant": True, "regression": bool(change[h] > threshold),
                         "improvement": bool(change[h] < -threshold)})
    return rows, totals


@dataclass
class Comparison:
    """The result: ``points`` and ``constants`` frames, counts, notes."""
    base: Side
    new: Side
    threshold: float
    alpha: float
    points: pd.DataFrame | None = None
    constants: pd.DataFrame | None = None
    only_base: int = 0
    only_new: int = 0
    notes: list = field(default_factory=list)
    extra_regressions: int = 0  # regressed links beyond those listed

    @property
    def regressions(self) -> int:
        n = self.extra_regressions
        for f in (self.points, self.constants):
            if f is not None and len(f):
                n += int(f["regression"].sum())
        return n

    def to_dict(self) -> dict:
        def rec(frame, limit=None):
            if frame is None:
                return None
            f = frame if limit is None else frame.head(limit)
            return json.loads(f.to_json(orient="records"))
        pts = self.points
        flagged = None if pts is None else pts[pts["significant"]]
        return {"kind": "collcost-comparison", "base": str(self.base.path),
                "new": str(self.new.path), "input_kind": self.base.kind,
                "threshold": self.threshold, "alpha": self.alpha,
                "points_compared": 0 if pts is None else int(len(pts)),
                "points_only_base": self.only_base, "points_only_new": self.only_new,
                "point_regressions": 0 if pts is None else int(pts["regression"].sum()),
                "point_improvements": 0 if pts is None else int(pts["improvement"].sum()),
                "significant_points": rec(flagged, 5000),
                "constants": rec(self.constants), "regressions": self.regressions,
                "notes": self.notes}


def compare(base: Side, new: Side, *, threshold: float = 0.05, alpha: float = 0.05,
            bootstrap: int = 100, progress=None) -> Comparison:
    """Compare two loaded inputs (see the module docstring)."""
    say = progress or (lambda m: None)
    notes = check_layouts(base, new)
    cmp = Comparison(base=base, new=new, threshold=threshold, alpha=alpha, notes=notes)
    if base.kind in ("sweep", "links"):
        cmp.points, cmp.only_base, cmp.only_new = _points(base, new, threshold, alpha)
        if not len(cmp.points):
            raise UsageError("BASE and NEW have no point in common")
        say(f"compared {len(cmp.points)} points")
    if base.kind == "constants":
        cmp.constants = compare_constants(constants_rows(base.constants),
                                          constants_rows(new.constants),
                                          threshold=threshold)
    elif base.kind == "sweep":
        from .fit import FitOptions, fit_runs
        docs = []
        for side in (base, new):
            say(f"fitting {side.path} (bootstrap {bootstrap})")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                docs.append(fit_runs([side.path], FitOptions(bootstrap=bootstrap)).constants)
        base.constants, new.constants = docs
        cmp.constants = compare_constants(constants_rows(docs[0]), constants_rows(docs[1]),
                                          threshold=threshold)
    else:
        from .links import analyze
        ba, na = analyze(base.links), analyze(new.links)
        base.constants, new.constants = ba, na  # analyses, for the report
        frame = compare_constants(_links_constants(ba), _links_constants(na),
                                  threshold=threshold)
        if len(ba.tiers) != len(na.tiers):
            cmp.notes.append(f"tiers differ: {len(ba.tiers)} in BASE, {len(na.tiers)} "
                             "in NEW (tiers compared by index)")
        rows, totals = _link_rows(ba, na, threshold)
        links = pd.DataFrame(rows, columns=frame.columns)
        for c, (changed, worse, listed_worse) in totals.items():
            if changed > LINK_ROWS:
                cmp.notes.append(f"{changed} links' {c} changed significantly past the "
                                 f"threshold ({worse} worse); the {LINK_ROWS} largest "
                                 "are listed")
            cmp.extra_regressions += worse - listed_worse
        cmp.constants = pd.concat([frame, links], ignore_index=True) if len(links) \
            else frame
    return cmp


# -- output -----------------------------------------------------------------------------

_SCALE = {"s": (1e6, "us"), "s/B": (1e12, "ps/B"), "B/s": (1e-9, "GB/s")}


def _fmt(v, k=1.0):
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v * k:.3g}"


def _pct(v):
    """A change as +12.3% (at most 7 characters; x181 = 181 times for huge ones)."""
    if v is None or not np.isfinite(v):
        return "-"
    if v >= 9.995:
        return f"x{1 + v:.3g}"
    return f"{100 * v:+.1f}%" if abs(v) < 0.9995 else f"{100 * v:+.0f}%"


def format_text(cmp: Comparison, *, top: int = 20) -> str:
    """Tables at most 100 columns wide."""
    out = [f"BASE {cmp.base.path}", f"NEW  {cmp.new.path}",
           f"threshold {cmp.threshold:.0%}, significance level {cmp.alpha} (points: "
           "Mann-Whitney U, Benjamini-Hochberg;",
           "constants: disjoint intervals)"]
    out += [f"note: {n}" for n in cmp.notes]
    pts = cmp.points
    if pts is not None:
        out.append(f"points: {len(pts)} compared ({cmp.only_base} only in BASE, "
                   f"{cmp.only_new} only in NEW), {int(pts['significant'].sum())} changed "
                   "significantly:")
        out.append(f"  {int(pts['regression'].sum())} regressions, "
                   f"{int(pts['improvement'].sum())} improvements")
        show = pts[pts["significant"]].copy()
        show = show.reindex(show["change"].abs().sort_values(ascending=False).index)
        if len(show):
            out.append(f"{'point':<50} {'base us':>9} {'new us':>9} {'change':>7} "
                       f"{'p adj':>8} flag")
            for _, r in show.head(top).iterrows():
                if "src" in pts.columns:
                    h = cmp.base.links.hosts
                    name = (f"link {h[int(r['src'])]}->{h[int(r['dst'])]} "
                            f"{int(r['bytes'])} B")
                else:
                    name = (f"{r['topology']} {r['collective']}/{r['algorithm']} "
                            f"p={r['ranks']} {int(r['bytes'])} B")
                flag = "REGRESSION" if r["regression"] else (
                    "improved" if r["improvement"] else "")
                out.append(f"{name[:50]:<50} {_fmt(r['base_s'], 1e6):>9} "
                           f"{_fmt(r['new_s'], 1e6):>9} {_pct(r['change']):>7} "
                           f"{r['p_adj']:8.2g} {flag}")
            if len(show) > top:
                out.append(f"... {len(show) - top} more significant points (--top)")
    c = cmp.constants
    if c is not None and len(c):
        out.append(f"constants: {len(c)} compared, {int(c['significant'].sum())} "
                   f"changed significantly, {int(c['regression'].sum())} regressions")
        out.append(f"{'constant (unit)':<40} {'base [CI]':>19} {'new [CI]':>19} "
                   f"{'change':>7} flag")
        order = c.reindex(c["change"].abs().sort_values(ascending=False).index)
        for _, r in order.head(max(top, 40)).iterrows():
            k, unit = _SCALE.get(r["unit"], (1.0, r["unit"]))
            name = f"{r['constant']} ({unit})"
            if len(name) > 40:
                name = name[:18] + "~" + name[-21:]
            b = f"{_fmt(r['base'], k)} [{_fmt(r['base_lo'], k)},{_fmt(r['base_hi'], k)}]"
            n = f"{_fmt(r['new'], k)} [{_fmt(r['new_lo'], k)},{_fmt(r['new_hi'], k)}]"
            flag = "REGRESSION" if r["regression"] else (
                "improved" if r["improvement"] else ("changed" if r["significant"] else ""))
            out.append(f"{name:<40} {b[:19]:>19} {n[:19]:>19} {_pct(r['change']):>7} "
                       f"{flag}")
        if len(c) > max(top, 40):
            out.append(f"... {len(c) - max(top, 40)} more constants (--json)")
    out.append(f"{cmp.regressions} regression(s)" if cmp.regressions else
               "no regression")
    return "\n".join(out)


def _plain_ticks(axis):
    """Ratios as 0.5, 1.2, 10 rather than 5 x 10^-1 on a log axis."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    lo, hi = sorted(abs(v) for v in axis.get_view_interval())
    # minor labels only within about a decade (else they collide)
    axis.set_minor_formatter(fmt if lo > 0 and hi / lo < 20 else NullFormatter())


def plot_comparison(cmp: Comparison, path) -> Path:
    """Per-point change vs size (significant points highlighted) and per-constant
    change with its interval."""
    from collectives.files import atomic_path
    from .plots import require_matplotlib
    plt = require_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    try:
        ax = axes[0]
        pts = cmp.points
        if pts is not None and len(pts):
            x = pts["bytes"].to_numpy(dtype=float)
            x = np.where(x > 0, x, 0.5)
            y = 1 + pts["change"].to_numpy(dtype=float)  # NEW / BASE
            if len(pts) > 200_000:  # bounded drawing: a seeded subsample + all flagged
                keep = np.zeros(len(pts), bool)
                keep[np.random.default_rng(0).choice(len(pts), 200_000, replace=False)] = 1
                keep |= pts["significant"].to_numpy()
            else:
                keep = np.ones(len(pts), bool)
            for mask, color, label in (
                    (~pts["significant"].to_numpy(), "0.6", "not significant"),
                    (pts["improvement"].to_numpy(), "tab:green", "improvement"),
                    (pts["significant"].to_numpy() & ~pts["regression"].to_numpy()
                     & ~pts["improvement"].to_numpy(), "tab:blue", "significant, small"),
                    (pts["regression"].to_numpy(), "tab:red", "regression")):
                m = mask & keep
                if m.any():
                    ax.scatter(x[m], y[m], s=9, c=color, label=f"{label} ({int(mask.sum())})",
                               alpha=0.7, edgecolors="none")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            _plain_ticks(ax.yaxis)
            for s in (+1, -1):
                ax.axhline(1 + s * cmp.threshold, color="k", ls=":", lw=0.8)
            ax.axhline(1, color="k", lw=0.6)
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "constants files: no points", ha="center",
                    transform=ax.transAxes)
        ax.set_xlabel("bytes")
        ax.set_ylabel("median time NEW / BASE (log scale; dotted: threshold)")
        ax.set_title("per point: NEW vs BASE")
        ax = axes[1]
        c = cmp.constants
        if c is not None and len(c):
            c = c.reindex(c["change"].abs().sort_values(ascending=False).index).head(25)
            c = c.iloc[::-1]
            ypos = np.arange(len(c))
            ch = 1 + c["change"].to_numpy(dtype=float)  # NEW / BASE
            lo = np.clip(1 + c["change_lo"].to_numpy(dtype=float), 1e-6, None)
            hi = 1 + c["change_hi"].to_numpy(dtype=float)
            err = np.vstack([np.clip(ch - lo, 0, None), np.clip(hi - ch, 0, None)])
            err = np.where(np.isfinite(err), err, 0)
            colors = ["tab:red" if r else ("tab:green" if i else "tab:blue" if s else "0.5")
                      for r, i, s in zip(c["regression"], c["improvement"], c["significant"])]
            ax.scatter(ch, ypos, c=colors, s=28, zorder=3)
            ax.errorbar(ch, ypos, xerr=err, fmt="none", ecolor="0.4", capsize=2)
            ax.set_xscale("log")
            _plain_ticks(ax.xaxis)
            ax.set_yticks(ypos)
            ax.set_yticklabels([s[:38] for s in c["constant"]], fontsize=7)
            for s in (+1, -1):
                ax.axvline(1 + s * cmp.threshold, color="k", ls=":", lw=0.8)
            ax.axvline(1, color="k", lw=0.6)
            ax.grid(True, axis="x", alpha=0.3)
        ax.set_xlabel("NEW / BASE (log scale), conservative interval\nred: regression, "
                      "green: improvement, blue: significant change", fontsize=8)
        ax.set_title("per constant (largest changes)")
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


PROG = "python -m fits.compare"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Compare BASE and NEW: two sweep runs, two links runs or two "
                    "constants files.  Exit status: 0 no regression, 1 regression(s), 2 "
                    "bad input (different layouts, mixed kinds; nothing written).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("base", metavar="BASE", help="run directory or constants file")
    p.add_argument("new", metavar="NEW", help="run directory or constants file")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="a change past this fraction (0.05 = 5%%) in the worse direction, "
                        "when significant, is a regression")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of the adjusted Mann-Whitney p-values")
    p.add_argument("--bootstrap", type=int, default=100,
                   help="bootstrap replicates when sweep runs are fitted for the "
                        "per-constant comparison")
    p.add_argument("--top", type=int, default=20, help="rows of the point table")
    p.add_argument("--plot", help="write the comparison plot (PNG) here")
    p.add_argument("--json", help="write the comparison (JSON) here")
    p.add_argument("--overwrite", action="store_true", help="replace existing --plot/--json")
    return p


def main(argv=None, prog: str = PROG) -> int:
    from collectives.parsing import reject_empty_arguments

    def err(msg):
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE

    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # an empty --json or --plot is refused, never taken as "no output"
        reject_empty_arguments(argv)
    except UsageError as exc:
        return err(exc)
    args = build_parser(prog).parse_args(argv)

    def say(msg):
        print(f"[fits.compare] {msg}", file=sys.stderr, flush=True)

    try:
        if not (math.isfinite(args.threshold) and args.threshold >= 0):
            raise UsageError(f"--threshold must be a number >= 0, got {args.threshold}")
        if not 0 < args.alpha < 1:
            raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
        from .__main__ import MAX_BOOTSTRAP  # the fit's bound, before anything is built
        if not 0 <= args.bootstrap <= MAX_BOOTSTRAP:
            raise UsageError(f"--bootstrap must be between 0 and {MAX_BOOTSTRAP}, got "
                             f"{args.bootstrap}")
        if args.top < 0:
            raise UsageError(f"--top must be >= 0, got {args.top}")
        b = check_input(args.base, option="BASE", directory=None)
        n = check_input(args.new, option="NEW", directory=None)
        if b == n:
            raise UsageError(f"BASE and NEW are the same input {args.base}")
        outs = {}
        for opt in ("plot", "json"):
            if getattr(args, opt):
                outs[opt] = check_output(getattr(args, opt), inputs=[b, n],
                                         option=f"--{opt}", overwrite=args.overwrite)
        if len(outs) == 2 and outs["plot"] == outs["json"]:
            raise UsageError(f"--plot and --json are the same file {args.json}; give "
                             "each its own path")
        if "plot" in outs:
            from .plots import require_matplotlib
            try:
                require_matplotlib()
            except RuntimeError as exc:
                raise UsageError(f"--plot: {exc}") from None
        base, new = load_side(b, "BASE"), load_side(n, "NEW")
        cmp = compare(base, new, threshold=args.threshold, alpha=args.alpha,
                      bootstrap=args.bootstrap, progress=say)
    except UsageError as exc:
        return err(exc)
    if "json" in outs:
        atomic_write_json(outs["json"], cmp.to_dict())
        say(f"wrote {outs['json']}")
    if "plot" in outs:
        plot_comparison(cmp, outs["plot"])
        say(f"wrote {outs['plot']}")
    status = EXIT_REGRESSION if cmp.regressions else 0
    try:
        print(format_text(cmp, top=args.top), flush=True)
    except BrokenPipeError:  # piped into head: the exit status still tells the verdict
        from collectives.files import drop_stdout
        drop_stdout()
    return status


if __name__ == "__main__":
    sys.exit(main())
