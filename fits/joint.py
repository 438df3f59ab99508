"""One set of constants per topology that explains every measured collective.

The per-entry fits of :mod:`fits.fit` give every algorithm its own α, β: good curves,
but constants that describe the algorithm's implementation rather than the network.
Here a topology's **α, β, γ** are fitted *jointly* from the ping-pong, the reduction
kernel (``reduce_local``) and every measured registry algorithm, each algorithm priced
through the registry (:func:`collectives.costs.predict_steps`)::

    T = a(p) (α_r + s_impl) + b(p) n (β_r + d_impl + κ max(p - 2, 0)) + c(p) n γ_g + o_impl

* ``r``: the protocol regime -- the ping-pong's size segment (:mod:`fits.segments`)
  containing either the step's mean message size ``b(p) n / a(p)``
  (:func:`collectives.costs.step_bytes`; a ring all-reduce of 1 MiB on 4 ranks sends
  256 KiB messages and pays the 256 KiB regime's α and β) or the bytes on the critical
  path ``b(p) n`` (:func:`regime_bytes`); both are fitted and the one with the smaller
  residual kept (``regime_key``).  Message size is right for an eager/rendezvous
  switch; path bytes for a link whose speed depends on how long it stays busy (a
  ``tc tbf`` bucket refills between ping-pong messages but is drained by a collective's
  back-to-back steps);
* ``g``: the reduction kernel's size segment (cache effects) holding the same block size;
* ``s_impl``, ``o_impl``, ``d_impl``: the software cost of an *implementation* per
  message step, per call and per byte moved -- ``python`` for the hand-written
  algorithms (the Python work and copies around each message), ``kernel`` (per call
  only) for the timed local reduction.  The ping-pong carries none: α is the
  point-to-point latency as seen through mpi4py;
* ``κ`` (``contention``): seconds per byte for each rank beyond two that transfers at
  the same time (:func:`collectives.costs.crowding`): ranks that share CPU cores (an
  oversubscribed or emulated cluster), a node's memory bandwidth or a NIC slow each
  other down.  Fitted from the algorithms measured at several rank counts; 0 when
  nothing is shared;
* the ping-pong's points in the largest regime (when there are several) may take a
  negative offset (``pingpong_offset_s`` ≤ 0, a nuisance): a token bucket that refills
  between ping-pong messages makes ``t ≈ (n - burst)/rate`` there, and holding the
  intercept at α ≥ 0 would tilt β (the headline's bandwidth fit uses a free intercept
  for the same reason).

Fitted on relative error weighted by each point's precision (:func:`point_weights`),
every constant ≥ 0 (:func:`fits.model.solve`); columns
the points cannot separate are dropped (:func:`fits.model.identifiable_columns`) and
reported as not identified.  Intervals: the fitter's bootstrap replicates, refitted;
status by :func:`fits.headline.assess`.  The prediction error of every entry is
reported (all sizes and sizes ≥ :data:`LARGE_BYTES`).  Native collectives are not in this
fit: :mod:`fits.native` explains them with these constants.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectives import costs

from . import headline, model, segments

__all__ = ["LARGE_BYTES", "JointFit", "fit_joint", "predict", "IMPLEMENTATIONS",
           "point_weights", "regime_bytes", "constants_at", "design"]

#: Sizes from which the prediction error is reported separately (the target's range).
LARGE_BYTES = 65536
#: Implementations with a software cost: our Python algorithms, the timed kernel.
IMPLEMENTATIONS = ("python", "kernel")
#: Relative model error assumed beside each point's own noise (:func:`point_weights`).
MODEL_FLOOR = 0.05
#: Most α, β regimes searched.
MAX_REGIMES = 3
#: What selects a point's α, β regime (chosen per topology by the smaller residual).
REGIME_KEYS = ("message", "path")
_MODEL = ("T = a(p) (alpha_r + step_s) + b(p) n (beta_r + byte_s + contention max(p-2, 0))"
          " + c(p) n gamma_g + call_s; r: regime of the step's message or path bytes, g: "
          "kernel segment of the step's message bytes")


@dataclass
class JointFit:
    """The fitted joint model: column names, constants, replicates, the points' design."""

    names: list
    theta: np.ndarray
    replicates: np.ndarray | None
    regimes: tuple
    gamma_breakpoints: tuple
    entry: dict


def _regime_edges(breakpoints):
    edges = [0] + [int(b) for b in breakpoints]
    return [(lo, edges[i + 1] if i + 1 < len(edges) else None)
            for i, lo in enumerate(edges)]


def regime_bytes(key, collective, algorithm, p, n):
    """The size that selects a point's protocol regime: ``"message"`` -- the step's mean
    message (:func:`collectives.costs.step_bytes`), or ``"path"`` -- the bytes on the
    critical path ``b(p) n`` (a link kept busy by back-to-back steps, such as a token
    bucket drained by a collective, behaves by the bytes it carries per call)."""
    if key == "message" or collective == "reduce_local":
        return costs.step_bytes(collective, algorithm, p, n)
    return costs.path_bytes(collective, algorithm, p, n)


def _columns(coll, alg, p, n, regimes, gbps, impl, key="message"):
    """Design rows (m × K) of one group of points; K = 2R + G + 6."""
    R, G = len(regimes) + 1, len(gbps) + 1
    a, b, c = costs.coefficients(coll, alg, p)
    if coll == "reduce_local":  # the kernel: n γ plus a per-call harness cost
        a = np.zeros_like(a)
    m = costs.step_bytes(coll, alg, p, n)
    r = segments.assign(regime_bytes(key, coll, alg, p, n), regimes)
    g = segments.assign(m, gbps)
    X = np.zeros((len(n), 2 * R + G + 6))
    rows = np.arange(len(n))
    X[rows, r] = a
    X[rows, R + r] = b * n
    X[rows, 2 * R + g] = c * n
    base = 2 * R + G
    X[:, base + 4] = b * n * costs.crowding(p)
    if coll == "pingpong" and R > 1:  # burst credit of the large-message ping-pong
        X[r == R - 1, base + 5] = -1.0
    if impl == "python":
        X[:, base] = a
        X[:, base + 1] = 1.0
        X[:, base + 3] = b * n
    elif impl == "kernel":
        X[:, base + 2] = 1.0
    return X


def _names(R, G):
    return ([f"alpha_{i}" for i in range(R)] + [f"beta_{i}" for i in range(R)]
            + [f"gamma_{i}" for i in range(G)]
            + ["python_step_s", "python_call_s", "kernel_call_s", "python_byte_s",
               "contention_s_per_B", "pingpong_credit_s"])


def _impl(collective, algorithm):
    if collective == "reduce_local":
        return "kernel"
    if collective == "pingpong":
        return None
    return "python"


def design(frame, regimes, gbps, key="message"):
    """Joint design of a point table (rows: pingpong, reduce_local, registry entries)."""
    R, G = len(regimes) + 1, len(gbps) + 1
    X = np.zeros((len(frame), 2 * R + G + 6))
    colls = frame["collective"].to_numpy()
    algs = frame["algorithm"].to_numpy()
    p = frame["ranks"].to_numpy()
    n = frame["bytes"].to_numpy(dtype=float)
    for ca in sorted(set(zip(colls, algs))):
        sel = (colls == ca[0]) & (algs == ca[1])
        X[sel] = _columns(ca[0], ca[1], p[sel], n[sel], regimes, gbps, _impl(*ca), key)
    return X


def point_weights(frame, floor=MODEL_FLOOR) -> np.ndarray:
    """Inverse-variance weights of relative residuals, normalised to mean 1.

    A point's relative standard error is that of its median over repetitions
    (``1.2533 × 1.4826 × MAD / median / sqrt(k)`` from ``samples["max"]``; else from
    its 95% CI; else 0.1), combined with ``floor`` -- the model error and the
    launch-to-launch noise no repetition shows: ``w = 1 / (σ² + floor²)``.  Points that
    scatter by a factor of several (small sizes on an overloaded machine) then count
    little against precise large-size points.
    """
    sig = np.full(len(frame), 0.1)
    med = frame["median_s"].to_numpy(dtype=float)
    samples = frame["samples"] if "samples" in frame.columns else [None] * len(frame)
    lo = frame["ci_low_s"].to_numpy(dtype=float) if "ci_low_s" in frame.columns else None
    hi = frame["ci_high_s"].to_numpy(dtype=float) if "ci_high_s" in frame.columns else None
    for i, smp in enumerate(samples):
        vals = np.asarray(smp.get("max", []) if isinstance(smp, dict) else [], float)
        vals = vals[np.isfinite(vals)]
        if vals.size >= 3:
            mad = np.median(np.abs(vals - np.median(vals)))
            sig[i] = 1.2533 * 1.4826 * mad / med[i] / np.sqrt(vals.size)
        elif lo is not None and np.isfinite(lo[i]) and np.isfinite(hi[i]):
            sig[i] = (hi[i] - lo[i]) / (2 * 1.96 * med[i])
    w = 1.0 / (sig * sig + floor * floor)
    return w / w.mean()


def _constant(value, reps, free_value, free_reps, confidence, identified=True):
    if not identified:
        return {"value": None, "ci": None, "status": "not_identified",
                "note": "the points cannot separate it (design rank)"}
    ci, status, note = headline.assess(value, reps, free_value, free_reps, confidence)
    out = {"value": float(value), "ci": ci, "status": status}
    if note:
        out["note"] = note
    return out


def fit_joint(frame, reps, *, p2p_breakpoints=(), gamma_breakpoints=(),
              confidence=0.95, topology="") -> JointFit | None:
    """Fit the joint model to ``frame`` (pingpong, reduce_local and registry rows).

    ``reps``: :class:`fits.bootstrap.Replicates` of the same rows, or None.
    Returns None when the rows hold no ping-pong and no registry algorithm.
    """
    frame = frame.reset_index(drop=True)
    colls = frame["collective"].to_numpy()
    if not np.any(colls != "reduce_local"):
        return None
    gbps = tuple(float(b) for b in gamma_breakpoints)
    G = len(gbps) + 1
    t = frame["median_s"].to_numpy(dtype=float)
    pw = point_weights(frame)
    m = float(len(t))
    sizes = np.unique(frame["bytes"].to_numpy(dtype=float))
    sizes = sizes[sizes > 0]

    def attempt(key, regimes):
        Xk = design(frame, regimes, gbps, key)
        ik = model.identifiable_columns(Xk, t)
        th = model.solve(Xk, t, active=ik, weights=pw)
        r = model.relative_residuals(Xk, t, th)
        rss = float(np.sum(pw * r * r))
        k = int(ik.sum()) + segments.BREAKPOINT_PARAMETERS * len(regimes)
        bic = m * np.log(max(rss / m, segments.RESIDUAL_FLOOR ** 2)) + k * np.log(m)
        return {"X": Xk, "ident": ik, "theta": th, "rss": rss, "bic": float(bic),
                "regimes": regimes, "key": key}

    tried = []
    for key in REGIME_KEYS:
        # the ping-pong's protocol breakpoints, then a greedy search over the sizes
        tried.append(attempt(key, tuple(float(b) for b in p2p_breakpoints)))
        current = attempt(key, ())
        tried.append(current)
        for _ in range(MAX_REGIMES - 1):
            options = [attempt(key, tuple(sorted(current["regimes"] + (float(b),))))
                       for b in sizes if float(b) not in current["regimes"]]
            if not options:
                break
            step = min(options, key=lambda o: o["bic"])
            if step["bic"] >= current["bic"]:
                break
            current = step
            tried.append(current)
    best = min(tried, key=lambda o: o["bic"])
    regime_key, regimes = best["key"], best["regimes"]
    X, ident, theta = best["X"], best["ident"], best["theta"]
    R = len(regimes) + 1
    from_p2p = tuple(regimes) == tuple(float(b) for b in p2p_breakpoints)
    names = _names(R, G)
    B = 0 if reps is None else reps.count
    rep_theta = free_theta = None
    at_bound = ident & (theta <= 0)
    free = model.solve_free(X, t, active=ident, weights=pw) if at_bound.any() else None
    if B:
        rep_theta = np.full((B, X.shape[1]), np.nan)
        free_theta = np.full((B, X.shape[1]), np.nan) if at_bound.any() else None
        for i in range(B):
            w = reps.weights[i] * pw
            keep = w > 0
            if not keep.any():
                continue
            rep_theta[i] = model.solve(X[keep], reps.times[i, keep], weights=w[keep],
                                       active=ident)
            if free_theta is not None:
                free_theta[i] = model.solve_free(X[keep], reps.times[i, keep],
                                                 weights=w[keep], active=ident)

    def const(j):
        return _constant(theta[j], None if rep_theta is None else rep_theta[:, j],
                         None if free is None else free[j],
                         None if free_theta is None else free_theta[:, j], confidence,
                         bool(ident[j]))

    reg_entries = []
    for i, (lo, hi) in enumerate(_regime_edges(regimes)):
        reg_entries.append({"min_bytes": lo, "max_bytes": hi,
                            "alpha": const(i), "beta": const(R + i)})
    g_entries = []
    for i, (lo, hi) in enumerate(_regime_edges(gbps)):
        g_entries.append({"min_bytes": lo, "max_bytes": hi, "gamma": const(2 * R + i)})
    base = 2 * R + G
    software = {"python": {"step_s": const(base), "call_s": const(base + 1),
                           "byte_s": const(base + 3)},
                "kernel": {"call_s": const(base + 2)}}
    contention = const(base + 4)
    pingpong_offset = -float(theta[base + 5])
    pred = X @ theta
    rel = np.abs(pred - t) / t
    n = frame["bytes"].to_numpy()
    algs = frame["algorithm"].to_numpy()
    per_entry = {}
    for key in sorted(set(zip(colls, algs))):
        sel = (colls == key[0]) & (algs == key[1])
        big = sel & (n >= LARGE_BYTES)
        per_entry[f"{key[0]}/{key[1]}"] = {
            "median_rel": float(np.median(rel[sel])), "max_rel": float(np.max(rel[sel])),
            "median_rel_large": float(np.median(rel[big])) if big.any() else None,
            "max_rel_large": float(np.max(rel[big])) if big.any() else None,
            "points": int(sel.sum()), "points_large": int(big.sum())}
    coll_rows = (colls != "pingpong") & (colls != "reduce_local")
    big = coll_rows & (n >= LARGE_BYTES)
    meds = [e["median_rel_large"] for k, e in per_entry.items()
            if e["median_rel_large"] is not None
            and not k.startswith(("pingpong/", "reduce_local/"))]
    entry = {
        "model": _MODEL,
        "regime_key": regime_key,
        "regime_source": ("the ping-pong's breakpoints" if from_p2p else
                          "searched over the measured sizes (BIC)"),
        "regime_bic": {f"{o['key']}:{','.join(str(int(b)) for b in o['regimes'])}":
                       o["bic"] for o in tried},
        "regimes": reg_entries, "gamma_segments": g_entries, "software": software,
        "contention": contention,
        "pingpong_offset_s": pingpong_offset,
        "constants": {"alpha": reg_entries[0]["alpha"], "beta": reg_entries[-1]["beta"],
                      "gamma": g_entries[-1]["gamma"]},
        "large_bytes": LARGE_BYTES, "points": int(len(t)),
        "errors": {
            "median_rel": float(np.median(rel[coll_rows])) if coll_rows.any() else None,
            "median_rel_large": float(np.median(rel[big])) if big.any() else None,
            "median_of_entries_large": float(np.median(meds)) if meds else None,
            "entries": len(meds), "per_entry": per_entry},
    }
    return JointFit(names, theta, rep_theta, regimes, gbps, entry)


def _value(c):
    v = (c or {}).get("value")
    return 0.0 if v is None else float(v)


def constants_at(joint: dict, message_bytes, regime_bytes=None):
    """``(α, β, γ)`` arrays: α, β of the regimes holding ``regime_bytes`` (default
    ``message_bytes``), γ of the kernel segment holding ``message_bytes``."""
    m = np.asarray(message_bytes, dtype=float)
    regs = joint["regimes"]
    rb = [r["min_bytes"] for r in regs[1:]]
    i = segments.assign(m if regime_bytes is None else regime_bytes, rb)
    alpha = np.array([_value(r["alpha"]) for r in regs])[i]
    beta = np.array([_value(r["beta"]) for r in regs])[i]
    gs = joint["gamma_segments"]
    j = segments.assign(m, [g["min_bytes"] for g in gs[1:]])
    gamma = np.array([_value(g["gamma"]) for g in gs])[j]
    return alpha, beta, gamma


def predict(joint: dict, collective, algorithm, ranks, nbytes, *,
            implementation="python", step_cost=None, call_cost=None):
    """Time of a registry algorithm from a topology's joint constants (seconds).

    ``implementation``: ``"python"`` adds the fitted software cost of our hand-written
    steps; ``None`` prices the network and kernel only (what an efficient
    implementation of the same algorithm would take); explicit ``step_cost`` /
    ``call_cost`` override (the native models of :mod:`fits.native` pass the library's
    per-call cost).
    """
    ranks = np.asarray(ranks)
    n = np.asarray(nbytes, dtype=float)
    m = costs.step_bytes(collective, algorithm, ranks, n)
    key = joint.get("regime_key", "message")
    alpha, beta, gamma = constants_at(
        joint, m, regime_bytes(key, collective, algorithm, ranks, n))
    sw = (joint.get("software") or {}).get(implementation) or {}
    s = _value(sw.get("step_s")) if step_cost is None else step_cost
    o = _value(sw.get("call_s")) if call_cost is None else call_cost
    return costs.predict_steps(collective, algorithm, ranks, n, alpha, beta, gamma,
                               step_cost=s, call_cost=o, byte_cost=_value(sw.get("byte_s")),
                               contention=_value(joint.get("contention")))
