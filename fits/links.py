"""Links analysis: α, β of every link, heatmaps, suspect nodes and links, topology tiers.

``python -m fits.links RUN [--out DIR] [--fail-on ...]`` reads a links run (the run
directory of ``python -m collectives.links``; ``docs/formats.md``, "Links run") and

1. **fits** each directed link ``src -> dst`` with the Hockney line ``t = α + n β`` by
   weighted least squares on its per-size medians (weights ``1/σ²``, σ from each
   point's 95% CI of the median, floored at ``rel_floor`` × the median), with α, β ≥ 0;
   the interval of each constant is ±z·SE from the weighted design, the SEs inflated by
   the residual scatter when the link's points disagree with a line (χ²/dof > 1).  All
   links at once (sums by ``numpy.bincount``): no per-link Python loop, so 10^6 links
   take seconds.
2. **tiers**: the links' costs (``log β`` by default, ``--tiers-by alpha`` for ``log α``)
   of node pairs are clustered by a 1-D Gaussian mixture with the number of components
   chosen by BIC (EM in numpy on at most 200 000 pairs).  A cluster boundary is kept as
   a *tier boundary* only when it is structural: the pairs faster than it split the
   nodes into ≥ 2 groups (connected components) of ≥ 2 nodes, each group at least half
   connected by fast pairs; a node alone in its group is a suspect node, not a tier.
   The tier of a pair is then the first level at which both nodes share a group, so a
   slow cable inside a group stays in that group's tier (and is found as an outlier).
   Adjacent tiers whose medians differ by less than ``min_tier_gap`` are merged.
   Each tier gets α, β (median over its healthy links, with the order-statistics 95% CI
   of that median) and is written as a *level* (``tiers.json``) in the shape of a
   constants-file topology entry, so :mod:`fits.predict.hierarchy` can use it.
3. **suspects** (robust statistics, per feature: bandwidth ``log β`` and latency
   ``log α``): the residual of each link from its tier's median; a node's effect is the
   median residual over all its links, its z-score ``(u − median u) / scale`` with
   ``scale`` = 1.4826·MAD of the node effects, floored by the standard error of a
   median of that node's links.  A node whose effect passes ``--node-z`` and slows it by
   more than ``--node-min-effect`` is a *suspect node* (slow with every partner).  Links
   are then judged on what their nodes do not explain: residual minus the effects of
   suspect endpoints, z-score within the tier (1.4826·MAD); passing ``--link-z`` and
   ``--link-min-effect``, with the lower end of the link's own interval above its
   tier's median, makes a *suspect link*.  Each suspect carries its evidence.

Exit status: 0, 1 when ``--fail-on`` triggers, 2 for bad input (nothing written).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collectives.files import UsageError, atomic_write_json, check_input, check_output

__all__ = ["LINKS_KIND", "LinksData", "LinksFormatError", "LinkFit", "Analysis",
           "Options", "read_links_run", "fit_links", "gmm_1d", "find_tiers", "analyze",
           "tiers_document", "plot_heatmaps", "main", "EXIT_FAIL", "EXIT_USAGE"]

LINKS_KIND = "collcost-links"
TIERS_KIND = "collcost-link-tiers"
EXIT_FAIL = 1
EXIT_USAGE = 2
_Z95 = 1.959964
_MAD = 1.4826


class LinksFormatError(ValueError):
    """A directory that is not a readable links run (docs/formats.md)."""


# -- reading ----------------------------------------------------------------------------

@dataclass
class LinksData:
    """A links run as arrays, one entry per point row (``P`` rows).

    ``src``, ``dst`` (endpoint indices), ``nbytes``, ``median``, ``ci_low``,
    ``ci_high`` (s; NaN when undefined), ``reps``; ``hosts`` (endpoint host names);
    ``samples``/``offsets`` (flat per-repetition seconds, ``samples.max``, and the
    start of each row's slice; only with ``samples=True``).
    """

    path: Path
    metadata: dict
    hosts: list
    src: np.ndarray
    dst: np.ndarray
    nbytes: np.ndarray
    median: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    reps: np.ndarray
    samples: np.ndarray | None = None
    offsets: np.ndarray | None = None

    @property
    def nodes(self) -> int:
        return len(self.hosts)

    @property
    def sizes(self) -> list:
        return sorted(set(self.nbytes.tolist()))

    def layout(self) -> dict:
        """What must agree for two runs to be compared: endpoints, mode, sizes."""
        links = self.metadata.get("links") or {}
        return {"mode": links.get("mode"), "endpoints": list(self.hosts),
                "direction": links.get("direction")}

    def row_samples(self, i: int) -> np.ndarray:
        return self.samples[self.offsets[i]:self.offsets[i + 1]]


def _num(v):
    return math.nan if v is None else float(v)


#: Largest repetition count a row may claim (a C int).
_MAX_REPS = 2**31 - 1


def _whole(row, key, low, high, default=None) -> int:
    """Field ``key`` of ``row`` as a whole number in ``[low, high]`` (ValueError naming
    the field otherwise)."""
    v = row.get(key, default) if default is not None else row[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or \
            (isinstance(v, float) and not (math.isfinite(v) and v.is_integer())):
        raise ValueError(f"field {key} must be a whole number, got {v!r}")
    if not low <= v <= high:
        raise ValueError(f"field {key} must be between {low} and {high}, got {v!r}")
    return int(v)


def _seconds(row, key) -> float:
    """Field ``key`` as seconds: NaN when null/NaN/absent; ValueError when it is not a
    number or infinite.  (It may be negative: with --direction both a time is a round
    trip minus ``ack_s``.)"""
    v = row.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise ValueError(f"field {key} must be a number of seconds or null, got {v!r}")
    v = _num(v)
    if math.isinf(v):
        raise ValueError(f"field {key} must be finite, got {v!r}")
    return v


def read_links_run(path, *, samples: bool = False, progress=None) -> LinksData:
    """Read a links run (streaming; memory O(rows), samples only when asked).

    Raises :class:`LinksFormatError` naming the file, line and field for anything that
    is not a links run: wrong ``kind``, no ``links`` section, a row that is not a
    ping-pong between two known endpoints.  A truncated last line (a killed launch) is
    dropped with a warning.
    """
    path = Path(path)
    mfile = path / "metadata.json"
    if not path.is_dir():
        raise LinksFormatError(f"{path}: not a directory")
    if not mfile.is_file():
        raise LinksFormatError(f"{path}: not a run directory (no metadata.json)")
    try:
        meta = json.loads(mfile.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LinksFormatError(f"{mfile}: not valid JSON ({exc})") from None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind != LINKS_KIND:
        raise LinksFormatError(f"{mfile}: not a links run (kind is {kind!r}, expected "
                               f"{LINKS_KIND!r}; sweeps are fitted with python -m fits)")
    if meta.get("schema_version") != 1:
        raise LinksFormatError(f"{mfile}: unknown schema_version "
                               f"{meta.get('schema_version')!r}; this reads 1")
    links = meta.get("links")
    if not isinstance(links, dict) or not isinstance(links.get("endpoints"), list):
        raise LinksFormatError(f"{mfile}: field links.endpoints missing or not a list")
    for key, allowed in (("mode", ("node", "group", "rank")), ("direction", ("one", "both"))):
        if links.get(key) not in allowed:
            raise LinksFormatError(f"{mfile}: field links.{key} is {links.get(key)!r}, "
                                   f"expected one of {', '.join(allowed)}")
    eps = links["endpoints"]
    hosts = [None] * len(eps)
    for k, ep in enumerate(eps):
        try:
            idx = _whole(ep, "index", 0, len(eps) - 1)
            if not isinstance(ep.get("host"), str) or hosts[idx] is not None:
                raise ValueError
            hosts[idx] = ep["host"]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LinksFormatError(f"{mfile}: links.endpoints[{k}] must be "
                                   f"{{index, host, rank}} with a host name and an index "
                                   f"0..{len(eps) - 1} no other endpoint has") from None
    if len(hosts) < 2 or any(h is None for h in hosts):
        raise LinksFormatError(f"{mfile}: links.endpoints must list >= 2 endpoints with "
                               "indices 0..N-1")
    pfile = path / "points.jsonl"
    if not pfile.is_file():
        raise LinksFormatError(f"{path}: no points.jsonl")
    n_ep = len(hosts)
    from array import array
    cols = {k: array(t) for k, t in (("src", "l"), ("dst", "l"), ("nbytes", "q"),
                                     ("median", "d"), ("lo", "d"), ("hi", "d"),
                                     ("reps", "l"))}
    flat, offs = array("d"), array("q", [0])
    linenos = array("q")
    loads = json.loads
    skipped = nonpositive = first_nonpositive = 0
    from collectives.parsing import MAX_SIZE
    with open(pfile, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = loads(raw)
            except ValueError as exc:
                if not raw.endswith(b"\n"):  # the last line, cut short
                    warnings.warn(f"{pfile}: ignoring a truncated last line", stacklevel=2)
                    break
                raise LinksFormatError(f"{pfile}: line {lineno} is not valid JSON ({exc})") \
                    from None
            try:
                if row["collective"] != "pingpong":
                    raise LinksFormatError(f"{pfile}: line {lineno}: collective is "
                                           f"{row['collective']!r}, expected 'pingpong'")
                s, d = _whole(row, "src", 0, n_ep - 1), _whole(row, "dst", 0, n_ep - 1)
                if s == d:
                    raise LinksFormatError(f"{pfile}: line {lineno}: src/dst {s}/{d} are not "
                                           f"two different endpoints of 0..{n_ep - 1}")
                nbytes = _whole(row, "bytes", 0, MAX_SIZE)
                reps = _whole(row, "repetitions", 0, _MAX_REPS, default=0) \
                    if row.get("repetitions") is not None else 0
                med = _seconds(row, "median_s") if "median_s" in row else row["median_s"]
                lo, hi = _seconds(row, "ci_low_s"), _seconds(row, "ci_high_s")
                if samples:
                    sm = row.get("samples") or {}
                    if not isinstance(sm, dict) or not isinstance(sm.get("max") or [], list):
                        raise ValueError("field samples must be an object with a list "
                                         "'max'")
                    sm = [float(v) for v in sm.get("max") or []]
                if not math.isfinite(med):
                    skipped += 1
                    continue
                if med <= 0:  # round trip - ack_s below zero: no one-way time to fit
                    nonpositive += 1
                    first_nonpositive = first_nonpositive or lineno
                    continue
                cols["src"].append(s)
                cols["dst"].append(d)
                cols["nbytes"].append(nbytes)
                cols["median"].append(med)
                cols["lo"].append(lo)
                cols["hi"].append(hi)
                cols["reps"].append(reps)
                linenos.append(lineno)
                if samples:
                    flat.extend(sm)
                    offs.append(offs[-1] + len(sm))
            except LinksFormatError:
                raise
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise LinksFormatError(f"{pfile}: line {lineno}: bad or missing field "
                                       f"({exc})") from None
            if progress and lineno % 500000 == 0:
                progress(f"read {lineno} rows")
    if nonpositive:
        warnings.warn(f"{pfile}: {nonpositive} point(s) with a median <= 0 s left out "
                      f"(first: line {first_nonpositive}; --direction both times are a "
                      "round trip minus ack_s, which a loaded machine can push below "
                      "zero)", stacklevel=2)
    if skipped:
        warnings.warn(f"{pfile}: {skipped} point(s) without a median left out",
                      stacklevel=2)
    if not cols["src"]:
        raise LinksFormatError(f"{pfile}: no points")
    data = LinksData(
        path=path, metadata=meta, hosts=hosts,
        src=np.asarray(cols["src"], dtype=np.int32),
        dst=np.asarray(cols["dst"], dtype=np.int32),
        nbytes=np.asarray(cols["nbytes"], dtype=np.int64),
        median=np.asarray(cols["median"], dtype=float),
        ci_low=np.asarray(cols["lo"], dtype=float),
        ci_high=np.asarray(cols["hi"], dtype=float),
        reps=np.asarray(cols["reps"], dtype=np.int32),
        samples=np.asarray(flat, dtype=float) if samples else None,
        offsets=np.asarray(offs, dtype=np.int64) if samples else None)
    return _without_duplicates(data, np.asarray(linenos, dtype=np.int64), pfile)


def _without_duplicates(data: LinksData, linenos: np.ndarray, pfile) -> LinksData:
    """One row per (src, dst, bytes): a row repeating an earlier one (same statistics)
    is dropped with a warning naming both lines; two different measurements of one
    link and size are a :class:`LinksFormatError` naming both lines (two jobs wrote
    the run at once?).  O(rows log rows) time, O(rows) memory."""
    order = np.lexsort((data.nbytes, data.dst, data.src))  # stable: file order kept
    s, d, b = data.src[order], data.dst[order], data.nbytes[order]
    equal = (s[1:] == s[:-1]) & (d[1:] == d[:-1]) & (b[1:] == b[:-1])
    dup = np.flatnonzero(equal) + 1  # positions (in order) of later copies
    if dup.size == 0:
        return data
    later = order[dup]
    # the first row of each run of equal keys
    first_pos = np.maximum.accumulate(np.where(np.r_[True, ~equal],
                                               np.arange(order.size), 0))
    earlier = order[first_pos[dup]]

    def same(a):
        x, y = a[later], a[earlier]
        return (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y

    identical = same(data.median) & same(data.ci_low) & same(data.ci_high) & \
        same(data.reps)
    if data.samples is not None:
        identical &= np.array([np.array_equal(data.row_samples(i), data.row_samples(j))
                               for i, j in zip(later, earlier)], dtype=bool)
    if not identical.all():
        k = int(np.flatnonzero(~identical)[0])
        i, j = int(later[k]), int(earlier[k])
        raise LinksFormatError(
            f"{pfile}: line {linenos[i]} measures the same link and size as line "
            f"{linenos[j]} (src {data.src[i]}, dst {data.dst[i]}, {data.nbytes[i]} B) "
            f"with different results (two jobs wrote this run at once?); remove one "
            f"of the lines")
    lines = ", ".join(str(int(linenos[i])) for i in sorted(later)[:10])
    warnings.warn(f"{pfile}: dropping {later.size} duplicated line(s) ({lines}"
                  f"{' ...' if later.size > 10 else ''}), each a copy of an earlier line",
                  stacklevel=3)
    keep = np.ones(data.src.size, dtype=bool)
    keep[later] = False
    kw = {f: getattr(data, f)[keep] for f in ("src", "dst", "nbytes", "median", "ci_low",
                                              "ci_high", "reps")}
    if data.samples is not None:
        lengths = np.diff(data.offsets)[keep]
        kw["samples"] = np.concatenate([data.row_samples(int(i))
                                        for i in np.flatnonzero(keep)]) \
            if lengths.sum() else np.zeros(0)
        kw["offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    else:
        kw["samples"] = kw["offsets"] = None
    return LinksData(path=data.path, metadata=data.metadata, hosts=data.hosts, **kw)


# -- per-link fit -----------------------------------------------------------------------

@dataclass
class LinkFit:
    """Per directed link (``L`` links): ``src``, ``dst``, ``alpha``, ``beta`` and their
    intervals (``alpha_ci``, ``beta_ci``: (L, 2)), ``points`` per link, ``chi2``
    (reduced; NaN with 2 sizes)."""

    src: np.ndarray
    dst: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    alpha_ci: np.ndarray
    beta_ci: np.ndarray
    points: np.ndarray
    chi2: np.ndarray


def fit_links(data: LinksData, *, rel_floor: float = 0.01, confidence: float = 0.95
              ) -> LinkFit:
    """Weighted least squares ``t = α + n β`` of every link at once (α, β ≥ 0).

    Notes: with weights ``w = 1/σ²`` and sums ``S_k = Σ w n^k``, ``T_k = Σ w n^k t``,
    ``det = S0 S2 − S1²``, ``α = (S2 T0 − S1 T1)/det``, ``β = (S0 T1 − S1 T0)/det``,
    ``Var α = S2/det``, ``Var β = S0/det`` (times χ²/dof when > 1).  Where α < 0 the
    line through the origin is used (``β = T1/S2``, ``Var β = 1/S2``); where β < 0 the
    constant ``α = T0/S0``.
    """
    from scipy import stats
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    n = data.nodes
    key = data.src.astype(np.int64) * n + data.dst
    uniq, inv = np.unique(key, return_inverse=True)
    L = uniq.size
    t = data.median
    x = data.nbytes.astype(float)
    half = (data.ci_high - data.ci_low) / (2 * _Z95)
    sigma = np.where(np.isfinite(half) & (half > 0), half, 0.0)
    # a one-way time can come out <= 0 (a round trip minus an acknowledgement's time
    # on a noisy host): keep the point, weighted by its own scatter
    sigma = np.maximum(sigma, rel_floor * np.abs(t))
    sigma = np.maximum(sigma, 1e-12)
    w = 1.0 / sigma ** 2

    def s(v):
        return np.bincount(inv, weights=v, minlength=L)

    S0, S1, S2 = s(w), s(w * x), s(w * x * x)
    T0, T1 = s(w * t), s(w * x * t)
    cnt = np.bincount(inv, minlength=L)
    nsize = np.bincount(inv, weights=np.ones_like(x), minlength=L)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = S0 * S2 - S1 * S1
        alpha = (S2 * T0 - S1 * T1) / det
        beta = (S0 * T1 - S1 * T0) / det
        va, vb = S2 / det, S0 / det
        origin = ~(alpha >= 0)
        beta = np.where(origin, T1 / S2, beta)
        vb = np.where(origin, 1.0 / S2, vb)
        alpha = np.where(origin, 0.0, alpha)
        va = np.where(origin, np.nan, va)
        flat = ~(beta >= 0)
        alpha = np.where(flat, np.maximum(T0 / S0, 0.0), alpha)
        va = np.where(flat, 1.0 / S0, va)
        beta = np.where(flat, 0.0, beta)
        vb = np.where(flat, np.nan, vb)
        resid = t - alpha[inv] - beta[inv] * x
        dof = cnt - 2 + origin + flat
        chi2 = s(w * resid ** 2) / np.where(dof > 0, dof, np.nan)
        infl = np.where(chi2 > 1, chi2, 1.0)
        sa, sb = np.sqrt(va * infl), np.sqrt(vb * infl)
    a_ci = np.stack([np.maximum(alpha - z * sa, 0.0), alpha + z * sa], axis=1)
    b_ci = np.stack([np.maximum(beta - z * sb, 0.0), beta + z * sb], axis=1)
    a_ci[origin] = [0.0, np.nan]  # at its bound: one-sided, upper unknown here
    del nsize
    return LinkFit(src=(uniq // n).astype(np.int32), dst=(uniq % n).astype(np.int32),
                   alpha=alpha, beta=beta, alpha_ci=a_ci, beta_ci=b_ci, points=cnt,
                   chi2=chi2)


# -- 1-D Gaussian mixture with BIC ------------------------------------------------------

def gmm_1d(x, *, max_k: int = 4, min_sd: float = 0.01, iters: int = 200,
           sample: int = 200_000, seed: int = 0):
    """Fit 1-D Gaussian mixtures with k = 1..max_k components by EM; return the one of
    lowest BIC as ``(means, sds, weights, labels)`` (means ascending, labels per x).

    At most ``sample`` values (a seeded random subset) enter EM; every value is then
    labelled with its most probable component.  ``min_sd`` floors each component's
    standard deviation (log units: 0.01 = 1%).
    """
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        raise ValueError("no values to cluster")
    rng = np.random.default_rng(seed)
    xs = x if x.size <= sample else rng.choice(x, sample, replace=False)
    best = None
    for k in range(1, max_k + 1):
        if xs.size < 3 * k:
            break
        mu = np.quantile(xs, (np.arange(k) + 0.5) / k)
        sd = np.full(k, max(np.std(xs) / k, min_sd))
        wt = np.full(k, 1.0 / k)
        prev = -np.inf
        for _ in range(iters):
            logp = (np.log(wt) - np.log(sd) - 0.5 * ((xs[:, None] - mu) / sd) ** 2)
            m = logp.max(axis=1, keepdims=True)
            ll_i = m[:, 0] + np.log(np.exp(logp - m).sum(axis=1))
            r = np.exp(logp - ll_i[:, None])
            nk = r.sum(axis=0) + 1e-12
            wt = nk / nk.sum()
            mu = (r * xs[:, None]).sum(axis=0) / nk
            sd = np.sqrt((r * (xs[:, None] - mu) ** 2).sum(axis=0) / nk)
            sd = np.maximum(sd, min_sd)
            ll = ll_i.sum()
            if ll - prev < 1e-6 * abs(ll):
                break
            prev = ll
        ll = ll_i.sum() - 0.5 * xs.size * math.log(2 * math.pi)
        bic = -2 * ll + (3 * k - 1) * math.log(xs.size)
        if best is None or bic < best[0]:
            best = (bic, mu, sd, wt)
    _, mu, sd, wt = best
    order = np.argsort(mu)
    mu, sd, wt = mu[order], sd[order], wt[order]
    labels = np.empty(x.size, dtype=np.int16)
    for a in range(0, x.size, 1_000_000):
        xc = x[a:a + 1_000_000]
        logp = np.log(wt) - np.log(sd) - 0.5 * ((xc[:, None] - mu) / sd) ** 2
        labels[a:a + 1_000_000] = logp.argmax(axis=1)
    return mu, sd, wt, labels


# -- tiers ------------------------------------------------------------------------------

def _components(n, i, j, active):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    g = coo_matrix((np.ones(i.size), (i, j)), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    comp = comp.astype(np.int64)
    comp[~active] = -1
    return comp


def find_tiers(n, pi, pj, value, *, exclude=(), max_k=4, min_tier_gap=0.1,
               min_density=0.5, seed=0):
    """Tier structure of an ``n``-node network from per-pair costs.

    ``pi``, ``pj``: unordered pairs (``pi < pj``); ``value``: their log cost.  Nodes in
    ``exclude`` take no part.  Returns ``(levels, singletons)``: ``levels`` a list of
    group arrays (node -> group id at that level, -1 for excluded nodes), finest first,
    not including the last all-in-one level; ``singletons`` the nodes found alone in
    their group at an accepted boundary (candidates for suspect nodes).
    """
    active = np.ones(n, dtype=bool)
    active[list(exclude)] = False
    keep = active[pi] & active[pj] & np.isfinite(value)
    pi, pj, value = pi[keep], pj[keep], value[keep]
    if value.size < 3:
        return [], []
    mu, _, _, labels = gmm_1d(value, max_k=max_k, seed=seed)
    # merge components closer than the tier gap
    lab_map = np.zeros(mu.size, dtype=int)
    for c in range(1, mu.size):
        lab_map[c] = lab_map[c - 1] + (mu[c] - mu[c - 1] >= math.log1p(min_tier_gap))
    labels = lab_map[labels]
    levels, singletons, prev = [], set(), None
    for t in range(int(labels.max())):
        fast = labels <= t
        comp = _components(n, pi[fast], pj[fast], active)
        ids, size = np.unique(comp[comp >= 0], return_counts=True)
        if ids.size < 2:
            continue
        alone = set(ids[size == 1].tolist())
        # density of fast pairs within each multi-node component
        same = comp[pi[fast]] == comp[pj[fast]]
        inside = np.bincount(comp[pi[fast]][same], minlength=n)
        ok = True
        for cid, m in zip(ids, size):
            if m >= 2 and inside[cid] < min_density * m * (m - 1) / 2:
                ok = False
        multi = [cid for cid, m in zip(ids, size) if m >= 2]
        if not ok or len(multi) < 1 or (len(multi) < 2 and not alone):
            continue
        lone = [int(k) for k in np.flatnonzero(np.isin(comp, list(alone)))]
        if len(multi) < 2:  # only singletons split off: suspects, not a tier
            singletons.update(lone)
            continue
        singletons.update(lone)
        key = tuple(comp.tolist())
        if key != prev:
            levels.append(comp)
            prev = key
    return levels, sorted(singletons)


def _assign(levels, n, pi, pj, value, nodes):
    """Put each node of ``nodes`` (excluded from the tier search) at every level into
    the group whose members it reaches fastest (median cost)."""
    out = []
    for comp in levels:
        comp = comp.copy()
        for s in nodes:
            m = (pi == s) | (pj == s)
            other = np.where(pi[m] == s, pj[m], pi[m])
            g = comp[other]
            v = value[m]
            ok = g >= 0
            if not ok.any():
                continue
            gs = np.unique(g[ok])
            med = [np.median(v[ok & (g == x)]) for x in gs]
            comp[s] = gs[int(np.argmin(med))]
        out.append(comp)
    return out


def pair_tier(levels, i, j):
    """Tier of each pair: the first level at which both nodes share a group (0 =
    finest); ``len(levels)`` when they never do."""
    tier = np.full(np.asarray(i).shape, len(levels), dtype=np.int16)
    for lvl in range(len(levels) - 1, -1, -1):
        comp = levels[lvl]
        same = (comp[i] == comp[j]) & (comp[i] >= 0)
        tier[same] = lvl
    return tier


# -- analysis ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """Thresholds of the analysis (see the module docstring)."""
    tiers_by: str = "beta"
    max_tiers: int = 4
    min_tier_gap: float = 0.10
    node_z: float = 5.0
    node_min_effect: float = 0.15
    link_z: float = 6.0
    link_min_effect: float = 0.25
    latency_min_effect: float = 0.5
    rel_floor: float = 0.01
    confidence: float = 0.95
    seed: int = 0
    features: tuple = ("bandwidth", "latency")


@dataclass
class Analysis:
    data: LinksData
    fit: LinkFit
    options: Options
    tier: np.ndarray                  # per link
    levels: list                      # group arrays
    tiers: list                       # dict per tier
    nodes: list                       # dict per node (effects)
    suspect_nodes: list = field(default_factory=list)
    suspect_links: list = field(default_factory=list)
    link_z: dict = field(default_factory=dict)   # feature -> z per link
    seconds: float = 0.0

    def matrix(self, what: str) -> np.ndarray:
        n = self.data.nodes
        m = np.full((n, n), np.nan)
        m[self.fit.src, self.fit.dst] = getattr(self.fit, what)
        return m


def _median_ci(x, confidence):
    from collectives.stats import median_ci
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None, [None, None]
    lo, hi = median_ci(x, confidence)
    f = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    return float(np.median(x)), [f(lo), f(hi)]


def _node_value(fit, mask, name) -> str:
    """Median bandwidth (GB/s) or latency (µs) of the links in ``mask``, as text."""
    if name == "bandwidth":
        return f"median {np.median(1e-9 / fit.beta[mask]):.4g} GB/s"
    return f"median α {np.median(fit.alpha[mask]) * 1e6:.4g} µs"


def _min_node_effect(options, name):
    return options.node_min_effect if name == "bandwidth" else options.latency_min_effect


def _node_scores(resid, u, deg, src, dst):
    """Robust z and effect (log, relative to the median node) of every node.

    The scale is the larger of 1.4826·MAD of the node effects and the standard error
    of a median of the node's links, from the links' scatter once both endpoints'
    effects are taken out (``resid − u_src − u_dst``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        uc = np.nanmedian(u)
        mad = _MAD * np.nanmedian(np.abs(u - uc))
        e = resid - np.nan_to_num(u)[src] - np.nan_to_num(u)[dst]
        sr = _MAD * np.nanmedian(np.abs(e - np.nanmedian(e)))
    floor = 1.2533 * sr / np.sqrt(np.maximum(deg, 1))
    scale = np.maximum(np.maximum(np.nan_to_num(mad), floor), 1e-3)
    return (u - uc) / scale, u - uc


def analyze(data: LinksData, options: Options = Options(), progress=None) -> Analysis:
    """Fit every link, find the tiers and the suspects (see the module docstring)."""
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    fit = fit_links(data, rel_floor=options.rel_floor, confidence=options.confidence)
    say(f"fitted {fit.src.size} links")
    n = data.nodes
    with np.errstate(divide="ignore", invalid="ignore"):
        feats = {"bandwidth": np.log(fit.beta), "latency": np.log(fit.alpha)}
    for v in feats.values():
        v[~np.isfinite(v)] = np.nan
    tier_feat = feats["bandwidth" if options.tiers_by == "beta" else "latency"]
    # unordered pairs: mean of the directions' log costs
    a, b = np.minimum(fit.src, fit.dst), np.maximum(fit.src, fit.dst)
    pkey = a.astype(np.int64) * n + b
    pu, pinv = np.unique(pkey, return_inverse=True)
    pi, pj = (pu // n).astype(np.int64), (pu % n).astype(np.int64)
    fin = np.isfinite(tier_feat)
    psum = np.bincount(pinv, weights=np.where(fin, tier_feat, 0), minlength=pu.size)
    pcnt = np.bincount(pinv, weights=fin.astype(float), minlength=pu.size)
    with np.errstate(invalid="ignore"):
        pval = psum / pcnt

    def effects(tier, exclude_nodes):
        """Per feature: residual per link, node effects, centers per tier."""
        out = {}
        healthy = ~(np.isin(fit.src, exclude_nodes) | np.isin(fit.dst, exclude_nodes))
        for name, v in feats.items():
            centers = {}
            for tt in np.unique(tier):
                m = (tier == tt) & healthy & np.isfinite(v)
                if not m.any():
                    m = (tier == tt) & np.isfinite(v)
                centers[int(tt)] = np.median(v[m]) if m.any() else np.nan
            cvec = np.asarray([centers.get(k, np.nan) for k in range(int(tier.max()) + 1)])
            resid = v - cvec[tier]
            # node effect: median residual over every link touching the node
            ends = np.concatenate([fit.src, fit.dst])
            r2 = np.concatenate([resid, resid])
            order = np.argsort(ends, kind="stable")
            ends, r2 = ends[order], r2[order]
            bounds = np.searchsorted(ends, np.arange(n + 1))
            u = np.full(n, np.nan)
            deg = np.diff(bounds)
            for k in range(n):
                seg = r2[bounds[k]:bounds[k + 1]]
                seg = seg[np.isfinite(seg)]
                if seg.size:
                    u[k] = np.median(seg)
            out[name] = (resid, u, deg, centers)
        return out

    # pass 1: tiers from everything, then node suspects; pass 2.. without them
    exclude: list = []
    for _ in range(4):
        levels, alone = find_tiers(n, pi, pj, pval, exclude=exclude,
                                   max_k=options.max_tiers,
                                   min_tier_gap=options.min_tier_gap, seed=options.seed)
        if exclude:
            levels = _assign(levels, n, pi, pj, pval, exclude)
        tier = pair_tier(levels, fit.src, fit.dst)
        eff = effects(tier, np.asarray(sorted(set(exclude) | set(alone)), dtype=int))
        new = set()
        for name, (resid, u, deg, _) in eff.items():
            if name not in options.features:
                continue
            zu, du = _node_scores(resid, u, deg, fit.src, fit.dst)
            hit = (zu > options.node_z) & (np.expm1(du) > _min_node_effect(options, name))
            new.update(np.flatnonzero(hit).tolist())
        if new == set(exclude):
            break
        exclude = sorted(new)
    suspects = set(exclude)
    say(f"{len(levels) + 1} tier(s), {len(suspects)} suspect node(s)")
    # final statistics
    excl = np.asarray(sorted(suspects), dtype=int)
    eff = effects(tier, excl)
    node_rows, sus_nodes = [], []
    node_z = {}
    for name, (resid, u, deg, _) in eff.items():
        zu, du = _node_scores(resid, u, deg, fit.src, fit.dst)
        node_z[name] = (zu, du, deg)
    for k in range(n):
        row = {"node": k, "host": data.hosts[k], "links": int(node_z["bandwidth"][2][k])}
        for name, (zz, uu, _) in node_z.items():
            row[f"{name}_slowdown"] = None if not np.isfinite(uu[k]) else float(np.exp(uu[k]))
            row[f"{name}_z"] = None if not np.isfinite(zz[k]) else float(zz[k])
        node_rows.append(row)
    for k in sorted(suspects):
        for name, (zz, uu, _) in node_z.items():
            min_eff = _min_node_effect(options, name)
            if name in options.features and zz[k] > options.node_z and np.expm1(uu[k]) > min_eff:
                m = (fit.src == k) | (fit.dst == k)
                resid = eff[name][0][m]
                sus_nodes.append({
                    "node": int(k), "host": data.hosts[k], "feature": name,
                    "slowdown": float(np.exp(uu[k])), "z": float(zz[k]),
                    "links": int(m.sum()),
                    "links_slower": int(np.sum(np.expm1(resid) > min_eff)),
                    "evidence": (f"{name} {_node_value(fit, m, name)} over its "
                                 f"{int(m.sum())} links, {float(np.exp(uu[k])):.2f}x "
                                 f"slower than their tiers' medians; "
                                 f"{int(np.sum(np.expm1(resid) > min_eff))} of the links "
                                 f"more than {min_eff:.0%} slower; robust z = "
                                 f"{zz[k]:.1f}")})
    # links: residual after suspect nodes' effects, z within tier
    sus_links, link_z = [], {}
    for name, (resid, u, deg, centers) in eff.items():
        min_eff = (options.link_min_effect if name == "bandwidth"
                   else options.latency_min_effect)
        e = resid.copy()
        us = np.where(np.isin(np.arange(n), excl), np.nan_to_num(u), 0.0)
        e = e - us[fit.src] - us[fit.dst]
        z = np.full(e.shape, np.nan)
        for tt in np.unique(tier):
            m = (tier == tt) & np.isfinite(e)
            if not m.any():
                continue
            c = np.median(e[m])
            sc = max(_MAD * np.median(np.abs(e[m] - c)), 5e-3)
            z[m] = (e[m] - c) / sc
        link_z[name] = z
        if name not in options.features:
            continue
        # the link's own interval must lie above its tier's median (after its nodes'
        # effects): a median spoiled by a few outlying repetitions is not a slow link
        ci = fit.beta_ci if name == "bandwidth" else fit.alpha_ci
        with np.errstate(divide="ignore", invalid="ignore"):
            lo_e = np.log(ci[:, 0]) - (feats[name] - resid) - us[fit.src] - us[fit.dst]
        hit = np.flatnonzero((z > options.link_z) & (np.expm1(e) > min_eff)
                             & (lo_e > 0))
        # largest first, bounded report
        hit = hit[np.argsort(-z[hit])][:1000]
        for li in hit:
            s, d = int(fit.src[li]), int(fit.dst[li])
            val = fit.beta[li] if name == "bandwidth" else fit.alpha[li]
            typ = math.exp(centers[int(tier[li])])
            unit = ("GB/s", 1e-9 / val, 1e-9 / typ) if name == "bandwidth" else \
                ("us", val * 1e6, typ * 1e6)
            sus_links.append({
                "src": s, "dst": d, "src_host": data.hosts[s], "dst_host": data.hosts[d],
                "feature": name, "tier": int(tier[li]), "slowdown": float(np.exp(e[li])),
                "z": float(z[li]),
                "evidence": (f"{name} {unit[1]:.4g} {unit[0]} vs tier median "
                             f"{unit[2]:.4g} {unit[0]}: {math.exp(e[li]):.2f}x slower "
                             f"than its tier after its nodes' effects, robust z = "
                             f"{z[li]:.1f}")})
    # tiers
    tiers = []
    healthy = ~(np.isin(fit.src, excl) | np.isin(fit.dst, excl))
    ok_links = healthy.copy()
    for name in link_z:
        zz = link_z[name]
        ok_links &= ~(zz > options.link_z)
    for tt in range(len(levels) + 1):
        m = (tier == tt) & ok_links
        if not m.any():
            m = tier == tt
        if not m.any():
            continue
        al, al_ci = _median_ci(fit.alpha[m], options.confidence)
        be, be_ci = _median_ci(fit.beta[m], options.confidence)
        if tt < len(levels):
            comp = levels[tt]
            ids, sizes = np.unique(comp[comp >= 0], return_counts=True)
            groups = [[data.hosts[k] for k in np.flatnonzero(comp == g)] for g in ids]
            desc = (f"pairs within the same group of level {tt} "
                    f"({ids.size} groups)")
        else:
            groups = [list(data.hosts)]
            desc = "all other pairs" if tt else "all pairs"
        tiers.append({"tier": tt, "description": desc, "links": int((tier == tt).sum()),
                      "links_used": int(m.sum()), "alpha": al, "alpha_ci": al_ci,
                      "beta": be, "beta_ci": be_ci,
                      "bandwidth_Bps": None if not be else 1.0 / be,
                      "alpha_iqr": [float(np.quantile(fit.alpha[m], q)) for q in (.25, .75)],
                      "beta_iqr": [float(np.quantile(fit.beta[m], q)) for q in (.25, .75)],
                      "groups": groups,
                      "largest_group": max(len(g) for g in groups)})
    res = Analysis(data=data, fit=fit, options=options, tier=tier, levels=levels,
                   tiers=tiers, nodes=node_rows, suspect_nodes=sus_nodes,
                   suspect_links=sus_links, link_z=link_z)
    res.seconds = time.perf_counter() - t0
    return res


# -- documents --------------------------------------------------------------------------

def _utc():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tiers_document(an: Analysis) -> dict:
    """The tiers as hierarchy levels (``docs/formats.md``, "Link tiers file")."""
    sizes = an.data.sizes
    levels = []
    for t in an.tiers:
        p2p = {"alpha": t["alpha"], "beta": t["beta"], "alpha_ci": t["alpha_ci"],
               "beta_ci": t["beta_ci"],
               "segments": [{"min_bytes": 0, "max_bytes": int(sizes[-1]),
                             "alpha": t["alpha"], "beta": t["beta"],
                             "alpha_ci": t["alpha_ci"], "beta_ci": t["beta_ci"]}],
               "breakpoints": [], "ranks": [2], "bytes_range": [int(sizes[0]),
                                                               int(sizes[-1])],
               "points": int(t["links_used"]) * len(sizes), "links": int(t["links_used"])}
        levels.append({"name": f"tier{t['tier']}", "description": t["description"],
                       "ranks_per_node": 1, "nodes": t["largest_group"],
                       "groups": t["groups"], "links": t["links"], "p2p": p2p,
                       "gamma": {"value": None, "ci": None, "identifiable": False,
                                 "source": None,
                                 "reason": "a links run measures no reduction"},
                       "algorithms": {}})
    return {"schema_version": 1, "kind": TIERS_KIND, "created_utc": _utc(),
            "units": {"alpha": "s", "beta": "s/B", "gamma": "s/B", "bytes": "B"},
            "provenance": {"run": str(an.data.path),
                           "run_id": an.data.metadata.get("run_id"),
                           "tiers_by": an.options.tiers_by,
                           "confidence": an.options.confidence},
            "levels": levels}


def analysis_document(an: Analysis) -> dict:
    o = an.options
    return {"schema_version": 1, "kind": "collcost-links-analysis", "created_utc": _utc(),
            "run": str(an.data.path), "run_id": an.data.metadata.get("run_id"),
            "nodes": an.data.nodes, "links": int(an.fit.src.size),
            "sizes": an.data.sizes, "options": o.__dict__,
            "tiers": an.tiers, "suspect_nodes": an.suspect_nodes,
            "suspect_links": an.suspect_links, "node_effects": an.nodes,
            "seconds": an.seconds}


def links_csv(an: Analysis) -> str:
    import pandas as pd
    f = an.fit
    h = np.asarray(an.data.hosts, dtype=object)
    frame = pd.DataFrame({
        "src": f.src, "dst": f.dst, "src_host": h[f.src], "dst_host": h[f.dst],
        "alpha_s": f.alpha, "alpha_lo_s": f.alpha_ci[:, 0], "alpha_hi_s": f.alpha_ci[:, 1],
        "beta_s_per_B": f.beta, "beta_lo": f.beta_ci[:, 0], "beta_hi": f.beta_ci[:, 1],
        "points": f.points, "tier": an.tier,
        "z_bandwidth": an.link_z.get("bandwidth"), "z_latency": an.link_z.get("latency")})
    return frame.to_csv(index=False, float_format="%.6g")


def plot_heatmaps(an: Analysis, directory) -> list:
    """``latency.png`` (α, µs) and ``bandwidth.png`` (1/β, GB/s) matrices; per-cell
    numbers only up to 16 nodes.  Returns the paths."""
    from collectives.files import atomic_path
    from .plots import require_matplotlib
    plt = require_matplotlib()
    n = an.data.nodes
    out = []
    sus = {f: {(s["src"], s["dst"]) for s in an.suspect_links if s["feature"] == f}
           for f in ("latency", "bandwidth")}
    with np.errstate(divide="ignore", invalid="ignore"):
        bw = 1e-9 / an.matrix("beta")
    bw[~np.isfinite(bw)] = np.nan
    for name, mat, unit, cmap in (
            ("latency", an.matrix("alpha") * 1e6, "α (µs)", "viridis_r"),
            ("bandwidth", bw, "bandwidth 1/β (GB/s)", "viridis")):
        size = 6.5 if n <= 64 else 9
        fig, ax = plt.subplots(figsize=(size + 1.3, size))
        try:
            with np.errstate(all="ignore"):
                finite = mat[np.isfinite(mat)]
            vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
            im = ax.imshow(mat, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            fig.colorbar(im, ax=ax, label=unit, shrink=0.85)
            ax.set_xlabel("destination")
            ax.set_ylabel("source")
            ax.set_title(f"{name} per link ({n} endpoints)")
            if n <= 32:
                ax.set_xticks(range(n))
                ax.set_yticks(range(n))
                ax.set_xticklabels(an.data.hosts, rotation=90, fontsize=7)
                ax.set_yticklabels(an.data.hosts, fontsize=7)
            if n <= 16:
                fs = 8 if n <= 10 else 6
                for i in range(n):
                    for j in range(n):
                        if np.isfinite(mat[i, j]):
                            r, g, b_, _ = im.cmap(im.norm(mat[i, j]))
                            light = 0.299 * r + 0.587 * g + 0.114 * b_ > 0.5
                            ax.text(j, i, f"{mat[i, j]:.3g}", ha="center", va="center",
                                    fontsize=fs, color="k" if light else "w")
            if n <= 64:
                for (i, j) in sus[name]:
                    ax.add_patch(plt.Rectangle((j - .5, i - .5), 1, 1, fill=False,
                                               ec="red", lw=2))
            fig.tight_layout()
            path = Path(directory) / f"{name}.png"
            with atomic_path(path, suffix=".png") as tmp:
                # at least one pixel per link: the axes (~80% of 9 in) span >= n pixels
                fig.savefig(tmp, dpi=110 if n <= 64 else max(130, int(1.4 * n / 7.2)),
                            format="png")
            out.append(path)
        finally:
            plt.close(fig)
    return out


# -- text -------------------------------------------------------------------------------

def format_text(an: Analysis) -> str:
    lines = [f"links run {an.data.path}: {an.data.nodes} endpoints, "
             f"{an.fit.src.size} directed links, sizes {an.data.sizes[0]}.."
             f"{an.data.sizes[-1]} B ({an.seconds:.1f} s)"]
    lines.append(f"{'tier':<5} {'links':>8} {'alpha us':>10} {'alpha 95% CI':>20} "
                 f"{'GB/s':>8} {'GB/s 95% CI':>18} groups")
    for t in an.tiers:
        ci = t["alpha_ci"]
        bci = t["beta_ci"]
        f = lambda v, k: "-" if v is None else f"{v * k:.3g}"  # noqa: E731
        a_ci = f"[{f(ci[0], 1e6)}, {f(ci[1], 1e6)}]"
        bw_ci = (f"[{f(1 / bci[1] if bci[1] else None, 1e-9)}, "
                 f"{f(1 / bci[0] if bci[0] else None, 1e-9)}]")
        lines.append(f"{t['tier']:<5} {t['links']:>8} {f(t['alpha'], 1e6):>10} "
                     f"{a_ci:>20} {f(t['bandwidth_Bps'], 1e-9):>8} {bw_ci:>18} "
                     f"{len(t['groups'])}")
    if not an.suspect_nodes and not an.suspect_links:
        lines.append("no suspect node or link")
    for s in an.suspect_nodes:
        lines.append(f"SUSPECT NODE {s['host']} (#{s['node']}): {s['evidence']}")
    for s in an.suspect_links[:50]:
        lines.append(f"SUSPECT LINK {s['src_host']} -> {s['dst_host']} "
                     f"(#{s['src']} -> #{s['dst']}): {s['evidence']}")
    if len(an.suspect_links) > 50:
        lines.append(f"... and {len(an.suspect_links) - 50} more suspect links")
    return "\n".join(lines)


def _parse_fail_on(text):
    """``suspects`` | ``nodes`` | ``links`` | ``slowdown:X``, comma-separated."""
    rules = []
    for part in (p.strip() for p in text.split(",")):
        if part in ("suspects", "nodes", "links"):
            rules.append((part, None))
        elif part.startswith("slowdown:"):
            try:
                x = float(part.split(":", 1)[1])
            except ValueError:
                x = math.nan
            if not x > 1 or not math.isfinite(x):
                raise UsageError(f"--fail-on {part}: slowdown must be a number > 1")
            rules.append(("slowdown", x))
        else:
            raise UsageError(f"--fail-on {part!r}: expected suspects, nodes, links or "
                             "slowdown:X")
    return rules


def failures(an: Analysis, rules) -> list:
    """Sentences for each ``--fail-on`` rule that the analysis triggers."""
    out = []
    for kind, x in rules:
        if kind in ("suspects", "nodes") and an.suspect_nodes:
            out.append(f"{len(an.suspect_nodes)} suspect node(s)")
        if kind in ("suspects", "links") and an.suspect_links:
            out.append(f"{len(an.suspect_links)} suspect link(s)")
        if kind == "slowdown":
            worst = [s for s in an.suspect_nodes + an.suspect_links if s["slowdown"] >= x]
            if worst:
                out.append(f"{len(worst)} suspect(s) at least {x:g}x slower")
    return out


#: Directory the analysis is written to inside the run when --out is not given.
DEFAULT_OUT = "analysis"


PROG = "python -m fits.links"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Analyse a links run (python -m collectives.links): α, β per link "
                    "with intervals, latency and bandwidth heatmaps, suspect nodes and "
                    "links, topology tiers.  Exit status: 0 ok, 1 when --fail-on "
                    "triggers, 2 bad input (nothing written).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", help="links run directory")
    p.add_argument("--out", help="write links.json (analysis), tiers.json (levels), "
                   "links.csv (every link) and latency.png / bandwidth.png into this "
                   f"directory (default: RUN/{DEFAULT_OUT}, next to the measurements, "
                   "as python -m fits writes RUN/constants.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out directory")
    p.add_argument("--no-write", action="store_true",
                   help="write no files, only print the analysis (e.g. a repeated "
                        "--fail-on health check of one run)")
    p.add_argument("--fail-on", default=None,
                   help="exit 1 when: suspects (any suspect), nodes, links, or "
                        "slowdown:X (a suspect at least X times slower); comma-separated")
    p.add_argument("--tiers-by", choices=("beta", "alpha"), default="beta",
                   help="cluster pairs on log β (bandwidth) or log α (latency)")
    p.add_argument("--max-tiers", type=int, default=4,
                   help="most mixture components tried when clustering")
    p.add_argument("--min-tier-gap", type=float, default=0.10,
                   help="tiers whose costs differ by less than this fraction are merged")
    p.add_argument("--node-z", type=float, default=5.0,
                   help="robust z-score a node's effect must pass to be suspect")
    p.add_argument("--node-min-effect", type=float, default=0.15,
                   help="...and the fraction by which its bandwidth cost must exceed "
                        "its tier's")
    p.add_argument("--link-z", type=float, default=6.0,
                   help="robust z-score a link's residual must pass to be suspect")
    p.add_argument("--link-min-effect", type=float, default=0.25,
                   help="...and the fraction by which its bandwidth cost must exceed "
                        "its tier's")
    p.add_argument("--latency-min-effect", type=float, default=0.5,
                   help="fraction by which a node's or link's α must exceed its tier's "
                        "(latency suspects)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="level of every interval")
    p.add_argument("--no-plots", action="store_true", help="do not draw the heatmaps")
    p.add_argument("--features", default="bandwidth,latency",
                   help="what can make a suspect: bandwidth, latency or both (comma-"
                        "separated); on a shared, busy machine α is scheduler noise")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the clustering subsample (0 .. 2^63-1)")
    return p


def _error(msg, prog: str = PROG) -> int:
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def write_outputs(an: Analysis, out: Path, *, overwrite: bool, plots: bool) -> None:
    """Write every output into a temporary sibling directory, then move it to ``out``
    (an interrupted run leaves ``out`` as it was)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        atomic_write_json(tmp / "links.json", analysis_document(an))
        atomic_write_json(tmp / "tiers.json", tiers_document(an))
        from collectives.files import atomic_write_text
        atomic_write_text(tmp / "links.csv", links_csv(an))
        if plots:
            plot_heatmaps(an, tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if out.exists():
            if not overwrite:
                raise UsageError(f"--out {out}: exists")
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def _features(text) -> tuple:
    names = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    bad = [p for p in names if p not in ("bandwidth", "latency")]
    if bad or not names:
        raise UsageError(f"--features {text!r}: expected bandwidth, latency or "
                         "bandwidth,latency")
    return names


def options_from(args) -> Options:
    for name in ("min_tier_gap", "node_min_effect", "link_min_effect",
                 "latency_min_effect"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v >= 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a number >= 0, got {v}")
    for name in ("node_z", "link_z"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a number > 0, got {v}")
    if not 1 <= args.max_tiers <= 8:
        raise UsageError(f"--max-tiers must be in 1..8, got {args.max_tiers}")
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must be between 0 and 1, got {args.confidence}")
    return Options(tiers_by=args.tiers_by, max_tiers=args.max_tiers,
                   min_tier_gap=args.min_tier_gap, node_z=args.node_z,
                   node_min_effect=args.node_min_effect, link_z=args.link_z,
                   link_min_effect=args.link_min_effect,
                   latency_min_effect=args.latency_min_effect,
                   confidence=args.confidence, seed=args.seed,
                   features=_features(args.features))


def main(argv=None, prog: str = PROG) -> int:
    from collectives.parsing import bounded_int, reject_empty_arguments
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # an empty RUN, --out or --fail-on is refused, never taken as "here" or "off"
        reject_empty_arguments(argv)
    except UsageError as exc:
        return _error(exc, prog)
    args = build_parser(prog).parse_args(argv)
    try:  # numpy refuses negative seeds and seeds past 2^63 with a traceback
        bounded_int(args.seed, "--seed", 0, 2**63 - 1)
    except UsageError as exc:
        return _error(exc, prog)

    def say(msg):
        print(f"[fits.links] {msg}", file=sys.stderr, flush=True)

    try:
        options = options_from(args)
        rules = _parse_fail_on(args.fail_on) if args.fail_on else []
        run = check_input(args.run, option="RUN", directory=True)
        out = None
        if args.no_write and args.out is not None:
            raise UsageError("--no-write and --out exclude each other")
        if args.out is not None:
            out = check_output(args.out, inputs=[run], option="--out", directory=True,
                               overwrite=args.overwrite, parents=True)
        elif not args.no_write:  # next to the measurements, as python -m fits does
            try:
                out = check_output(run / DEFAULT_OUT, inputs=[run], directory=True,
                                   option=f"--out (default RUN/{DEFAULT_OUT})",
                                   overwrite=args.overwrite, inside_ok=True)
            except UsageError as exc:
                why = "an earlier analysis? --overwrite replaces it, " \
                    if "not empty" in str(exc) else ""
                raise UsageError(f"{exc} ({why}--out DIR writes elsewhere, --no-write "
                                 "writes nothing)") from None
        if out is not None and not args.no_plots:
            from .plots import require_matplotlib
            try:
                require_matplotlib()
            except RuntimeError as exc:
                raise UsageError(f"--out: {exc} (or pass --no-plots)") from None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = read_links_run(run, progress=say)
        for w in caught:
            say(f"warning: {w.message}")
        if len(data.sizes) < 2:
            raise UsageError(f"RUN {args.run}: α and β need >= 2 message sizes, the run "
                             f"has {len(data.sizes)}")
    except (UsageError, LinksFormatError) as exc:
        return _error(exc, prog)
    say(f"read {data.median.size} points of {data.nodes} endpoints")
    an = analyze(data, options, progress=say)
    if out is not None:
        write_outputs(an, out, overwrite=args.overwrite, plots=not args.no_plots)
        say(f"wrote {out}/ (links.json, tiers.json, links.csv"
            f"{'' if args.no_plots else ', latency.png, bandwidth.png'})")
    fails = failures(an, rules)
    try:
        print(format_text(an))
        if fails:
            print(f"FAIL (--fail-on {args.fail_on}): " + "; ".join(fails), flush=True)
        sys.stdout.flush()
    except BrokenPipeError:  # piped into head: the exit status still tells the verdict
        from collectives.files import drop_stdout
        drop_stdout()
    return EXIT_FAIL if fails else 0


if __name__ == "__main__":
    sys.exit(main())
