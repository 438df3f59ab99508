"""Constants dicts for the predictor's tests, built to docs/formats.md.

Every dict returned by :func:`constants` is checked with ``fits.constants.validate``
(the fits helper's schema), so the fixtures cannot drift from the file format.
"""
from __future__ import annotations

TOP = 2 ** 26


def _segments(segments):
    """[(min_bytes, alpha, beta[, gamma])] -> schema segments and breakpoints."""
    mins = [s[0] for s in segments]
    out = []
    for i, s in enumerate(segments):
        seg = {"min_bytes": s[0], "max_bytes": (mins[i + 1] - 1) if i + 1 < len(mins)
               else TOP, "alpha": s[1], "beta": s[2],
               "alpha_ci": [s[1], s[1]], "beta_ci": [s[2], s[2]]}
        if len(s) > 3:
            seg["gamma"] = s[3]
        out.append(seg)
    return out, mins[1:]


def hockney(alpha=None, beta=None, *, segments=None) -> dict:
    """A Hockney (α, β) entry, optionally piecewise: segments [(min_bytes, α, β)]."""
    segments = segments or [(0, alpha, beta)]
    segs, bps = _segments(segments)
    a, b = segments[-1][1], segments[-1][2]
    return {"alpha": a, "beta": b, "alpha_ci": [a, a], "beta_ci": [b, b],
            "segments": segs, "breakpoints": bps,
            "errors": {"median_rel": 0.0, "max_rel": 0.0}}


def registry_entry(alpha=None, beta=None, gamma=None, *, segments=None,
                   ranks=(2, 3, 4)) -> dict:
    """A fitted registry entry; ``gamma=None`` means not identifiable (absorbed in β)."""
    e = hockney(alpha, beta, segments=segments)
    e.update({"model": "registry", "gamma": gamma,
              "gamma_ci": None if gamma is None else [gamma, gamma],
              "gamma_identifiable": gamma is not None, "ranks": list(ranks),
              "bytes_range": [0, TOP], "points": 10})
    return e


def native_entry(per_ranks: dict) -> dict:
    """A native entry: {p: (alpha, beta)} Hockney constants per rank count."""
    return {"model": "hockney-per-p",
            "per_ranks": {str(p): hockney(a, b) for p, (a, b) in per_ranks.items()},
            "ranks": sorted(int(p) for p in per_ranks), "bytes_range": [0, TOP],
            "points": 10, "errors": {"median_rel": 0.0, "max_rel": 0.0}}


def topology(*, ranks_per_node, nodes, alpha=1e-6, beta=1e-10, gamma=0.0,
             p2p_segments=None, algorithms=None) -> dict:
    """One topology entry (p2p constants, γ and fitted algorithms)."""
    return {"ranks_per_node": ranks_per_node, "nodes": nodes,
            "p2p": hockney(alpha, beta, segments=p2p_segments),
            "gamma": {"value": gamma, "ci": [gamma, gamma], "identifiable": True,
                      "source": "reduce_local", "reason": "test fixture"},
            "algorithms": algorithms or {}}


def constants(**topologies) -> dict:
    """A complete, schema-valid constants dict with the given topologies."""
    doc = {"schema_version": 1, "kind": "collcost-constants",
           "created_utc": "2026-11-23T02:00:00Z", "collcost_version": "0.1.0",
           "units": {"alpha": "s", "beta": "s/B", "gamma": "s/B", "bytes": "B"},
           "provenance": {"runs": [{"path": "fixture", "run_id": "fixture"}],
                          "options": {"loss": "linear", "bootstrap": 0,
                                      "confidence": 0.95}},
           "topologies": topologies}
    from fits.constants import validate
    validate(doc)
    return doc


def two_level(*, q=4, nodes=8, intra_algorithms=None, inter_algorithms=None,
              inter_segments=None) -> dict:
    """Typical fixture: shared-memory intra level and a slower network inter level."""
    return constants(
        intra=topology(ranks_per_node=q, nodes=1, alpha=5e-7, beta=5e-11, gamma=2e-11,
                       algorithms=intra_algorithms),
        inter=topology(ranks_per_node=1, nodes=nodes, alpha=8e-6, beta=4e-10,
                       gamma=2e-11, p2p_segments=inter_segments,
                       algorithms=inter_algorithms))


def add_headline(doc: dict, topology_name: str, *, latency, bandwidth,
                 status="identified") -> dict:
    """Give ``doc``'s topology a headline (latency s, bandwidth B/s), as fits writes it."""
    def entry(value, rng):
        ci = None if value is None else [value * 0.9, value * 1.1]
        return {"value": value, "ci": ci, "status": status, "bytes_range": rng,
                "ranks": [2], "note": "test fixture"}
    doc["topologies"][topology_name]["headline"] = {
        "latency": entry(latency, [8, 4096]),
        "bandwidth": entry(bandwidth, [131072, TOP])}
    return doc
