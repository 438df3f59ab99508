"""Per-topology link constants: what the step model and every export price with.

A constants file describes each topology (``intra``: ranks of one node, ``inter``: one
rank per node across the network) by a *headline* (``fits.constants.headline``): the
latency of the small-message regime of the ping-pong and the bandwidth of its
large-message regime.  A message of ``n`` bytes on that topology costs the registry's
point-to-point model ``latency + n / bandwidth`` (``collectives.costs``, ``pingpong``),
and a collective costs the registry formula of its algorithm with
``α = latency``, ``β = 1 / bandwidth`` and the topology's reduction cost ``γ``.

These are the constants of the *network*, not of our Python implementation: the fitted
entries under ``algorithms`` include what each Python message step adds, and pricing an
MPI library's collective or a planner's model with them would overstate small messages.

Files without a headline (written before it existed) fall back to the point-to-point
segments: latency from the first (smallest-size) segment's α, bandwidth from the last
(largest-size) segment's β, which is what the headline measures; :attr:`Link.source`
says which was used.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from collectives import costs

__all__ = ["Link", "link", "links", "p2p_time", "flat_time", "TOPOLOGIES"]

#: Topology names of a constants file, innermost first.
TOPOLOGIES = ("intra", "inter")


@dataclass(frozen=True)
class Link:
    """One topology's network constants (seconds, seconds per byte)."""
    name: str
    latency: float          #: α, seconds (small-message regime)
    beta: float             #: s/B, 1 / bandwidth (large-message regime)
    gamma: float            #: s/B reduced: the file's value whatever its status (0 if none)
    latency_status: str
    bandwidth_status: str
    source: str             #: one sentence: where latency and bandwidth came from
    ranks_per_node: int
    nodes: int
    gamma_status: str = "not measured"  #: the γ entry's status (exports print it)

    @property
    def bandwidth(self) -> float:
        """Bytes per second."""
        return 1.0 / self.beta

    def describe(self) -> str:
        """``intra: latency 2.4 µs, bandwidth 6.01 GB/s (headline ...)``."""
        return (f"{self.name}: latency {self.latency * 1e6:.4g} µs ({self.latency_status}), "
                f"bandwidth {self.bandwidth / 1e9:.4g} GB/s ({self.bandwidth_status}); "
                f"{self.source}")


def _topologies(constants) -> Mapping:
    topo = constants.get("topologies") if isinstance(constants, Mapping) else None
    if not topo:
        raise ValueError("constants must have a non-empty 'topologies' mapping")
    return topo


def _headline(constants, name):
    try:
        from fits import constants as constants_mod
    except ImportError:  # pragma: no cover - fits is this package's sibling
        constants_mod = None
    reader = getattr(constants_mod, "headline", None)
    if reader is not None:
        return reader(constants, name)
    return _topologies(constants)[name].get("headline")


def _value(entry, what, name):
    v = None if entry is None else entry.get("value")
    if v is None or not math.isfinite(float(v)) or float(v) < 0:
        status = (entry or {}).get("status", "missing")
        raise ValueError(f"{name}: the headline {what} has no usable value (status "
                         f"{status}); refit with more sizes in that regime")
    return float(v), str(entry.get("status", "identified"))


def link(constants: Mapping, name: str) -> Link:
    """The :class:`Link` of topology ``name``; ValueError naming what is missing."""
    topo = _topologies(constants)
    if name not in topo:
        raise ValueError(f"the constants have no {name!r} topology (have: "
                         f"{', '.join(topo)})")
    lvl = topo[name]
    gentry = lvl.get("gamma") or {}
    gamma = gentry.get("value")
    gamma_status = ("not measured" if gamma is None else str(gentry.get("status") or (
        "identified" if gentry.get("identifiable", True) else "not_identified")))
    gamma = 0.0 if gamma is None else float(gamma)
    head = _headline(constants, name)
    if head is not None:
        lat, lat_status = _value(head.get("latency"), "latency", name)
        bw, bw_status = _value(head.get("bandwidth"), "bandwidth", name)
        if bw <= 0:
            raise ValueError(f"{name}: the headline bandwidth is 0")
        lrange = head["latency"].get("bytes_range") or ["?", "?"]
        brange = head["bandwidth"].get("bytes_range") or ["?", "?"]
        source = (f"headline: latency from the ping-pong's {lrange[0]}-{lrange[1]} B "
                  f"regime, bandwidth from its {brange[0]}-{brange[1]} B regime")
        beta = 1.0 / bw
    else:
        p2p = lvl.get("p2p")
        if not p2p:
            raise ValueError(f"{name}: no ping-pong constants (neither a headline nor "
                             f"'p2p'): measure the pingpong on this topology")
        segs = p2p.get("segments") or [{"alpha": p2p["alpha"], "beta": p2p["beta"]}]
        lat, beta = float(segs[0]["alpha"]), float(segs[-1]["beta"])
        lat_status = bw_status = "segment fit"
        source = ("no headline in the file: latency = the smallest-size ping-pong "
                  "segment's α, bandwidth = 1/β of the largest-size segment")
        if not (math.isfinite(lat) and lat >= 0 and math.isfinite(beta) and beta > 0):
            raise ValueError(f"{name}: point-to-point segments give latency {lat} s and "
                             f"β {beta} s/B; a link needs latency >= 0 and β > 0")
    return Link(name=name, latency=lat, beta=beta, gamma=gamma,
                latency_status=lat_status, bandwidth_status=bw_status, source=source,
                ranks_per_node=int(lvl.get("ranks_per_node") or 1),
                nodes=int(lvl.get("nodes") or 1), gamma_status=gamma_status)


def links(constants: Mapping) -> dict:
    """``{name: Link}`` for each of intra and inter present in the constants."""
    topo = _topologies(constants)
    out = {name: link(constants, name) for name in TOPOLOGIES if name in topo}
    if not out:
        raise ValueError(f"constants have neither an 'intra' nor an 'inter' topology "
                         f"(have: {', '.join(topo)})")
    return out


def p2p_time(lnk: Link, nbytes):
    """Seconds of one message of ``nbytes`` on the link (registry ``pingpong``)."""
    return costs.predict("pingpong", "native", 1, nbytes, lnk.latency, lnk.beta)


def flat_time(constants: Mapping, collective: str, algorithm: str, nodes: int,
              ranks_per_node: int, nbytes, *, gamma: bool = True):
    """Seconds of a flat (one-level) collective over ``nodes × ranks_per_node`` ranks.

    Ranks are placed node by node (ranks 0..q-1 on the first node...).  Every step of a
    synchronous algorithm waits for its slowest message, and with more than one node the
    steps of a ring all cross the network, so the registry formula is priced with the
    inter topology's constants (the intra ones on one node).  Exact for the ring
    algorithms in that placement when links are not shared; an approximation for the
    others.  ``gamma=False`` leaves out the reduction (a simulator that does not time
    the computation).
    """
    nodes, q = int(nodes), int(ranks_per_node)
    if nodes < 1 or q < 1:
        raise ValueError(f"nodes and ranks per node must be >= 1, got {nodes}, {q}")
    lnk = link(constants, "inter" if nodes > 1 else "intra")
    return costs.predict(collective, algorithm, nodes * q, nbytes, lnk.latency, lnk.beta,
                         lnk.gamma if gamma else 0.0)
