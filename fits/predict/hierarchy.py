"""Collective times from a constants file, flat or hierarchical (two-level all-reduce).

Every time here is composed from :func:`collectives.costs.predict` (registry formulas)
or, for the MPI library's native collectives stored as ``"model": "hockney-per-p"``, from
the per-rank-count Hockney constants of the constants file (``docs/formats.md``).  No
algorithm formula is restated.

One *level* is one topology entry of a constants file (``constants["topologies"]
["intra"]`` or ``["inter"]``).  Constants for one (collective, algorithm) on a level are
looked up in this order:

1. ``level["algorithms"][collective][algorithm]`` -- the fitted constants; with
   ``segments`` the segment that covers the size (``fits.segments.assign`` on the
   entry's ``breakpoints``); a ``gamma`` of ``null`` means γ was not identifiable and
   its term is already absorbed into the fitted β (the γ regressor of every registry
   all-reduce and reduce-scatter is proportional to the β one), so it counts as 0;
2. otherwise the level's point-to-point constants ``level["p2p"]`` (top-level α, β) with
   ``level["gamma"]["value"]`` (0 when absent) in the registry formula.

Hierarchical all-reduce (``cost-models.md``, "Hierarchical all-reduce"), for ``N`` nodes
of ``q`` ranks each and ``n`` bytes::

    T = RS_intra(q, n) + AR_inter(N, n/q; β × q) + AG_intra(q, n)

the ``q`` inter-node all-reduces run at once and share the node's NIC, so each sees
``q`` times the per-byte cost.  With one node the all-reduce is the flat intra-node one
on ``q`` ranks; with one rank per node it is the flat inter-node one on ``N`` ranks.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from collectives import costs

from ..segments import assign

__all__ = ["STAGES", "level", "fitted_algorithms", "level_constants", "collective_time",
           "fastest", "predict_allreduce", "allreduce_breakdown"]

#: Stages of the two-level all-reduce, in execution order: (stage, level, collective).
STAGES = (("intra_allreduce", "intra", "allreduce"),
          ("intra_reduce_scatter", "intra", "reduce_scatter"),
          ("inter_allreduce", "inter", "allreduce"),
          ("intra_allgather", "intra", "allgather"))


def level(constants: Mapping, topology: str) -> Mapping:
    """The ``topologies[topology]`` entry of a constants dict, with a clear error."""
    if not isinstance(constants, Mapping) or "topologies" not in constants:
        raise ValueError("constants must be a constants-file dict with a 'topologies' key")
    try:
        return constants["topologies"][topology]
    except KeyError:
        have = ", ".join(constants["topologies"]) or "none"
        raise ValueError(f"the constants have no {topology!r} topology (have: {have}); "
                         f"cannot predict a collective that spans it") from None


def fitted_algorithms(lvl: Mapping, collective: str) -> tuple:
    """Names of the algorithms fitted for ``collective`` on one level (may be empty)."""
    costs.size_convention(collective)
    return tuple(lvl.get("algorithms", {}).get(collective, {}))


def _segment_constants(entry: Mapping, nbytes: np.ndarray):
    """Arrays (alpha, beta, gamma) of the segment covering each size of ``entry``."""
    gamma_top = entry.get("gamma")
    segments = entry.get("segments") or []
    if nbytes is not None and len(segments) > 1:
        idx = assign(nbytes, entry.get("breakpoints") or
                     [s["min_bytes"] for s in segments[1:]])
        idx = np.clip(idx, 0, len(segments) - 1)

        def pick(key, default):
            vals = [s.get(key, default) for s in segments]
            vals = [0.0 if v is None else float(v) for v in vals]
            return np.asarray(vals)[idx]

        return pick("alpha", None), pick("beta", None), pick("gamma", gamma_top)
    g = 0.0 if gamma_top is None else float(gamma_top)
    return float(entry["alpha"]), float(entry["beta"]), g


def level_constants(lvl: Mapping, collective: str, algorithm: str, nbytes=None):
    """``(alpha, beta, gamma)`` used for one registry algorithm on one level.

    The fitted entry when there is one (the segment covering each of ``nbytes``; the
    top-level constants, i.e. those of the largest sizes, when ``nbytes`` is None),
    otherwise the level's point-to-point α, β and its γ.  A ``null`` fitted γ counts as
    0 (absorbed into β).  Native algorithms have no registry constants: ValueError.
    """
    costs.cost_model(collective, algorithm)
    entry = lvl.get("algorithms", {}).get(collective, {}).get(algorithm)
    if entry is None:
        return _fallback_constants(lvl)
    if entry.get("model") == "hockney-per-p":
        raise ValueError(f"{collective}/{algorithm} is stored per rank count "
                         f"(hockney-per-p) and has no registry constants")
    return _segment_constants(entry, None if nbytes is None
                              else np.asarray(nbytes, dtype=float))


def _fallback_constants(lvl: Mapping):
    """(alpha, beta, gamma) from the level's point-to-point fit and its γ."""
    p2p = lvl.get("p2p")
    if not p2p:
        raise ValueError("the level has neither a fitted entry for this algorithm nor "
                         "point-to-point ('p2p') constants to predict it from")
    gamma = (lvl.get("gamma") or {}).get("value")
    return float(p2p["alpha"]), float(p2p["beta"]), 0.0 if gamma is None else float(gamma)


def _native_time(entry: Mapping, collective: str, p: np.ndarray, nbytes: np.ndarray,
                 share: np.ndarray, *, strict: bool) -> np.ndarray:
    """Seconds of a native (hockney-per-p) entry at each p; NaN where not fitted."""
    per = entry.get("per_ranks") or {}
    out = np.full(p.shape, np.nan)
    for i, (pi, ni, si) in enumerate(zip(p.ravel(), nbytes.ravel(), share.ravel())):
        if pi == 1:
            out.flat[i] = 0.0
            continue
        c = per.get(str(int(pi)))
        if c is None:
            if strict:
                raise ValueError(f"the native {collective} was fitted at rank counts "
                                 f"{', '.join(sorted(per, key=int)) or 'none'}, not at "
                                 f"p={int(pi)}; it has no formula to extrapolate with")
            continue
        # Hockney at this rank count (its segment for this size): the registry's
        # point-to-point model.
        a, b, _ = _segment_constants(c, np.asarray(ni))
        out.flat[i] = costs.predict("pingpong", "native", 1, ni, a, b * si)
    return out


def collective_time(lvl: Mapping, collective: str, algorithm: str, p, nbytes, *,
                    share=1, strict: bool = True) -> np.ndarray:
    """Modelled seconds of one collective on one level (vectorized over p, nbytes).

    ``share`` is the number of concurrent flows sharing each link: the β term is
    multiplied by it.  ``p == 1`` costs 0.  For a native algorithm without constants at
    some ``p`` the result is an error with ``strict`` or NaN without.

    Examples
    --------
    >>> lvl = {"p2p": {"alpha": 1e-6, "beta": 1e-9}, "gamma": {"value": 0.0}}
    >>> float(collective_time(lvl, "allreduce", "ring", 4, 4000))  # 6α + 1.5·4000·β
    1.2e-05
    """
    p, n, share = np.broadcast_arrays(np.asarray(p, dtype=float),
                                      np.asarray(nbytes, dtype=float),
                                      np.asarray(share, dtype=float))
    if np.any(n < 0):
        raise ValueError(f"nbytes must be >= 0, got {n.min()}")
    entry = lvl.get("algorithms", {}).get(collective, {}).get(algorithm)
    if entry is not None and entry.get("model") == "hockney-per-p":
        return _native_time(entry, collective, p, n, share, strict=strict)
    if algorithm == costs.NATIVE:
        if strict:
            raise ValueError(f"no fitted native {collective} on this level: the native "
                             f"algorithm has no registry formula")
        return np.full(p.shape, np.nan)
    alpha, beta, gamma = level_constants(lvl, collective, algorithm, n)
    t = costs.predict(collective, algorithm, p, n, alpha, np.multiply(beta, share), gamma)
    return np.where(p == 1, 0.0, t)


def fastest(lvl: Mapping, collective: str, p, nbytes, *, share=1):
    """``(seconds, algorithm names)`` of the fastest candidate at each (p, nbytes).

    Candidates are the algorithms fitted on the level for ``collective``; when none of
    them has a registry formula (nothing fitted, or only the native one, which covers
    only its fitted rank counts), also every registry algorithm with the level's
    point-to-point constants.
    """
    names = fitted_algorithms(lvl, collective)
    if all(a == costs.NATIVE for a in names) and lvl.get("p2p"):
        names += costs.algorithms(collective, native=False)
    if not names:
        raise ValueError(f"no fitted {collective} algorithm and no point-to-point ('p2p') "
                         f"constants on this level to predict it from")
    times = np.stack([np.broadcast_to(collective_time(lvl, collective, a, p, nbytes,
                                                      share=share, strict=False),
                                      np.broadcast(np.asarray(p), np.asarray(nbytes)).shape)
                      for a in names])
    if np.all(np.isnan(times), axis=0).any():
        raise ValueError(f"no fitted {collective} algorithm covers some requested rank "
                         f"count (fitted: {', '.join(names)})")
    best = np.nanargmin(times, axis=0)
    t = np.take_along_axis(times, best[None], axis=0)[0]
    return t, np.asarray(names, dtype=object)[best]


def _stage_algorithm(algorithm, collective: str):
    """The algorithm a stage uses: None (fastest) or a registry name."""
    if algorithm is None:
        return None
    if isinstance(algorithm, Mapping):
        unknown = set(algorithm) - {c for _, _, c in STAGES}
        if unknown:
            raise ValueError(f"algorithm mapping has unknown collectives "
                             f"{sorted(unknown)}; expected allreduce, reduce_scatter, "
                             f"allgather")
        return algorithm.get(collective)
    if not isinstance(algorithm, str):
        raise ValueError(f"algorithm must be None, a name or a mapping, got {algorithm!r}")
    if collective == "allreduce":
        if algorithm not in costs.algorithms("allreduce"):
            raise ValueError(f"unknown allreduce algorithm {algorithm!r}; expected one of "
                             f"{', '.join(costs.algorithms('allreduce'))}")
        return algorithm
    return algorithm if algorithm in costs.algorithms(collective) else None


def _stage_time(lvl, collective, algorithm, p, n, share=1, *, pricing="fitted",
                constants=None, name=None):
    if pricing != "fitted":
        from . import pricing as pricing_mod
        return pricing_mod.stage_time(constants, name, collective, algorithm, p, n,
                                      share=share, pricing=pricing)
    if algorithm is None:
        return fastest(lvl, collective, p, n, share=share)
    t = collective_time(lvl, collective, algorithm, p, n, share=share)
    return t, np.full(np.shape(t), algorithm, dtype=object)


def _check_counts(name, value):
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v < 1) or np.any(v != np.floor(v)):
        raise ValueError(f"{name} must be whole numbers >= 1, got {value!r}")
    return v


def allreduce_breakdown(constants: Mapping, nodes, ranks_per_node, nbytes,
                        algorithm=None, *, pricing: str = "fitted") -> dict:
    """Per-stage seconds and algorithm names of the (hierarchical) all-reduce.

    Returns a dict with, for each stage of :data:`STAGES`, ``stage`` -> seconds (0 where
    the stage does not run) and ``stage + "_algorithm"`` -> names ("" where it does not
    run), plus ``"total"``.  All arrays have the broadcast shape of the inputs.

    ``algorithm``: None picks the fastest fitted algorithm of every stage at its size; a
    name is used by every stage whose collective registers it (``"ring"``: ring
    reduce-scatter, ring all-reduce, ring allgather; ``"rabenseifner"``: Rabenseifner
    inter-node, fastest reduce-scatter and allgather); a mapping
    ``{"reduce_scatter": .., "allreduce": .., "allgather": ..}`` sets stages one by one
    (missing keys: fastest).

    ``pricing`` (:mod:`fits.predict.pricing`): ``"fitted"`` (default here) prices each
    stage with the level's fitted entries as described above; ``"library"`` with the
    MPI library's identified collective where there is one, else the topology constants;
    ``"topology"`` with the topology constants and the registry formulas.  With those
    two the ``*_algorithm`` entries are labels such as ``ring@joint`` saying what priced
    the stage.
    """
    N = _check_counts("nodes", nodes)
    q = _check_counts("ranks_per_node", ranks_per_node)
    n = np.asarray(nbytes, dtype=float)
    if np.any(~np.isfinite(n)) or np.any(n < 0):
        raise ValueError(f"nbytes must be finite and >= 0, got {nbytes!r}")
    N, q, n = (a.ravel() for a in np.broadcast_arrays(N, q, n))
    shape = np.broadcast(np.asarray(nodes), np.asarray(ranks_per_node),
                         np.asarray(nbytes)).shape
    out = {}
    for stage, _, _ in STAGES:
        out[stage] = np.zeros(N.shape)
        out[stage + "_algorithm"] = np.full(N.shape, "", dtype=object)
    masks = {"intra_allreduce": (N == 1) & (q > 1),
             "inter_allreduce": N > 1,
             "intra_reduce_scatter": (N > 1) & (q > 1),
             "intra_allgather": (N > 1) & (q > 1)}
    for stage, topo, collective in STAGES:
        m = masks[stage]
        if not m.any():
            continue
        lvl = level(constants, topo)
        alg = _stage_algorithm(algorithm, collective)
        how = {"pricing": pricing, "constants": constants, "name": topo}
        if stage == "inter_allreduce":
            t, names = _stage_time(lvl, collective, alg, N[m], n[m] / q[m], share=q[m],
                                   **how)
        else:
            t, names = _stage_time(lvl, collective, alg, q[m], n[m], **how)
        out[stage][m] = t
        out[stage + "_algorithm"][m] = names
    out["total"] = sum(out[stage] for stage, _, _ in STAGES)
    return {k: v.reshape(shape) for k, v in out.items()}


def predict_allreduce(constants: Mapping, nodes, ranks_per_node, nbytes, algorithm=None):
    """Modelled seconds of an all-reduce of ``nbytes`` over ``nodes`` × ``ranks_per_node``.

    Intra-node constants inside a node, inter-node constants across nodes (see the
    module docstring for the two-level composition); vectorized over the three counts.
    ``algorithm`` as in :func:`allreduce_breakdown`.

    Examples
    --------
    >>> lvl = {"p2p": {"alpha": 1e-6, "beta": 1e-9}, "gamma": {"value": 0.0}}
    >>> c = {"topologies": {"intra": lvl, "inter": lvl}}
    >>> float(predict_allreduce(c, 1, 4, 4000, "ring"))  # flat ring on 4 ranks
    1.2e-05
    """
    return allreduce_breakdown(constants, nodes, ranks_per_node, nbytes, algorithm)["total"]
