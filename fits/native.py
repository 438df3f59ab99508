"""The MPI library's own collectives, explained by registry algorithms so they extrapolate.

A library picks its algorithm by message size and rank count, and has no formula of its
own.  Per size segment, this module asks which registry algorithm's *shape in p* (its
α, β, γ coefficients, :mod:`collectives.costs`) best explains the library's times across
the measured rank counts, when priced with the topology's joint constants
(:mod:`fits.joint`, network and kernel only) plus one **per-call cost** of the library::

    T_native(p, n) = T_A(p, n; α, β, γ of the topology) + call_s     (A chosen per segment)

For each contiguous range of measured sizes and each candidate ``A`` the per-call cost
is fitted in closed form (relative error, ≥ 0) and the fit scored on capped log ratios
(:func:`_call_cost`: robust to single wild points); segments (up to
:data:`MAX_SEGMENTS`) are found by dynamic programming over the sizes and their number by
BIC, as in :mod:`fits.segments`.  Within each segment the candidates' BIC weights
``w_A ∝ exp(-BIC_A / 2)`` are the evidence (all candidates have the same number of free
constants, so the weights compare their fits directly).  The identified model predicts
the native collective at any rank count (:func:`predict`); ``leave_one_rank_out`` redoes
the identification without each measured rank count and predicts it.

BIC weights only compare the candidates with each other: the best of bad shapes still
gets a weight near 1.  So the result also carries an absolute verdict, ``status``
(``identified`` | ``not_identified``) with a ``reason``: it is ``not_identified`` when

* only one rank count was measured (``reason`` starts "one rank count"): every shape in
  p fits one rank count, so nothing says how the library scales;
* a segment's median relative residual (the chosen model against the points it
  explains) exceeds :data:`MAX_RESIDUAL` (25%); or
* the median over the left-out rank counts of their median relative error
  (``leave_one_rank_out``) exceeds :data:`MAX_HELD_OUT` (50%): the model does not
  predict rank counts it did not see.

Readers (:func:`fits.constants.predict_native`, :func:`fits.constants.price`) use only
``identified`` models to extrapolate; a ``not_identified`` native collective is priced
at its measured rank counts from its per-rank-count fit and refused elsewhere.

Ground truth for the identification: MPICH's ``MPIR_CVAR_<COLL>_INTRA_ALGORITHM``
variables with ``MPIR_CVAR_DEVICE_COLLECTIVES=none`` force a known algorithm
(:data:`MPICH_ALGORITHMS` maps their names to the registry's).
"""
from __future__ import annotations

import numpy as np

from collectives import costs

from . import joint as joint_fit
from . import segments

__all__ = ["MAX_SEGMENTS", "MIN_SIZES", "MAX_RESIDUAL", "MAX_HELD_OUT", "adequacy", "MPICH_ALGORITHMS", "candidates", "identify",
           "predict", "held_out", "forced_algorithms", "names_algorithm"]

#: Most size segments (algorithm switches) searched.
MAX_SEGMENTS = 3
#: Fewest distinct sizes in one segment.
MIN_SIZES = 2
#: Misfits beyond this factor count as this factor (:func:`_call_cost`).
OUTLIER_FACTOR = 2.0
CAP = float(np.log(OUTLIER_FACTOR))
#: Most rank counts left out one at a time (spread over the measured ones, the largest
#: included).
MAX_LEAVE_OUT = 8
#: Largest median relative residual of a segment's chosen model that still counts as
#: explaining the library's times (absolute check beside the BIC weights).
MAX_RESIDUAL = 0.25
#: Largest median (over the left-out rank counts) of the leave-one-rank-out median
#: relative error that still counts as predicting unmeasured rank counts.
MAX_HELD_OUT = 0.50
#: Free constants per segment charged in the BIC: the per-call cost and the choice.
SEGMENT_PARAMETERS = 2
#: MPICH algorithm names (``MPIR_CVAR_<COLL>_INTRA_ALGORITHM`` values) -> registry name.
MPICH_ALGORITHMS = {
    "allreduce": {"ring": "ring", "recursive_doubling": "recursive_doubling",
                  "reduce_scatter_allgather": "rabenseifner"},
    "bcast": {"binomial": "binomial", "scatter_ring_allgather": "scatter_allgather"},
    "reduce_scatter": {"recursive_halving": "recursive_halving", "pairwise": "pairwise"},
    "allgather": {"ring": "ring", "recursive_doubling": "recursive_doubling"},
}


def forced_algorithms(env: dict, metadata: dict | None = None) -> dict:
    """``{collective: registry algorithm}`` the library was forced to use.

    From ``metadata["native_algorithms"]`` when the run recorded it (the sweep's
    ``--native-algorithm``), else from MPICH variables in ``env`` (a run's
    ``metadata["env"]``; they act only with device collectives off).
    """
    pinned = (metadata or {}).get("native_algorithms")
    if pinned:
        return dict(pinned)
    env = env or {}
    if str(env.get("MPIR_CVAR_DEVICE_COLLECTIVES", "")).lower() != "none":
        return {}
    out = {}
    for collective, names in MPICH_ALGORITHMS.items():
        value = env.get(f"MPIR_CVAR_{collective.upper()}_INTRA_ALGORITHM")
        if value in names:
            out[collective] = names[value]
    return out


def names_algorithm(model: dict, algorithm: str) -> bool:
    """Whether an identified ``model`` names ``algorithm`` in every size segment (itself
    or as an equivalent of the chosen shape)."""
    segs = (model or {}).get("segments") or []
    return bool(segs) and all(algorithm == s["algorithm"]
                              or algorithm in s.get("equivalent", []) for s in segs)


def candidates(collective: str) -> tuple:
    """Registry algorithms of ``collective`` (the shapes tried)."""
    return costs.algorithms(collective, native=False)


def _call_cost(f, t, w):
    """Per-call cost ``o`` ≥ 0 and the robust misfit of ``f + o`` against ``t``.

    ``o`` minimises Σ w ((f + o - t) / t)² over the points the model explains within a
    factor :data:`OUTLIER_FACTOR` (a second pass without the others); the misfit is
    Σ w min(ln((f + o) / t)², ln(OUTLIER_FACTOR)²): symmetric in over- and
    under-prediction and capped, so that one small-size point timed 50x off on a busy
    machine cannot outvote the sizes that carry the algorithm's shape.
    """
    def fit_o(sel):
        q = w[sel] / (t[sel] * t[sel])
        return max(0.0, float(np.sum(q * (t[sel] - f[sel])) / np.sum(q))) \
            if q.sum() > 0 else 0.0

    o = fit_o(np.ones(t.shape, bool))
    inliers = np.abs(np.log((f + o) / t)) < CAP
    if inliers.any() and not inliers.all():
        o = fit_o(inliers)
    r = np.minimum(np.log((f + o) / t) ** 2, CAP * CAP)
    return o, float(np.sum(w * r))


def _bic(rss, m, k):
    return m * np.log(max(rss / m, segments.RESIDUAL_FLOOR ** 2)) + k * np.log(m)


def _base(joint, collective, names, ranks, nbytes):
    """(A × m) network-and-kernel times of every candidate (no software cost)."""
    return np.vstack([joint_fit.predict(joint, collective, a, ranks, nbytes,
                                        implementation=None) for a in names])


def _groups(names, F):
    """Merge candidates that predict the same times at these points (same shape at the
    measured rank counts, e.g. ring and pairwise reduce-scatter): ``(names, F, aliases)``."""
    keep, aliases = [], {}
    for k, name in enumerate(names):
        for j in keep:
            if np.allclose(F[k], F[j], rtol=1e-9, atol=0):
                aliases[names[j]].append(name)
                break
        else:
            keep.append(k)
            aliases[name] = []
    return [names[k] for k in keep], F[keep], aliases


def _alike(collective, names) -> bool:
    """Whether algorithms have the same registry coefficients at p = 2..1024."""
    p = np.arange(2, 1025)
    ref = np.vstack(costs.coefficients(collective, names[0], p))
    return all(np.allclose(np.vstack(costs.coefficients(collective, n, p)), ref)
               for n in names[1:])


def _identify_arrays(joint, collective, ranks, nbytes, t, w=None, max_segments=None):
    names, F, aliases = _groups(list(candidates(collective)),
                                _base(joint, collective, candidates(collective), ranks,
                                      nbytes))
    w = np.ones_like(t) if w is None else w
    sizes, inverse = np.unique(nbytes, return_inverse=True)
    S = sizes.size
    top = max(1, min(max_segments or MAX_SEGMENTS, S // MIN_SIZES))
    # cost[i, j]: best candidate's RSS over sizes [i, j)
    cost = np.full((S + 1, S + 1), np.inf)
    for i in range(S):
        for j in range(i + MIN_SIZES if top > 1 else S, S + 1):
            rows = (inverse >= i) & (inverse < j)
            cost[i, j] = min(_call_cost(F[k, rows], t[rows], w[rows])[1]
                             for k in range(len(names)))
    best = np.full((top + 1, S + 1), np.inf)
    arg = np.zeros((top + 1, S + 1), dtype=int)
    best[0, 0] = 0.0
    for s in range(1, top + 1):
        for j in range(1, S + 1):
            cand = best[s - 1, :j] + cost[:j, j]
            i = int(np.argmin(cand))
            best[s, j], arg[s, j] = cand[i], i
    m = float(w.sum())
    bic, cuts_by = {}, {}
    for s in range(1, top + 1):
        if not np.isfinite(best[s, S]):
            continue
        cuts, j = [S], S
        for ss in range(s, 0, -1):
            j = arg[ss, j]
            cuts.append(j)
        cuts_by[s] = cuts[::-1]
        bic[s] = _bic(best[s, S], m, s * SEGMENT_PARAMETERS
                      + segments.BREAKPOINT_PARAMETERS * (s - 1))
    chosen = min(bic, key=bic.get)
    cuts = cuts_by[chosen]
    segs = []
    for a, b in zip(cuts, cuts[1:]):
        rows = (inverse >= a) & (inverse < b)
        mm = float(w[rows].sum())
        fits = {name: _call_cost(F[k, rows], t[rows], w[rows])
                for k, name in enumerate(names)}
        bics = {name: float(_bic(rss, mm, SEGMENT_PARAMETERS))
                for name, (_, rss) in fits.items()}
        low = min(bics.values())
        raw = {name: np.exp(-(v - low) / 2) for name, v in bics.items()}
        total = sum(raw.values())
        chosen_alg = min(bics, key=bics.get)
        k = names.index(chosen_alg)
        pred = F[k, rows] + fits[chosen_alg][0]
        rel = np.abs(pred - t[rows]) / t[rows]
        alike = _alike(collective, [chosen_alg] + aliases[chosen_alg])
        segs.append({"min_bytes": int(sizes[a]), "max_bytes": int(sizes[b - 1]),
                     "algorithm": chosen_alg, "equivalent": aliases[chosen_alg],
                     "extrapolates_alike": alike,
                     "note": "" if alike else
                     (f"{', '.join(aliases[chosen_alg])} fit(s) these rank counts "
                      f"equally well but scale differently: predictions at other rank "
                      f"counts use {chosen_alg}; measure more rank counts to decide"),
                     "weight": float(raw[chosen_alg] / total),
                     "call_s": fits[chosen_alg][0],
                     "weights": {n_: float(v / total) for n_, v in raw.items()},
                     "bic": bics,
                     "call_s_by_algorithm": {n_: f[0] for n_, f in fits.items()},
                     "median_rel": float(np.median(rel)), "points": int(rows.sum())})
    return {"segments": segs, "breakpoints": [int(sizes[c]) for c in cuts[1:-1]],
            "bic_by_segments": {str(s): float(v) for s, v in bic.items()}}


def predict(model: dict, joint: dict, collective, ranks, nbytes, *, average=True):
    """Native collective times (s) from an identified ``model`` and the joint constants.

    ``average``: each segment's prediction is the BIC-weight average of its candidates'
    (each with its own per-call cost) -- Bayesian model averaging: where the measured
    rank counts cannot tell two shapes apart (recursive doubling and Rabenseifner
    all-reduce at p = 2, 3) the prediction at another p falls between them instead of
    betting on one.  ``average=False``: the chosen algorithm only.
    """
    ranks = np.asarray(ranks)
    n = np.asarray(nbytes, dtype=float)
    ranks, n = np.broadcast_arrays(ranks, n)
    seg = segments.assign(n, model["breakpoints"])
    out = np.empty(n.shape)
    for i, s in enumerate(model["segments"]):
        sel = seg == i
        if not sel.any():
            continue
        weights = s.get("weights") if average else None
        if not weights:
            weights = {s["algorithm"]: 1.0}
        costs_by = s.get("call_s_by_algorithm") or {}
        total = np.zeros(int(sel.sum()))
        for alg, w in weights.items():
            if w < 1e-6:
                continue
            total += w * joint_fit.predict(joint, collective, alg, ranks[sel], n[sel],
                                           implementation=None,
                                           call_cost=costs_by.get(alg, s["call_s"]))
        out[sel] = total / sum(w for w in weights.values() if w >= 1e-6)
    return out


def _errors(pred, t, n):
    rel = np.abs(pred - t) / t
    big = n >= joint_fit.LARGE_BYTES
    return {"median_rel": float(np.median(rel)), "max_rel": float(np.max(rel)),
            "median_rel_large": float(np.median(rel[big])) if big.any() else None,
            "points_large": int(big.sum())}


def adequacy(result: dict) -> tuple:
    """``(status, reason)`` of an identification result (the module's absolute checks:
    one rank count, :data:`MAX_RESIDUAL`, :data:`MAX_HELD_OUT`)."""
    ranks = result.get("ranks") or []
    if len(ranks) < 2:
        where = f"p={ranks[0]}" if ranks else "no rank count"
        return ("not_identified",
                f"one rank count ({where}): the algorithm's shape in p cannot be "
                f"identified; priced only at {where} from the per-rank-count fit")
    bad = [s for s in result.get("segments", []) if s["median_rel"] > MAX_RESIDUAL]
    if bad:
        return ("not_identified", "no registry algorithm explains the times: median "
                "residual " + ", ".join(
                    f"{s['median_rel']:.0%} ({s['algorithm']}, {s['min_bytes']}-"
                    f"{s['max_bytes']} B)" for s in bad)
                + f" > {MAX_RESIDUAL:.0%}")
    loro = result.get("leave_one_rank_out") or {}
    errs = [v["median_rel"] for v in loro.values()]
    if errs and float(np.median(errs)) > MAX_HELD_OUT:
        return ("not_identified", "the model does not predict left-out rank counts: "
                "median errors " + ", ".join(f"p={p} {v['median_rel']:.0%}"
                                             for p, v in loro.items())
                + f" (median {float(np.median(errs)):.0%} > {MAX_HELD_OUT:.0%})")
    return "identified", ""


def identify(joint: dict, collective: str, ranks, nbytes, times, *, weights=None,
             max_segments=None, leave_one_out=True) -> dict:
    """Identify the registry algorithm(s) behind a native collective's points.

    Returns ``{"model", "segments", "breakpoints", "ranks", "errors",
    "leave_one_rank_out", "status", "reason"}`` (``docs/formats.md``); ``status`` is
    the absolute verdict of :func:`adequacy` (the segments stay as evidence either way).
    """
    ranks = np.asarray(ranks)
    n = np.asarray(nbytes, dtype=float)
    t = np.asarray(times, dtype=float)
    if np.unique(n).size < 2:
        raise ValueError(f"native {collective}: one size only; cannot identify")
    out = _identify_arrays(joint, collective, ranks, n, t, weights, max_segments)
    pred = predict(out, joint, collective, ranks, n)
    out.update({"model": "registry algorithm per size segment, topology joint constants "
                         "(network and kernel) plus the library's per-call cost",
                "ranks": sorted(int(p) for p in np.unique(ranks)),
                "errors": _errors(pred, t, n)})
    loro = {}
    distinct = np.unique(ranks)
    if distinct.size > MAX_LEAVE_OUT:  # bounded work at thousands of rank counts
        distinct = distinct[np.unique(np.linspace(0, distinct.size - 1,
                                                  MAX_LEAVE_OUT).round().astype(int))]
    if leave_one_out and np.unique(ranks).size > 1:
        for p in distinct:
            held = ranks == p
            if np.unique(n[~held]).size < 2:
                continue
            sub = _identify_arrays(joint, collective, ranks[~held], n[~held], t[~held],
                                   None if weights is None else weights[~held],
                                   max_segments)
            e = _errors(predict(sub, joint, collective, ranks[held], n[held]), t[held],
                        n[held])
            loro[str(int(p))] = {"median_rel": e["median_rel"],
                                 "median_rel_large": e["median_rel_large"],
                                 "algorithms": [s["algorithm"] for s in sub["segments"]]}
    out["leave_one_rank_out"] = loro
    out["status"], out["reason"] = adequacy(out)
    return out


def held_out(joint: dict, collective: str, ranks, nbytes, times, fit_ranks,
             test_ranks, weights=None) -> dict:
    """Identify on ``fit_ranks``, predict ``test_ranks``: the extrapolation check."""
    ranks = np.asarray(ranks)
    n = np.asarray(nbytes, dtype=float)
    t = np.asarray(times, dtype=float)
    fit = np.isin(ranks, list(fit_ranks))
    test = np.isin(ranks, list(test_ranks))
    model = _identify_arrays(joint, collective, ranks[fit], n[fit], t[fit],
                             None if weights is None else np.asarray(weights)[fit])
    pred = predict(model, joint, collective, ranks[test], n[test])
    return {"model": model, "errors": _errors(pred, t[test], n[test]),
            "predicted": pred, "measured": t[test], "ranks": ranks[test],
            "bytes": n[test]}
