"""Which model prices a collective on one topology: the library's, the network's, or ours.

Three pricings of one stage (a collective on ``p`` ranks of one topology):

``library`` (the default of ``fits.predict step``)
    The MPI library's own collective when the fitter identified it
    (``algorithms[collective]["native"]["identified"]``, :mod:`fits.native`): per size
    segment the registry algorithm whose shape in ``p`` explains the library's times,
    priced with the topology's joint constants plus the library's per-call cost, so it
    extrapolates to rank counts that were not measured.  A native collective measured
    but not identified in p (one rank count; no registry shape explains it) is priced
    from its own fit at the rank counts that were measured (label ``@measured``).
    Otherwise the ``topology`` pricing.
``topology``
    The network's constants with the registry formula of each algorithm (the fastest
    one when none is named): the topology's joint constants without any software cost
    (``fits.joint``, network and kernel only) when the file has them, else the headline
    latency and bandwidth (:mod:`fits.predict.topology`).  What an efficient
    implementation of that algorithm would take.
``fitted``
    The constants fitted to collcost's own Python implementations (each entry under
    ``algorithms``), which include what each Python message step adds.  Useful to
    compare with collcost's own measurements, not to plan with.

Every stage returns, with its seconds, a short label of what priced it
(:func:`describe_label` explains the labels).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from collectives import costs

from . import topology as topo_mod

__all__ = ["PRICINGS", "DEFAULT", "stage_time", "describe_label", "LABEL_HELP"]

PRICINGS = ("library", "topology", "fitted")
DEFAULT = "library"
#: Suffixes of the stage labels and what they mean.
LABEL_HELP = {
    "native": "the MPI library's collective, identified as that registry algorithm "
              "(per size segment) and priced with the topology's joint constants plus "
              "the library's per-call cost",
    "measured": "the MPI library's collective from its own fit at this measured rank "
                "count (its shape in p is not identified, so it is not extrapolated)",
    "joint": "registry formula with the topology's joint constants, network and kernel "
             "only (no software cost)",
    "headline": "registry formula with the topology's headline latency and bandwidth",
    "fitted": "constants fitted to collcost's own Python implementation of it",
}


def describe_label(label: str) -> str:
    """``ring@joint`` -> a sentence saying what priced it."""
    alg, _, how = str(label).partition("@")
    if how not in LABEL_HELP:
        return f"{label}: {LABEL_HELP['fitted']}"
    return f"{label}: {LABEL_HELP[how]}"


def _native_model(constants: Mapping, name: str, collective: str):
    """The identified native model when the topology also has joint constants."""
    from fits import constants as constants_mod
    model = constants_mod.native_model(constants, name, collective)
    return model if model and constants_mod.joint_constants(constants, name) else None


def _measured_native(constants: Mapping, name: str, collective: str, p, n, share):
    """A native collective measured but not identified in p (one rank count, or no
    registry shape explains it: ``fits.native.adequacy``), priced from its own fit when
    every requested rank count was measured and no link is shared; else None (the
    topology pricing then applies, labelled as such)."""
    from fits import constants as constants_mod
    ident = constants_mod.native_identification(constants, name, collective)
    if not ident or ident.get("status") != "not_identified" or np.any(
            np.asarray(share) != 1):
        return None
    try:
        t = np.asarray(constants_mod.predict_native(constants, name, collective, p, n),
                       dtype=float)
    except constants_mod.ConstantsError:  # a rank count that was not measured
        return None
    return t, np.full(t.shape, f"{collective}@measured", dtype=object)


def _scaled_joint(joint: Mapping, share: float) -> dict:
    """The joint constants with every regime's β multiplied by ``share`` (shared NIC)."""
    if share == 1:
        return joint
    out = copy.deepcopy(dict(joint))
    for reg in out.get("regimes", []):
        b = reg.get("beta") or {}
        if b.get("value") is not None:
            reg["beta"] = {**b, "value": float(b["value"]) * share}
    return out


def _by_share(fn, p, n, share):
    """Evaluate ``fn(p, n, share_value)`` once per distinct share, scattering back."""
    p, n, share = np.broadcast_arrays(np.asarray(p, dtype=float),
                                      np.asarray(n, dtype=float),
                                      np.asarray(share, dtype=float))
    out = np.empty(p.shape)
    for s in np.unique(share):
        sel = share == s
        out[sel] = fn(p[sel], n[sel], float(s))
    return out


def _joint_time(lvl, collective, algorithm, p, n, share):
    from fits import joint as joint_fit
    return _by_share(lambda pp, nn, s: joint_fit.predict(
        _scaled_joint(lvl["joint"], s), collective, algorithm, pp.astype(int), nn,
        implementation=None), p, n, share)


def _topology_time(constants, name, lvl, collective, algorithm, p, n, share):
    """(seconds, labels) with the topology constants; fastest algorithm when None."""
    names = (algorithm,) if algorithm else costs.algorithms(collective, native=False)
    if lvl.get("joint"):
        times = np.stack([_joint_time(lvl, collective, a, p, n, share) for a in names])
        how = "joint"
    else:
        from . import hierarchy
        try:
            lnk = topo_mod.link(constants, name)
        except ValueError as exc:
            raise ValueError(f"{exc} (or price with the fitted constants of collcost's "
                             f"own algorithms: --pricing fitted)") from None
        view = {"ranks_per_node": 1, "nodes": 1, "algorithms": {},
                "p2p": {"alpha": lnk.latency, "beta": lnk.beta},
                "gamma": {"value": lnk.gamma}}
        times = np.stack([np.broadcast_to(hierarchy.collective_time(
            view, collective, a, p, n, share=share), np.broadcast(
                np.asarray(p), np.asarray(n)).shape) for a in names])
        how = "headline"
    best = np.argmin(times, axis=0)
    t = np.take_along_axis(times, best[None], axis=0)[0]
    labels = np.asarray([f"{a}@{how}" for a in names], dtype=object)[best]
    return t, labels


def stage_time(constants: Mapping, name: str, collective: str, algorithm, p, n, *,
               share=1, pricing: str = DEFAULT):
    """``(seconds, labels)`` of one collective on topology ``name`` at (p, n).

    ``algorithm``: None (the library's own with ``library``, else the fastest registry
    algorithm) or a registry name (priced with the topology constants, or the fitted ones
    with ``fitted``).  ``share``: flows sharing each link (β × share).
    """
    if pricing not in PRICINGS:
        raise ValueError(f"pricing must be one of {', '.join(PRICINGS)}, got {pricing!r}")
    from . import hierarchy
    lvl = hierarchy.level(constants, name)
    if pricing == "fitted":
        if algorithm is None:
            t, names = hierarchy.fastest(lvl, collective, p, n, share=share)
        else:
            t = hierarchy.collective_time(lvl, collective, algorithm, p, n, share=share)
            names = np.full(np.shape(t), algorithm, dtype=object)
        return t, np.asarray([f"{a}@fitted" for a in np.ravel(names)],
                             dtype=object).reshape(np.shape(t))
    model = _native_model(constants, name, collective) \
        if pricing == "library" and algorithm is None else None
    if model is not None:
        try:
            from fits import native
        except ImportError:  # pragma: no cover - fits.native ships with fits
            model = None
    if model is not None:
        t = _by_share(lambda pp, nn, s: native.predict(
            model, _scaled_joint(lvl["joint"], s), collective, pp.astype(int), nn), p, n,
            share)
        seg = " / ".join(s["algorithm"] for s in model["segments"])
        return t, np.full(t.shape, f"{seg}@native", dtype=object)
    if pricing == "library" and algorithm is None:
        measured = _measured_native(constants, name, collective, p, n, share)
        if measured is not None:
            return measured
    return _topology_time(constants, name, lvl, collective, algorithm, p, n, share)
