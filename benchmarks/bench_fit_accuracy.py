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
(achieved p95 / target; ≤ 1 meets it), how often the 95% bootstrap interval covered the
truth -- resampling repetitions only and with point resampling (the default) -- and how
often the breakpoint count and position were right.

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


def _covered(ci, true) -> bool:
    return bool(ci and ci[0] <= true <= ci[1])


def run(seeds: int, nboot: int) -> pd.DataFrame:
    """One row per (noise, seed, entry, segment, constant); the point estimates do not
    depend on the bootstrap, the intervals are computed both ways."""
    rows = []
    both = {"reps": FitOptions(bootstrap=nboot, bootstrap_points=False),
            "points": FitOptions(bootstrap=nboot, bootstrap_points=True)}
    for noise_name, noise in NOISES.items():
        for seed in range(seeds):
            pts = pd.DataFrame(synthetic.synthetic_points(TRUTH, ENTRIES, seed=seed,
                                                          **noise))
            topos = {k: fit_points(pts, o).constants["topologies"]["intra"]
                     for k, o in both.items()}
            topo = topos["reps"]
            g = {k: t["gamma"] for k, t in topos.items()}
            rows.append({"noise": noise_name, "entry": "gamma (reduce_local)",
                         "segment": "-", "constant": "gamma", "seed": seed,
                         "rel_err": abs(g["reps"]["value"] / TRUTH.gamma - 1),
                         "covered_reps": _covered(g["reps"]["ci"], TRUTH.gamma),
                         "covered_points": _covered(g["points"]["ci"], TRUTH.gamma),
                         "breaks_ok": True})
            for collective, algorithm in CHECKED:
                e = _entry(topo, collective, algorithm)
                e_pts = _entry(topos["points"], collective, algorithm)
                name = "p2p" if algorithm is None else f"{collective}/{algorithm}"
                breaks_ok = e["breakpoints"] == [65536]
                for s, (start, alpha, beta) in enumerate(TRUTH.segments):
                    # the fitted segment covering a size well inside the true one
                    probe = 1024 if s == 0 else 2 ** 24
                    i = [j for j, x in enumerate(e["segments"])
                         if x["min_bytes"] <= probe][-1]
                    seg, seg_pts = e["segments"][i], e_pts["segments"][i]
                    for const, true in (("alpha", alpha), ("beta", beta)):
                        rows.append({"noise": noise_name, "entry": name,
                                     "segment": "small" if s == 0 else "large",
                                     "constant": const, "seed": seed,
                                     "rel_err": abs(seg[const] / true - 1),
                                     "covered_reps": _covered(seg[const + "_ci"], true),
                                     "covered_points": _covered(seg_pts[const + "_ci"],
                                                                true),
                                     "breaks_ok": breaks_ok})
            print(f"[bench] {noise_name} seed {seed} done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["noise", "entry", "segment", "constant"], sort=False)
    out = g.agg(median_err_pct=("rel_err", lambda x: 100 * np.median(x)),
                p95_err_pct=("rel_err", lambda x: 100 * np.percentile(x, 95)),
                max_err_pct=("rel_err", lambda x: 100 * np.max(x)),
                cover_reps=("covered_reps", "mean"),
                cover_points=("covered_points", "mean"),
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
    print(f"\n{args.seeds} seeds per noise model, {args.bootstrap} bootstrap replicates; "
          "cover_reps: 95% interval from repetitions (and launches) only, cover_points: "
          "with point resampling too (the default); "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
