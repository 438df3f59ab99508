"""``python -m fits RUN_DIR [RUN_DIR ...] [--out constants.json]``: fit α, β, γ.

Reads run directories (several = launches of one sweep, pooled; their metadata must
agree), fits every topology and algorithm (see :mod:`fits.fit`), writes a validated
constants file atomically, prints the summary table and draws PNG plots.  With one
run directory and no ``--out``, the constants go to ``RUN_DIR/constants.json`` and the
plots to ``RUN_DIR/plots/`` (when matplotlib is installed).  An existing constants file
or non-empty plot directory is replaced only with ``--overwrite``.  Progress and the paths
written go to stderr.  Exit status: 0 done, 2 bad usage or unusable input (nothing
written), 1 unexpected failure.  (``collcost fit`` is the same command.)
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from collectives.files import UsageError, check_output

from . import constants as constants_file
from . import model, segments, summary
from .fit import FitError, FitOptions, fit_runs

EXIT_USAGE = 2
#: Most bootstrap replicates (each holds a copy of the point table's times).
MAX_BOOTSTRAP = 10000
PROG = "python -m fits"
#: Name of the constants file (and of the plot directory) written into a run by default.
DEFAULT_NAME = "constants.json"
DEFAULT_PLOTS = "plots"
#: The files of a run directory the fit reads (never written by it).
RUN_FILES = ("metadata.json", "points.jsonl", "points.csv")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fit α (latency), β (per byte) and γ (per byte reduced) per topology "
                    "and algorithm from collcost run directories, with segments, "
                    "bootstrap intervals and validation figures. With one RUN_DIR and "
                    "no options it writes RUN_DIR/constants.json and RUN_DIR/plots/.",
        epilog="The fits package has more commands: python -m fits.predict (scaling "
               "laws, rubric, step prediction, exports; collcost predict). All of "
               "collcost's commands, measuring ones included: collcost --help.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories written by python -m collectives.sweep; "
                             "several are pooled as launches of one sweep (their MPI "
                             "library, sizes of the job, dtype/op/sync/buffer and tuning "
                             "variables must agree)")
    parser.add_argument("--out", metavar="FILE",
                        help=f"constants file to write (JSON, validated against the "
                             f"shipped schema; written atomically). Default with one "
                             f"RUN_DIR: RUN_DIR/{DEFAULT_NAME}; needed when several "
                             f"RUN_DIRs are pooled. An existing FILE is replaced only "
                             f"with --overwrite")
    parser.add_argument("--plots", metavar="DIR",
                        help=f"draw one PNG per fitted entry into DIR: time vs size "
                             f"(log-log) with fitted curves and bootstrap band, residuals "
                             f"below (needs matplotlib). Default without --out: "
                             f"RUN_DIR/{DEFAULT_PLOTS}/ when matplotlib is installed; "
                             f"with --out: no plots unless --plots is given")
    parser.add_argument("--no-plots", action="store_true",
                        help="draw no plots (also not the default RUN_DIR/plots/)")
    parser.add_argument("--overwrite", "--force", action="store_true",
                        help="replace an existing constants file and draw into a "
                             "non-empty plot directory (default: refuse, exit 2)")
    parser.add_argument("--loss", choices=model.LOSSES, default="linear",
                        help="loss on relative residuals: linear (least squares, "
                             "default), soft_l1 or huber (robust to outlying points; "
                             "slower)")
    parser.add_argument("--bootstrap", type=int, default=200, metavar="N",
                        help="bootstrap replicates for the confidence intervals "
                             "(default 200; 0 disables intervals; at most 10000, and "
                             "replicates x points at most 5e7 (about 0.8 GB of "
                             "tables): 10^6 points allow 50)")
    parser.add_argument("--bootstrap-points", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="also resample the points themselves (Poisson weights), "
                             "not only repetitions and launches: catches noise shared by "
                             "a point's repetitions (default: on)")
    parser.add_argument("--confidence", type=float, default=0.95, metavar="C",
                        help="confidence level of the intervals (default 0.95)")
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
                             "breakpoints, validation figures: one line per entry, "
                             "about 270-340 characters wide; view with less -S) "
                             "instead of the narrow default that fits 100 columns")
    return parser


def _outputs(args, say):
    """(constants path, plot directory or None), checked before any work: never one of
    the runs' files, never an existing file or non-empty directory without --overwrite."""
    inputs = [Path(run) / name for run in args.runs for name in RUN_FILES]
    if args.out is None:
        if len(args.runs) > 1:
            raise UsageError(f"--out is needed when several RUN_DIRs are pooled (the "
                             f"default RUN_DIR/{DEFAULT_NAME} is for one run)")
        run = Path(args.runs[0])
        if not run.is_dir():
            raise UsageError(f"RUN_DIR {run}: is not a directory")
        out_text = str(run / DEFAULT_NAME)
    else:
        out_text = args.out
    try:
        out = check_output(out_text, inputs=inputs, overwrite=args.overwrite,
                           option="--out" if args.out is not None else "constants file")
    except UsageError as exc:
        if "exists" in str(exc) and not args.overwrite:
            raise UsageError(f"{exc}; --overwrite replaces it, --out FILE writes "
                             f"elsewhere") from None
        raise
    plots = args.plots
    if args.no_plots:
        if plots:
            raise UsageError("--plots and --no-plots exclude each other")
        return out, None
    if plots is None and args.out is None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            say(f"no plots: matplotlib is not installed (pip install 'collcost[plot]'); "
                f"--no-plots silences this")
            return out, None
        plots = str(Path(args.runs[0]) / DEFAULT_PLOTS)
    if plots is None:
        return out, None
    from .plots import require_matplotlib
    try:
        require_matplotlib()
    except RuntimeError as exc:
        raise UsageError(f"--plots: {exc}") from None
    try:
        check_output(plots, inputs=inputs, option="--plots", overwrite=args.overwrite,
                     directory=True, parents=True)
    except UsageError as exc:
        if "not empty" in str(exc):
            raise UsageError(f"{exc} (it holds plots of an earlier fit? --overwrite draws "
                             f"over them, --plots DIR draws elsewhere, --no-plots skips)"
                             ) from None
        raise
    return out, plots


def _is_fits_command(name: str) -> bool:
    """True when ``fits.<name>`` is a module with a command line (predict, links, ...)."""
    import importlib.util
    if not name.isidentifier() or name.startswith("_"):
        return False
    try:
        spec = importlib.util.find_spec(f"fits.{name}")
    except (ImportError, ValueError):
        return False
    return spec is not None and name in ("predict", "links", "compare", "report")


def main(argv=None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)

    def _error(msg: str) -> int:
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE

    def say(msg):
        print(f"[fits] {msg}", file=sys.stderr, flush=True)

    if not 0 <= args.bootstrap <= MAX_BOOTSTRAP:  # bounded before anything is allocated
        return _error(f"--bootstrap must be between 0 and {MAX_BOOTSTRAP}, got "
                      f"{args.bootstrap}")
    if not 0 <= args.seed < 2**63:
        return _error(f"--seed must be between 0 and 2^63-1, got {args.seed}")
    empty = [r for r in args.runs if not str(r).strip()]
    if empty:
        return _error("RUN_DIR is empty (an empty path)")
    for run in args.runs:  # 'python -m fits predict ...' meant python -m fits.predict
        if not Path(run).exists() and _is_fits_command(run):
            return _error(f"RUN_DIR {run}: no such directory; the {run} command is "
                          f"python -m fits.{run} (or collcost {run})")
    if not 0 < args.confidence < 1:
        return _error(f"--confidence must be between 0 and 1, got {args.confidence}")
    try:
        out, plots = _outputs(args, say)
    except UsageError as exc:
        return _error(str(exc))

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
    if plots:
        from .plots import plot_all
        paths = plot_all(result.entries, plots, confidence=args.confidence)
        say(f"wrote {len(paths)} plot(s) to {plots}")
    if not args.quiet:
        try:
            print(summary.format_summary(result.constants, wide=args.wide), flush=True)
        except BrokenPipeError:  # piped into head: the constants are written; exit quietly
            from collectives.files import drop_stdout
            drop_stdout()
    return 0


if __name__ == "__main__":
    sys.exit(main())
