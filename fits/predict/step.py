"""Data-parallel training step: time, speedup, efficiency and cost per worker count.

One step on ``K`` workers::

    T_comp(K) = T_c / K (strong: fixed global batch)  or  T_c (weak: fixed per-worker batch)
    T_comm(K) = all-reduce of G gradient bytes on K workers (0 at K = 1)
    exposed   = T_comm - min(overlap × T_comm, T_comp)
    T(K)      = T_serial + T_comp(K) + exposed

with ``T_c`` the compute time of one step on one worker, ``T_serial`` time that no worker
count shortens (optimizer step, data loading...) and ``overlap`` the fraction of the
communication hidden behind computation (bounded by the computation time).

The all-reduce time comes from :func:`fits.predict.hierarchy.allreduce_breakdown`: intra-node
constants while ``K`` fits in a node, the two-level scheme once it spans
``ceil(K / ranks_per_node)`` nodes; ``algorithm=None`` takes the fastest fitted algorithm
at that size.  Explicit α, β, γ are turned into a constants dict by
:func:`explicit_constants` and go through the same path.

Per ``K`` (laws from :mod:`fits.predict.scaling`): serial fraction ``s(K) = T_comm / (T_comp +
T_comm)``, speedup (strong ``T(1)/T(K)``; weak ``K T(1)/T(K)``, the throughput ratio),
efficiency ``S/K``, Amdahl ceiling ``1/s(K)``, cost per step and per unit of work (one
unit = one step's work at K = 1).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from . import hierarchy, scaling

__all__ = ["MODES", "explicit_constants", "gradient_bytes", "allreduce_times",
           "step_table", "recommend"]

MODES = ("strong", "weak")


def explicit_constants(alpha: float, beta: float, gamma: float = 0.0) -> dict:
    """A minimal constants dict (one level used inside and across nodes) from α, β, γ."""
    for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if v is None or not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    lvl = {"p2p": {"alpha": float(alpha), "beta": float(beta)},
           "gamma": {"value": float(gamma)}, "algorithms": {}}
    return {"topologies": {"intra": lvl, "inter": lvl}}


def gradient_bytes(*, grad_bytes=None, params=None, dtype_size: float = 4) -> float:
    """Gradient bytes: given directly, or ``params × dtype_size``."""
    if (grad_bytes is None) == (params is None):
        raise ValueError("give exactly one of gradient bytes or parameters (× dtype size)")
    if grad_bytes is not None:
        if not grad_bytes >= 0:
            raise ValueError(f"gradient bytes must be >= 0, got {grad_bytes}")
        return float(grad_bytes)
    if not params >= 0:
        raise ValueError(f"parameters must be >= 0, got {params}")
    if not dtype_size > 0:
        raise ValueError(f"dtype size must be > 0 bytes, got {dtype_size}")
    return float(params) * float(dtype_size)


def allreduce_times(constants: Mapping, workers, nbytes: float, *,
                    ranks_per_node: int, algorithm=None, pricing: str = "library"):
    """``(seconds, algorithm label)`` of the gradient all-reduce for each worker count.

    ``K`` workers occupy ``ceil(K / ranks_per_node)`` nodes of ``min(K, ranks_per_node)``
    ranks (a partly filled last node is modelled as full: the slowest node sets the
    time).  The label names the algorithm of each stage that runs (and, unless
    ``pricing`` is ``"fitted"``, what priced it: :mod:`fits.predict.pricing`).
    """
    K = scaling.check_workers(workers)
    q = scaling.check_workers(ranks_per_node, "ranks per node")
    nodes = np.ceil(K / q)
    rpn = np.minimum(K, q)
    b = hierarchy.allreduce_breakdown(constants, nodes, rpn, nbytes, algorithm,
                                      pricing=pricing)
    labels = []
    for i in range(K.size):
        tag = "@fitted" if pricing == "fitted" else ""
        used = [f"{stage}={b[stage + '_algorithm'].flat[i]}{tag}"
                for stage, _, _ in hierarchy.STAGES if b[stage + "_algorithm"].flat[i]]
        labels.append(",".join(used) or "none")
    return b["total"], np.asarray(labels, dtype=object)


def step_table(comm_s, workers, *, compute_s: float, serial_s: float = 0.0,
               overlap: float = 0.0, mode: str = "strong",
               rate_per_worker_hour: float | None = None) -> pd.DataFrame:
    """Per-``K`` step model from the all-reduce seconds ``comm_s`` (one per worker count).

    Columns: workers, compute_s, comm_s, exposed_comm_s, serial_s, step_s,
    serial_fraction, speedup, efficiency, amdahl_ceiling, work_per_step, cost_per_step,
    cost_per_work (costs in money with a rate, else in worker-seconds).
    """
    K = scaling.check_workers(workers).ravel()
    comm = np.asarray(comm_s, dtype=float).ravel()
    if comm.shape != K.shape:
        raise ValueError(f"need one communication time per worker count, got "
                         f"{comm.size} for {K.size}")
    if np.any(~np.isfinite(comm)) or np.any(comm < 0):
        raise ValueError("communication times must be finite and >= 0")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not (np.isfinite(compute_s) and compute_s > 0):
        raise ValueError(f"compute time per step must be > 0 seconds, got {compute_s}")
    if not (np.isfinite(serial_s) and serial_s >= 0):
        raise ValueError(f"serial time must be >= 0 seconds, got {serial_s}")
    if not 0 <= overlap <= 1:
        raise ValueError(f"overlap must be between 0 and 1, got {overlap}")
    if rate_per_worker_hour is not None and not rate_per_worker_hour >= 0:
        raise ValueError(f"rate per worker-hour must be >= 0, got {rate_per_worker_hour}")
    comp = compute_s / K if mode == "strong" else np.full(K.shape, float(compute_s))
    comm = np.where(K == 1, 0.0, comm)
    exposed = comm - np.minimum(overlap * comm, comp)
    step = serial_s + comp + exposed
    t1 = serial_s + compute_s
    work = np.ones_like(K) if mode == "strong" else K
    S = scaling.speedup(t1, step) * work
    s = scaling.comm_serial_fraction(comm, comp)
    cost = (scaling.run_cost(rate_per_worker_hour * K, step)
            if rate_per_worker_hour is not None else K * step)
    return pd.DataFrame({
        "workers": K.astype(int), "compute_s": comp, "comm_s": comm,
        "exposed_comm_s": exposed, "serial_s": np.full(K.shape, float(serial_s)),
        "step_s": step, "serial_fraction": s, "speedup": S,
        "efficiency": scaling.efficiency(S, K), "amdahl_ceiling": scaling.amdahl_ceiling(s),
        "work_per_step": work, "cost_per_step": cost,
        "cost_per_work": scaling.cost_per_work(cost, work)})


def recommend(table: pd.DataFrame, *, threshold: float = 0.70,
              deadline_s: float | None = None, steps: float = 1.0) -> dict:
    """Fastest K, largest K with efficiency >= threshold, cheapest K meeting a deadline.

    The job is ``steps`` units of work (one unit = one step at K = 1); at K workers it
    takes ``steps / work_per_step × step_s`` seconds and costs that times the cost rate.
    Without a deadline the cheapest K overall is given.  Values are None when no K
    qualifies.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if not steps > 0:
        raise ValueError(f"steps must be > 0, got {steps}")
    if deadline_s is not None and not deadline_s > 0:
        raise ValueError(f"deadline must be > 0 seconds, got {deadline_s}")
    K = table["workers"].to_numpy()
    job_s = steps / table["work_per_step"].to_numpy() * table["step_s"].to_numpy()
    job_cost = steps * table["cost_per_work"].to_numpy()
    fastest = int(K[np.lexsort((K, job_s))[0]])
    eff = table["efficiency"].to_numpy() >= threshold - 1e-12
    largest = int(K[eff].max()) if eff.any() else None
    meets = job_s <= deadline_s if deadline_s is not None else np.ones(K.shape, bool)
    if meets.any():
        idx = [i for i in np.lexsort((job_s, job_cost)) if meets[i]][0]
        cheapest, cheapest_cost, cheapest_s = int(K[idx]), float(job_cost[idx]), \
            float(job_s[idx])
    else:
        cheapest = cheapest_cost = cheapest_s = None
    return {"fastest_workers": fastest,
            "fastest_job_s": float(job_s[K == fastest][0]),
            "largest_efficient_workers": largest, "threshold": threshold,
            "cheapest_workers": cheapest, "cheapest_job_cost": cheapest_cost,
            "cheapest_job_s": cheapest_s, "deadline_s": deadline_s, "steps": steps}
