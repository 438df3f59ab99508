"""Design matrices from the cost-model registry and the non-negative weighted solvers.

A measured time is modelled as ``T = a(p) α + b(p) n β + c(p) n γ`` with ``(a, b, c)``
taken from :func:`collectives.costs.coefficients` -- this module never restates a
formula.  The fit minimises *relative* residuals ``(X θ - t) / t`` (weights ``1/t²`` on
squared errors) so that 8-byte and 64-MiB points count alike, under ``θ >= 0``.
A relative residual cannot fall below -1 however slow a point was, so with gross
outliers (a point 10× too slow, as on an overloaded machine) the linear fit leans
below the bulk of the points; the robust losses limit that.

Three solvers, chosen by ``loss``:

* ``"linear"``: ordinary (weighted) least squares, solved exactly by
  :func:`scipy.optimize.nnls` on the column-scaled system (fast enough to be called
  thousands of times by the bootstrap);
* ``"soft_l1"`` and ``"huber"``: robust losses through :func:`scipy.optimize.least_squares`
  with bounds ``[0, inf)``, ``f_scale`` = the relative residual treated as an inlier
  (default 0.05), started from the linear solution.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares, nnls

from collectives import costs

__all__ = ["LOSSES", "PARAMETERS", "design", "hockney_design", "solve", "solve_free",
           "identifiable_columns", "relative_residuals"]

#: Loss functions accepted by :func:`solve` (names as in scipy.optimize.least_squares).
LOSSES = ("linear", "soft_l1", "huber")
#: The fitted constants, in the column order of every design matrix.
PARAMETERS = ("alpha", "beta", "gamma")
#: Relative residual scale at which robust losses stop being quadratic.
DEFAULT_F_SCALE = 0.05
#: Smallest singular value, relative to the largest, of the column-normalised weighted
#: design for which a column still counts as identifiable.
DEFAULT_RCOND = 1e-6


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def design(collective: str, algorithm: str, ranks, nbytes) -> np.ndarray:
    """Design matrix ``X`` (m × 3) with columns ``a(p)``, ``b(p)·n``, ``c(p)·n``.

    Parameters
    ----------
    collective, algorithm : registry names (:mod:`collectives.costs`).
    ranks, nbytes : 1-D arrays of equal length (rank count and bytes of each point).

    Examples
    --------
    >>> design("pingpong", "native", [2, 2], [0, 100]).tolist()
    [[1.0, 0.0, 0.0], [1.0, 100.0, 0.0]]
    """
    ranks = np.asarray(ranks, dtype=float).ravel()
    nbytes = np.asarray(nbytes, dtype=float).ravel()
    if ranks.shape != nbytes.shape:
        raise ValueError(f"ranks and nbytes must have the same length, got "
                         f"{ranks.size} and {nbytes.size}")
    if np.any(nbytes < 0) or not np.all(np.isfinite(nbytes)):
        raise ValueError("nbytes must be finite and >= 0")
    a, b, c = costs.coefficients(collective, algorithm, ranks)
    return np.column_stack([a, b * nbytes, c * nbytes])


def hockney_design(nbytes) -> np.ndarray:
    """Hockney ``α + n β`` design: the registry's point-to-point (``pingpong``) model.

    Used for native collectives, fitted per rank count ("hockney-per-p").
    """
    nbytes = np.asarray(nbytes, dtype=float).ravel()
    return design("pingpong", "native", np.ones_like(nbytes), nbytes)


def _check_system(X, t, weights, offset=None):
    X = np.asarray(X, dtype=float)
    t = np.asarray(t, dtype=float).ravel()
    offset = np.zeros_like(t) if offset is None else np.broadcast_to(
        np.asarray(offset, dtype=float), t.shape)
    if X.ndim != 2 or X.shape[0] != t.size:
        raise ValueError(f"X must be (m, k) with m = len(t) = {t.size}, got {X.shape}")
    if t.size == 0:
        raise ValueError("no points to fit")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(X))):
        raise ValueError("times and design must be finite (NaN or inf found)")
    if np.any(t <= 0):
        raise ValueError("times must be > 0 for a relative-error fit")
    if weights is None:
        w = np.ones_like(t)
    else:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != t.shape or np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite, >= 0 and one per point")
    if not np.all(np.isfinite(offset)):
        raise ValueError("offset must be finite")
    return X, t, w, offset


def _weighted_scaled(X, t, w, offset=0.0):
    """Rows scaled by sqrt(w)/t, columns by their norm; returns (A, y, scale)."""
    rw = np.sqrt(w) / t
    A = X * rw[:, None]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    return A / scale, rw * (t - offset), scale


def identifiable_columns(X, t=None, *, fixed=(), rcond: float = DEFAULT_RCOND) -> np.ndarray:
    """Which columns of ``X`` the points can separate (boolean per column).

    All-zero columns are not identifiable.  Among the others, columns are dropped one at
    a time, last first (γ before β before α), while the column-normalised relative-weight
    design is numerically rank deficient (smallest/largest singular value < ``rcond``).
    ``fixed`` lists columns whose value is known and so not fitted at all.
    """
    X = np.asarray(X, dtype=float)
    t = np.ones(X.shape[0]) if t is None else np.asarray(t, dtype=float)
    A, _, _ = _weighted_scaled(X, t, np.ones_like(t))
    keep = np.linalg.norm(X, axis=0) > 0
    for j in fixed:
        keep[j] = False
    for j in range(X.shape[1] - 1, -1, -1):
        cols = np.flatnonzero(keep)
        if cols.size == 0:
            break
        s = np.linalg.svd(A[:, cols], compute_uv=False)
        if s[-1] >= rcond * s[0] and cols.size <= X.shape[0]:
            break
        if keep[j]:
            keep[j] = False
    return keep


def solve(X, t, *, loss: str = "linear", weights=None, active=None, offset=None,
          f_scale: float = DEFAULT_F_SCALE) -> np.ndarray:
    """Non-negative fit of ``X θ ≈ t`` minimising relative residuals.

    Parameters
    ----------
    X : (m, k) design matrix.
    t : (m,) measured times, > 0.
    loss : one of :data:`LOSSES`.
    weights : optional (m,) non-negative multiplicities (the bootstrap's launch counts).
    active : optional boolean mask of the columns to fit; the others are held at 0.
    offset : optional (m,) known part of each time (e.g. ``c n γ`` with γ measured
        elsewhere): the model is ``X θ + offset``, residuals stay relative to ``t``.
    f_scale : inlier scale of the robust losses, as a relative residual.

    Returns
    -------
    θ : (k,) array, >= 0, zeros for inactive columns.
    """
    _check_loss(loss)
    X, t, w, offset = _check_system(X, t, weights, offset)
    if f_scale <= 0:
        raise ValueError(f"f_scale must be > 0, got {f_scale}")
    k = X.shape[1]
    active = (np.linalg.norm(X, axis=0) > 0) if active is None else np.asarray(active, bool)
    theta = np.zeros(k)
    cols = np.flatnonzero(active)
    if cols.size == 0:
        return theta
    A, y, scale = _weighted_scaled(X[:, cols], t, w, offset)
    z, _ = nnls(A, y, maxiter=50 * max(cols.size, 10))
    if loss != "linear":
        # Multiplicities act by repeating rows, so a robust loss sees each copy.
        reps = np.rint(w).astype(int)
        if not np.allclose(reps, w):
            raise ValueError("robust losses take whole-number weights (multiplicities)")
        rows = np.repeat(np.arange(t.size), reps)
        B = X[rows][:, cols] / t[rows, None] / scale
        yb = (t[rows] - offset[rows]) / t[rows]
        res = least_squares(lambda zz: B @ zz - yb, z, jac=lambda zz: B,
                            bounds=(0, np.inf), loss=loss, f_scale=f_scale,
                            x_scale="jac", method="trf")
        z = np.maximum(res.x, 0)
    theta[cols] = z / scale
    return theta


def solve_free(X, t, *, weights=None, active=None, offset=None) -> np.ndarray:
    """Unconstrained (either sign) relative-error least squares of ``X θ + offset ≈ t``.

    The counterpart of :func:`solve` without the bounds: where a bounded constant sits
    on 0, the free estimate and its bootstrap spread say how far the data would push it
    (the one-sided intervals of :mod:`fits.headline`).  Rank-deficient columns get the
    minimum-norm solution.
    """
    X, t, w, offset = _check_system(X, t, weights, offset)
    k = X.shape[1]
    active = (np.linalg.norm(X, axis=0) > 0) if active is None else np.asarray(active, bool)
    theta = np.zeros(k)
    cols = np.flatnonzero(active)
    if cols.size == 0:
        return theta
    A, y, scale = _weighted_scaled(X[:, cols], t, w, offset)
    z, *_ = np.linalg.lstsq(A, y, rcond=None)
    theta[cols] = z / scale
    return theta


def relative_residuals(X, t, theta, offset=0.0) -> np.ndarray:
    """``(X θ + offset - t) / t`` for each point."""
    X = np.asarray(X, dtype=float)
    t = np.asarray(t, dtype=float)
    return (X @ np.asarray(theta, dtype=float) + offset - t) / t
