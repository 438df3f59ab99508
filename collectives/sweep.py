"""``python -m collectives.sweep``: time collectives over sizes, rank counts and topologies.

Every rank runs this module under ``mpiexec``; rank 0 validates the arguments, writes the
run directory (docs/formats.md) and prints; the other ranks follow the plan rank 0
broadcasts.  Sizes follow :func:`collectives.costs.size_convention`.  An exception on any
rank aborts the whole job (``MPI_Abort``) with its message; a point that runs longer than
``--point-timeout`` ends the job with status 3 and a message naming the point.

One writer per run directory: the run's ``.lock`` (collectives.rundir) is held from
the start (``--out``) or from the checks (``--resume``) to the end; a second writer is
refused with status 2.  Every collective wait -- setup, the harness probe, the plan,
each sub-communicator split, every point, the waits between rank-count groups, the
final write -- is under a deadline (collectives.watchdog) that names the phase: a
rank that dies, stops or starves ends the job (status 3) instead of hanging it.

Test hooks: collectives.faults (environment variables ``COLLCOST_TEST_FAULT``,
``COLLCOST_TEST_KILL_AFTER_POINTS``, ``COLLCOST_TEST_FAIL_AT_POINT``).
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .costs import AUXILIARY, COLLECTIVES, NATIVE, algorithms as registered_algorithms
from .costs import size_convention
from . import gpu, native, parsing, summary
from .operations import DTYPES, MAX_COUNT, OPS, element_count, memory_per_rank
from .faults import FAIL_ENV, KILL_ENV, FaultHooks
from .files import UsageError
from .parsing import (bounded_float, bounded_int, check_timeout, parse_list,
                      parse_ranks as _parse_ranks, parse_size, parse_sizes,
                      physical_memory as _physical_memory)
from .progress import Progress, human_bytes as _human
from .rundir import check_new_run_dir
from .watchdog import (Watchdog, finalize_mpi, guarded_main, idle_wait as _idle_wait,
                       init_mpi)
from .topology import REQUESTS, check_ranks, default_ranks, resolve_topologies

__all__ = ["UsageError", "Options", "parse_size", "parse_sizes", "parse_list",
           "build_parser", "validate", "plan_points", "main"]

PROG = "python -m collectives.sweep"
ALL_KINDS = COLLECTIVES + AUXILIARY
DEFAULT_SIZES = "8:64M"
QUICK_SIZES = "8,512,32K,1M,4M"
QUICK_TIME_BUDGET = 0.05
DEFAULT_TIME_BUDGET = 1.0
DEFAULT_TARGET_CI = 0.05
DEFAULT_MIN_REPS = 10
DEFAULT_MAX_REPS = 100000
#: Options that may differ between a run and its ``--resume``.
RESUME_FREE = ("point_timeout", "max_memory", "out", "resume", "quick", "cuda_aware",
               "break_lock")
#: Bounds of the counts a user gives (checked before anything is allocated).
MAX_REPS = parsing.MAX_REPS  # one bound for the sweep and collectives.links
MAX_TIME_BUDGET = parsing.MAX_TIME_BUDGET
MAX_SEED = 2**63 - 1

# ---------------------------------------------------------------------------------
# Parsing (the values themselves: collectives.parsing)
# ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (defaults are None: :func:`validate` fills them in)."""
    conv = "\n".join(textwrap.fill(size_convention(c), 88, initial_indent=f"  {c:15s} ",
                                    subsequent_indent=" " * 18, break_on_hyphens=False)
                      for c in ALL_KINDS)
    para = lambda text: textwrap.fill(" ".join(text.split()), 88,  # noqa: E731
                                      break_on_hyphens=False)
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=para(
            "Time MPI collectives over sizes, rank counts and topologies and write a run "
            "directory (metadata.json, points.jsonl, points.csv; see docs/formats.md). "
            "Run it under mpiexec; only rank 0 writes and prints. Times are in seconds "
            "in the files; the summary at the end prints microseconds and GB/s (1e9 "
            "bytes/s), as a table or, with --format osu|nccl, in the layouts of the OSU "
            "micro-benchmarks and nccl-tests (python -m collectives.summary RUN prints it "
            "again later)."),
        epilog="What a size counts (the 'bytes' column):\n" + conv + "\n\n" + para(
            "Counts not divisible by the rank count use blocks of count//p elements, the "
            "first count%p one larger (the native reduce-scatter and allgather then call "
            "Reduce_scatter/Allgatherv). pingpong runs between ranks 0 and 1 of a 2-rank "
            "sub-communicator of each topology (whatever --ranks says); reduce_local runs "
            "on every rank of each sub-communicator at once.") + "\n\n" + para(
            "To merge several launches of the same sweep: python -m collectives.merge "
            "RUN RUN... --out DIR.") + "\n\n" + para(
            "Exit status: 0 done, 1 error during the sweep (job aborted), 2 bad arguments "
            "(nothing measured or written, or another job writes --resume DIR), 3 a "
            "point or phase exceeded its deadline (--point-timeout)."))
    a = p.add_argument
    a("--collectives", metavar="LIST",
      help=f"comma list of {', '.join(ALL_KINDS)} (default: all)")
    a("--algorithms", metavar="LIST",
      help="comma list of algorithm names from collectives/costs.py, 'native' (the MPI "
           "library's own) or 'all' (every algorithm of the selected collectives, "
           "plus native); each "
           "collective runs the listed algorithms it has (default: native). pingpong "
           "and reduce_local always run 'native'")
    a("--sizes", metavar="RANGE|LIST",
      help=f"bytes per point: MIN:MAX[:FACTOR] (MIN, MIN*FACTOR, ... up to MAX; FACTOR "
           f"2 by default, OSU style) or a comma list; units K, M, G = 2^10, 2^20, 2^30 "
           f"(default {DEFAULT_SIZES}; with --quick {QUICK_SIZES}). Each size must be a "
           f"multiple of the dtype size")
    a("--ranks", metavar="LIST",
      help="comma list of sub-communicator sizes, each a sub-communicator of this "
           "launch (default: powers of two from 2 up to P, plus P, where P is what the "
           "topology supports: ranks on the first node for intra, nodes for inter, "
           "world size for world)")
    a("--topology", metavar="LIST",
      help="comma list of intra (ranks of one node), inter (one rank per node), world "
           "(first ranks of the job) or auto (intra if a node has >= 2 ranks, plus inter "
           "if there are >= 2 nodes; detected with Split_type(COMM_TYPE_SHARED) and host "
           "names) (default: auto)")
    a("--dtype", help=f"element type: {', '.join(DTYPES)} (default float32)")
    a("--op", help=f"reduction: {', '.join(OPS)} (default sum)")
    a("--sync", help="how repetitions start: barrier (MPI_Barrier before each) or window "
                     "(synchronized clocks, start at window boundaries, late starts "
                     "discarded) (default barrier)")
    a("--target-ci", type=float, metavar="FRAC",
      help="stop a point when the 95%% CI half-width of the median is within FRAC of "
           f"the median (default {DEFAULT_TARGET_CI})")
    a("--time-budget", type=float, metavar="SECONDS",
      help=f"time spent per point at most, roughly (default {DEFAULT_TIME_BUDGET}; "
           f"with --quick {QUICK_TIME_BUDGET})")
    a("--min-reps", type=int, metavar="N",
      help=f"repetitions per point at least (default {DEFAULT_MIN_REPS})")
    a("--max-reps", type=int, metavar="N",
      help=f"repetitions per point at most (default {DEFAULT_MAX_REPS})")
    a("--seed", type=int,
      help="seed of the random size order (default: random; recorded in metadata)")
    a("--max-memory", metavar="SIZE",
      help="refuse points whose buffers (estimate: operations.memory_per_rank) exceed "
           "SIZE bytes per rank (default: a quarter of physical memory divided by the "
           "ranks on the most crowded node)")
    a("--point-timeout", type=float, metavar="SECONDS",
      help="abort the job (status 3) when one point runs longer than this, naming the "
           "point; every other collective wait (setup, probe, plan, splits, waits "
           "between rank-count groups, final write) has a deadline of at least this "
           "too, naming the phase, so a stopped or dead rank never hangs the job; 0 "
           "disables every deadline; at most 1e6 (default 120 + 20 x --time-budget)")
    a("--out", metavar="DIR",
      help="run directory to create; must not exist or be empty; created atomically "
           "(default data/<run id>)")
    a("--resume", metavar="DIR",
      help="continue the run in DIR: its stored options are used (options given again "
           "must match them, and so must the MPI tuning variables of the environment), "
           "points already on disk are skipped; refused while another job writes DIR")
    a("--break-lock", action="store_true", default=None,
      help="with --resume: remove the run's lock even when its holder cannot be checked "
           "from here (a job on another host that is gone). A lock whose job is provably "
           "gone (same host, process not running) is removed without this option; a "
           "running job's lock never is on this host")
    a("--native-algorithm", metavar="COLL=ALG[,COLL=ALG...]",
      help="pin the MPI library's own collective (algorithm 'native') to one of the "
           "library's algorithms, named as in the registry (e.g. allreduce=ring,"
           "bcast=binomial): its selection variables (MPICH MPIR_CVAR_*_ALGORITHM, Open "
           "MPI OMPI_MCA_coll_tuned_*, Intel MPI I_MPI_ADJUST_*; collectives/native.py, "
           "table in README 'MPI libraries') are set before MPI_Init and recorded in the "
           "run's env, and native points carry native_algorithm. Refused (status 2) when "
           "the library lacks that algorithm or the environment sets the variable "
           "otherwise. Default: the library chooses")
    a("--quick", action="store_true", default=None,
      help=f"small sweep: sizes {QUICK_SIZES}, --time-budget {QUICK_TIME_BUDGET} "
           "(explicit options win)")
    gpu.add_arguments(p, defaults=False)
    summary.add_format_arguments(p, default=None)
    return p


# ---------------------------------------------------------------------------------
# Validation (pure: rank 0 runs it on the parsed arguments and the layout)
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """A validated sweep configuration (stored under ``options`` in metadata.json)."""

    collectives: tuple
    algorithms: tuple
    sizes: tuple
    topologies: tuple
    ranks: dict
    dtype: str
    op: str
    sync: str
    target_ci: float
    time_budget: float
    min_reps: int
    max_reps: int
    seed: int
    buffer: str
    max_memory: int
    point_timeout: float
    out: str
    resume: str | None = None
    quick: bool = False
    rank_request: tuple | None = field(default=None)
    cuda_aware: str = "auto"
    break_lock: bool = False

    def to_metadata(self) -> dict:
        """JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _choice(value, what, allowed, default):
    value = default if value is None else value
    if value not in allowed:
        raise UsageError(f"{what}: unknown value {value!r}; expected one of "
                         f"{', '.join(allowed)}")
    return value


def _default_max_memory(layout) -> int:
    crowded = max(len(r) for r in layout.ranks_by_node)
    return _physical_memory() // (4 * crowded)


def _check_output(path) -> None:
    """Usage error unless ``path`` can become a new run directory
    (:func:`collectives.rundir.check_new_run_dir`)."""
    check_new_run_dir(path, option="--out")


def validate(raw: dict, layout, *, run_id: str = "run") -> Options:
    """Turn raw option values (strings or None from argparse, or stored lists) into
    :class:`Options`, checking everything before anything is created or measured."""
    from . import cloop
    from .harness import TimingOptions

    try:  # the compiled timing loop's switch (environment), checked with the options
        cloop.mode()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    quick = bool(raw.get("quick"))
    colls = parse_list(_num(raw, "collectives", ",".join(ALL_KINDS)), "--collectives",
                       ALL_KINDS)
    algos = parse_list(_num(raw, "algorithms", NATIVE), "--algorithms",
                       _all_algorithm_names(), extra=("all",))
    if "all" in algos:  # every algorithm of the selected collectives, plus native
        algos = tuple(dict.fromkeys(
            [a for a in algos if a != "all"] + [NATIVE]
            + [a for c in colls if c in COLLECTIVES for a in registered_algorithms(c)]))
    for alg in algos:
        if not any(alg in registered_algorithms(c) for c in colls if c in COLLECTIVES) \
                and not (alg == NATIVE and colls):
            raise UsageError(f"--algorithms: {alg!r} is not an algorithm of any of "
                             f"{', '.join(colls)}")
    if any(a != NATIVE for a in algos):
        try:
            from . import algorithms as _algs
            _algs.get  # noqa: B018 -- the dispatch function must exist
        except (ImportError, AttributeError):
            raise UsageError("--algorithms: hand-written algorithms are not available "
                             "(collectives.algorithms.get is missing); use native") from None
    sizes = parse_sizes(_num(raw, "sizes", QUICK_SIZES if quick else DEFAULT_SIZES))
    dtype = _choice(raw.get("dtype"), "--dtype", DTYPES, "float32")
    op = _choice(raw.get("op"), "--op", OPS, "sum")
    for s in sizes:
        try:
            count = element_count(s, dtype)
        except ValueError as exc:
            raise UsageError(f"--sizes: {exc}") from None
        if count > MAX_COUNT:
            raise UsageError(f"--sizes: {s} B is {count} elements of {dtype}, more than "
                             f"an MPI count holds ({MAX_COUNT})")
    try:
        topologies = resolve_topologies(layout, parse_list(
            _num(raw, "topology", "auto"), "--topology", REQUESTS))
    except ValueError as exc:
        raise UsageError(f"--topology: {exc}") from None
    if "inter" in topologies and layout.nodes < 2:
        raise UsageError(f"--topology inter: the job spans 1 node ({layout.names[0]}); "
                         "inter needs ranks on at least 2 nodes (use intra or world)")
    request = raw.get("rank_request")
    if raw.get("ranks") is not None and not isinstance(raw.get("ranks"), dict):
        request = _parse_ranks(raw["ranks"])
    ranks = {}
    for topo in topologies:
        try:
            ranks[topo] = (check_ranks(layout, topo, request) if request
                           else default_ranks(layout, topo))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    sync = _num(raw, "sync", "barrier")
    target_ci = bounded_float(_num(raw, "target_ci", DEFAULT_TARGET_CI), "--target-ci",
                              0, 10, low_open=True)
    budget = bounded_float(_num(raw, "time_budget",
                                QUICK_TIME_BUDGET if quick else DEFAULT_TIME_BUDGET),
                           "--time-budget", 0, MAX_TIME_BUDGET, low_open=True)
    min_reps = bounded_int(_num(raw, "min_reps", DEFAULT_MIN_REPS), "--min-reps", 1,
                           MAX_REPS)
    max_reps = bounded_int(_num(raw, "max_reps", DEFAULT_MAX_REPS), "--max-reps", 1,
                           MAX_REPS)
    try:
        TimingOptions(sync=sync, target_ci=target_ci, time_budget=budget,
                      min_reps=min_reps, max_reps=max_reps)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"timing options: {exc}") from None
    max_memory = raw.get("max_memory")
    max_memory = (_default_max_memory(layout) if max_memory is None
                  else parse_size(max_memory, "--max-memory")
                  if isinstance(max_memory, str)
                  else bounded_int(max_memory, "--max-memory", 1, 1 << 50))
    if max_memory <= 0:
        raise UsageError(f"--max-memory must be > 0, got {max_memory}")
    for topo in topologies:
        for p in ranks[topo]:
            for c in colls:
                for alg in _algorithms_for(c, algos):
                    need = memory_per_rank(c, sizes[-1], p, alg)
                    if need > max_memory:
                        raise UsageError(
                            f"--sizes {sizes[-1]} B: {c}/{alg} at {p} ranks needs about "
                            f"{need} B per rank, more than --max-memory {max_memory} B")
    timeout = raw.get("point_timeout")
    timeout = (default_point_timeout(budget) if timeout is None
               else check_timeout(timeout, "--point-timeout"))
    seed = raw.get("seed")
    seed = (random.SystemRandom().randrange(2**31) if seed is None
            else bounded_int(seed, "--seed", 0, MAX_SEED))
    resume = raw.get("resume")
    out = raw.get("out")
    out = str(Path("data") / run_id) if out is None else out
    if resume is None:
        _check_output(out)
    opts = Options(collectives=colls, algorithms=algos, sizes=sizes,
                   topologies=topologies, ranks=ranks, dtype=dtype, op=op, sync=sync,
                   target_ci=target_ci, time_budget=budget,
                   min_reps=min_reps, max_reps=max_reps,
                   seed=seed, buffer=_choice(raw.get("buffer"), "--buffer", gpu.BUFFERS,
                                             "numpy"),
                   cuda_aware=_choice(raw.get("cuda_aware"), "--cuda-aware",
                                      ("auto", "yes", "no"), "auto"),
                   max_memory=max_memory,
                   point_timeout=timeout, out=str(resume or out), resume=resume,
                   quick=quick, rank_request=request,
                   break_lock=bool(raw.get("break_lock")))
    if not plan_points(opts, layout):
        raise UsageError("nothing to measure: " + _empty_reason(opts))
    return opts


def default_point_timeout(time_budget: float) -> float:
    """The default --point-timeout: 120 s + 20 budgets (at most MAX_TIMEOUT)."""
    from .parsing import MAX_TIMEOUT
    return min(120 + 20 * float(time_budget), MAX_TIMEOUT)


def _num(raw, key, default):
    value = raw.get(key)
    return default if value is None else value


def _all_algorithm_names() -> tuple:
    names = []
    for c in COLLECTIVES:
        names += [a for a in registered_algorithms(c) if a not in names]
    return tuple(names)


def _algorithms_for(collective: str, algos) -> tuple:
    if collective in AUXILIARY:
        return (NATIVE,)
    have = registered_algorithms(collective)
    return tuple(a for a in algos if a in have)


def _empty_reason(opts: Options) -> str:
    if set(opts.collectives) == {"pingpong"}:
        return "pingpong needs 2 ranks in a topology and none has them"
    return "no (collective, algorithm) pair of the options exists"


# ---------------------------------------------------------------------------------
# The plan: every point, grouped by sub-communicator, sizes in random order
# ---------------------------------------------------------------------------------

def plan_points(opts: Options, layout, done=frozenset()) -> list:
    """Points to measure: ``[((topology, p), [(collective, algorithm, bytes), ...])]``.

    Groups come in topology order, then rank count; inside a group, collectives and
    algorithms in option order, sizes shuffled by ``random.Random`` seeded with
    ``"<seed>/<topology>/<p>/<collective>/<algorithm>"``.  pingpong is planned once per
    topology, in the 2-rank group.  Points whose key (see :func:`_key`) is in ``done``
    are left out.
    """
    from .topology import max_ranks, members, nodes_spanned
    groups = {}
    for topo in opts.topologies:
        counts = list(opts.ranks[topo])
        for p in counts + ([2] if 2 not in counts and max_ranks(layout, topo) >= 2 else []):
            nodes = nodes_spanned(layout, members(layout, topo, p))
            for c in opts.collectives:
                if c == "pingpong" and p != 2:
                    continue
                if c != "pingpong" and p not in counts:
                    continue
                for alg in _algorithms_for(c, opts.algorithms):
                    sizes = list(opts.sizes)
                    random.Random(f"{opts.seed}/{topo}/{p}/{c}/{alg}").shuffle(sizes)
                    for s in sizes:
                        if _key(opts, topo, p, nodes, c, alg, s) in done:
                            continue
                        groups.setdefault((topo, p, nodes), []).append((c, alg, s))
    ordered = sorted(groups.items(), key=lambda kv: (opts.topologies.index(kv[0][0]),
                                                      kv[0][1]))
    return ordered


def _key(opts: Options, topo, p, nodes, collective, algorithm, nbytes) -> tuple:
    # the order of results.KEY_FIELDS
    return (collective, algorithm, topo, p, nodes, nbytes, opts.dtype, opts.op,
            opts.buffer, opts.sync)


# ---------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------

def _label(topo, p, c, alg, nbytes) -> str:
    return f"{c}/{alg}/{topo}/{p}/{nbytes}B"


def _point_row(opts, topo, p, nodes, c, alg, nbytes, prepared, timing, correct) -> dict:
    summary = dict(timing.summary())
    scale = prepared.scale
    for k in ("median_s", "ci_low_s", "ci_high_s", "mean_s", "min_s", "p95_s", "p99_s"):
        summary[k] = float(summary[k]) * scale
    samples = {k: [float(x) * scale for x in getattr(timing, f"{k}_s")]
               for k in ("max", "min", "mean")}
    row = {"collective": c, "algorithm": alg, "topology": topo, "ranks": p,
           "nodes": nodes, "bytes": nbytes, "dtype": opts.dtype, "op": opts.op,
           "buffer": opts.buffer, "sync": opts.sync, "count": prepared.count}
    row.update({k: summary[k] for k in ("median_s", "ci_low_s", "ci_high_s", "mean_s",
                                        "min_s", "p95_s", "p99_s")})
    row.update(repetitions=int(summary["repetitions"]),
               discarded=int(summary["discarded"]), warmup=int(summary["warmup"]),
               stop_rule=summary["stop_rule"], unstable=bool(summary["unstable"]),
               correct=bool(correct), samples=samples,
               timing_loop=getattr(timing, "timing_loop", "python"),
               native_algorithm=native.pinned().get(c) if alg == NATIVE else None)
    return row


def _print_summary(argv, rows, writer, csv) -> None:
    """Rank 0, at the end: the summary in --format (see :mod:`collectives.summary`) on
    stdout and where the run was written (stdout after a table, stderr after a machine
    layout, so that stdout stays parseable)."""
    args = build_parser().parse_args(argv)  # checked by _setup already
    fmt, notes = args.format or "table", []
    text = summary.render(rows, fmt, wide=bool(args.wide), metadata=writer.metadata,
                          notes=notes)
    for note in notes:
        sys.stderr.write(f"collcost: {note}\n")
    sys.stdout.write(text)
    sys.stdout.flush()
    where = (f"wrote {len(rows)} point(s) to {writer.path} ({csv.name}, points.jsonl, "
             f"metadata.json)")
    print(where, file=sys.stdout if fmt == "table" else sys.stderr, flush=True)


def _stored_raw(meta: dict) -> dict:
    """Raw option values of a stored run, as :func:`validate` takes them."""
    o = dict(meta.get("options") or {})
    out = {k: o.get(k) for k in ("collectives", "algorithms", "sizes", "dtype", "op",
                                 "sync", "target_ci", "time_budget", "min_reps",
                                 "max_reps", "seed", "buffer", "max_memory",
                                 "point_timeout", "quick")}
    out["topology"] = o.get("topologies")
    out["rank_request"] = tuple(o["rank_request"]) if o.get("rank_request") else None
    return out


#: Stored options a resumable run must have.
STORED_REQUIRED = ("collectives", "algorithms", "sizes", "topologies", "dtype", "op", "sync",
                   "target_ci", "time_budget", "min_reps", "max_reps", "seed", "buffer")


def _resume_options(args: dict, layout, meta: dict, path: str) -> Options:
    stored_opts = meta.get("options") or {}
    problems = []
    for what, have in (("world size", layout.size), ("nodes", layout.nodes),
                       ("ranks per node", layout.ranks_per_node)):
        key = {"world size": "world_size", "nodes": "nodes",
               "ranks per node": "ranks_per_node"}[what]
        if meta.get(key) != have:
            problems.append(f"{what}: the run has {meta.get(key)!r}, this launch {have!r}")
    if problems:
        raise UsageError(f"--resume {path}: this launch does not match the run:\n  "
                         + "\n  ".join(problems))
    mfile = Path(path) / "metadata.json"
    stored = meta.get("options") or {}
    missing = [k for k in STORED_REQUIRED if stored.get(k) is None]
    if missing:
        raise UsageError(f"--resume {path}: {mfile}: field options.{missing[0]} is missing "
                         "(the stored options are damaged)")
    request = stored.get("rank_request")
    if request is not None and not (isinstance(request, list) and all(
            isinstance(p, int) and not isinstance(p, bool) for p in request)):
        raise UsageError(f"--resume {path}: {mfile}: field options.rank_request must be a "
                         f"list of whole numbers, got {request!r}")
    try:  # the stored options alone first: damage there is the file's, not the user's
        stored_raw = _stored_raw(meta)
        stored_raw["resume"] = path
        validate(stored_raw, layout)
    except UsageError as exc:
        raise UsageError(f"--resume {path}: {mfile}: the stored options are damaged: "
                         f"{exc}") from None
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise UsageError(f"--resume {path}: {mfile}: the stored options are damaged "
                         f"({type(exc).__name__}: {exc})") from None
    raw = _stored_raw(meta)
    for k, v in args.items():
        if v is not None and k not in ("resume", "out", "quick"):
            raw[k] = v
    if args.get("max_memory") is None:
        raw["max_memory"] = None
    raw["resume"] = path
    opts = validate(raw, layout)
    mine = opts.to_metadata()
    diffs = [k for k in mine if k not in RESUME_FREE and k != "rank_request"
             and _norm(mine[k]) != _norm(stored_opts.get(k))]
    if diffs:
        raise UsageError(f"--resume {path}: options differ from the stored run: "
                         + "; ".join(f"{k} is {stored_opts.get(k)!r} in the run, "
                                     f"{mine[k]!r} here" for k in diffs))
    return opts


def _environment_differences(meta: dict) -> list:
    """Sentences naming the MPI tuning variables on which this launch's environment
    and the run's differ (collectives.metadata.environment_differences)."""
    from . import metadata as md
    compare = getattr(md, "environment_differences", None)
    here = {"env": md.mpi_environment() if hasattr(md, "mpi_environment")
            else dict(os.environ)}
    if compare is not None:
        return compare(meta, here, ("the run", "this launch"))
    from .results import metadata_differences  # before the #14 record: whole-env compare
    return [p for p in metadata_differences([("the run", meta), ("this launch",
                                              {**meta, **here})]) if "tuning" in p]


def _norm(v):
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def _setup(argv, layout):
    """Rank 0: parse and validate. Returns ("ok", opts, stored_meta_or_None, run_id)
    or ("exit", status, message, None).  Reads, takes and writes nothing (the lock of a
    resumed run is taken by :func:`_prepare`)."""
    from .results import RunFormatError, _read_metadata, new_run_id
    parser = build_parser()
    try:
        args = vars(parser.parse_args(argv))
    except SystemExit as exc:  # --help (0) or an argparse usage error (2)
        return ("exit", exc.code if isinstance(exc.code, int) else 2, None, None)
    try:
        pin_problem = native.check_request(args.get("native_algorithm"))
        if pin_problem:
            raise UsageError(f"{native.OPTION} {pin_problem}")
        if args.get("resume") is not None:
            if args.get("out") is not None:
                raise UsageError("--out and --resume exclude each other (--resume DIR "
                                 "appends to DIR)")
            if not str(args["resume"]).strip():
                raise UsageError("--resume is empty")
            try:
                meta = _read_metadata(Path(args["resume"]))
            except RunFormatError as exc:
                raise UsageError(f"--resume: {exc}") from None
            opts = _resume_options(args, layout, meta, args["resume"])
            diffs = _environment_differences(meta)
            if diffs:
                raise UsageError(f"--resume {args['resume']}: the environment differs "
                                 "from the run's (resume under the same MPI settings, or "
                                 "start a new run): " + "; ".join(diffs))
            return ("ok", opts, meta, meta.get("run_id"))
        if args.get("break_lock"):
            raise UsageError("--break-lock goes with --resume (a new run has no lock to "
                             "break)")
        run_id = new_run_id()
        return ("ok", validate(args, layout, run_id=run_id), None, run_id)
    except UsageError as exc:
        return ("exit", 2, f"{parser.format_usage()}{PROG}: error: {exc}\n", None)


def _prepare(argv, layout):
    """Rank 0: :func:`_setup`, then for --resume take the run's lock and read its points
    (a held lock, a damaged or duplicated line: status 2).  Returns (what every rank
    gets, rank 0's open resume state or None)."""
    from .results import RunWriter
    setup = _setup(argv, layout)
    if setup[0] != "ok" or setup[2] is None:
        return setup, None
    opts = setup[1]
    try:
        opened = RunWriter.open_for_resume(opts.out, option="--resume",
                                           break_lock=opts.break_lock)
    except UsageError as exc:
        return ("exit", 2, f"{build_parser().format_usage()}{PROG}: error: {exc}\n",
                None), None
    return setup, opened


def _early_timeout(argv) -> float:
    """--point-timeout as every rank can read it before rank 0's checks (the deadline
    of the setup phase); the default when absent or unreadable."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--point-timeout")
    p.add_argument("--time-budget")
    p.add_argument("--quick", action="store_true")
    try:
        args, _ = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        budget = float(args.time_budget) if args.time_budget is not None else (
            QUICK_TIME_BUDGET if args.quick else DEFAULT_TIME_BUDGET)
        if args.point_timeout is not None:
            return check_timeout(args.point_timeout)
        return default_point_timeout(budget)
    except (SystemExit, UsageError, ValueError, TypeError):
        return default_point_timeout(DEFAULT_TIME_BUDGET)


#: Least deadline (seconds) of the phases that are not points: setup, probe, plan, ...
PHASE_FLOOR = {"setup": 600.0, "timing loop setup": 600.0, "plan": 600.0,
               "final write": 600.0}
DEFAULT_PHASE_FLOOR = 60.0
PHASE_FLOOR_ENV = "COLLCOST_TEST_PHASE_FLOOR"


def _phase_limit(timeout: float, name: str) -> float:
    """Deadline of phase ``name``: the point timeout, at least the phase's floor
    (``COLLCOST_TEST_PHASE_FLOOR`` seconds, when set, replaces every floor: tests)."""
    if timeout <= 0:
        return 0.0
    floor = os.environ.get(PHASE_FLOOR_ENV)
    try:
        floor = float(floor) if floor else PHASE_FLOOR.get(name, DEFAULT_PHASE_FLOOR)
    except ValueError:
        floor = PHASE_FLOOR.get(name, DEFAULT_PHASE_FLOOR)
    return max(timeout, floor)


def _device_bytes(opts: Options) -> int:
    """Largest per-rank buffer estimate of the planned points (GPU memory check)."""
    if opts.buffer not in gpu.DEVICE_BUFFERS:
        return 0
    return max((memory_per_rank(c, opts.sizes[-1], p, alg)
                for topo in opts.topologies for p in opts.ranks[topo]
                for c in opts.collectives for alg in _algorithms_for(c, opts.algorithms)),
               default=0)


def _run(argv) -> int:
    from . import metadata as md
    from .harness import TimingOptions, harness_overhead, time_call
    from .mpi import MPI
    from .operations import prepare
    from .topology import detect, subcommunicator
    from .watchdog import at_abort

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    hooks = FaultHooks(rank, world.Get_size())
    early = _early_timeout(argv)
    watchdog = Watchdog(early, rank=rank)
    phase = lambda name, limit=None: watchdog.phase(  # noqa: E731
        name, _phase_limit(watchdog.timeout, name) if limit is None else limit)

    with phase("setup"):
        hooks.at("setup")
        layout = detect(world)
        setup, opened = _prepare(argv, layout) if rank == 0 else (None, None)
        if opened is not None:
            at_abort(opened[0].release)
        setup = world.bcast(setup, root=0)
    if setup[0] == "exit":
        if rank == 0 and setup[2]:
            sys.stderr.write(setup[2])
            sys.stderr.flush()
        return setup[1]
    _, opts, stored, run_id = setup
    watchdog.timeout = opts.point_timeout if early > 0 else 0.0
    try:
        with phase("GPU setup"):  # verdict, device, memory: before anything is measured
            hooks.at("gpu")
            device = gpu.prepare(world, opts.buffer, opts.cuda_aware, _device_bytes(opts))
    except gpu.GpuSetupError as exc:
        if rank == 0:
            sys.stderr.write(f"{PROG}: error: {exc}\n")
            sys.stderr.flush()
            if opened is not None:
                opened[0].release()
        return 2
    timing_opts = TimingOptions(sync=opts.sync, target_ci=opts.target_ci,
                                time_budget=opts.time_budget, min_reps=opts.min_reps,
                                max_reps=opts.max_reps)
    overhead = None
    with phase("timing loop setup"):
        loop_record = _timing_loop_record(world, opts)
    if stored is None:
        with phase("harness overhead probe"):
            hooks.at("harness")
            # the harness's own cost (an empty call), on a short budget of its own
            probe = TimingOptions(sync=opts.sync, time_budget=min(0.2, opts.time_budget))
            overhead = {opts.sync: float(harness_overhead(world, probe))}
            if loop_record["loop"] == "c":
                loop_record["overhead_s"] = {opts.sync: float(
                    harness_overhead(world, probe, loop="c"))}
    writer, plan = None, None
    with phase("plan"):
        hooks.at("plan")
        if rank == 0:
            try:
                writer = _open_run(argv, world, layout, opts, stored, run_id, overhead,
                                   md.gpu_record(opts.buffer, device), loop_record, opened)
            except UsageError as exc:  # e.g. another job created --out meanwhile
                plan = ("exit", f"{PROG}: error: {exc}\n")
            else:
                at_abort(writer.release)
                plan = ("ok", plan_points(opts, layout, writer.completed_keys()))
                sys.stderr.write(f"collcost: {sum(len(pts) for _, pts in plan[1])} "
                                 "point(s) to measure"
                                 f"{' (resuming ' + opts.out + ')' if stored else ''}; "
                                 f"writing {opts.out}\n")
                sys.stderr.flush()
        plan = world.bcast(plan, root=0)
    if plan[0] == "exit":
        if rank == 0:
            sys.stderr.write(plan[1])
            sys.stderr.flush()
        return 2
    plan = plan[1]
    progress = Progress(sum(len(points) for _, points in plan)) if rank == 0 else None
    rows = []
    for (topo, p, nodes), points in plan:
        group = f"{topo}/{p}"
        with phase(f"split {group}"):
            hooks.at(f"split {group}")
            sub = subcommunicator(world, layout, topo, p)
        if sub is not None:
            for c, alg, nbytes in points:
                label = _label(topo, p, c, alg, nbytes)
                watchdog.arm(label)
                hooks.before_point(label)
                prepared = prepare(sub, c, alg, nbytes, opts.dtype, opts.op, opts.buffer)
                correct = prepared.check()
                call, before = gpu.timed_call(prepared.call, opts.buffer)
                timing = time_call(sub, call, timing_opts, before=before,
                                   native=prepared.native)
                if rank == 0:
                    row = writer.append(_point_row(opts, topo, p, nodes, c, alg, nbytes,
                                                   prepared, timing, correct))
                    rows.append({k: v for k, v in row.items() if k != "samples"})
                    if not correct:
                        sys.stderr.write(f"\ncollcost: WARNING: point {label} gave a "
                                         "wrong result (recorded with correct=false)\n")
                    progress.update(f"{c} {alg} {topo} p={p} {_human(nbytes)}")
                del prepared, timing, call, before
                sub.Barrier()  # rank 0 has written the point
                watchdog.disarm()
                hooks.after_point()
            with phase(f"free {group}"):
                sub.Free()
            gc.collect()
            # the group's members arrive together: a short wait
            wait_limit = _phase_limit(watchdog.timeout, "wait")
        else:  # idle while the group measures: up to every point's timeout
            wait_limit = (watchdog.timeout * (len(points) + 1)
                          + _phase_limit(watchdog.timeout, "wait")) \
                if watchdog.timeout > 0 else 0.0
        with phase(f"wait after group {group}", wait_limit):
            hooks.at(f"wait after group {group}")
            _idle_wait(world)
    with phase("final write"):
        hooks.at("final write")
        if rank == 0:
            progress.close()
            csv = writer.finish()
            _print_summary(argv, rows, writer, csv)
        _idle_wait(world)
    # MPI_Finalize waits for every rank too: called here, under its deadline (mpi4py's
    # own call at interpreter exit would run after the watchdog thread is gone)
    limit = _phase_limit(watchdog.timeout, "finalize")
    with phase("MPI finalize", limit):
        hooks.at("finalize")
        finalize_mpi(MPI, limit)
    return 0


def _timing_loop_record(world, opts: Options) -> dict:
    """Collective: build/load the compiled timing loop on every rank (collectives.cloop)
    and return the run's record of it (rank 0's build; ``loop`` "c" only when every
    rank can use it)."""
    from . import cloop
    if opts.buffer != "numpy":
        return {"loop": "python", "reason": f"--buffer {opts.buffer}: device buffers "
                "are timed by the Python loop (it synchronizes the device)"}
    record = cloop.describe()
    failed = world.gather(None if record["loop"] == "c" else record["reason"], root=0)
    if world.Get_rank() == 0 and record["loop"] == "c" and any(failed):
        r = next(i for i, f in enumerate(failed) if f)
        record.update(loop="python", reason=f"rank {r}: {failed[r]}")
    return world.bcast(record, root=0)


def _open_run(argv, world, layout, opts: Options, stored, run_id, overhead, gpu_record,
              loop_record=None, opened=None):
    """Rank 0: create the run directory (metadata first, atomically, locked) or reopen
    it for --resume (``opened``: what :func:`_prepare` took)."""
    from . import metadata as md
    from .harness import timer_properties
    from .results import RunWriter
    command_line = [sys.executable, "-m", "collectives.sweep"] + list(
        sys.argv[1:] if argv is None else argv)
    if stored is not None:
        env = md.mpi_environment() if hasattr(md, "mpi_environment") else None
        return RunWriter.resume(opts.out, command_line=command_line, seed=opts.seed,
                                env=env, opened=opened)
    meta = md.collect(world, layout, options=opts.to_metadata(),
                      command_line=command_line, seed=opts.seed,
                      timer=timer_properties(), harness_overhead_s=overhead,
                      gpu=gpu_record, run_id=run_id)
    meta["timing_loop"] = loop_record
    return RunWriter.create(opts.out, meta)


def main(argv=None) -> int:
    """Entry point: run the sweep; any exception on any rank aborts the whole job."""
    native.request_from_argv(sys.argv[1:] if argv is None else argv)  # before MPI_Init
    # MPI_Init waits for every rank: a rank stopped or dead at start must not hang the
    # others (see watchdog.init_mpi)
    init_mpi(_phase_limit(_early_timeout(argv), "setup"))
    return guarded_main(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
