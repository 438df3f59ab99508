"""The sweep's summary in the layouts people read and the ones their tools parse.

``python -m collectives.summary RUN`` (also ``collcost summary RUN``) prints the summary
of an existing run directory; the sweep prints the same at its end
(``--format``/``--wide``).  Layouts (:data:`FORMATS`):

``table`` (default)
    One line per point with the columns that matter, units in the headers, fitting a
    100-column terminal: collective, algorithm, topology, ranks, size, median time
    (µs), CI half-width (%), bus bandwidth (GB/s), flags.  ``--wide`` adds the exact
    byte count, nodes, algorithm bandwidth, mean, minimum and p99 times, repetitions,
    warm-up calls and the stopping rule.
``osu``
    The text layout of the OSU micro-benchmarks (``osu_allreduce``, ``osu_latency``,
    ...): per (topology, ranks, collective, algorithm) a block with OSU's header line
    (``# OSU MPI Allreduce Latency Test``), ``# Datatype: MPI_FLOAT.``, the column
    header ``# Size  Avg Latency(us)`` and one line per size, size left-aligned in 10
    columns and the latency as ``%20.2f``, so the patterns written for OSU output
    (``^(?P<size>\\d+)\\s+(?P<latency>\\S+)``) read it.  Sizes follow OSU: the whole
    vector for bcast, allreduce and reduce_scatter, the per-rank block
    (``bytes // ranks``) for allgather, one message for the ping-pong (OSU's
    ``osu_latency``: half the round trip, as collcost's).  ``--wide`` adds OSU's
    ``-f`` columns: Min Latency(us) (collcost's fastest repetition), Max Latency(us)
    (its p99, collcost keeps no maximum) and Iterations.
``nccl``
    The JSON layout of nccl-tests' ``-J FILE`` output (file version 3): per group one
    document ``{"version": 3, ..., "config": {...}, "results": [{"size", "count",
    "type", "redop", "root", "out_of_place": {"time", "alg_bw", "bus_bw", "nwrong"},
    "in_place": null, "actual_iterations", "experiment_name"}, ...],
    "out_of_bounds": {...}, "average_bus_bandwidth": {...}}`` on one line (JSON Lines;
    one group selected gives exactly one JSON document).  Times in µs, bandwidths in
    GB/s (1e9 B/s), ``size``/``count`` and the bus-bandwidth factors as nccl-tests
    defines them (``count`` is the per-rank block for reduce_scatter and allgather).
    collcost times out-of-place calls only (``in_place`` is null, as nccl-tests
    writes for a half it did not run); ``nwrong`` is 0 for a point whose result
    checked correct and null for one that did not (collcost does not count wrong
    elements; ``out_of_bounds.count`` counts the wrong points).  A ``collcost`` key
    names the group.
``csv``
    The points without samples, all columns (as ``points.csv``).

In the ``osu`` and ``nccl`` layouts the time is the **mean** over repetitions of the
slowest rank's time (OSU's "Avg Latency" and nccl-tests' ``time`` are averages too);
the table shows the median, which the fitter uses.  ``reduce_local`` (a local kernel,
not communication) has no OSU or nccl-tests counterpart and is left out of those
layouts, with a note on stderr.

Exit status of the command: 0, or 2 for a bad option or an unreadable run (one line).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from datetime import datetime

from .costs import AUXILIARY, COLLECTIVES, busbw_factor
from .files import UsageError
from .progress import human_bytes
from .stats import relative_halfwidth

__all__ = ["FORMATS", "format_table", "format_osu", "nccl_documents", "format_nccl",
           "format_csv", "render", "load_rows", "build_parser", "main", "human_size"]

PROG = "python -m collectives.summary"
FORMATS = ("table", "osu", "nccl", "csv")
ALL_KINDS = COLLECTIVES + AUXILIARY

#: OSU benchmark names (the word in "# OSU MPI <name> Latency Test").
OSU_NAMES = {"bcast": "Broadcast Latency Test", "reduce_scatter": "Reduce_scatter Latency Test",
             "allreduce": "Allreduce Latency Test", "allgather": "Allgather Latency Test",
             "pingpong": "Latency Test"}
OSU_DATATYPES = {"float32": "MPI_FLOAT", "float64": "MPI_DOUBLE", "int32": "MPI_INT",
                 "int64": "MPI_INT64_T"}
#: nccl-tests' type names (src/common.cu, NCCL >= 2.x list).
NCCL_TYPES = {"float32": "float", "float64": "double", "int32": "int32", "int64": "int64"}
#: nccl-tests' binaries per collective (experiment name prefix).
NCCL_TESTS = {"bcast": "broadcast_perf", "reduce_scatter": "reduce_scatter_perf",
              "allreduce": "all_reduce_perf", "allgather": "all_gather_perf",
              "pingpong": "sendrecv_perf"}
NCCL_JSON_VERSION = 3


# ---------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------

def human_size(n) -> str:
    """``8388608`` -> ``'8MiB'`` (:func:`collectives.progress.human_bytes`)."""
    return human_bytes(int(n))


def _num(x):
    """A finite float or None (NaN/None/missing -> None)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _bool(x) -> bool:
    if isinstance(x, str):
        return x.strip().lower() in ("true", "1", "yes")
    return bool(x)


def _bandwidths(row):
    """(algbw, busbw) in GB/s from the median time (None where undefined)."""
    return _bw(row, "median_s")


def _bw(row, key):
    """(algbw, busbw) in GB/s from time column ``key``: algbw = bytes / t, busbw =
    algbw x the nccl-tests factor of :func:`collectives.costs.busbw_factor`."""
    t = _num(row.get(key))
    if not t or t <= 0:
        return None, None
    algbw = int(row["bytes"]) / t / 1e9
    try:
        busbw = algbw * float(busbw_factor(row["collective"], int(row["ranks"])))
    except ValueError:  # reduce_local: no bus bandwidth
        busbw = None
    return algbw, busbw


def _ci_pct(row):
    """The wider side of the (asymmetric) 95% CI of the median, in % of the median (the
    half-width the stopping rule compares with --target-ci)."""
    t, lo, hi = (_num(row.get(k)) for k in ("median_s", "ci_low_s", "ci_high_s"))
    if t is None or lo is None or hi is None or t <= 0:
        return None
    return 100 * relative_halfwidth(t, lo, hi)


def _flags(row) -> str:
    return ",".join(f for f, on in (("unstable", _bool(row.get("unstable", False))),
                                    ("WRONG", not _bool(row.get("correct", True)))) if on)


def _sort_key(row):
    c = row["collective"]
    return (str(row["topology"]), int(row["ranks"]),
            ALL_KINDS.index(c) if c in ALL_KINDS else len(ALL_KINDS), c,
            str(row["algorithm"]), str(row.get("launch") or ""), int(row["bytes"]))


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


# ---------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------

#: (header, right-aligned, cell(row) -> str); the default columns, then --wide's.
_NARROW = (
    ("collective", False, lambda r: str(r["collective"])),
    ("algorithm", False, lambda r: str(r["algorithm"])),
    ("topo", False, lambda r: str(r["topology"])),
    ("ranks", True, lambda r: str(int(r["ranks"]))),
    ("size", True, lambda r: human_size(r["bytes"])),
    ("median(us)", True, lambda r: _fmt(_us(r, "median_s"), ".2f")),
    ("ci95(%)", True, lambda r: _fmt(_ci_pct(r), ".1f")),
    ("busbw(GB/s)", True, lambda r: _fmt(_bandwidths(r)[1], ".3f")),
)
_WIDE = (
    ("nodes", True, lambda r: _fmt(_int(r.get("nodes")), "d")),
    ("bytes", True, lambda r: str(int(r["bytes"]))),
    ("algbw(GB/s)", True, lambda r: _fmt(_bandwidths(r)[0], ".3f")),
    ("mean(us)", True, lambda r: _fmt(_us(r, "mean_s"), ".2f")),
    ("min(us)", True, lambda r: _fmt(_us(r, "min_s"), ".2f")),
    ("p99(us)", True, lambda r: _fmt(_us(r, "p99_s"), ".2f")),
    ("reps", True, lambda r: _fmt(_int(r.get("repetitions")), "d")),
    ("warmup", True, lambda r: _fmt(_int(r.get("warmup")), "d")),
    ("stop", False, lambda r: str(r.get("stop_rule") or "-")),
)
_FLAGS = ("flags", False, _flags)


def _us(row, key):
    t = _num(row.get(key))
    return None if t is None else t * 1e6


def _int(x):
    x = _num(x)
    return None if x is None else int(round(x))


def _legend(wide: bool) -> str:
    text = ("units: time in microseconds (us), bandwidth in GB/s = 1e9 bytes/s. "
            "median(us): median over repetitions of the slowest rank's time; ci95(%): "
            "half-width of its 95% confidence interval (wider side); busbw(GB/s): bytes / "
            "median x the nccl-tests bus factor; size: bytes as in the sweep's --help "
            "(size convention)")
    if wide:
        text += ("; algbw = bytes / median; mean, min, p99 over repetitions; reps: "
                 "repetitions timed; stop: rule that ended the point (ci, budget, max)")
    text += "; flags: unstable (CI target missed or p99 > 10 x median), WRONG (result " \
            "checked wrong)."
    return textwrap.fill(text, 99, break_on_hyphens=False)


def format_table(rows, *, wide: bool = False, legend: bool = True) -> str:
    """The human summary: one line per point, sorted by topology, ranks, collective,
    algorithm, size (for a merged run, one section per launch).  Columns are as wide
    as their content; the default columns fit 100 columns for every collective,
    algorithm and flag name collcost has."""
    cols = list(_NARROW) + (list(_WIDE) if wide else []) + [_FLAGS]
    rows = sorted(rows, key=_sort_key)
    cells = [[fn(r) for _, _, fn in cols] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _, _) in
              enumerate(cols)]

    def line(values):
        out = [(v.rjust(w) if right else v.ljust(w))
               for v, w, (_, right, _) in zip(values, widths, cols)]
        return " ".join(out).rstrip()

    lines = [_legend(wide)] if legend else []
    launches = list(dict.fromkeys(r.get("launch") for r in rows))
    if len(launches) <= 1:
        lines.append(line([h for h, _, _ in cols]))
        lines += [line(c) for c in cells]
        return "\n".join(lines)
    # a merged run: one section per launch (same columns, aligned across sections)
    for launch in sorted(launches, key=str):
        mine = [c for c, r in zip(cells, rows) if r.get("launch") == launch]
        lines += ["", f"launch {launch}: {len(mine)} point(s)",
                  line([h for h, _, _ in cols])]
        lines += [line(c) for c in mine]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# Groups (osu, nccl): one per topology, ranks, collective, algorithm (and launch when
# a merged run holds several)
# ---------------------------------------------------------------------------------

def _groups(rows, skipped: list):
    launches = {r.get("launch") for r in rows}
    by = {}
    for r in sorted(rows, key=_sort_key):
        if r["collective"] not in OSU_NAMES:
            if r["collective"] not in skipped:
                skipped.append(r["collective"])
            continue
        key = (r["topology"], int(r["ranks"]), r["collective"], r["algorithm"],
               r.get("launch") if len(launches) > 1 else None)
        by.setdefault(key, []).append(r)
    return list(by.items())


def _group_name(key) -> str:
    topo, p, c, alg, launch = key
    return f"{c}/{alg}/{topo}/p={p}" + (f"/launch={launch}" if launch else "")


def _osu_size(row) -> int:
    if row["collective"] == "allgather":
        return int(row["bytes"]) // int(row["ranks"])
    return int(row["bytes"])


def format_osu(rows, *, wide: bool = False, notes: list | None = None) -> str:
    """The OSU micro-benchmarks' text layout (module docstring)."""
    skipped = []
    blocks = []
    for key, group in _groups(rows, skipped):
        topo, p, c, alg, launch = key
        first = group[0]
        dtype = str(first.get("dtype", "float32"))
        nodes = _int(first.get("nodes"))
        out = ["", f"# OSU MPI {OSU_NAMES[c]}",
               f"# collcost: {c}, algorithm {alg}, topology {topo}, {p} ranks"
               + (f" on {nodes} node(s)" if nodes is not None else "")
               + (f", launch {launch}" if launch else ""),
               f"# collcost: op {first.get('op', 'sum')}, buffer "
               f"{first.get('buffer', 'numpy')}",
               "# collcost: Avg Latency = mean over repetitions of the slowest rank's "
               "time"]
        if c == "allgather":
            out.append("# collcost: Size = bytes per rank (OSU's allgather convention)")
        out.append(f"# Datatype: {OSU_DATATYPES.get(dtype, dtype)}.")
        head = f"{'# Size':<10}{'Avg Latency(us)':>20}"
        if wide:
            out.append("# collcost: Min Latency = fastest repetition, Max Latency = 99th "
                       "percentile (collcost keeps no maximum), Iterations = repetitions")
            head += f"{'Min Latency(us)':>20}{'Max Latency(us)':>20}{'Iterations':>12}"
        out.append(head)
        for r in group:
            mean = _us(r, "mean_s")
            line = f"{_osu_size(r):<10d}{_fmt(mean, '20.2f') if mean is not None else 'nan':>20}"
            if wide:
                line += (f"{_fmt(_us(r, 'min_s'), '.2f'):>20}"
                         f"{_fmt(_us(r, 'p99_s'), '.2f'):>20}"
                         f"{_fmt(_int(r.get('repetitions')), 'd'):>12}")
            out.append(line)
        blocks.append("\n".join(out))
    _note_skipped(skipped, "OSU", notes)
    return "\n".join(blocks) + ("\n" if blocks else "")


def _note_skipped(skipped, layout, notes):
    if skipped and notes is not None:
        notes.append(f"{', '.join(skipped)} left out: no {layout} counterpart")


def _nccl_time(ts) -> str | None:
    """nccl-tests' time stamp layout (``%Y-%m-%d %H:%M:%S``) from collcost's ISO UTC
    stamps (the zone is UTC; nccl-tests writes local time)."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).strftime(
            "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _nccl_count(row) -> int:
    count = _int(row.get("count"))
    if count is None:  # rows without a count: whole vector of the dtype
        from .operations import element_count
        count = element_count(int(row["bytes"]), str(row.get("dtype", "float32")))
    if row["collective"] in ("reduce_scatter", "allgather"):
        return count // int(row["ranks"])
    return count


def nccl_documents(rows, metadata: dict | None = None, *, notes: list | None = None):
    """One nccl-tests JSON document (file version 3) per group (module docstring)."""
    meta = metadata or {}
    skipped = []
    docs = []
    env = meta.get("env") or {}
    for key, group in _groups(rows, skipped):
        topo, p, c, alg, launch = key
        first = group[0]
        results, busbws = [], []
        for r in group:
            mean = _num(r.get("mean_s"))
            algbw, busbw = _bw(r, "mean_s")
            if busbw is not None:
                busbws.append(busbw)
            correct = _bool(r.get("correct", True))
            results.append({
                "size": int(r["bytes"]), "count": _nccl_count(r),
                "type": NCCL_TYPES.get(str(r.get("dtype")), str(r.get("dtype"))),
                "redop": str(r.get("op", "sum")) if c in ("reduce_scatter", "allreduce")
                else "none",
                "root": f"{0 if c == 'bcast' else -1:6d}",
                "out_of_place": {"time": None if mean is None else mean * 1e6,
                                 "alg_bw": algbw, "bus_bw": busbw,
                                 "nwrong": 0.0 if correct else None},
                "in_place": None,
                "actual_iterations": _int(r.get("repetitions")),
                "experiment_name": _group_name(key),
            })
        wrong = sum(1 for r in group if not _bool(r.get("correct", True)))
        sizes = [int(r["bytes"]) for r in group]
        stamps = sorted(str(r.get("timestamp_utc")) for r in group if r.get("timestamp_utc"))
        docs.append({
            "version": NCCL_JSON_VERSION,
            "start_time": _nccl_time(meta.get("date_utc")),
            "args": [str(a) for a in (meta.get("command_line") or [])],
            "env": [f"{k}={v}" for k, v in sorted(env.items())],
            "nccl_version": None,
            "config": {
                "nthreads": 1,
                "ngpus": 0 if str(first.get("buffer", "numpy")) == "numpy" else 1,
                "minimum_bytes": min(sizes), "maximum_bytes": max(sizes),
                "warmup_iters": max(_int(r.get("warmup")) or 0 for r in group),
                "iterations": min(_int(r.get("repetitions")) or 0 for r in group),
                "aggregated_iterations": 1, "validation": 1, "graph": 0,
                "blocking_collectives": True, "per_iter_timing": False,
                "per_iter_skip": 0, "parallel_init": False,
            },
            "collcost": {"test": NCCL_TESTS[c], "collective": c, "algorithm": alg,
                         "topology": topo, "ranks": p, "nodes": _int(first.get("nodes")),
                         "launch": launch, "run_id": meta.get("run_id"),
                         "time": "mean over repetitions of the slowest rank's time (us)"},
            "results": results,
            "out_of_bounds": {"count": wrong, "okay": wrong == 0},
            "average_bus_bandwidth": {
                "bandwidth": sum(busbws) / len(busbws) if busbws else None,
                "okay": "unchecked"},
            "end_time": _nccl_time(stamps[-1]) if stamps else None,
        })
    _note_skipped(skipped, "nccl-tests", notes)
    return docs


def format_nccl(rows, metadata: dict | None = None, *, notes: list | None = None) -> str:
    """:func:`nccl_documents` as JSON Lines (one compact document per line)."""
    docs = nccl_documents(rows, metadata, notes=notes)
    return "".join(json.dumps(_strict(d), allow_nan=False) + "\n" for d in docs)


def _strict(obj):
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_csv(rows) -> str:
    """All columns but the samples, in points.csv's column order."""
    import pandas as pd
    from .results import POINT_FIELDS
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "samples"} for r in rows])
    order = [c for c in POINT_FIELDS if c in frame.columns] + \
        [c for c in frame.columns if c not in POINT_FIELDS]
    return frame[order].to_csv(index=False)


def render(rows, fmt: str = "table", *, wide: bool = False, metadata=None,
           notes: list | None = None) -> str:
    """The summary of ``rows`` in layout ``fmt`` (:data:`FORMATS`), ending in a
    newline."""
    if fmt == "table":
        return format_table(rows, wide=wide) + "\n"
    if fmt == "osu":
        return format_osu(rows, wide=wide, notes=notes)
    if fmt == "nccl":
        return format_nccl(rows, metadata, notes=notes)
    if fmt == "csv":
        return format_csv(rows)
    raise ValueError(f"--format: unknown value {fmt!r}; expected one of "
                     f"{', '.join(FORMATS)}")


# ---------------------------------------------------------------------------------
# Command: the summary of an existing run directory
# ---------------------------------------------------------------------------------

def load_rows(path):
    """(rows without samples, metadata) of run directory ``path``."""
    from .results import read_run
    run = read_run(path)
    frame = run.points.drop(columns=["samples"], errors="ignore")
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
             for k, v in rec.items()} for rec in frame.to_dict("records")]
    return rows, run.metadata


_FILTERS = (("collective", "--collectives", "collectives", str),
            ("algorithm", "--algorithms", "algorithms", str),
            ("topology", "--topology", "topology", str),
            ("ranks", "--ranks", "ranks", int))


def _select(rows, args):
    """The rows the filter options keep; an unknown value is a usage error."""
    filters = []
    for field, option, attr, conv in _FILTERS:
        text = getattr(args, attr)
        if text is None:
            continue
        try:
            wanted = {conv(v.strip()) for v in text.split(",") if v.strip()}
        except ValueError:
            raise UsageError(f"{option}: {text!r} is not a comma list of whole "
                             "numbers") from None
        if not wanted:
            raise UsageError(f"{option} is empty")
        have = {conv(r[field]) for r in rows}
        unknown = sorted(map(str, wanted - have))
        if unknown:
            raise UsageError(f"{option}: {', '.join(unknown)} not in the run (it has "
                             f"{', '.join(sorted(map(str, have)))})")
        filters.append((field, conv, wanted))
    return [r for r in rows if all(conv(r[f]) in w for f, conv, w in filters)]


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Print the summary of a run directory written by the sweep, as a "
                    "table or in the layouts of the OSU micro-benchmarks and nccl-tests "
                    "(for scripts and ReFrame patterns written for those tools).",
        epilog="Layouts: table (default; median time in us, CI in %, bus bandwidth in "
               "GB/s = 1e9 B/s; --wide adds bytes, nodes, algbw, mean/min/p99, reps, "
               "warm-up, stop rule); osu (OSU's '# Size  Avg Latency(us)' blocks, one "
               "per collective/algorithm/topology/ranks; --wide adds OSU's -f columns); "
               "nccl (nccl-tests' -J JSON, one document per line and group); csv (all "
               "columns but samples). osu and nccl report the mean time (their tools "
               "average), the table the median. Reads only; writes nothing.")
    p.add_argument("run", metavar="RUN", help="run directory (metadata.json, points.jsonl)")
    add_format_arguments(p)
    p.add_argument("--collectives", metavar="LIST",
                   help="only these collectives (comma list; default: all in the run)")
    p.add_argument("--algorithms", metavar="LIST",
                   help="only these algorithms (comma list; default: all in the run)")
    p.add_argument("--topology", metavar="LIST",
                   help="only these topologies (comma list of intra, inter, world)")
    p.add_argument("--ranks", metavar="LIST",
                   help="only these rank counts (comma list); with one collective, "
                        "algorithm, topology and rank count selected, --format nccl "
                        "prints exactly one JSON document")
    return p


def add_format_arguments(parser, *, default: str | None = "table") -> None:
    """``--format`` and ``--wide``, shared by the sweep and this command."""
    parser.add_argument("--format", choices=FORMATS, default=default,
                        help="layout of the summary: table (for reading, 100 columns), "
                             "osu (OSU micro-benchmarks text), nccl (nccl-tests JSON, "
                             "one document per line), csv (default table)")
    parser.add_argument("--wide", action="store_true", default=None if default is None
                        else False,
                        help="more columns: in the table bytes, nodes, algbw, mean/min/"
                             "p99 times, repetitions, warm-up calls and the stop rule; "
                             "in the osu layout OSU's -f columns (min, max, iterations)")


def main(argv=None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    from .results import RunFormatError
    try:
        from .files import check_input
        check_input(args.run, option="RUN", directory=True)
        import warnings
        with warnings.catch_warnings(record=True) as caught:  # one line each, no source
            warnings.simplefilter("always")
            rows, meta = load_rows(args.run)
        for w in caught:
            print(f"{prog}: warning: {w.message}", file=sys.stderr)
        rows = _select(rows, args)
        if not rows:
            raise UsageError(f"RUN {args.run}: no points"
                             + (" match the selection" if any(
                                 (args.collectives, args.algorithms, args.topology,
                                  args.ranks)) else ""))
        notes = []
        text = render(rows, args.format, wide=args.wide, metadata=meta, notes=notes)
    except (UsageError, RunFormatError, ValueError) as exc:
        hint = ("; a links run is summarised by collcost fit-links RUN (python -m "
                "fits.links)") if "collcost-links" in str(exc) else ""
        print(f"{prog}: error: {exc}{hint}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"{prog}: {note}", file=sys.stderr)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # piped into head & co.
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
