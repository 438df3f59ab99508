"""Synthetic links runs with known answers, for tests and benchmarks of the links analysis.

A links run is the run directory of ``python -m collectives.links`` (contract 3 in the
project's coordination notes; ``docs/formats.md``, "Links run"): ``metadata.json`` with
``kind: "collcost-links"`` and a ``links`` section, and one ``points.jsonl`` row per
(src, dst, bytes) with the sweep's point fields plus ``src``, ``dst``, ``src_host``,
``dst_host``, ``round``, ``concurrent``.  This module writes such directories from a
known cluster so that :mod:`fits.links`, :mod:`fits.compare` and :mod:`fits.report`
can be checked against the truth, at any size up to N = 1024 nodes (~10^6 directed
links): rows are generated and written one source node at a time, so memory stays
O(N × sizes × repetitions) apart from the O(N²) truth matrices.

Model of a repetition's one-way time on the directed link ``i -> j`` at ``n`` bytes::

    t = (alpha_ij + n * beta_ij) * exp(sigma_rep * Z) * (1 + tail)

with ``alpha_ij, beta_ij`` the link's tier constants times a per-link manufacturing
spread ``exp(link_spread * Z')``, times the factor of a slowed node (every link touching
it) or of a slowed link (both directions), and ``tail`` an exponential excursion (mean
``tail_scale``) on a fraction ``tail_prob`` of the repetitions (OS noise).

>>> c = make_cluster(4, groups=[2, 2], seed=1)
>>> c.tier.tolist()
[[-1, 0, 1, 1], [0, -1, 1, 1], [1, 1, -1, 0], [1, 1, 0, -1]]
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collectives.files import atomic_write_text, fsync_dir
from collectives.stats import ci_ranks

__all__ = ["LinkCluster", "make_cluster", "tournament_rounds", "write_run", "links_data",
           "DEFAULT_SIZES"]

#: Sizes of a synthetic run: latency, mid, bandwidth regimes.
DEFAULT_SIZES = (8, 65536, 4 << 20)


@dataclass(frozen=True)
class LinkCluster:
    """The truth of a synthetic cluster (N nodes).

    ``alpha``, ``beta``: (N, N) true constants of each directed link (s, s/B; NaN on
    the diagonal); ``tier``: (N, N) tier index of each link (-1 on the diagonal; 0 =
    same group, 1 = across groups); ``group``: group of each node; ``tier_alpha``,
    ``tier_beta``: the nominal constants of each tier; ``slow_nodes``, ``slow_links``:
    what was slowed and by which factor on β (and α when ``slow_alpha``).
    """

    group: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    tier: np.ndarray
    tier_alpha: tuple
    tier_beta: tuple
    hosts: tuple
    slow_nodes: dict = field(default_factory=dict)
    slow_links: dict = field(default_factory=dict)

    @property
    def nodes(self) -> int:
        return int(self.group.size)


def _groups(nodes: int, groups) -> np.ndarray:
    if isinstance(groups, (int, np.integer)):
        if groups < 1 or groups > nodes:
            raise ValueError(f"groups must be in 1..{nodes}, got {groups}")
        return (np.arange(nodes) * int(groups)) // nodes
    sizes = [int(g) for g in groups]
    if sum(sizes) != nodes or min(sizes) < 1:
        raise ValueError(f"group sizes {sizes} must be >= 1 and add up to {nodes}")
    return np.repeat(np.arange(len(sizes)), sizes)


def make_cluster(nodes: int, *, groups=1, alpha=(2e-6, 4e-6), beta=(1e-10, 2e-10),
                 link_spread: float = 0.03, slow_nodes=None, slow_links=None,
                 slow_alpha: bool = False, seed: int = 0) -> LinkCluster:
    """A cluster of ``nodes`` nodes in ``groups`` switch groups (a count, split evenly,
    or a list of sizes).  ``alpha``/``beta``: (same group, across groups) tier
    constants.  ``slow_nodes`` ``{node: factor}`` multiplies β of every link touching
    the node; ``slow_links`` ``{(i, j): factor}`` that of both directions of one pair
    (α too with ``slow_alpha``)."""
    if nodes < 2:
        raise ValueError(f"nodes must be >= 2, got {nodes}")
    rng = np.random.default_rng(seed)
    group = _groups(nodes, groups)
    tier = (group[:, None] != group[None, :]).astype(np.int8)
    np.fill_diagonal(tier, -1)
    ta = np.asarray(alpha, dtype=float)
    tb = np.asarray(beta, dtype=float)
    a = ta[np.clip(tier, 0, None)] * np.exp(link_spread * rng.standard_normal((nodes, nodes)))
    b = tb[np.clip(tier, 0, None)] * np.exp(link_spread * rng.standard_normal((nodes, nodes)))
    slow_nodes = dict(slow_nodes or {})
    slow_links = {tuple(sorted(k)): float(v) for k, v in (slow_links or {}).items()}
    for node, f in slow_nodes.items():
        for m in (b,) + ((a,) if slow_alpha else ()):
            m[node, :] *= f
            m[:, node] *= f
            m[node, node] /= f  # diagonal is blanked below anyway
    for (i, j), f in slow_links.items():
        for m in (b,) + ((a,) if slow_alpha else ()):
            m[i, j] *= f
            m[j, i] *= f
    np.fill_diagonal(a, np.nan)
    np.fill_diagonal(b, np.nan)
    hosts = tuple(f"n{k:04d}" for k in range(nodes))
    return LinkCluster(group=group, alpha=a, beta=b, tier=tier,
                       tier_alpha=tuple(ta.tolist()), tier_beta=tuple(tb.tolist()),
                       hosts=hosts, slow_nodes=slow_nodes, slow_links=slow_links)


def tournament_rounds(nodes: int) -> np.ndarray:
    """(N, N) round of each unordered pair in the circle-method round-robin (N-1 rounds
    of N/2 disjoint pairs for even N; N rounds with one node idle for odd N)."""
    m = nodes if nodes % 2 == 0 else nodes + 1
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    inv2 = m // 2  # 2 * (m/2) = m = 1 (mod m-1)
    r = ((i + j) * inv2) % (m - 1)
    last = m - 1
    r = np.where(i == last, j, r)
    r = np.where(j == last, i, r)
    np.fill_diagonal(r, -1)
    return r[:nodes, :nodes]


def _metadata(cluster: LinkCluster, sizes, direction, repetitions, run_id) -> dict:
    n = cluster.nodes
    return {
        "schema_version": 1, "kind": "collcost-links", "run_id": run_id,
        "date_utc": "2026-12-01T00:00:00.000000Z",
        "command_line": ["fits.linksynth"], "git_commit": None,
        "collcost_version": "0.1.0",
        "mpi": {"library": "synthetic", "version": "synthetic", "standard": "4.0"},
        "mpi4py_version": None, "numpy_version": np.__version__, "python_version": None,
        "world_size": n, "hosts": {h: 1 for h in cluster.hosts}, "nodes": n,
        "ranks_per_node": 1, "env": {}, "timer": {"name": "synthetic"},
        "harness_overhead_s": {}, "options": {"sizes": list(sizes),
                                              "repetitions": repetitions,
                                              "dtype": "float64", "op": "sum",
                                              "sync": "barrier", "buffer": "numpy"},
        "seed": 0, "size_convention": {"pingpong": "one message (one-way time)"},
        "gpu": None,
        "launches": [{"launch": run_id, "date_utc": "2026-12-01T00:00:00.000000Z",
                      "command_line": ["fits.linksynth"], "seed": 0}],
        "links": {"mode": "node", "schedule": "tournament", "direction": direction,
                  "sizes": list(sizes),
                  "endpoints": [{"index": k, "host": h, "rank": k}
                                for k, h in enumerate(cluster.hosts)]},
        "synthetic": {"groups": cluster.group.tolist() if n <= 4096 else None,
                      "tier_alpha": list(cluster.tier_alpha),
                      "tier_beta": list(cluster.tier_beta),
                      "slow_nodes": {str(k): v for k, v in cluster.slow_nodes.items()},
                      "slow_links": [[i, j, f] for (i, j), f in cluster.slow_links.items()]},
    }


def _per_source(cluster, sizes, repetitions, direction, noise, tail_prob, tail_scale,
                rng, dropped=frozenset()):
    """Yield ``(i, dsts, reps, sorted, median, ci_low, ci_high)`` per source node."""
    n = cluster.nodes
    cr = ci_ranks(repetitions)
    for i in range(n):
        dsts = np.arange(i + 1 if direction == "one" else 0, n)
        dsts = dsts[dsts != i]
        if dropped:
            dsts = np.asarray([j for j in dsts if (i, int(j)) not in dropped], dtype=int)
        if dsts.size == 0:
            continue
        true = (cluster.alpha[i, dsts][:, None] + sizes[None, :]
                * cluster.beta[i, dsts][:, None])  # (D, S)
        reps = true[..., None] * np.exp(noise * rng.standard_normal(
            true.shape + (repetitions,)))
        tails = rng.random(reps.shape) < tail_prob
        reps = reps * (1 + tails * rng.exponential(tail_scale, reps.shape))
        srt = np.sort(reps, axis=-1)
        med = np.median(srt, axis=-1)
        lo = srt[..., cr[0] - 1] if cr else np.full(med.shape, np.nan)
        hi = srt[..., cr[1] - 1] if cr else np.full(med.shape, np.nan)
        yield i, dsts, reps, srt, med, lo, hi


def links_data(cluster: LinkCluster, *, sizes=DEFAULT_SIZES, repetitions: int = 10,
               direction: str = "both", noise: float = 0.05, tail_prob: float = 0.02,
               tail_scale: float = 0.5, seed: int = 0):
    """The same data as :func:`write_run` would write, as an in-memory
    :class:`fits.links.LinksData` (no samples): for benchmarks of the analysis alone."""
    from .links import LinksData
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sorted(int(s) for s in sizes), dtype=np.int64)
    parts = {k: [] for k in ("src", "dst", "nbytes", "median", "lo", "hi")}
    for i, dsts, _, _, med, lo, hi in _per_source(cluster, sizes, repetitions, direction,
                                                  noise, tail_prob, tail_scale, rng):
        d, s = dsts.size, sizes.size
        parts["src"].append(np.full(d * s, i, dtype=np.int32))
        parts["dst"].append(np.repeat(dsts, s).astype(np.int32))
        parts["nbytes"].append(np.tile(sizes, d))
        parts["median"].append(med.ravel())
        parts["lo"].append(lo.ravel())
        parts["hi"].append(hi.ravel())
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    meta = _metadata(cluster, sizes.tolist(), direction, repetitions, "synthetic-mem")
    return LinksData(path=Path("<memory>"), metadata=meta, hosts=list(cluster.hosts),
                     src=cat["src"], dst=cat["dst"], nbytes=cat["nbytes"],
                     median=cat["median"], ci_low=cat["lo"], ci_high=cat["hi"],
                     reps=np.full(cat["src"].size, repetitions, dtype=np.int32))


def _fmt(x: float) -> str:
    return repr(float(f"{x:.6g}"))


def write_run(path, cluster: LinkCluster, *, sizes=DEFAULT_SIZES, repetitions: int = 10,
              direction: str = "both", noise: float = 0.05, tail_prob: float = 0.02,
              tail_scale: float = 0.5, seed: int = 0, run_id: str = "synthetic-0",
              drop=()) -> Path:
    """Write a links run of ``cluster`` into the new directory ``path``; returns it.

    ``direction``: ``both`` (every ordered pair) or ``one`` (src < dst).  ``drop``:
    (src, dst) links left out (a partial run).  Rows are generated per source node.
    """
    if direction not in ("both", "one"):
        raise ValueError(f"direction must be 'both' or 'one', got {direction!r}")
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = cluster.nodes
    sizes = np.asarray(sorted(int(s) for s in sizes), dtype=np.int64)
    rounds = tournament_rounds(n)
    conc = n // 2
    cr = ci_ranks(repetitions)
    dropped = {tuple(d) for d in drop}
    meta = _metadata(cluster, sizes.tolist(), direction, repetitions, run_id)
    atomic_write_text(path / "metadata.json", json.dumps(meta, indent=2) + "\n")
    csv_tmp = path / ".points.csv.tmp"
    csv = open(csv_tmp, "w", encoding="utf-8")  # streamed: memory O(N), not O(N^2)
    csv.write("src,dst,src_host,dst_host,bytes,median_s,ci_low_s,ci_high_s,"
              "repetitions,round,concurrent\n")
    head = ('{{"collective":"pingpong","algorithm":"native","topology":"link","ranks":2,'
            '"nodes":{nodes},"bytes":{bytes},"dtype":"float64","op":"sum",'
            '"buffer":"numpy","sync":"barrier","count":{count},"launch":"{launch}",')
    with open(path / "points.jsonl", "w", encoding="utf-8") as fh:
        for i, dsts, reps, srt, med, lo, hi in _per_source(
                cluster, sizes, repetitions, direction, noise, tail_prob, tail_scale,
                rng, dropped):
            lines, csv_rows = [], []
            for d, j in enumerate(dsts.tolist()):
                nodes = 1 if cluster.hosts[i] == cluster.hosts[j] else 2
                for s, nb in enumerate(sizes.tolist()):
                    r = reps[d, s]
                    samp = "[" + ",".join(_fmt(x) for x in r) + "]"
                    ci_l = "null" if not cr else _fmt(lo[d, s])
                    ci_h = "null" if not cr else _fmt(hi[d, s])
                    lines.append(
                        head.format(nodes=nodes, bytes=nb, count=nb // 8 if nb else 0,
                                    launch=run_id)
                        + f'"median_s":{_fmt(med[d, s])},"ci_low_s":{ci_l},'
                        f'"ci_high_s":{ci_h},"mean_s":{_fmt(r.mean())},'
                        f'"min_s":{_fmt(srt[d, s, 0])},"p95_s":{_fmt(srt[d, s, -1])},'
                        f'"p99_s":{_fmt(srt[d, s, -1])},"repetitions":{repetitions},'
                        '"discarded":0,"warmup":2,"stop_rule":"max","unstable":false,'
                        f'"correct":true,"samples":{{"max":{samp},"min":{samp},'
                        f'"mean":{samp}}},"timestamp_utc":"2026-12-01T00:00:00Z",'
                        f'"src":{i},"dst":{j},"src_host":"{cluster.hosts[i]}",'
                        f'"dst_host":"{cluster.hosts[j]}","round":{int(rounds[i, j])},'
                        f'"concurrent":{conc},"timing_loop":"python"}}\n')
                    csv_rows.append(f"{i},{j},{cluster.hosts[i]},{cluster.hosts[j]},{nb},"
                                    f"{_fmt(med[d, s])},{ci_l.replace('null', '')},"
                                    f"{ci_h.replace('null', '')},{repetitions},"
                                    f"{int(rounds[i, j])},{conc}\n")
            fh.write("".join(lines))
            csv.write("".join(csv_rows))
        fh.flush()
    csv.close()
    os.replace(csv_tmp, path / "points.csv")
    fsync_dir(path)
    return path


if __name__ == "__main__":  # pragma: no cover - a quick manual generator
    import argparse
    p = argparse.ArgumentParser(description="Write a synthetic links run (for tests).")
    p.add_argument("out")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--repetitions", type=int, default=10)
    p.add_argument("--slow-node", type=int, action="append", default=[])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    c = make_cluster(a.nodes, groups=a.groups, slow_nodes={k: 2.0 for k in a.slow_node},
                     seed=a.seed)
    write_run(a.out, c, repetitions=a.repetitions, seed=a.seed)
    print(a.out)
