"""Validation figures printed and stored with every fit.

* :func:`error_summary` -- median and maximum relative error on the fitted points;
* :func:`leave_one_rank_out` -- refit without one rank count, predict it (how well the
  registry's p-dependence extrapolates);
* :func:`busbw_check` -- fitted β against the bus bandwidth measured at the largest size;
* :func:`from_p2p` -- the collective predicted from the point-to-point (Hockney) α, β and
  the topology's γ through the registry, against its measurement.

All functions are pure; relative errors are ``|predicted - measured| / measured``.
"""
from __future__ import annotations

import numpy as np

from collectives import costs

from . import segments

__all__ = ["error_summary", "leave_one_rank_out", "busbw_check", "from_p2p",
           "segment_constants", "fitted_times"]


def error_summary(predicted, measured) -> dict:
    """``{"median_rel", "max_rel"}`` of ``|predicted - measured| / measured``."""
    predicted = np.asarray(predicted, dtype=float)
    measured = np.asarray(measured, dtype=float)
    if predicted.shape != measured.shape or measured.size == 0:
        raise ValueError(f"predicted and measured must be non-empty and of one shape, "
                         f"got {predicted.shape} and {measured.shape}")
    rel = np.abs(predicted - measured) / measured
    return {"median_rel": float(np.median(rel)), "max_rel": float(np.max(rel))}


def segment_constants(nbytes, breakpoints, thetas) -> np.ndarray:
    """Per point, the constants (row of ``thetas``) of the segment covering its size."""
    return np.asarray(thetas, dtype=float)[segments.assign(nbytes, breakpoints)]


def leave_one_rank_out(X, t, nbytes, ranks, breakpoints, *, loss="linear", active=None,
                       offset=None) -> dict:
    """Median relative error on each rank count's points when it is left out of the fit.

    Returns ``{str(p): median_rel}``; empty when fewer than two rank counts were measured.
    A rank count whose removal leaves a segment without points, or whose points fall in
    such a segment, maps to ``None``.
    """
    X = np.asarray(X, dtype=float)
    t = np.asarray(t, dtype=float)
    nbytes = np.asarray(nbytes, dtype=float)
    ranks = np.asarray(ranks)
    off = np.zeros_like(t) if offset is None else np.broadcast_to(offset, t.shape)
    out = {}
    distinct = np.unique(ranks)
    if distinct.size < 2:
        return out
    for p in distinct:
        held = ranks == p
        thetas = segments.fit_fixed(X[~held], t[~held], nbytes[~held], breakpoints,
                                    loss=loss, active=active, offset=off[~held])
        theta = segment_constants(nbytes[held], breakpoints, thetas)
        pred = np.sum(X[held] * theta, axis=1) + off[held]
        ok = np.all(np.isfinite(theta), axis=1)
        out[str(int(p))] = (float(np.median(np.abs(pred[ok] - t[held][ok]) / t[held][ok]))
                            if ok.any() else None)
    return out


def busbw_check(collective, algorithm, ranks, nbytes, t, beta) -> dict | None:
    """Bus bandwidth measured at the largest size against ``1/β``.

    ``busbw = bytes / t × busbw_factor(collective, p)`` (nccl-tests convention) is taken
    at the largest measured size (the best over rank counts there).  ``ratio`` is
    ``busbw × β``; ``model_ratio`` is the value the registry's β term alone gives at that
    p (``busbw_factor / b(p)``, 1 for ring-type algorithms), so ``ratio / model_ratio``
    close to 1 says β explains the large-message bandwidth.  ``None`` when β is 0 or
    the collective has no bus-bandwidth factor.
    """
    if not beta or not np.isfinite(beta):
        return None
    try:
        factor = costs.busbw_factor(collective, ranks)
    except ValueError:
        return None
    nbytes = np.asarray(nbytes, dtype=float)
    t = np.asarray(t, dtype=float)
    top = nbytes == nbytes.max()
    if nbytes.max() <= 0:
        return None
    bw = nbytes[top] / t[top] * np.asarray(factor)[top]
    i = int(np.argmax(bw))
    p = np.asarray(ranks)[top][i]
    if algorithm == costs.NATIVE and (collective, algorithm) not in costs.COSTS:
        model_ratio = None
    else:
        _, b, _ = costs.coefficients(collective, algorithm, [p])
        f = costs.busbw_factor(collective, [p])
        model_ratio = float(f[0] / b[0]) if b[0] > 0 else None
    return {"beta_inverse_Bps": float(1.0 / beta), "busbw_Bps": float(bw[i]),
            "ratio": float(bw[i] * beta), "model_ratio": model_ratio,
            "ranks": int(p), "bytes": int(nbytes.max())}


def from_p2p(collective, algorithm, ranks, nbytes, t, p2p_breakpoints, p2p_thetas,
             gamma=None) -> dict:
    """The collective predicted from point-to-point constants, against its measurement.

    Each point uses the p2p segment covering its ``bytes`` (an approximation: the
    messages of a segmented algorithm are smaller than ``bytes``) and ``gamma`` (0 when
    unknown, which makes reductions look cheaper).  Prediction through
    :func:`collectives.costs.predict`.  Returns :func:`error_summary` plus ``"bias"``:
    the median of ``predicted / measured``.
    """
    nbytes = np.asarray(nbytes, dtype=float)
    t = np.asarray(t, dtype=float)
    theta = segment_constants(nbytes, p2p_breakpoints, p2p_thetas)
    pred = costs.predict(collective, algorithm, np.asarray(ranks), nbytes,
                         theta[:, 0], theta[:, 1], 0.0 if gamma is None else gamma)
    out = error_summary(pred, t)
    out["bias"] = float(np.median(pred / t))
    return out


def fitted_times(X, nbytes, breakpoints, thetas, offset=None) -> np.ndarray:
    """Model times of the points for segmented constants (``X θ_segment + offset``)."""
    theta = segment_constants(nbytes, breakpoints, thetas)
    pred = np.sum(np.asarray(X, dtype=float) * theta, axis=1)
    return pred if offset is None else pred + offset
