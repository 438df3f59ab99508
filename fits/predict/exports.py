"""Exports of a constants file for other planners and simulators.

Four targets, each in the units its reader expects (``cost-models.md``, "Planner input
formats"); per-level constants come from :func:`fits.predict.hierarchy.level_constants` and every
coefficient from :mod:`collectives.costs`:

``calculon``
    ``{"networks": [intra, inter]}`` entries of a Calculon ``systems/*.json``: bandwidth
    in GB/s (1e9 B/s), latency in s, ``ops`` ``[scalar, offset]`` with time
    ``latency + n·scalar·(1 + offset/p) / (bandwidth·1e9·efficiency)``.  Bandwidth is
    ``1/β`` of the chosen all-reduce algorithm (efficiency 1: β is already effective);
    each op's ``[scalar, offset]`` is solved from the registry's per-byte coefficients
    (``b(p) β + c(p) γ``), which must have Calculon's form.  Calculon has *one* latency
    per network for every op and every p: it is set to the all-reduce's latency term
    ``a(size) α`` at the network's size, so ``all_reduce`` at ``p = size`` reproduces the
    model exactly and other ops/sizes over- or under-state latency.
``astra``
    ASTRA-sim analytical network YAML: ``topology``, ``npus_count``, ``bandwidth`` (GB/s,
    which its code converts to B/ns with 2**30 B per GB; recent astra-network-analytical
    converts with 1e9, ~7.4% apart -- see ``ASTRA_BYTES_PER_GB``), ``latency`` (ns per
    link).  A message crosses ``hops`` links (Switch 2, Ring/FullyConnected 1 between
    neighbours): the link latency is ``α / hops`` so one message costs ``α + nβ``
    (point-to-point constants).
``simgrid``
    SimGrid platform XML: one ``<cluster>`` of ``nodes`` hosts with ``ranks_per_node``
    cores; private links carry the inter-node constants (``lat`` = α/2: a route crosses
    two private links; no backbone), the loopback link the intra-node ones; a
    ``<config>`` block sets the SMPI network model and the piecewise ``smpi/bw-factor``,
    ``smpi/lat-factor`` from the fitted point-to-point segments (``bound:factor``: a
    factor applies to sizes above its bound, relative to the first segment, whose
    constants the links carry), and zero ``smpi/os``, ``smpi/or``, ``smpi/ois``
    (``minsize:startup:per-byte``) since the links already carry α and β.  SimGrid
    applies the factors to every link: they are taken from the inter-node segments
    (intra-node ones when there is no inter level).
``alpa``
    Alpa / ColossalAI device-mesh ``mesh_alpha``, ``mesh_beta`` per mesh dimension
    (dimension 0 = across nodes, 1 = within a node, Alpa's host × device order), for
    their all-reduce cost ``α + β · 2(k-1)/k · bytes``: ``mesh_alpha = a(k) α``,
    ``mesh_beta = (b(k) β + c(k) γ) / (2(k-1)/k)`` with ``k`` the dimension's size.  Alpa's
    costs are unitless (defaults 1) and add fixed tie-breakers (0.1, 0.01, 0.001) in the
    same unit; ColossalAI's AlphaBetaProfiler reports seconds and seconds per byte.
    ``time_unit`` ``"us"`` (default) keeps Alpa's tie-breakers negligible; ``"s"``
    matches ColossalAI's profiler.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import numpy as np

from collectives import costs

from . import hierarchy

__all__ = ["TARGETS", "ASTRA_TOPOLOGIES", "ASTRA_HOPS", "ASTRA_BYTES_PER_GB",
           "TIME_UNITS", "levels", "calculon_networks", "astra_yaml", "read_astra_yaml",
           "simgrid_xml", "smpi_factors", "alpa_mesh", "export"]

TARGETS = ("calculon", "astra", "simgrid", "alpa")
#: ASTRA-sim basic topologies and the links one message to a neighbour crosses.
ASTRA_HOPS = {"Ring": 1, "FullyConnected": 1, "Switch": 2}
ASTRA_TOPOLOGIES = tuple(ASTRA_HOPS)
#: Bytes per "GB" in ASTRA-sim's ``bw_GBps_to_Bpns`` (2**30 in the version we target).
ASTRA_BYTES_PER_GB = 2 ** 30
#: Time units of the Alpa export: seconds per unit.
TIME_UNITS = {"s": 1.0, "us": 1e-6}
#: Calculon op names and the registry collectives they map to.
_CALCULON_OPS = {"reduce_scatter": "reduce_scatter", "all_gather": "allgather",
                 "all_reduce": "allreduce"}


def levels(constants: Mapping, sizes: Mapping | None = None) -> list:
    """``[(name, level, size)]`` for intra and inter, in that order.

    A level's size is ``sizes[name]`` when given (to export for a larger system than
    the one measured), else its ``ranks_per_node`` (intra) or ``nodes`` (inter), else
    -- when that is missing or 1 -- the largest rank count fitted on the level.
    """
    topo = constants.get("topologies") if isinstance(constants, Mapping) else None
    if not topo:
        raise ValueError("constants must have a non-empty 'topologies' mapping")
    sizes = dict(sizes or {})
    unknown = set(sizes) - {"intra", "inter"}
    if unknown:
        raise ValueError(f"sizes are given for intra and inter only, got {sorted(unknown)}")
    out = []
    for name, key in (("intra", "ranks_per_node"), ("inter", "nodes")):
        if name not in topo:
            continue
        lvl = topo[name]
        size = sizes.get(name) or lvl.get(key) or 0
        if size < 2 and name not in sizes:
            fitted = [r for entries in lvl.get("algorithms", {}).values()
                      for e in entries.values() for r in e.get("ranks", [])]
            size = max([size] + fitted)
        if int(size) != size or size < 1:
            raise ValueError(f"{name} size must be a whole number >= 1, got {size}")
        out.append((name, lvl, int(size)))
    if not out:
        raise ValueError(f"constants have neither an 'intra' nor an 'inter' topology "
                         f"(have: {', '.join(topo)})")
    return out


def _per_byte(lvl, collective, algorithm, p):
    """Seconds per byte of one collective at p ranks: ``b(p) β + c(p) γ``."""
    alpha, beta, gamma = hierarchy.level_constants(lvl, collective, algorithm)
    return costs.predict(collective, algorithm, p, 1.0, 0.0, beta, gamma)


def _calculon_op(lvl, collective, algorithm, beta_ref, size):
    """``[scalar, offset]`` with scalar·(p + offset)/p = per-byte(p)/β_ref for every p."""
    p = np.arange(2.0, max(size, 8) + 1)
    y = _per_byte(lvl, collective, algorithm, p) * p / beta_ref
    slope, intercept = np.polyfit(p, y, 1)
    if not np.allclose(slope * p + intercept, y, rtol=1e-9, atol=1e-12 * abs(y).max()):
        raise ValueError(f"the per-byte cost of {collective}/{algorithm} is not of "
                         f"Calculon's scalar·(1 + offset/p) form; export 'ring'")
    # 12 significant digits: the registry's exact values (e.g. [2, -1]) without the
    # last-bit noise of the fit
    return [float(f"{slope:.12g}"), float(f"{intercept / slope:.12g}")]


def calculon_networks(constants: Mapping, *, algorithm: str = "ring",
                      sizes: Mapping | None = None) -> dict:
    """Calculon ``networks`` entries (one per level with at least 2 ranks)."""
    nets = []
    for name, lvl, size in levels(constants, sizes):
        if size < 2:
            continue
        alpha, beta, gamma = hierarchy.level_constants(lvl, "allreduce", algorithm)
        if beta <= 0:
            raise ValueError(f"{name}: all-reduce β is {beta}; Calculon needs a "
                             f"bandwidth > 0")
        ops = {op: _calculon_op(lvl, coll, algorithm if coll == "allreduce" else "ring",
                                beta, size)
               for op, coll in _CALCULON_OPS.items()}
        p2p_beta = _p2p(lvl, name)[1] if lvl.get("p2p") else beta
        ops = {"p2p": [p2p_beta / beta, None], **ops}
        latency = float(costs.predict("allreduce", algorithm, size, 0.0, alpha, beta, gamma))
        nets.append({"bandwidth": 1.0 / beta / 1e9, "efficiency": 1.0, "size": size,
                     "latency": latency, "ops": ops, "must_be_filled": False,
                     "processor_usage": 0.0})
    if not nets:
        raise ValueError("no level with at least 2 ranks to export")
    return {"networks": nets,
            "collcost": {"source": "collcost constants", "algorithm": algorithm,
                         "levels": [n for n, _, s in levels(constants, sizes) if s >= 2],
                         "note": "latency is the all-reduce latency term at p = size"}}


def astra_yaml(constants: Mapping, *, topology: str = "Switch",
               sizes: Mapping | None = None) -> str:
    """ASTRA-sim analytical network YAML (one dimension per level, intra first)."""
    if topology not in ASTRA_HOPS:
        raise ValueError(f"unknown ASTRA-sim topology {topology!r}; expected one of "
                         f"{', '.join(ASTRA_TOPOLOGIES)}")
    dims = levels(constants, sizes)
    npus, bws, lats = [], [], []
    for name, lvl, size in dims:
        alpha, beta = _p2p(lvl, name)
        npus.append(size)
        bws.append(1.0 / (beta * ASTRA_BYTES_PER_GB))
        lats.append(alpha * 1e9 / ASTRA_HOPS[topology])
    lines = ["# ASTRA-sim analytical network, exported by collcost",
             f"# dimensions: {', '.join(n for n, _, _ in dims)}; bandwidth in GB/s "
             f"({ASTRA_BYTES_PER_GB} B per GB), latency in ns per link "
             f"({ASTRA_HOPS[topology]} link(s) per message on {topology})",
             f"topology: [ {', '.join([topology] * len(dims))} ]",
             f"npus_count: [ {', '.join(str(n) for n in npus)} ]",
             f"bandwidth: [ {', '.join(repr(float(b)) for b in bws)} ]",
             f"latency: [ {', '.join(repr(float(x)) for x in lats)} ]"]
    return "\n".join(lines) + "\n"


def read_astra_yaml(text: str) -> dict:
    """Read the flat ``key: [a, b]`` YAML written by :func:`astra_yaml` (comments ok)."""
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        value = value.strip()
        if not sep or not (value.startswith("[") and value.endswith("]")):
            raise ValueError(f"line {number}: expected 'key: [values]', got {line!r}")
        items = [v.strip() for v in value[1:-1].split(",") if v.strip()]
        parsed = []
        for v in items:
            try:
                parsed.append(int(v))
            except ValueError:
                try:
                    parsed.append(float(v))
                except ValueError:
                    parsed.append(v)
        out[key.strip()] = parsed
    return out


def _p2p(lvl, name):
    p2p = lvl.get("p2p")
    if not p2p:
        raise ValueError(f"{name}: no point-to-point ('p2p') constants to export")
    alpha, beta = float(p2p["alpha"]), float(p2p["beta"])
    if beta <= 0:
        raise ValueError(f"{name}: point-to-point β is {beta}; a link needs a bandwidth > 0")
    return alpha, beta


def _p2p_segments(lvl, name):
    """[(min_bytes, alpha, beta)] of the point-to-point fit, one per segment."""
    p2p = lvl.get("p2p") or {}
    segs = p2p.get("segments") or []
    if len(segs) <= 1:
        alpha, beta = _p2p(lvl, name)
        return [(0, alpha, beta)]
    bps = p2p.get("breakpoints") or [s["min_bytes"] for s in segs[1:]]
    mins = [0] + [int(b) for b in bps]
    return [(m, float(s["alpha"]), float(s["beta"])) for m, s in zip(mins, segs)]


def smpi_factors(segments) -> dict:
    """``smpi/bw-factor`` and ``smpi/lat-factor`` strings relative to the first segment.

    SimGrid applies the factor of the largest bound strictly below the size (1 below
    the first bound), so a segment starting at ``min_bytes`` gets bound ``min_bytes-1``.
    """
    _, a0, b0 = segments[0]
    if a0 <= 0 or b0 <= 0:
        raise ValueError("the first point-to-point segment needs α > 0 and β > 0 to serve "
                         "as SimGrid's reference link")
    bw = ["0:1"] + [f"{m - 1}:{b0 / b!r}" for m, _, b in segments[1:]]
    lat = ["0:1"] + [f"{m - 1}:{a / a0!r}" for m, a, _ in segments[1:]]
    return {"smpi/bw-factor": ";".join(bw), "smpi/lat-factor": ";".join(lat)}


def simgrid_xml(constants: Mapping, *, sizes: Mapping | None = None) -> str:
    """SimGrid platform XML with the SMPI piecewise options in a ``<config>`` block."""
    lv = {name: (lvl, size) for name, lvl, size in levels(constants, sizes)}
    intra = lv.get("intra")
    inter = lv.get("inter")
    factor_name = "inter" if inter else "intra"
    segs = _p2p_segments(lv[factor_name][0], factor_name)
    _, ref_alpha, ref_beta = segs[0]
    nodes = inter[1] if inter else 1
    cores = intra[1] if intra else 1
    root = ET.Element("platform", version="4.1")
    root.append(ET.Comment(f" collcost export: links carry the first {factor_name} "
                           f"point-to-point segment; SMPI factors give the others "))
    config = ET.SubElement(root, "config")
    props = {"network/model": "SMPI", **smpi_factors(segs),
             "smpi/os": "0:0:0", "smpi/or": "0:0:0", "smpi/ois": "0:0:0"}
    for key, value in props.items():
        ET.SubElement(config, "prop", id=key, value=value)
    attrs = {"id": "collcost", "prefix": "node-", "suffix": "",
             "radical": f"0-{max(nodes, 1) - 1}", "speed": "1Gf", "core": str(max(cores, 1)),
             "sharing_policy": "SPLITDUPLEX"}
    if inter:
        attrs["bw"] = f"{1.0 / ref_beta / 1e9!r}GBps"
        attrs["lat"] = f"{ref_alpha / 2 * 1e6!r}us"
    else:  # one host: the private link is never used
        attrs["bw"] = f"{1.0 / ref_beta / 1e9!r}GBps"
        attrs["lat"] = "0us"
    if intra:
        if factor_name == "intra":
            ia, ib = ref_alpha, ref_beta
        else:
            ia, ib = _p2p(intra[0], "intra")
        attrs["loopback_bw"] = f"{1.0 / ib / 1e9!r}GBps"
        attrs["loopback_lat"] = f"{ia * 1e6!r}us"
    ET.SubElement(root, "cluster", attrs)
    ET.indent(root)
    return ("<?xml version='1.0'?>\n"
            '<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def alpa_mesh(constants: Mapping, *, algorithm: str = "ring", time_unit: str = "us",
              sizes: Mapping | None = None) -> dict:
    """Alpa / ColossalAI ``mesh_alpha``, ``mesh_beta`` (dimension 0 across nodes)."""
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time unit must be one of {', '.join(TIME_UNITS)}, got "
                         f"{time_unit!r}")
    unit = TIME_UNITS[time_unit]
    lv = {name: (lvl, size) for name, lvl, size in levels(constants, sizes)}
    shape, alphas, betas, dims = [], [], [], []
    for name in ("inter", "intra"):
        if name not in lv:
            continue
        lvl, k = lv[name]
        k = max(k, 1)
        alpha, beta, gamma = hierarchy.level_constants(lvl, "allreduce", algorithm)
        a = float(costs.predict("allreduce", algorithm, k, 0.0, alpha, beta, gamma))
        factor = float(costs.busbw_factor("allreduce", k))
        per_byte = float(_per_byte(lvl, "allreduce", algorithm, k))
        shape.append(k)
        dims.append(name)
        alphas.append(a / unit)
        betas.append((per_byte / factor if factor > 0 else beta) / unit)
    return {"mesh_shape": shape, "mesh_dims": dims, "mesh_alpha": alphas,
            "mesh_beta": betas, "time_unit": time_unit, "byte_unit": "B",
            "algorithm": algorithm,
            "cost": "all_reduce_cost = mesh_alpha + mesh_beta * 2(k-1)/k * bytes"}


def export(constants: Mapping, target: str, *, algorithm: str = "ring",
           astra_topology: str = "Switch", time_unit: str = "us",
           sizes: Mapping | None = None) -> str:
    """The export document for ``target`` as text (JSON, YAML or XML).

    ``sizes``: optional ``{"intra": ranks per node, "inter": nodes}`` overriding the
    measured domain sizes (see :func:`levels`).
    """
    if target == "calculon":
        return json.dumps(calculon_networks(constants, algorithm=algorithm, sizes=sizes),
                          indent=2) + "\n"
    if target == "astra":
        return astra_yaml(constants, topology=astra_topology, sizes=sizes)
    if target == "simgrid":
        return simgrid_xml(constants, sizes=sizes)
    if target == "alpa":
        return json.dumps(alpa_mesh(constants, algorithm=algorithm, time_unit=time_unit,
                                    sizes=sizes), indent=2) + "\n"
    raise ValueError(f"unknown export target {target!r}; expected one of "
                     f"{', '.join(TARGETS)}")
