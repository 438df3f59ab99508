"""``python -m collectives.merge RUN RUN... --out DIR``: merge launches of one sweep.

Launch-to-launch variance is real; several launches of the same sweep merged into one
run directory let the fitter see it.  Every row keeps its ``launch`` id.  Runs whose
checked metadata differ (:data:`collectives.results.CHECKED_METADATA`) are refused.
No MPI needed.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .results import CHECKED_METADATA, MERGE_OPTIONS, RunFormatError, merge_runs

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the merge command."""
    checked = ", ".join(what for what, _ in CHECKED_METADATA)
    p = argparse.ArgumentParser(
        prog="python -m collectives.merge",
        description="Merge run directories written by launches of the same sweep into "
                    "a new run directory (metadata.json, points.jsonl, points.csv). Each "
                    "point keeps the id of the launch that measured it (column 'launch'). "
                    f"Refused when these differ between runs: {checked}; the "
                    f"measurement options {', '.join(MERGE_OPTIONS)}; or when a launch's "
                    "point is in two inputs. Exit status 2 (nothing written) for every "
                    "refusal or bad input.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (at least 2)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="new run directory to write (must not exist or be empty, nor be "
                        "inside an input); it appears whole or not at all")
    return p


def main(argv=None) -> int:
    """Run the command; returns the exit status (2 for bad input, nothing written)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = merge_runs(args.runs, args.out)
        for w in caught:
            print(f"collcost merge: warning: {w.message}", file=sys.stderr)
    except (RunFormatError, ValueError, OSError) as exc:  # OSError: --out not creatable
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    launches = run.launches
    print(f"merged {len(args.runs)} runs ({len(run.points)} points, {len(launches)} "
          f"launches) into {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
