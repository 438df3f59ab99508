"""How well does the fitter recover known α, β, γ?  Ground truth over many seeds.

Synthetic sweeps (:mod:`fits.synthetic`) with a protocol breakpoint at 64 KiB
(α 2 µs → 10 µs, β 200 → 100 ps/B), γ = 30 ps/B, ranks 2, 3, 4, 5, 8, sizes 0 and
8 B .. 16 MiB, are fitted with the default options.  Two noise models, both 5%
multiplicative lognormal:

* ``rep``   -- 5% on every repetition (21 repetitions; the median averages it out);
* ``point`` -- 5% on every point, shared by its repetitions (what repetitions cannot
  remove: the harder, more realistic case), plus 5% per repetition.

Printed per (noise, entry, segment, constant): median and 95th-percentile relative
error over the seeds, side by side with the target (β 2%, α 5%) as a ratio
(achieved p95 / target; ≤ 1 meets it), the bootstrap interval's coverage of the truth,
and how often the breakpoint count and position were right.

    python benchmarks/bench_fit_accuracy.py [--seeds 30] [--bootstrap 100]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from fits import synthetic  # noqa: E402
from fits.fit import FitOptions, fit_points  # noqa: E402

TRUTH = synthetic.Truth(segments=((0, 2e-6, 2e-10), (65536, 1e-5, 1e-10)), gamma=3e-11)
ENTRIES = [("pingpong", "native"), ("reduce_local", "native"), ("allreduce", "ring"),
           ("allreduce", "recursive_doubling"), ("bcast", "binomial"),
           ("reduce_scatter", "ring"), ("allgather", "ring")]
CHECKED = [("p2p", None), ("allreduce", "ring"), ("allreduce", "recursive_doubling"),
           ("bcast", "binomial")]
TARGET = {"alpha": 0.05, "beta": 0.02, "gamma": 0.05}
NOISES = {"rep": dict(noise=0.05, point_noise=0.0),
          "point": dict(noise=0.05, point_noise=0.05)}


def _entry(topo, collective, algorithm):
    return topo["p2p"] if collective == "p2p" else topo["algorithms"][collective][algorithm]


def run(seeds: int, nboot: int) -> pd.DataFrame:
    rows = []
    opts = FitOptions(bootstrap=nboot)
    for noise_name, noise in NOISES.items():
        for seed in range(seeds):
            pts = pd.DataFrame(synthetic.synthetic_points(TRUTH, ENTRIES, seed=seed,
                                                          **noise))
            topo = fit_points(pts, opts).constants["topologies"]["intra"]
            g = topo["gamma"]
            rows.append({"noise": noise_name, "entry": "gamma (reduce_local)",
                         "segment": "-", "constant": "gamma", "seed": seed,
                         "rel_err": abs(g["value"] / TRUTH.gamma - 1),
                         "covered": g["ci"][0] <= TRUTH.gamma <= g["ci"][1],
                         "breaks_ok": True})
            for collective, algorithm in CHECKED:
                e = _entry(topo, collective, algorithm)
                name = "p2p" if algorithm is None else f"{collective}/{algorithm}"
                breaks_ok = e["breakpoints"] == [65536]
                for s, (start, alpha, beta) in enumerate(TRUTH.segments):
                    # the fitted segment covering a size well inside the true one
                    probe = 1024 if s == 0 else 2 ** 24
                    seg = [x for x in e["segments"] if x["min_bytes"] <= probe][-1]
                    for const, true in (("alpha", alpha), ("beta", beta)):
                        ci = seg[const + "_ci"]
                        rows.append({"noise": noise_name, "entry": name,
                                     "segment": "small" if s == 0 else "large",
                                     "constant": const, "seed": seed,
                                     "rel_err": abs(seg[const] / true - 1),
                                     "covered": bool(ci and ci[0] <= true <= ci[1]),
                                     "breaks_ok": breaks_ok})
            print(f"[bench] {noise_name} seed {seed} done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["noise", "entry", "segment", "constant"], sort=False)
    out = g.agg(median_err_pct=("rel_err", lambda x: 100 * np.median(x)),
                p95_err_pct=("rel_err", lambda x: 100 * np.percentile(x, 95)),
                max_err_pct=("rel_err", lambda x: 100 * np.max(x)),
                ci_coverage=("covered", "mean"),
                breakpoint_right=("breaks_ok", "mean")).reset_index()
    out["target_pct"] = out["constant"].map(TARGET) * 100
    out["p95/target"] = out["p95_err_pct"] / out["target_pct"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30, help="seeds per noise model")
    parser.add_argument("--bootstrap", type=int, default=100,
                        help="bootstrap replicates per fit (for the coverage column)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = summarize(run(args.seeds, args.bootstrap))
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"\n{args.seeds} seeds per noise model, {args.bootstrap} bootstrap replicates, "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
