"""``python -m fits RUN_DIR [RUN_DIR ...] --out constants.json``: fit α, β, γ.

Reads run directories (several = launches of one sweep, pooled; their metadata must
agree), fits every topology and algorithm (see :mod:`fits.fit`), writes a validated
constants file atomically, prints the summary table and optionally draws PNG plots.
Progress goes to stderr.  Exit status: 0 done, 2 bad usage or unusable input (nothing
written), 1 unexpected failure.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from . import constants as constants_file
from . import model, segments, summary
from .fit import FitError, FitOptions, fit_runs

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fits",
        description="Fit α (latency), β (per byte) and γ (per byte reduced) per topology "
                    "and algorithm from collcost run directories, with segments, "
                    "bootstrap intervals and validation figures.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories written by python -m collectives.sweep; "
                             "several are pooled as launches of one sweep (their MPI "
                             "library, sizes of the job, dtype/op/sync/buffer and tuning "
                             "variables must agree)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="constants file to write (JSON, validated against the "
                             "shipped schema; written atomically, replacing FILE)")
    parser.add_argument("--plots", metavar="DIR",
                        help="also draw one PNG per fitted entry into DIR: time vs size "
                             "(log-log) with fitted curves and bootstrap band, residuals "
                             "below (needs matplotlib)")
    parser.add_argument("--loss", choices=model.LOSSES, default="linear",
                        help="loss on relative residuals: linear (least squares, "
                             "default), soft_l1 or huber (robust to outlying points; "
                             "slower)")
    parser.add_argument("--bootstrap", type=int, default=200, metavar="N",
                        help="bootstrap replicates for the confidence intervals "
                             "(default 200; 0 disables intervals)")
    parser.add_argument("--bootstrap-points", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="also resample the points themselves (Poisson weights), "
                             "not only repetitions and launches: catches noise shared by "
                             "a point's repetitions (default: on)")
    parser.add_argument("--confidence", type=float, default=0.95, metavar="C",
                        help="confidence level of the percentile intervals (default 0.95)")
    parser.add_argument("--segments", choices=segments.SEGMENT_CHOICES, default="auto",
                        help="size segments per fit: auto (chosen by BIC, up to 3; "
                             "default) or a fixed number")
    parser.add_argument("--topology", action="append", choices=("intra", "inter", "world"),
                        help="fit only this topology (repeatable; default: all present)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the bootstrap resampling (default 0)")
    parser.add_argument("--quiet", action="store_true",
                        help="do not print the summary table")
    parser.add_argument("--wide", action="store_true",
                        help="print every column of the summary table (intervals, γ, "
                             "breakpoints, validation figures; about 250 columns) "
                             "instead of the narrow default that fits 100 columns")
    return parser


def _error(msg: str) -> int:
    print(f"python -m fits: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.bootstrap < 0:
        return _error(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not 0 < args.confidence < 1:
        return _error(f"--confidence must be between 0 and 1, got {args.confidence}")
    out = Path(args.out)
    if not out.parent.is_dir():
        return _error(f"--out: directory {out.parent} does not exist")
    if out.is_dir():
        return _error(f"--out: {out} is a directory")
    if args.plots:
        from .plots import require_matplotlib
        try:
            require_matplotlib()
        except RuntimeError as exc:
            return _error(f"--plots: {exc}")

    def say(msg):
        print(f"[fits] {msg}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    options = FitOptions(loss=args.loss, segments=args.segments, bootstrap=args.bootstrap,
                         confidence=args.confidence, seed=args.seed,
                         bootstrap_points=args.bootstrap_points,
                         topologies=tuple(args.topology) if args.topology else None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fit_runs(args.runs, options, progress=say)
        for w in caught:
            say(f"warning: {w.message}")
        replaced = out.exists()
        constants_file.save(result.constants, out)
    except (FitError, ValueError) as exc:  # includes RunFormatError, ConstantsError
        return _error(str(exc))
    say(f"{'replaced' if replaced else 'wrote'} {out} ({len(result.entries)} entries, "
        f"validated with {constants_file.validator_name()}) in "
        f"{time.perf_counter() - start:.1f} s")
    if args.plots:
        from .plots import plot_all
        paths = plot_all(result.entries, args.plots, confidence=args.confidence)
        say(f"wrote {len(paths)} plot(s) to {args.plots}")
    if not args.quiet:
        print(summary.format_summary(result.constants, wide=args.wide))
    return 0


if __name__ == "__main__":
    sys.exit(main())
