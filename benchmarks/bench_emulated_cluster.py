"""End to end on an emulated cluster: per-topology constants and a hierarchical check.

Issue #6, items 2 and 4.  On emulated hosts (network namespaces, ``collectives.emulate``)
with every link rate-limited to ``--rate``:

1. for each layout of ``--layouts`` (``HOSTSxRANKS``, e.g. ``2x2`` = 2 hosts x 2 ranks),
   ``python -m collectives.sweep --topology auto`` detects the layout and measures
   intra-node and inter-node points; ``python -m fits`` fits separate ``intra`` and
   ``inter`` constants;
2. prints the fitted inter-node β (ping-pong and each fitted collective) against the
   configured link rate (β_wire = 8 / rate seconds per byte); the target is within 10%;
3. on the first layout with >= 2 hosts and >= 2 ranks per host, measures the all-reduce
   over all its ranks (``--topology world``) and prints it against
   ``fits.predict.hierarchy.predict_allreduce`` from the intra and inter constants.

What α means here: the kernel has no netem, so no latency is injected; the inter-node α
is the kernel's TCP path through veth pairs and a bridge plus MPI and Python overheads.

Needs root.  Takes a few minutes; progress on stderr, results on stdout (and in
``--out``: run directories, constants files, ``summary.json``).  On a loaded machine the
small sizes are noisy; the β comparison rests on the large sizes.

    python benchmarks/bench_emulated_cluster.py --rate 200mbit --layouts 2x2,4x1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collectives import emulate  # noqa: E402

#: Collectives of the per-topology sweep: the ping-pong (point-to-point α, β) and the
#: three stages of a hierarchical all-reduce.
COLLECTIVES = "pingpong,allreduce,reduce_scatter,allgather"
ALGORITHMS = "ring"
#: Collectives and algorithms measured across the whole cluster for the hierarchical check.
WORLD_ALGORITHMS = "ring,rabenseifner,native"
#: Sizes from which the link, not latency or scheduling, dominates (summary line).
LARGE = 1 << 20


def parse_layouts(text: str) -> list:
    """``"2x2,4x1"`` -> ``[(2, 2), (4, 1)]`` (hosts, ranks per host)."""
    out = []
    for item in text.split(","):
        try:
            hosts, k = (int(x) for x in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--layouts: expected HOSTSxRANKS items such as 2x2, got {item!r}") from None
        if hosts < 1 or k < 1 or hosts * k < 2:
            raise argparse.ArgumentTypeError(f"--layouts: {item!r} needs at least 2 ranks")
        out.append((hosts, k))
    return out


def say(msg: str) -> None:
    print(f"[bench-emulated] {msg}", file=sys.stderr, flush=True)


def sweep(cluster, out: Path, args, *extra) -> Path:
    """Run one sweep launch on ``cluster`` into ``out``; raise if it fails."""
    cmd = [sys.executable, "-m", "mpi4py", "-m", "collectives.sweep", "--out", str(out),
           "--sizes", args.sizes, "--time-budget", str(args.time_budget),
           "--point-timeout", str(args.point_timeout), "--seed", "1", *extra]
    say(f"{cluster.hosts} host(s) x {cluster.ranks_per_host}: {' '.join(cmd[3:])}")
    result = cluster.run(cmd, timeout=args.timeout, env={"PYTHONPATH": str(ROOT)},
                         capture=False)
    if not result.ok:
        raise SystemExit(f"sweep failed (exit status {result.returncode}): {result.diagnosis}")
    return out


def fit(run: Path, out: Path, bootstrap: int) -> dict:
    """``python -m fits RUN --out OUT``; return the constants."""
    import subprocess
    from fits import constants
    say(f"fitting {run.name}")
    p = subprocess.run([sys.executable, "-m", "fits", str(run), "--out", str(out),
                        "--bootstrap", str(bootstrap), "--quiet"], capture_output=True,
                       text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"fit of {run} failed ({p.returncode}): {p.stderr.strip()}")
    return constants.load(out)


def beta_rows(consts: dict, layout: str, wire_beta: float) -> list:
    """Fitted inter-node β of every entry against the wire's 8/rate."""
    inter = consts["topologies"].get("inter")
    if inter is None:
        return []
    rows = [{"layout": layout, "what": "p2p (pingpong)", "beta": inter["p2p"]["beta"],
             "beta_ci": inter["p2p"].get("beta_ci")}]
    for collective, algs in inter.get("algorithms", {}).items():
        for alg, entry in algs.items():
            if entry.get("model") == "hockney-per-p" or collective == "pingpong":
                continue
            rows.append({"layout": layout, "what": f"{collective}/{alg}",
                         "beta": entry["beta"], "beta_ci": entry.get("beta_ci")})
    for row in rows:
        row["ratio"] = row["beta"] / wire_beta
    return rows


def link_share_rows(run: Path, layout: str, wire_beta: float) -> list:
    """Large inter-node points against the wire: time / (b(p) n · 8/rate).

    ``b(p)`` is the registry's β coefficient (1 for the ping-pong): a ratio near 1.05
    means the link (plus frame headers) is all there is; more means CPU contention or
    protocol stalls.  The median and the minimum repetition are both shown, because on a
    shared machine the medians of large points carry scheduling delays.
    """
    from collectives import costs
    from collectives.results import read_run
    pts = read_run(run).points
    pts = pts[(pts["topology"] == "inter") & (pts["bytes"] >= LARGE)]
    rows = []
    for (collective, algorithm, p), grp in pts.groupby(["collective", "algorithm", "ranks"]):
        if algorithm == costs.NATIVE and collective != "pingpong":
            continue
        b = 1.0 if collective == "pingpong" else \
            float(costs.cost_model(collective, algorithm).coefficients(p)[1])
        wire = b * grp["bytes"] * wire_beta
        rows.append({"layout": layout, "what": f"{collective}/{algorithm}", "ranks": int(p),
                     "median_ratio": float((grp["median_s"] / wire).median()),
                     "min_ratio": float((grp["min_s"] / wire).median())})
    return rows


def hierarchical_rows(consts: dict, world_run: Path, nodes: int, q: int) -> list:
    """Measured all-reduce over ``nodes`` x ``q`` ranks against the two-level prediction."""
    from collectives.results import read_run
    from fits.predict import hierarchy
    pts = read_run(world_run).points
    pts = pts[(pts["collective"] == "allreduce") & (pts["topology"] == "world")
              & (pts["ranks"] == nodes * q)]
    inter = hierarchy.level(consts, "inter")
    rows = []
    for _, pt in pts.sort_values(["algorithm", "bytes"]).iterrows():
        n, alg = int(pt["bytes"]), pt["algorithm"]
        parts = hierarchy.allreduce_breakdown(consts, nodes, q, n, algorithm="ring")
        pred = float(parts["total"])
        # the flat algorithm on all ranks with the inter-node constants (every step
        # modelled at the slower link's speed); the native one has no registry formula
        flat = None if alg == "native" else float(
            hierarchy.collective_time(inter, "allreduce", alg, nodes * q, n))
        rows.append({"algorithm": alg, "bytes": n, "measured_s": pt["median_s"],
                     "predicted_s": pred, "error": pred / pt["median_s"] - 1,
                     "flat_inter_s": flat,
                     "flat_error": None if flat is None else flat / pt["median_s"] - 1,
                     "stages_s": {k: float(v) for k, v in parts.items()
                                  if not k.endswith("_algorithm") and k != "total"}})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench_emulated_cluster.py",
        description="Emulated cluster, end to end: per-topology sweep and fit (fitted "
                    "inter-node beta vs the configured link rate) and a hierarchical "
                    "all-reduce prediction vs measurement. Needs root.")
    p.add_argument("--rate", default="200mbit", help="link rate, tc units (default 200mbit)")
    p.add_argument("--layouts", type=parse_layouts, default=parse_layouts("2x2,4x1"),
                   help="comma list of HOSTSxRANKS layouts to sweep (default 2x2,4x1)")
    p.add_argument("--sizes", default="8,512,4K,32K,128K,512K,1M,2M,4M,8M",
                   help="sweep sizes (default 8,512,4K,32K,128K,512K,1M,2M,4M,8M)")
    p.add_argument("--time-budget", type=float, default=1.0,
                   help="seconds per point (sweep --time-budget, default 1)")
    p.add_argument("--point-timeout", type=float, default=120,
                   help="sweep --point-timeout (default 120)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="limit for each sweep launch in seconds (default 1800)")
    p.add_argument("--bootstrap", type=int, default=50, help="fit bootstrap replicates (default 50)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for runs, constants and summary.json "
                        "(default data/emulated-<time>)")
    args = p.parse_args(argv)
    try:
        rate_bps = emulate.parse_rate(args.rate)
        emulate.check_available()
    except (ValueError, emulate.EmulationUnavailable) as e:
        p.exit(2, f"bench_emulated_cluster: error: {e}\n")
    out = args.out or ROOT / "data" / time.strftime("emulated-%Y%m%dT%H%M%S")
    if out.exists() and any(out.iterdir()):
        p.exit(2, f"bench_emulated_cluster: error: --out {out} exists and is not empty\n")
    out.mkdir(parents=True, exist_ok=True)
    wire_beta = 8 / rate_bps

    betas, shares, hier, hier_layout = [], [], [], None
    for hosts, k in args.layouts:
        name = f"{hosts}x{k}"
        with emulate.EmulatedCluster(hosts, k, args.rate) as cluster:
            run = sweep(cluster, out / f"run-{name}", args, "--topology", "auto",
                        "--collectives", COLLECTIVES, "--algorithms", ALGORITHMS)
            world = None
            if hier_layout is None and hosts >= 2 and k >= 2:
                world = sweep(cluster, out / f"run-{name}-world", args, "--topology", "world",
                              "--ranks", str(hosts * k), "--collectives", "allreduce",
                              "--algorithms", WORLD_ALGORITHMS)
        consts = fit(run, out / f"constants-{name}.json", args.bootstrap)
        betas += beta_rows(consts, name, wire_beta)
        shares += link_share_rows(run, name, wire_beta)
        if world is not None:
            hier_layout = name
            hier = hierarchical_rows(consts, world, hosts, k)

    print(f"\nLink rate {args.rate} = {rate_bps / 8e6:g} MB/s each way; "
          f"wire beta = 8/rate = {wire_beta:.4g} s/B")
    print(f"{'layout':>6}  {'inter-node entry':<26} {'beta s/B':>10} {'95% CI':>23} "
          f"{'beta/wire':>9}  within 10%")
    for r in betas:
        ci = r["beta_ci"]
        ci_text = f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "-"
        print(f"{r['layout']:>6}  {r['what']:<26} {r['beta']:>10.4g} {ci_text:>23} "
              f"{r['ratio']:>9.3f}  {'yes' if abs(r['ratio'] - 1) <= 0.10 else 'NO'}")
    print(f"\nInter-node points >= {LARGE >> 20} MiB: time / (registry beta coefficient x "
          f"bytes x wire beta), median over sizes")
    print(f"{'layout':>6}  {'entry':<26} {'p':>2} {'median rep.':>11} {'fastest rep.':>12}")
    for r in shares:
        print(f"{r['layout']:>6}  {r['what']:<26} {r['ranks']:>2} {r['median_ratio']:>11.3f} "
              f"{r['min_ratio']:>12.3f}")
    if hier:
        nodes, q = (int(x) for x in hier_layout.split("x"))
        print(f"\nAll-reduce over {nodes} hosts x {q} ranks: measured (world, p={nodes * q}) vs "
              f"predicted two-level ring from intra + inter constants")
        print("(two-level: intra ring reduce-scatter, inter ring all-reduce on n/q bytes "
              "with q flows per link, intra ring allgather; flat: the measured algorithm "
              "on all ranks with the inter-node constants)")
        print(f"{'algorithm':<13} {'bytes':>9} {'measured ms':>12} {'two-level ms':>13} "
              f"{'error':>8} {'flat ms':>10} {'error':>8}")
        for r in hier:
            flat = ("-", "-") if r["flat_inter_s"] is None else \
                (f"{r['flat_inter_s'] * 1e3:.3f}", f"{r['flat_error']:+.1%}")
            print(f"{r['algorithm']:<13} {r['bytes']:>9} {r['measured_s'] * 1e3:>12.3f} "
                  f"{r['predicted_s'] * 1e3:>13.3f} {r['error']:>+8.1%} {flat[0]:>10} "
                  f"{flat[1]:>8}")
        big = [abs(r["error"]) for r in hier
               if r["algorithm"] == "native" and r["bytes"] >= LARGE]
        if big:
            print(f"native all-reduce vs two-level prediction, sizes >= {LARGE >> 20} MiB: "
                  f"median |error| {statistics.median(big):.1%}, max {max(big):.1%}")
    (out / "summary.json").write_text(json.dumps(
        {"rate": args.rate, "rate_bps": rate_bps, "wire_beta": wire_beta, "betas": betas,
         "link_shares": shares,
         "hierarchical_layout": hier_layout, "hierarchical": hier}, indent=1))
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
