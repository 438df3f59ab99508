"""``python -m fits.predict SUBCOMMAND``: scaling laws, rubric, training step, exports.

Subcommands (each explains every option with ``--help``):

``laws``     Amdahl vs Gustafson, the textbook strong/weak models and their best K.
``rubric``   judge a measured ``p, seconds[, rate_per_hour, quality, work]`` CSV.
``step``     data-parallel training step from a constants file or explicit α, β, γ.
``export``   a constants file for Calculon, ASTRA-sim, SimGrid/SMPI or Alpa/ColossalAI.

``laws``, ``rubric`` and ``step`` print one per-row table and a summary in ``--format``
``table`` (default), ``csv`` (the table, then the summary as ``# key: value`` lines, so
``pandas.read_csv(..., comment="#")`` reads it) or ``json`` (``{"table": [...],
"summary": {...}}``; NaN as null, infinities as the strings "inf"/"-inf"); ``--plots DIR``
writes PNGs there.  Usage errors and invalid inputs exit with status 2 and one line on
stderr naming the problem.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from . import exports, pricing, rubric, scaling, step

__all__ = ["main", "COMMANDS", "parse_workers", "parse_floats"]

FORMATS = ("table", "csv", "json")
#: name -> (help, add_arguments(parser), run(args) -> (DataFrame, summary, plots))
COMMANDS: dict = {}


def command(name: str, help: str):
    """Register a subcommand: the decorated function adds its arguments."""
    def wrap(add):
        COMMANDS[name] = {"help": help, "add": add, "doc": add.__doc__}
        return add
    return wrap


def _runner(name):
    def wrap(run):
        COMMANDS[name]["run"] = run
        return run
    return wrap


# ------------------------------------------------------------------ argument parsing

#: Most worker counts a list may hold, and the largest count (bounded before the list
#: is built: ``1-30000000`` used to allocate gigabytes).
MAX_WORKER_COUNTS = 100_000
MAX_WORKERS = 10**9


def parse_workers(text: str) -> list:
    """Worker counts: ``1,2,4``, ranges ``1-8`` / ``2-16:2`` and doublings ``1-64:x2``;
    at most :data:`MAX_WORKER_COUNTS` counts, each at most :data:`MAX_WORKERS`."""
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if "-" in item:
                lo, _, rest = item.partition("-")
                hi, _, stepping = rest.partition(":")
                if len(lo.strip()) > 12 or len(hi.strip()) > 12:
                    raise ValueError
                lo, hi = int(lo), int(hi)
                if hi < lo:
                    raise ValueError
                if hi > MAX_WORKERS:
                    raise argparse.ArgumentTypeError(
                        f"worker count {hi} is larger than the limit of {MAX_WORKERS}")
                if not stepping.startswith("x"):
                    stride = int(stepping) if stepping else 1
                    if stride >= 1 and len(out) + (hi - lo) // stride + 1 \
                            > MAX_WORKER_COUNTS:
                        raise argparse.ArgumentTypeError(
                            f"{item!r} lists {(hi - lo) // stride + 1} worker counts; the "
                            f"limit is {MAX_WORKER_COUNTS} in all (use A-B:STEP or A-B:xF)")
                if stepping.startswith("x"):
                    factor = int(stepping[1:])
                    if factor < 2 or lo < 1:
                        raise ValueError
                    k = lo
                    while k <= hi:
                        out.append(k)
                        k *= factor
                else:
                    stride = int(stepping) if stepping else 1
                    if stride < 1:
                        raise ValueError
                    out.extend(range(lo, hi + 1, stride))
            else:
                if len(item) > 12:
                    raise ValueError
                out.append(int(item))
                if out[-1] > MAX_WORKERS:
                    raise argparse.ArgumentTypeError(
                        f"worker count {out[-1]} is larger than the limit of "
                        f"{MAX_WORKERS}")
            if len(out) > MAX_WORKER_COUNTS:
                raise argparse.ArgumentTypeError(
                    f"more than {MAX_WORKER_COUNTS} worker counts")
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad worker list item {item!r}: use N, A-B, A-B:STEP or A-B:xF") from None
    if not out:
        raise argparse.ArgumentTypeError("the worker list is empty")
    if min(out) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {min(out)}")
    return sorted(set(out))


#: Most numbers one list option may hold, and most rows of a table (tables grow with
#: the product of the lists).
MAX_LIST = 10_000
MAX_TABLE_ROWS = 1_000_000


def parse_floats(text: str) -> list:
    """Comma-separated numbers (at most :data:`MAX_LIST`)."""
    items = str(text).split(",")
    if len(items) > MAX_LIST:
        raise argparse.ArgumentTypeError(f"{len(items)} numbers, more than the limit of "
                                         f"{MAX_LIST}")
    try:
        vals = [float(v) for v in items if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got "
                                         f"{text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("the list is empty")
    return vals


def _fraction(text):
    v = float(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return v


def _nonneg(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be finite and >= 0, got {text}")
    return v


def _positive(text):
    v = _nonneg(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _count(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= v <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_WORKERS}, got {text}")
    return v


def _common(p: argparse.ArgumentParser, plots: bool = True):
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output: aligned 'table' (default), 'csv' (table then '# key: "
                        "value' summary lines) or 'json' ({table, summary})")
    if plots:
        p.add_argument("--plots", metavar="DIR", type=Path,
                       help="also write PNG plots into DIR (created if missing; needs "
                            "matplotlib)")


# ------------------------------------------------------------------ output

def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    return v


#: Widest line of the human-readable output.
WIDTH = 100


def _human(v) -> str:
    """One value for people: integral numbers as integers, others to 4 digits."""
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.4g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        return ", ".join(_human(x) for x in v)
    return str(v)


def _summary_lines(summary: dict, indent: str = "") -> list:
    """Aligned ``key  value`` lines; a nested dict becomes a titled, indented block and
    a list of sentences one line each."""
    lines = []
    flat = [k for k, v in summary.items() if not isinstance(v, dict)]
    width = min(max((len(str(k)) for k in flat), default=0), 34)
    for k, v in summary.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:")
            lines.extend(_summary_lines(v, indent + "  "))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v) \
                and sum(len(x) for x in v) > WIDTH - width - 2 - len(indent):
            lines.append(f"{indent}{k}:")
            for x in v:
                lines.extend(textwrap.wrap(x, WIDTH, initial_indent=f"{indent}  - ",
                                           subsequent_indent=f"{indent}    ",
                                           break_on_hyphens=False))
        else:
            head = f"{indent}{str(k):<{width}}  "
            lines.extend(textwrap.wrap(_human(v), WIDTH, initial_indent=head,
                                       subsequent_indent=" " * len(head),
                                       break_on_hyphens=False) or [head.rstrip()])
    return lines


def emit(table: pd.DataFrame, summary: dict, fmt: str, out=None) -> None:
    """Print one table and its summary in ``fmt`` (table, csv or json)."""
    out = out or sys.stdout
    if fmt == "json":
        doc = {"table": _jsonable(table.to_dict(orient="records")),
               "summary": _jsonable(summary)}
        out.write(json.dumps(doc, indent=2) + "\n")
        return
    if fmt == "csv":
        table.to_csv(out, index=False, float_format="%.10g")
        for k, v in summary.items():
            out.write(f"# {k}: {json.dumps(_jsonable(v))}\n")
        return
    shown, legend = table, {}
    for col in table.columns:  # long text columns: a key per value and a legend below
        if not (pd.api.types.is_object_dtype(table[col])
                or pd.api.types.is_string_dtype(table[col])):
            continue
        if table[col].astype(str).str.len().max() > 24:
            keys = {}
            for v in table[col].astype(str):
                keys.setdefault(v, f"[{len(keys) + 1}]")
            shown = shown.assign(**{col: table[col].astype(str).map(keys)})
            legend[col] = keys
    text = shown.to_string(index=False, line_width=WIDTH,
                           float_format=lambda x: _human(x))
    out.write(text + "\n")
    for col, keys in legend.items():
        out.write(f"{col}:\n")
        for v, key in keys.items():
            out.write("\n".join(textwrap.wrap(v.replace(",", ", "), WIDTH,
                                               initial_indent=f"  {key} ",
                                               subsequent_indent=" " * (len(key) + 3)))
                      + "\n")
    out.write("\n" + "\n".join(_summary_lines(summary)) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    from collectives.files import atomic_write_text
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _progress(msg: str) -> None:
    print(f"fits.predict: {msg}", file=sys.stderr)


# ------------------------------------------------------------------ laws

@command("laws", "Amdahl vs Gustafson and the textbook strong/weak models")
def _laws_args(p):
    """Amdahl and Gustafson speedups side by side for each serial fraction s and worker
    count K; Amdahl time T(K)/T(1) = s + (1-s)/K, speedup, efficiency, the ceiling 1/s
    and the fraction of it reached at each K; the textbook strong model
    T = s + (1-s)/K + c lg K (and its speedup) vs the weak model T = s + (1-s) + c lg K
    (and its efficiency T(1)/T(K)), with the whole K that minimizes the strong time."""
    p.add_argument("--serial", type=parse_floats, default=[0.01, 0.05, 0.1, 0.25],
                   metavar="S[,S...]", help="serial fractions in [0, 1] (default "
                                            "0.01,0.05,0.1,0.25)")
    p.add_argument("--workers", type=parse_workers, default=parse_workers("1-1024:x2"),
                   metavar="LIST", help="worker counts: N, A-B, A-B:STEP, A-B:xF, "
                                        "comma-separated (default 1-1024:x2)")
    p.add_argument("--comm-coeff", type=_nonneg, default=0.01, metavar="C",
                   help="c of the textbook models' c·lg K communication term, as a "
                        "fraction of T(1) (default 0.01)")
    _common(p)


@_runner("laws")
def _laws(args):
    rows_total = len(args.serial) * len(args.workers)
    if rows_total > MAX_TABLE_ROWS:
        raise ValueError(f"--serial x --workers is {rows_total} rows, more than the limit "
                         f"of {MAX_TABLE_ROWS}")
    K = np.asarray(args.workers, dtype=float)
    rows, summary = [], {}
    curves_s, curves_e, ceilings, styles = {}, {}, {}, {}
    for i, s in enumerate(args.serial):
        scaling.check_fraction(s, "--serial")
        amd = scaling.amdahl_speedup(s, K)
        ceiling = float(scaling.amdahl_ceiling(s))
        strong = scaling.textbook_strong_time(s, args.comm_coeff, K)
        weak = scaling.textbook_weak_time(s, args.comm_coeff, K)
        t1 = scaling.textbook_strong_time(s, args.comm_coeff, 1)
        frame = pd.DataFrame({
            "serial_fraction": s, "workers": K.astype(int),
            "amdahl_time": scaling.amdahl_time(s, K), "amdahl_speedup": amd,
            "amdahl_efficiency": scaling.efficiency(amd, K),
            "gustafson_speedup": scaling.gustafson_speedup(s, K),
            "amdahl_ceiling": ceiling,
            "fraction_of_ceiling": amd / ceiling,
            "strong_time": strong, "strong_speedup": scaling.speedup(t1, strong),
            "weak_time": weak, "weak_efficiency": scaling.speedup(t1, weak)})
        rows.append(frame)
        kstar = scaling.textbook_optimal_workers(s, args.comm_coeff)
        best = int(K[np.argmin(strong)])
        summary[f"s={s:g}"] = {
            "amdahl_ceiling": ceiling,
            "largest_workers": int(K.max()),
            "fraction_of_ceiling_at_largest": float(amd[-1] / ceiling),
            "strong_optimal_workers": kstar,
            "strong_optimal_time": float(scaling.textbook_strong_time(
                s, args.comm_coeff, kstar)) if math.isfinite(kstar) else None,
            "best_listed_workers": best}
        curves_s[f"Amdahl s={s:g}"] = amd
        curves_s[f"Gustafson s={s:g}"] = frame["gustafson_speedup"].to_numpy()
        styles[f"Amdahl s={s:g}"] = {"color": f"C{i % 10}", "ls": "-"}
        styles[f"Gustafson s={s:g}"] = {"color": f"C{i % 10}", "ls": "--", "marker": "x"}
        curves_e[f"Amdahl s={s:g}"] = frame["amdahl_efficiency"].to_numpy()
        ceilings[f"s={s:g}"] = ceiling
    table = pd.concat(rows, ignore_index=True)

    def plots(d, plt_mod):
        return [plt_mod.speedup_plot(d / "laws_speedup.png", K, curves_s, ceilings=ceilings,
                                     styles=styles, title="Amdahl (solid) vs Gustafson "
                                                          "(dashed)"),
                plt_mod.efficiency_plot(d / "laws_efficiency.png", K, curves_e,
                                        title="Amdahl efficiency")]
    return table, {"comm_coeff": args.comm_coeff, **summary}, plots


# ------------------------------------------------------------------ rubric

@command("rubric", "judge a measured scaling table (CSV: p, seconds[, ...])")
def _rubric_args(p):
    """Reads a CSV with columns p (workers) and seconds (run time) and optional
    rate_per_hour (price per hour of the whole allocation of that row), quality (a
    result metric of the same run) and work (units of work done; default 1).  Prints
    speedup (throughput ratio against the smallest p), efficiency, Karp-Flatt per p,
    the least-squares Amdahl serial fraction (1/S - 1/p = s(1 - 1/p)), its ceiling and
    model speedup, cost per run, cost per unit of work, work per unit of cost, the
    quality gate (rows drifting beyond the tolerance are flagged and excluded from the
    fit and the recommendations), the largest p keeping efficiency >= threshold, the
    cheapest p and a one-line verdict."""
    p.add_argument("csv", type=Path, help="the measured table (CSV with a header row)")
    p.add_argument("--threshold", type=_fraction, default=rubric.DEFAULT_THRESHOLD,
                   help="efficiency a recommended p must keep (default 0.70)")
    p.add_argument("--quality-tol", type=_nonneg, default=rubric.DEFAULT_QUALITY_TOL,
                   metavar="TOL", help="largest allowed relative drift of 'quality' "
                                       "from the smallest-p row (default 0.01)")
    p.add_argument("--rate", type=_nonneg, metavar="PER_WORKER_HOUR",
                   help="price per worker-hour when the CSV has no rate_per_hour column "
                        "(without either, costs are in worker-seconds)")
    _common(p)


@_runner("rubric")
def _rubric(args):
    res = rubric.evaluate(rubric.read_table(args.csv), threshold=args.threshold,
                          quality_tol=args.quality_tol, rate_per_worker_hour=args.rate)
    t = res.table
    ok = t["quality_ok"].to_numpy()

    def plots(d, plt_mod):
        K = t["p"].to_numpy()
        curves = {"measured": t["speedup"].to_numpy()}
        if np.isfinite(res.serial_fraction):
            curves[f"Amdahl fit s={res.serial_fraction:.3g}"] = t["model_speedup"].to_numpy()
        eff = {"measured": np.where(ok, t["efficiency"].to_numpy(), np.nan)}
        return [plt_mod.speedup_plot(d / "rubric_speedup.png", K, curves,
                                     ceilings={"Amdahl": res.ceiling}, title="Speedup"),
                plt_mod.efficiency_plot(d / "rubric_efficiency.png", K, eff,
                                        threshold=res.threshold, title="Efficiency")]
    return t, res.summary(), plots


# ------------------------------------------------------------------ step

def load_constants(path: Path) -> dict:
    """A constants file, read and validated by :func:`fits.constants.load`."""
    from .. import constants as constants_mod
    return constants_mod.load(path)  # ConstantsError is a ValueError: exit status 2


@command("step", "data-parallel training step per worker count")
def _step_args(p):
    """Models one training step on K workers: compute time (T_c/K in strong scaling,
    T_c in weak), the gradient all-reduce (intra-node constants inside a node, the
    two-level hierarchical all-reduce once K spans nodes; by default each stage is the
    MPI library's own collective where the fitter identified it, else the fastest
    registry algorithm priced with the topology's network constants: --pricing; the
    summary says which model priced what), the part of it not
    overlapped with compute, and serial time.  Per K: step time, communication time,
    serial fraction s(K) = T_comm/(T_comp + T_comm), speedup, efficiency, Amdahl
    ceiling 1/s(K), cost per step and per unit of work.  Recommends the fastest K, the
    largest K with efficiency >= threshold and the cheapest K meeting a deadline."""
    src = p.add_argument_group("communication constants (one of)")
    src.add_argument("--constants", type=Path, metavar="FILE",
                     help="constants file written by fits (intra and inter topologies)")
    src.add_argument("--alpha", type=_nonneg, metavar="S",
                     help="explicit latency α in seconds (with --beta; flat network)")
    src.add_argument("--beta", type=_nonneg, metavar="S_PER_B",
                     help="explicit seconds per byte β")
    src.add_argument("--gamma", type=_nonneg, default=0.0, metavar="S_PER_B",
                     help="explicit seconds per byte reduced γ (default 0)")
    g = p.add_argument_group("model")
    size = g.add_mutually_exclusive_group(required=True)
    size.add_argument("--grad-bytes", type=_nonneg, metavar="B",
                      help="gradient bytes all-reduced per step")
    size.add_argument("--params", type=_nonneg, metavar="N",
                      help="parameter count (bytes = N × --dtype-size)")
    g.add_argument("--dtype-size", type=_positive, default=4, metavar="B",
                   help="bytes per gradient element with --params (default 4)")
    g.add_argument("--compute-s", type=_positive, required=True, metavar="S",
                   help="compute seconds of one step on one worker")
    g.add_argument("--serial-s", type=_nonneg, default=0.0, metavar="S",
                   help="seconds per step that more workers do not shorten (default 0)")
    g.add_argument("--overlap", type=_nonneg, default=0.0, metavar="F",
                   help="fraction of the communication overlapped with compute, 0..1 "
                        "(default 0)")
    g.add_argument("--mode", choices=step.MODES, default="strong",
                   help="strong: fixed global batch; weak: fixed per-worker batch "
                        "(default strong)")
    g.add_argument("--workers", type=parse_workers, default=parse_workers("1-256:x2"),
                   metavar="LIST", help="worker counts: N, A-B, A-B:STEP, A-B:xF, "
                                        "comma-separated (default 1-256:x2)")
    g.add_argument("--ranks-per-node", type=_count, metavar="Q",
                   help="workers per node (default: the constants' intra ranks_per_node; "
                        "with explicit α, β: all workers in one flat network)")
    g.add_argument("--algorithm", metavar="NAME",
                   help="all-reduce algorithm (registry name, e.g. ring, rabenseifner; "
                        "used by every stage that has it, priced with the topology "
                        "constants); default: the MPI library's own collective where the "
                        "fitter identified it, else the fastest registry algorithm")
    g.add_argument("--pricing", choices=pricing.PRICINGS, default=pricing.DEFAULT,
                   help="what prices each stage: library (default: the MPI library's "
                        "identified collective, else the topology constants), topology "
                        "(registry formulas with the topology's network constants) or "
                        "fitted (constants of collcost's own Python algorithms, which "
                        "include their per-step software cost: for comparing with "
                        "collcost's measurements, not for planning)")
    c = p.add_argument_group("cost and recommendations")
    c.add_argument("--rate", type=_nonneg, metavar="PER_WORKER_HOUR",
                   help="price per worker-hour (without it costs are worker-seconds)")
    c.add_argument("--threshold", type=_fraction, default=0.70,
                   help="efficiency the 'largest efficient K' must keep (default 0.70)")
    c.add_argument("--deadline", type=_positive, metavar="S",
                   help="seconds the job may take; the cheapest K must meet it")
    c.add_argument("--steps", type=_positive, default=1.0, metavar="N",
                   help="job size in steps at K = 1 (weak scaling needs N/K steps of K "
                        "batches; default 1)")
    _common(p)


@_runner("step")
def _step(args):
    if args.constants is not None and (args.alpha is not None or args.beta is not None):
        raise ValueError("give either --constants or --alpha/--beta, not both")
    if args.constants is None and (args.alpha is None or args.beta is None):
        raise ValueError("give --constants FILE, or both --alpha and --beta")
    if not 0 <= args.overlap <= 1:
        raise ValueError(f"--overlap must be between 0 and 1, got {args.overlap}")
    if args.constants is not None:
        consts = load_constants(args.constants)
        q = args.ranks_per_node or int(
            (consts.get("topologies", {}).get("intra") or {}).get("ranks_per_node") or 1)
    else:
        consts = step.explicit_constants(args.alpha, args.beta, args.gamma)
        q = args.ranks_per_node or max(args.workers)
    nbytes = step.gradient_bytes(grad_bytes=args.grad_bytes, params=args.params,
                                 dtype_size=args.dtype_size)
    K = np.asarray(args.workers)
    comm, labels = step.allreduce_times(consts, K, nbytes, ranks_per_node=q,
                                        algorithm=args.algorithm, pricing=args.pricing)
    table = step.step_table(comm, K, compute_s=args.compute_s, serial_s=args.serial_s,
                            overlap=args.overlap, mode=args.mode,
                            rate_per_worker_hour=args.rate)
    table["algorithm"] = labels
    rec = step.recommend(table, threshold=args.threshold, deadline_s=args.deadline,
                         steps=args.steps)
    summary = {"mode": args.mode, "gradient_bytes": nbytes, "ranks_per_node": q,
               "pricing": args.pricing,
               "cost_unit": "currency" if args.rate is not None else "worker-seconds",
               **rec}
    ceilings = None
    if args.mode == "strong" and (K > 1).any():
        # Amdahl fit to the modelled speedups: the ceiling the whole curve points at
        s_fit = scaling.fit_serial_fraction(K, table["speedup"].to_numpy())
        summary["amdahl_fit_serial_fraction"] = s_fit
        summary["amdahl_fit_ceiling"] = float(scaling.amdahl_ceiling(np.clip(s_fit, 0, 1)))
        ceilings = {"Amdahl fit": summary["amdahl_fit_ceiling"]}
        if not 0 <= s_fit <= 1:
            summary["amdahl_fit_note"] = (
                "fitted serial fraction outside [0, 1]: "
                + ("more workers slow the step down" if s_fit > 1 else "super-linear speedup")
                + "; Amdahl's law does not describe this curve")

    used = sorted({part.split("=", 1)[1] for lab in labels for part in str(lab).split(",")
                   if "=" in part})
    summary["priced_by"] = [pricing.describe_label(u) for u in used]

    def plots(d, plt_mod):
        Kf = table["workers"].to_numpy()
        return [plt_mod.speedup_plot(d / "step_speedup.png", Kf,
                                     {f"{args.mode} scaling": table["speedup"].to_numpy()},
                                     ceilings=ceilings, title="Training-step speedup"),
                plt_mod.efficiency_plot(d / "step_efficiency.png", Kf,
                                        {f"{args.mode} scaling":
                                         table["efficiency"].to_numpy()},
                                        threshold=args.threshold, title="Efficiency"),
                plt_mod.breakdown_plot(d / "step_breakdown.png", Kf,
                                       compute=table["compute_s"],
                                       exposed_comm=table["exposed_comm_s"],
                                       serial=table["serial_s"], title="Step time")]
    return table, summary, plots


# ------------------------------------------------------------------ export

@command("export", "write a constants file in another planner's format")
def _export_args(p):
    """Converts a constants file for another tool, in its units and semantics, from the
    topology constants (per topology: the headline latency of the ping-pong's
    small-message regime, the bandwidth of its large-message regime, and γ) composed with
    the registry formulas; the fitted constants of collcost's own Python algorithms are
    not used.  calculon: JSON 'networks' entries (GB/s, s, ops [scalar, offset], size =
    processors in the tier), or a whole system file with --calculon-system.  astra:
    ASTRA-sim analytical network YAML (GB/s with 2^30 B per GB, ns per link).  simgrid:
    a platform XML that plain SimGrid loads (cluster: private links = inter, loopback =
    intra, CM02 model), FILE.smpi.cfg with the smpirun options that keep SMPI's
    piecewise factors and overheads neutral (run: smpirun $(cat FILE.smpi.cfg) -platform
    FILE -hostfile FILE.hostfile ./app), and FILE.hostfile; needs --output.  alpa:
    mesh_alpha/mesh_beta per mesh dimension (dimension 0 across nodes), unitless in
    --time-unit.  colossalai: mesh_alpha in s and mesh_beta = 1e10 / algbw of an
    all-reduce (its AlphaBetaProfiler convention).  Which constants and formula priced
    each quantity is printed on stderr.  Documents go to --output (written atomically;
    nothing is written on an error) or stdout; the target fixes the format."""
    p.add_argument("constants", type=Path, help="constants file written by fits")
    p.add_argument("--target", choices=exports.TARGETS, required=True,
                   help="output format: " + ", ".join(exports.TARGETS))
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write here (atomically) instead of stdout; simgrid also writes "
                        "FILE.smpi.cfg and FILE.hostfile next to it")
    p.add_argument("--algorithm", default="ring",
                   help="all-reduce algorithm (registry name) whose formula prices the "
                        "calculon all_reduce op and the alpa/colossalai meshes (default "
                        "ring: the form these tools assume)")
    p.add_argument("--calculon-latency", choices=exports.CALCULON_LATENCIES,
                   default="message",
                   help="calculon: the one latency of each tier. message (default): the "
                        "topology's per-message latency, exact for p2p; the latency "
                        "term of a collective is left out, under 1%% of its time at the "
                        "megabyte sizes Calculon prices (the stderr note gives the size "
                        "for each tier). allreduce: the all-reduce's latency term at p = "
                        "tier size (exact for a full-tier all-reduce, too high for p2p)")
    p.add_argument("--calculon-system", type=Path, metavar="JSON",
                   help="calculon: a Calculon system file (e.g. its systems/a100_80g.json) "
                        "whose 'networks' are replaced by ours; the output is the whole "
                        "system file")
    p.add_argument("--astra-topology", choices=exports.ASTRA_TOPOLOGIES, default="Switch",
                   help="ASTRA-sim building block of every dimension (default Switch: "
                        "2 links per message)")
    p.add_argument("--astra-backend", choices=exports.ASTRA_BACKENDS,
                   default="congestion_unaware",
                   help="ASTRA-sim analytical backend the YAML is for: "
                        "congestion_unaware (default; a message pays each link's latency "
                        "and the bandwidth once) or congestion_aware (each link of the "
                        "route serializes the message: a Switch hop counts twice, so its "
                        "links get twice the bandwidth; one dimension only, as ASTRA-sim's "
                        "backend builds no other)")
    p.add_argument("--ranks-per-node", type=_count, metavar="Q",
                   help="size of the intra-node dimension to export (default: the "
                        "constants' ranks_per_node, else the largest rank count fitted)")
    p.add_argument("--nodes", type=_count, metavar="N",
                   help="size of the inter-node dimension to export (default: the "
                        "constants' inter nodes, else the largest rank count fitted)")
    p.add_argument("--time-unit", choices=tuple(exports.TIME_UNITS), default="us",
                   help="alpa: unit of mesh_alpha and of mesh_beta per byte (default us: "
                        "keeps Alpa's fixed tie-break costs negligible). ColossalAI's "
                        "convention is its own target, colossalai")


@_runner("export")
def _export(args):
    from collectives.files import check_output
    consts = load_constants(args.constants)
    sizes = {k: v for k, v in (("intra", args.ranks_per_node), ("inter", args.nodes))
             if v is not None}
    if args.calculon_system is not None and args.target != "calculon":
        raise ValueError("--calculon-system applies to --target calculon only")
    if args.target == "simgrid" and args.output is None:
        raise ValueError("--target simgrid writes three files (platform, .smpi.cfg, "
                         ".hostfile): give --output FILE")
    inputs = [args.constants] + ([args.calculon_system] if args.calculon_system else [])
    paths = {}
    if args.output is not None:
        paths["main"] = check_output(args.output, inputs=inputs, option="--output",
                                     overwrite=True, parents=True)
        if args.target == "simgrid":
            for key, suffix in exports.SIMGRID_SUFFIXES.items():
                paths[key] = check_output(f"{paths['main']}{suffix}", inputs=inputs,
                                          option="--output", overwrite=True, parents=True)
    base = None
    if args.calculon_system is not None:
        try:
            base = (Path(args.calculon_system).read_text(), str(args.calculon_system))
        except OSError as exc:
            raise ValueError(f"--calculon-system {args.calculon_system}: "
                             f"{exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"--calculon-system {args.calculon_system}: not UTF-8 text "
                             f"(byte {exc.start}); expected a Calculon system JSON file"
                             ) from None
    out = exports.build(consts, args.target, algorithm=args.algorithm,
                        astra_topology=args.astra_topology,
                        astra_backend=args.astra_backend, time_unit=args.time_unit,
                        calculon_latency=args.calculon_latency, calculon_base=base,
                        sizes=sizes)
    for note in out.notes:
        print("\n".join(textwrap.wrap(f"fits.predict: {args.target}: {note}", WIDTH,
                                      subsequent_indent="    ", break_on_hyphens=False)),
              file=sys.stderr)
    if not paths:
        sys.stdout.write(out.text)
        return None
    # everything is computed: write every file to a temporary one next to it, fsync them
    # all, then rename them all, so that a failed write (disk full) replaces none
    import contextlib
    import os
    from collectives.files import atomic_path
    try:
        with contextlib.ExitStack() as stack:
            for key, path in paths.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = stack.enter_context(atomic_path(path))
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(out.text if key == "main" else out.extra[key])
                    f.flush()
                    os.fsync(f.fileno())
    except OSError as exc:
        raise RuntimeError(f"--output {path}: cannot write ({exc.strerror or exc}); no "
                           f"file of the export was written or replaced") from None
    _progress(f"wrote {args.target} export to " + ", ".join(str(p) for p in paths.values()))
    if args.target == "simgrid":
        main_path = paths["main"]
        _progress(f"simgrid: run: smpirun $(cat {paths['smpi']}) -platform {main_path} "
                  f"-hostfile {paths['hostfile']} ./app")
    return None


# ------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one sub-parser per registered command."""
    parser = argparse.ArgumentParser(
        prog="python -m fits.predict",
        description="Scaling laws, scaling rubric, training-step prediction and exports "
                    "of fitted collective constants.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for name, spec in COMMANDS.items():
        sp = sub.add_parser(name, help=spec["help"], description=" ".join(
            (spec["doc"] or spec["help"]).split()))
        spec["add"](sp)
    return parser


#: Input-file arguments of the subcommands: attribute -> name in messages.
_INPUTS = {"csv": "CSV", "constants": "constants", "calculon_system": "--calculon-system"}


def _empty_argument(argv) -> str | None:
    """The option (or 'an argument') given an empty or blank value, else None."""
    for i, a in enumerate(argv):
        if a.startswith("--") and a.endswith("=") and len(a) > 3:
            return a[:-1]
        if not a.strip():
            prev = argv[i - 1] if i else ""
            return prev if prev.startswith("-") else "an argument"
    return None


def _check_paths(args) -> None:
    """Usage errors (ValueError) for an input that is empty, missing or a directory,
    and a --plots directory that is an input, inside one, or cannot be created."""
    from collectives.files import check_input, check_output
    inputs = []
    for attr, name in _INPUTS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        option = name if name.startswith("-") else (
            "--constants" if attr == "constants" and args.command == "step" else name)
        inputs.append(check_input(str(value), option=option))
    if getattr(args, "plots", None) is not None:
        args.plots = check_output(str(args.plots), inputs=inputs, option="--plots",
                                  directory=True, overwrite=True, parents=True)


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (2 for usage errors and invalid inputs)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    empty = _empty_argument(argv)
    if empty:  # argparse's type=Path would turn "" into "." (the current directory)
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {empty} is empty", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        _check_paths(args)  # inputs readable, --plots usable: before any work
        result = COMMANDS[args.command]["run"](args)
        if result is None:
            return 0
        table, summary, plots = result
        if getattr(args, "plots", None) is not None:
            from . import plots as plt_mod
            written = plots(args.plots, plt_mod)
            _progress("wrote " + ", ".join(str(w) for w in written))
        emit(table, summary, args.format)
    except ValueError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    return 0
