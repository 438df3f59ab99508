"""Exports of a constants file for other planners and simulators.

Every export starts from the *topology constants* (:mod:`fits.predict.topology`): per
topology the headline latency (small-message regime of the ping-pong) and bandwidth
(large-message regime) plus the topology's γ, and composes collectives with the registry
formulas of :mod:`collectives.costs`.  The fitted entries of our Python algorithms are
not used: they include what each Python message step adds, which is not the network's.
Each export returns :class:`Export`: the documents it writes and, in ``notes``, one
sentence per priced quantity saying which model priced it (the command line prints them
on stderr).  Formats are those of ``cost-models.md``, "Planner input formats".

``calculon``
    ``{"networks": [...]}`` entries of a Calculon ``systems/*.json`` (or a whole system
    file with ``calculon_system``): ``bandwidth`` GB/s (1e9 B/s) = headline bandwidth,
    ``efficiency`` 1, ``size`` = processors in the tier (the intra tier: ranks per node;
    the network tier: nodes × ranks per node, Calculon's own convention), ``ops``
    ``[scalar, offset]`` solved from the registry's per-byte coefficients (ring
    reduce-scatter and allgather, the chosen all-reduce) with time
    ``latency + n·scalar·(1 + offset/p) / (bandwidth·1e9·efficiency)``.  Calculon has one
    latency per tier: ``calculon_latency="message"`` (default) writes the headline latency
    (one message: exact for its ``p2p`` op, and the α term of a collective is negligible
    at the megabyte sizes Calculon prices -- the note gives the size below which it is
    not); ``"allreduce"`` writes the all-reduce's latency term ``a(size)·α`` at
    ``p = size`` (exact for an all-reduce over the whole tier, too high for p2p).
``astra``
    ASTRA-sim analytical network YAML with the keys, order and units of its own files
    (``topology``, ``npus_count``, ``bandwidth`` GB/s with 2^30 B per GB, ``latency`` ns
    per link; dimension 0 innermost).  A dimension of one NPU is refused (ASTRA-sim
    exits on it).  ``astra_backend="congestion_unaware"``: a message crosses ``hops``
    links' latencies and the bandwidth once (Switch: 2 hops), so link latency = α/hops and
    bandwidth = 1/β.  ``"congestion_aware"``: every link of the route serializes the
    whole message (a Switch route is NPU→switch→NPU), so a Switch link gets α/2 and twice
    the bandwidth.  Either way one message between neighbours costs ``α + nβ``.  The
    congestion-aware backend builds one dimension only (``only support 1-dim topology``),
    so it is refused for constants with both topologies.  The NPU count must fit a C
    ``int`` (:data:`ASTRA_MAX_NPUS`).
``simgrid``
    Three files.  The platform XML (plain SimGrid loads it: S4U, Python bindings,
    ``smpirun``): one ``<cluster>`` of ``nodes`` hosts of ``ranks_per_node`` cores; the
    private links carry the inter topology (``lat`` = latency/2: a route crosses two
    private links; no backbone, SPLITDUPLEX), the loopback link the intra topology; its
    ``<config>`` selects the ``CM02`` network model (``latency + n/bandwidth``, no
    factors), no TCP window bound and no cross-traffic.  The SMPI options
    (``*.smpi.cfg``: one ``--cfg=key:value`` per line, for ``smpirun $(cat FILE)``):
    ``smpirun`` replaces the platform's model by its ``SMPI`` model, whose default
    piecewise factors and software overheads would re-price every message, so the file
    sets the factors to 1 and the overheads to 0.  Per-topology piecewise factors cannot
    be expressed: SMPI applies one ``smpi/bw-factor``/``smpi/lat-factor`` to every link,
    loopback included, so factors taken from the network would mis-price same-host
    traffic (and the reverse).  The hostfile lists ``node-i:ranks_per_node``
    (at most :data:`SIMGRID_MAX_HOSTS` hosts).

Every target refuses a value that is not a finite number in its units (constants at the
edge of a double, e.g. a latency of 1e300 s in ns).
``alpa``
    Alpa device-mesh ``mesh_alpha``, ``mesh_beta`` per mesh dimension (dimension 0 =
    across nodes, 1 = within a node), for Alpa's all-reduce cost
    ``α + β · 2(k-1)/k · bytes``: ``mesh_alpha = a(k) α``, ``mesh_beta = (b(k) β + c(k) γ)
    / (2(k-1)/k)`` of the chosen all-reduce on ``k`` ranks.  Unitless in Alpa (defaults
    1, fixed tie-breakers 0.1/0.01/0.001 in the same unit): ``time_unit`` ``"us"``
    (default) keeps those negligible.
``colossalai``
    ColossalAI ``AlphaBetaProfiler`` convention: ``mesh_alpha`` in seconds (the
    all-reduce's latency term ``a(k) α``, what its latency probe of a tiny all-reduce
    measures) and ``mesh_beta = 1e10 / algbw`` with ``algbw`` the all-reduce's algorithmic
    bandwidth at large sizes, ``1 / (b(k) β + c(k) γ)`` (not divided by 2(k-1)/k).
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from collectives import costs

from . import topology as topo_mod

__all__ = ["TARGETS", "ASTRA_TOPOLOGIES", "ASTRA_HOPS", "ASTRA_BACKENDS",
           "ASTRA_BYTES_PER_GB", "ASTRA_MAX_NPUS", "SIMGRID_MAX_HOSTS", "TIME_UNITS", "CALCULON_LATENCIES", "SIMGRID_SUFFIXES",
           "Export", "levels", "calculon_networks", "calculon_system", "astra_yaml",
           "read_astra_yaml", "simgrid_files", "simgrid_xml", "alpa_mesh",
           "colossalai_mesh", "build", "export"]

TARGETS = ("calculon", "astra", "simgrid", "alpa", "colossalai")
#: ASTRA-sim basic topologies and the links one message to a neighbour crosses.
ASTRA_HOPS = {"Ring": 1, "FullyConnected": 1, "Switch": 2}
ASTRA_TOPOLOGIES = tuple(ASTRA_HOPS)
#: ASTRA-sim analytical backends (the conventions of :func:`astra_yaml`).
ASTRA_BACKENDS = ("congestion_unaware", "congestion_aware")
#: Bytes per "GB" in ASTRA-sim's ``bw_GBps_to_Bpns`` (``1 << 30``).
ASTRA_BYTES_PER_GB = 2 ** 30
#: ASTRA-sim reads ``npus_count`` as C ``int`` and multiplies the dimensions in an int.
ASTRA_MAX_NPUS = 2 ** 31 - 1
#: Hosts of a SimGrid export (one hostfile line each): bounded time and size.
SIMGRID_MAX_HOSTS = 10 ** 6
#: Time units of the Alpa export: seconds per unit.
TIME_UNITS = {"s": 1.0, "us": 1e-6}
#: What the single Calculon latency of a tier is.
CALCULON_LATENCIES = ("message", "allreduce")
#: Files of the SimGrid export besides the platform: suffix appended to the platform path.
SIMGRID_SUFFIXES = {"smpi": ".smpi.cfg", "hostfile": ".hostfile"}
#: Calculon op names and the registry collectives they map to.
_CALCULON_OPS = {"reduce_scatter": "reduce_scatter", "all_gather": "allgather",
                 "all_reduce": "allreduce"}
#: Keys of a Calculon system file (calculon/system.py reads these).
_CALCULON_SYSTEM_KEYS = {"matrix", "vector", "mem1", "mem2", "processing_mode", "networks"}


@dataclass
class Export:
    """An export: the main document, extra files (suffix -> text) and pricing notes."""
    text: str
    extra: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


# ------------------------------------------------------------------ levels

def levels(constants: Mapping, sizes: Mapping | None = None) -> list:
    """``[(name, Link, size)]`` for intra and inter, in that order.

    A level's size is ``sizes[name]`` when given (to export for a larger system than
    the one measured), else its ``ranks_per_node`` (intra) or ``nodes`` (inter), else
    -- when that is missing or 1 -- the largest rank count fitted on the level.
    """
    topo = constants.get("topologies") if isinstance(constants, Mapping) else None
    if not topo:
        raise ValueError("constants must have a non-empty 'topologies' mapping")
    sizes = dict(sizes or {})
    unknown = set(sizes) - set(topo_mod.TOPOLOGIES)
    if unknown:
        raise ValueError(f"sizes are given for intra and inter only, got {sorted(unknown)}")
    out = []
    for name, key in (("intra", "ranks_per_node"), ("inter", "nodes")):
        if name not in topo:
            if sizes.get(name, 1) > 1:
                raise ValueError(f"the constants have no {name!r} topology (have: "
                                 f"{', '.join(topo)}), so a {name} size of "
                                 f"{sizes[name]} cannot be priced")
            continue
        lvl = topo[name]
        size = sizes.get(name) or lvl.get(key) or 0
        if size < 2 and name not in sizes:
            fitted = [r for entries in lvl.get("algorithms", {}).values()
                      for e in entries.values() for r in e.get("ranks", [])]
            size = max([size] + fitted)
        if int(size) != size or size < 1:
            raise ValueError(f"{name} size must be a whole number >= 1, got {size}")
        out.append((name, topo_mod.link(constants, name), int(size)))
    if not out:
        raise ValueError(f"constants have neither an 'intra' nor an 'inter' topology "
                         f"(have: {', '.join(topo)})")
    return out


def _link_note(lnk: topo_mod.Link, size: int, what: str) -> str:
    """``tier 0 = intra (4 processors): latency 2.4 µs, bandwidth 6 GB/s (source)``."""
    return (f"{what}: latency {lnk.latency * 1e6:.4g} µs, bandwidth "
            f"{lnk.bandwidth / 1e9:.4g} GB/s ({_short(lnk)}), γ {lnk.gamma * 1e12:.4g} ps/B "
            f"({lnk.gamma_status})")


def _short(lnk: topo_mod.Link) -> str:
    if lnk.source.startswith("headline"):
        if lnk.latency_status == lnk.bandwidth_status:
            return f"headline, {lnk.latency_status}"
        return f"headline: latency {lnk.latency_status}, bandwidth {lnk.bandwidth_status}"
    return "first/last ping-pong segment: the file has no headline"


def _per_byte(lnk, collective, algorithm, p):
    """Seconds per byte of one collective at p ranks: ``b(p) β + c(p) γ``."""
    return costs.predict(collective, algorithm, p, 1.0, 0.0, lnk.beta, lnk.gamma)


def _latency_term(lnk, collective, algorithm, p):
    """Seconds of the α term ``a(p) α``."""
    return float(costs.predict(collective, algorithm, p, 0.0, lnk.latency, 0.0, 0.0))


def _check_finite(obj, where: str) -> None:
    """ValueError naming the first value of ``obj`` (numbers, lists, dicts) that is not a
    finite number: constants at the edge of a double overflow in a target's units, and
    no tool reads ``inf``/``Infinity``/``nan``."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _check_finite(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_finite(value, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where} comes out as {obj!r}, not a finite number: the "
                         f"constants are beyond what this target's units can hold")


def _check_algorithm(algorithm):
    if algorithm not in costs.algorithms("allreduce", native=False):
        raise ValueError(f"unknown algorithm {algorithm!r} for the all-reduce; expected "
                         f"one of {', '.join(costs.algorithms('allreduce', native=False))}")


# ------------------------------------------------------------------ Calculon

def _calculon_op(lnk, collective, algorithm, size):
    """``[scalar, offset]`` with scalar·(p + offset)/p = per-byte(p)/β for every p."""
    # p = 2..8 and up to 64 more points spread to the tier size: enough to check the
    # form, bounded at any size
    p = np.unique(np.concatenate([np.arange(2.0, 9.0),
                                  np.round(np.geomspace(2, max(size, 8), 64))]))
    y = _per_byte(lnk, collective, algorithm, p) * p / lnk.beta
    slope, intercept = np.polyfit(p, y, 1)
    if not np.allclose(slope * p + intercept, y, rtol=1e-9, atol=1e-12 * abs(y).max()):
        raise ValueError(f"the per-byte cost of {collective}/{algorithm} is not of "
                         f"Calculon's scalar·(1 + offset/p) form; export --algorithm ring")
    # 12 significant digits: the registry's exact values (e.g. [2, -1]) without the
    # last-bit noise of the fit
    return [float(f"{slope:.12g}"), float(f"{intercept / slope:.12g}")]


def _calculon_tiers(constants, sizes):
    """``[(name, Link, processors in the tier)]``: intra q, network N·q."""
    lv = levels(constants, sizes)
    by = {name: (lnk, size) for name, lnk, size in lv}
    q = by["intra"][1] if "intra" in by else by["inter"][0].ranks_per_node
    tiers = []
    if "intra" in by and q >= 2:
        tiers.append(("intra", by["intra"][0], q))
    if "inter" in by and by["inter"][1] >= 2:
        tiers.append(("inter", by["inter"][0], by["inter"][1] * max(q, 1)))
    if not tiers:
        raise ValueError("no tier with at least 2 processors to export (Calculon needs "
                         "comm_size >= 2); give --ranks-per-node or --nodes")
    return tiers, q


def calculon_networks(constants: Mapping, *, algorithm: str = "ring",
                      latency: str = "message", sizes: Mapping | None = None) -> Export:
    """Calculon ``networks`` entries (one per tier with at least 2 processors)."""
    _check_algorithm(algorithm)
    if latency not in CALCULON_LATENCIES:
        raise ValueError(f"Calculon latency must be one of {', '.join(CALCULON_LATENCIES)}, "
                         f"got {latency!r}")
    tiers, q = _calculon_tiers(constants, sizes)
    nets, notes = [], []
    for name, lnk, size in tiers:
        ops = {"p2p": [1.0, None]}
        for op, coll in _CALCULON_OPS.items():
            ops[op] = _calculon_op(lnk, coll, algorithm if coll == "allreduce" else "ring",
                                   size)
        ar_alpha = _latency_term(lnk, "allreduce", algorithm, size)
        lat = lnk.latency if latency == "message" else ar_alpha
        nets.append({"bandwidth": lnk.bandwidth / 1e9, "efficiency": 1.0, "size": size,
                     "latency": lat, "ops": ops, "must_be_filled": False,
                     "processor_usage": 0.0})
        notes.append(_link_note(lnk, size, f"tier {len(nets) - 1} = {name} ({size} "
                                                f"processors)"))
        # size where the omitted (message) or added (allreduce) latency is 1% of the
        # all-reduce's bandwidth term at p = size
        per_byte = float(_per_byte(lnk, "allreduce", algorithm, size))
        gap = abs(ar_alpha - lnk.latency)
        n1 = gap / (0.01 * per_byte) if per_byte > 0 else math.inf
        if latency == "message":
            notes.append(f"tier {len(nets) - 1} latency = the {name} message latency "
                         f"{lnk.latency * 1e6:.4g} µs: exact for p2p; an all-reduce over "
                         f"all {size} processors has a latency term {ar_alpha * 1e6:.4g} µs "
                         f"({algorithm}), under 1% of its time above {n1:.3g} B")
        else:
            notes.append(f"tier {len(nets) - 1} latency = the {algorithm} all-reduce's "
                         f"latency term at p = {size}: {ar_alpha * 1e6:.4g} µs (p2p messages "
                         f"are overpriced by {gap * 1e6:.4g} µs)")
    notes.append(f"ops: ring reduce-scatter and allgather, {algorithm} all-reduce (registry "
                 f"formulas; γ of each topology included in the scalar)")
    if len(tiers) == 2:
        notes.append("the network tier's bandwidth is one node's measured link bandwidth; "
                     "Calculon charges it per processor of the tier")
    _check_finite(nets, "calculon networks")
    doc = {"networks": nets,
           "collcost": {"source": "collcost topology constants", "algorithm": algorithm,
                        "tiers": [n for n, _, _ in tiers], "size": "processors in the tier",
                        "latency": latency, "notes": notes}}
    return Export(json.dumps(doc, indent=2) + "\n", notes=notes)


def calculon_system(base_text: str, networks_export: Export, *, where="system file") -> Export:
    """A whole Calculon system file: ``base_text`` (a real one) with our networks."""
    try:
        base = json.loads(base_text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(base, dict) or not _CALCULON_SYSTEM_KEYS <= set(base):
        missing = sorted(_CALCULON_SYSTEM_KEYS - set(base if isinstance(base, dict) else {}))
        raise ValueError(f"{where}: not a Calculon system file (missing {', '.join(missing)})")
    doc = json.loads(networks_export.text)
    base["networks"] = doc["networks"]
    notes = networks_export.notes + [f"networks spliced into {where}; its processor, "
                                     f"memory and processing_mode entries are kept"]
    return Export(json.dumps(base, indent=2) + "\n", notes=notes)


# ------------------------------------------------------------------ ASTRA-sim

def astra_yaml(constants: Mapping, *, topology: str = "Switch",
               backend: str = "congestion_unaware", sizes: Mapping | None = None) -> Export:
    """ASTRA-sim analytical network YAML (one dimension per level, intra first)."""
    if topology not in ASTRA_HOPS:
        raise ValueError(f"unknown ASTRA-sim topology {topology!r}; expected one of "
                         f"{', '.join(ASTRA_TOPOLOGIES)}")
    if backend not in ASTRA_BACKENDS:
        raise ValueError(f"unknown ASTRA-sim backend {backend!r}; expected one of "
                         f"{', '.join(ASTRA_BACKENDS)}")
    dims = levels(constants, sizes)
    ones = [f"{name} has {size}" for name, _, size in dims if size < 2]
    if ones:
        raise ValueError(f"ASTRA-sim refuses a dimension of one NPU (npus_count must be > 1): "
                         f"{'; '.join(ones)}; give --ranks-per-node/--nodes >= 2")
    if backend == "congestion_aware" and len(dims) > 1:
        # astra-network-analytical congestion_aware/topology/Helper.cpp: "only support
        # 1-dim topology" (exit) for any other dimension count
        raise ValueError(f"ASTRA-sim's congestion_aware backend takes one dimension only; "
                         f"these constants give {len(dims)} "
                         f"({', '.join(n for n, _, _ in dims)}): use --astra-backend "
                         f"congestion_unaware, or constants of one topology")
    total = math.prod(size for _, _, size in dims)
    if total > ASTRA_MAX_NPUS:
        raise ValueError(f"ASTRA-sim counts NPUs in a C int: "
                         f"{' x '.join(str(s) for _, _, s in dims)} = {total} NPUs is "
                         f"more than {ASTRA_MAX_NPUS}")
    hops = ASTRA_HOPS[topology]
    # links per route to a neighbour, and how many of them serialize the message
    lat_div, bw_mult = (hops, 1) if backend == "congestion_unaware" else (hops, hops)
    npus, bws, lats, notes = [], [], [], []
    for name, lnk, size in dims:
        npus.append(size)
        bws.append(bw_mult / (lnk.beta * ASTRA_BYTES_PER_GB))
        lats.append(lnk.latency * 1e9 / lat_div)
        notes.append(_link_note(lnk, size, f"dimension {len(npus) - 1} = {name} ({size} "
                                                f"NPUs)"))
    notes.append(f"{backend} on {topology}: a message to a neighbour crosses {hops} link(s)"
                 + (f", each serializing it: link bandwidth × {bw_mult}"
                    if bw_mult > 1 else "") + "; latency per link = latency / "
                 f"{lat_div}; one message costs latency + bytes / bandwidth")
    if bw_mult > 1:
        notes.append(f"{backend} on {topology}: messages that share a link (several leaving "
                     f"or reaching one NPU at once) are serialized at {bw_mult}× the measured "
                     f"bandwidth, so contended traffic comes out up to {bw_mult}× too fast")

    _check_finite({"bandwidth": bws, "latency": lats}, "astra")

    def fmt(values):
        return ", ".join(repr(float(v)) for v in values)

    lines = ["# ASTRA-sim analytical network, exported by collcost from the topology "
             "constants",
             f"# dimensions (innermost first): {', '.join(n for n, _, _ in dims)}; backend "
             f"{backend}",
             f"topology: [ {', '.join([topology] * len(dims))} ]",
             f"npus_count: [ {', '.join(str(n) for n in npus)} ]  # number of NPUs",
             f"bandwidth: [ {fmt(bws)} ]  # GB/s ({ASTRA_BYTES_PER_GB} B per GB) per link",
             f"latency: [ {fmt(lats)} ]  # ns per link"]
    return Export("\n".join(lines) + "\n", notes=notes)


def read_astra_yaml(text: str) -> dict:
    """Read a flat ``key: [a, b]`` YAML like ASTRA-sim's own (comments ok)."""
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


# ------------------------------------------------------------------ SimGrid

#: smpirun options that make SMPI price a message as latency + bytes / bandwidth.
SMPI_OPTIONS = (("network/model", "SMPI"), ("smpi/bw-factor", "0:1"),
                ("smpi/lat-factor", "0:1"), ("smpi/os", "0:0:0"), ("smpi/or", "0:0:0"),
                ("smpi/ois", "0:0:0"), ("network/crosstraffic", "0"),
                ("network/TCP-gamma", "0"))
#: Platform-level options (valid in plain SimGrid) for the same pricing outside SMPI.
PLATFORM_OPTIONS = (("network/model", "CM02"), ("network/crosstraffic", "0"),
                    ("network/TCP-gamma", "0"))


def _num(x: float) -> str:
    return repr(float(x))


def simgrid_files(constants: Mapping, *, sizes: Mapping | None = None) -> Export:
    """The platform XML, its SMPI options file and a hostfile (see the module doc)."""
    lv = {name: (lnk, size) for name, lnk, size in levels(constants, sizes)}
    intra, inter = lv.get("intra"), lv.get("inter")
    cores = intra[1] if intra else 1
    nodes = inter[1] if inter else 1
    if nodes > SIMGRID_MAX_HOSTS:
        raise ValueError(f"simgrid: {nodes} hosts; the export writes at most "
                         f"{SIMGRID_MAX_HOSTS} hosts (one hostfile line each): give "
                         f"--nodes")
    if cores >= 2 and not intra:  # pragma: no cover - levels() sizes intra from intra
        raise ValueError("same-host traffic needs the 'intra' topology")
    notes = []
    root = ET.Element("platform", version="4.1")
    root.append(ET.Comment(
        " collcost export: private links = inter topology (a route crosses two: lat is "
        "half the latency), loopback = intra topology; CM02 prices a message as latency "
        "+ bytes / bandwidth. Under smpirun add the options of the .smpi.cfg file. "))
    config = ET.SubElement(root, "config")
    for key, value in PLATFORM_OPTIONS:
        ET.SubElement(config, "prop", id=key, value=value)
    attrs = {"id": "collcost", "prefix": "node-", "suffix": "",
             "radical": f"0-{nodes - 1}", "speed": "1Gf", "core": str(cores),
             "sharing_policy": "SPLITDUPLEX"}
    if inter:
        lnk = inter[0]
        attrs["bw"] = f"{_num(lnk.bandwidth)}Bps"
        attrs["lat"] = f"{_num(lnk.latency / 2)}s"
        notes.append(_link_note(lnk, nodes, f"private links = inter ({nodes} hosts)"))
    else:  # one host: the private link is never used
        lnk = intra[0]
        attrs["bw"] = f"{_num(lnk.bandwidth)}Bps"
        attrs["lat"] = "0s"
    if intra:
        lnk = intra[0]
        attrs["loopback_bw"] = f"{_num(lnk.bandwidth)}Bps"
        attrs["loopback_lat"] = f"{_num(lnk.latency)}s"
        notes.append(_link_note(lnk, cores, f"loopback = intra ({cores} cores per "
                                            f"host)"))
    _check_finite({k: float(v[:-3] if v.endswith("Bps") else v[:-1])
                   for k, v in attrs.items() if k in ("bw", "lat", "loopback_bw",
                                                      "loopback_lat")}, "simgrid cluster")
    ET.SubElement(root, "cluster", attrs)
    ET.indent(root)
    xml = ("<?xml version='1.0'?>\n"
           '<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">\n'
           + ET.tostring(root, encoding="unicode") + "\n")
    smpi = "".join(f"--cfg={k}:{v}\n" for k, v in SMPI_OPTIONS)
    hostfile = "".join(f"node-{i}:{cores}\n" for i in range(nodes))
    notes.append("SMPI: one set of factors applies to every link, loopback included, so "
                 "the .smpi.cfg file sets them to 1 (and the software overheads to 0): "
                 "every message costs its topology's latency + bytes / bandwidth")
    return Export(xml, extra={"smpi": smpi, "hostfile": hostfile}, notes=notes)


def simgrid_xml(constants: Mapping, *, sizes: Mapping | None = None) -> str:
    """The platform XML alone."""
    return simgrid_files(constants, sizes=sizes).text


# ------------------------------------------------------------------ Alpa / ColossalAI

def _mesh(constants, algorithm, sizes):
    _check_algorithm(algorithm)
    lv = {name: (lnk, size) for name, lnk, size in levels(constants, sizes)}
    dims = [(name,) + lv[name] for name in ("inter", "intra") if name in lv]
    return dims


def alpa_mesh(constants: Mapping, *, algorithm: str = "ring", time_unit: str = "us",
              sizes: Mapping | None = None) -> Export:
    """Alpa ``mesh_alpha``, ``mesh_beta`` (dimension 0 across nodes)."""
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time unit must be one of {', '.join(TIME_UNITS)}, got "
                         f"{time_unit!r}")
    unit = TIME_UNITS[time_unit]
    shape, alphas, betas, names, notes = [], [], [], [], []
    for name, lnk, k in _mesh(constants, algorithm, sizes):
        k = max(k, 1)
        factor = float(costs.busbw_factor("allreduce", k))
        per_byte = float(_per_byte(lnk, "allreduce", algorithm, k))
        shape.append(k)
        names.append(name)
        alphas.append(_latency_term(lnk, "allreduce", algorithm, k) / unit)
        betas.append((per_byte / factor if factor > 0 else lnk.beta) / unit)
        notes.append(_link_note(lnk, k, f"mesh dimension {len(shape) - 1} = {name} "
                                         f"({k} devices), {algorithm} all-reduce"))
    _check_finite({"mesh_alpha": alphas, "mesh_beta": betas}, "alpa")
    doc = {"mesh_shape": shape, "mesh_dims": names, "mesh_alpha": alphas,
           "mesh_beta": betas, "time_unit": time_unit, "byte_unit": "B",
           "algorithm": algorithm,
           "cost": "all_reduce_cost = mesh_alpha + mesh_beta * 2(k-1)/k * bytes",
           "collcost": {"source": "collcost topology constants", "notes": notes}}
    return Export(json.dumps(doc, indent=2) + "\n", notes=notes)


def colossalai_mesh(constants: Mapping, *, algorithm: str = "ring",
                    sizes: Mapping | None = None) -> Export:
    """ColossalAI ``mesh_alpha`` (s) and ``mesh_beta`` (1e10 / algbw of an all-reduce)."""
    shape, alphas, betas, names, notes = [], [], [], [], []
    for name, lnk, k in _mesh(constants, algorithm, sizes):
        if k < 2:
            raise ValueError(f"ColossalAI profiles an all-reduce per mesh dimension: "
                             f"{name} has 1 device; give --ranks-per-node/--nodes >= 2")
        per_byte = float(_per_byte(lnk, "allreduce", algorithm, k))
        shape.append(k)
        names.append(name)
        alphas.append(_latency_term(lnk, "allreduce", algorithm, k))
        betas.append(per_byte * 1e10)
        notes.append(_link_note(lnk, k, f"mesh dimension {len(shape) - 1} = {name} "
                                         f"({k} devices), {algorithm} all-reduce"))
    _check_finite({"mesh_alpha": alphas, "mesh_beta": betas}, "colossalai")
    doc = {"mesh_shape": shape, "mesh_dims": names, "mesh_alpha": alphas,
           "mesh_beta": betas, "algorithm": algorithm,
           "convention": "ColossalAI AlphaBetaProfiler: mesh_alpha seconds, mesh_beta = "
                         "1e10 / algbw (bytes/s of an all-reduce)",
           "collcost": {"source": "collcost topology constants", "notes": notes}}
    return Export(json.dumps(doc, indent=2) + "\n", notes=notes)


# ------------------------------------------------------------------ entry points

def build(constants: Mapping, target: str, *, algorithm: str = "ring",
          astra_topology: str = "Switch", astra_backend: str = "congestion_unaware",
          time_unit: str = "us", calculon_latency: str = "message",
          calculon_base: tuple | None = None, sizes: Mapping | None = None) -> Export:
    """The :class:`Export` for ``target``.

    ``sizes``: optional ``{"intra": ranks per node, "inter": nodes}`` overriding the
    measured domain sizes (see :func:`levels`).  ``calculon_base``: ``(text, name)`` of a
    real Calculon system file to splice the networks into.
    """
    if target == "calculon":
        out = calculon_networks(constants, algorithm=algorithm, latency=calculon_latency,
                                sizes=sizes)
        if calculon_base is not None:
            out = calculon_system(calculon_base[0], out, where=calculon_base[1])
        return out
    if target == "astra":
        return astra_yaml(constants, topology=astra_topology, backend=astra_backend,
                          sizes=sizes)
    if target == "simgrid":
        return simgrid_files(constants, sizes=sizes)
    if target == "alpa":
        return alpa_mesh(constants, algorithm=algorithm, time_unit=time_unit, sizes=sizes)
    if target == "colossalai":
        return colossalai_mesh(constants, algorithm=algorithm, sizes=sizes)
    raise ValueError(f"unknown export target {target!r}; expected one of "
                     f"{', '.join(TARGETS)}")


def export(constants: Mapping, target: str, **options) -> str:
    """The main document of :func:`build` as text (JSON, YAML or XML)."""
    return build(constants, target, **options).text
