"""All-pairs links on an emulated cluster: configured against measured, side by side.

Issue 12, items 1 and 6.  For each scenario it builds emulated hosts
(``collectives.emulate``, needs root), runs ``python -m collectives.links`` across them
and ``fits.links`` on the result, then prints per link class the configured rate, the
measured goodput (``1 / β`` from the slope between the two largest sizes; tbf charges
frame headers, so ~0.96 x the rate is what a perfect measurement gives), their ratio,
and what the analysis named (suspect nodes, suspect links, tiers with their β).

Scenarios (``--scenarios``, comma list):

``healthy``   ``--hosts`` hosts at ``--rate``;
``slow-node`` host 1 at half rate;
``slow-link`` the pair 0-2 at half rate;
``switches``  two switches (first half / second half of the hosts) joined by trunks at
              half rate, measured one pair at a time (``--concurrent 1``), since pairs
              crossing at once would share the trunk.

Timings on a shared machine are noisy; rerun on a quiet one.  Results also go to
``--out/summary.json`` with the run directories.

    sudo python benchmarks/bench_links_emulated.py --hosts 5 --rate 40mbit
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENARIOS = ("healthy", "slow-node", "slow-link", "switches")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=5, help="emulated hosts (default 5)")
    p.add_argument("--rate", default="40mbit", help="link rate, tc units (default 40mbit)")
    p.add_argument("--sizes", default="8,256K,1M",
                   help="links --sizes; the two largest give the bandwidth (default "
                        "8,256K,1M)")
    p.add_argument("--time-budget", type=float, default=0.1,
                   help="links --time-budget per point (default 0.1)")
    p.add_argument("--min-reps", type=int, default=3, help="links --min-reps (default 3)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma list of {', '.join(SCENARIOS)} (default all)")
    p.add_argument("--out", default=None,
                   help="directory for the runs and summary.json (default: a new "
                        "temporary directory)")
    return p.parse_args(argv)


def layout_of(name, hosts):
    half = hosts // 2
    if name == "healthy":
        return {}, []
    if name == "slow-node":
        return {"host_rates": {1: "HALF"}}, []
    if name == "slow-link":
        return {"link_rates": {(0, 2): "HALF"}}, []
    if name == "switches":
        return ({"switches": [0] * half + [1] * (hosts - half), "trunk_rate": "HALF"},
                ["--concurrent", "1"])
    raise SystemExit(f"--scenarios: unknown scenario {name!r}; expected one of "
                     f"{', '.join(SCENARIOS)}")


def main(argv=None) -> int:
    import tempfile

    import numpy as np

    from collectives.emulate import EmulatedCluster, check_available, parse_rate
    from collectives.parsing import parse_sizes
    from fits.links import analyze, read_links_run

    args = parse_args(argv)
    check_available()
    rate = parse_rate(args.rate)
    half = f"{int(rate / 2)}bit"
    sizes = parse_sizes(args.sizes)
    small, big = sizes[-2], sizes[-1]
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-links-"))
    out.mkdir(parents=True, exist_ok=True)
    summary = {"hosts": args.hosts, "rate_bps": rate, "sizes": list(sizes),
               "scenarios": {}}
    print(f"{args.hosts} emulated hosts, links at {rate / 1e6:g} Mbit/s, sizes "
          f"{args.sizes}; goodput from (t({big}) - t({small})) / {big - small} B")
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        layout, extra = layout_of(name, args.hosts)
        layout = {k: ({h: half for h in v} if isinstance(v, dict) else
                      half if v == "HALF" else v) for k, v in layout.items()}
        run = out / name
        cmd = [sys.executable, "-m", "mpi4py", "-m", "collectives.links", "--sizes",
               args.sizes, "--time-budget", str(args.time_budget), "--min-reps",
               str(args.min_reps), "--max-reps", str(max(args.min_reps, 5)), "--warmup",
               "1", "--out", str(run)] + extra
        start = time.monotonic()
        with EmulatedCluster(args.hosts, 1, args.rate, **layout) as c:
            r = c.run(cmd, timeout=1800, env={"PYTHONPATH": str(ROOT)})
        took = time.monotonic() - start
        if not r.ok:
            print(f"{name}: the links run failed: {r.diagnosis}\n{r.stderr[-2000:]}")
            return 1
        rows = [json.loads(x) for x in (run / "points.jsonl").read_text().splitlines()]
        med = {(p["src"], p["dst"], p["bytes"]): p["median_s"] for p in rows}
        classes = {}
        for a in range(args.hosts):
            for b in range(a + 1, args.hosts):
                beta = (med[(a, b, big)] - med[(a, b, small)]) / (big - small)
                classes.setdefault(c.link_rate(a, b), []).append(8 / beta)
        an = analyze(read_links_run(run))
        print(f"\n== {name}: {len(rows)} points in {took:.0f} s (cluster setup included)")
        print(f"{'configured Mbit/s':>18s} {'links':>6s} {'measured Mbit/s (median, min-max)':>36s} "
              f"{'ratio':>6s}")
        result = {"seconds": round(took, 1), "classes": [], "suspect_nodes": [],
                  "suspect_links": [], "tiers": []}
        for bps, got in sorted(classes.items()):
            got = np.asarray(got)
            ratio = float(np.median(got)) / bps
            print(f"{bps / 1e6:18.1f} {got.size:6d} {np.median(got) / 1e6:14.2f} "
                  f"({got.min() / 1e6:.2f}-{got.max() / 1e6:.2f}){'':>8s} {ratio:6.3f}")
            result["classes"].append({"configured_bps": bps, "links": int(got.size),
                                      "measured_bps": [float(x) for x in got],
                                      "ratio": ratio})
        for s in an.suspect_nodes:
            print(f"  suspect node {s['node']} ({s['feature']}): {s['evidence']}")
            result["suspect_nodes"].append({k: s[k] for k in ("node", "feature", "slowdown")})
        for s in an.suspect_links:
            print(f"  suspect link {s['src']}-{s['dst']} ({s['feature']}): {s['evidence']}")
            result["suspect_links"].append({k: s[k] for k in ("src", "dst", "feature",
                                                              "slowdown")})
        for t in an.tiers:
            bw = 8 / t["beta"] / 1e6 if t["beta"] else float("nan")
            print(f"  tier {t['tier']}: {t['links']} links, {bw:.2f} Mbit/s, "
                  f"{len(t['groups'])} group(s)")
            result["tiers"].append({"tier": t["tier"], "links": t["links"],
                                    "beta": t["beta"], "groups": t["groups"]})
        if not (an.suspect_nodes or an.suspect_links):
            print("  no suspect")
        summary["scenarios"][name] = result
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
