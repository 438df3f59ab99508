"""``python -m collectives.links``: latency and bandwidth of every link, all pairs.

Every rank runs this module under ``mpiexec``.  The endpoints (one rank per node by
default, one per NIC-local group, or every rank) meet in a round-robin tournament
(:mod:`collectives.linkplan`): each step, its pairs run a ping-pong over ``--sizes`` at
the same time, each pair on its own 2-rank communicator, timed by the sweep's harness
(:func:`collectives.harness.time_call`: barrier starts, adaptive repetitions).  Rank 0
alone knows the plan: it tells each rank of a step its partner and its points, collects
the rows from each pair's first rank, appends them to the run directory (one fsync per
step) and keeps an O(n^2) ledger for resume and the summary.  Every step ends with a
small nonblocking allreduce that all ranks join; ranks without work wait for it in
short sleeping polls (they never spin on a core the measuring ranks need), under a
deadline derived from ``--point-timeout``, so a stopped or starved rank ends the job
(status 3) instead of leaving it hanging.  A row keeps at most ``--keep-samples``
per-repetition times (a random subset; the statistics use every repetition), so the
files grow with the links, not with links x repetitions.

What a time is (``median_s`` etc., seconds):

``--direction one``
    the symmetric ping-pong of the sweep: ``src`` sends ``bytes``, ``dst`` echoes them,
    time = half the round trip (``src`` is the lower endpoint index);
``--direction both``
    each direction on its own: ``src`` sends ``bytes``, ``dst`` answers with an empty
    message; time = that round trip minus ``ack_s``, the pair's empty-message one-way
    time (half the fastest empty ping-pong, measured first on the pair and stored with
    every row; the fastest, not the median, so that noise cannot push a one-way time
    below zero: the one-way latency errs on the slow side), so an asymmetric link shows up in ``src -> dst`` and not in ``dst -> src``.

Run directory (``docs/formats.md``, contract 3): ``metadata.json`` with ``kind:
"collcost-links"`` and a ``links`` section (mode, endpoints, schedule, direction, sizes,
concurrent, rounds), ``points.jsonl`` (the sweep's point record with ``collective:
"pingpong"``, ``algorithm: "native"``, ``topology: "link"``, ``ranks: 2``, plus ``src``,
``dst``, ``src_host``, ``dst_host``, ``src_rank``, ``dst_rank``, ``round``, ``step``,
``concurrent``, ``ack_s``, ``samples_kept``, ``timing_loop``), ``points.csv`` (the same
without samples, written at the end).  :func:`read_links` reads one back.

Test hooks: :mod:`collectives.faults` (``COLLCOST_TEST_FAULT``, and the sweep's
``COLLCOST_TEST_KILL_AFTER_POINTS`` / ``COLLCOST_TEST_FAIL_AT_POINT``), points counted
per point a rank takes part in; phase ``write step K`` on rank 0 between steps.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import textwrap
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import linkplan as lp
from .files import UsageError, atomic_write_text

__all__ = ["KIND", "LINK_FIELDS", "LinksOptions", "LinksRun", "build_parser", "validate",
           "LinkRunWriter", "read_links", "read_links_metadata", "summary", "main"]

PROG = "python -m collectives.links"
KIND = "collcost-links"
DEFAULT_SIZES = "8,512,32K,1M,4M"
DEFAULT_TIME_BUDGET = 0.2
DEFAULT_TARGET_CI = 0.05
DEFAULT_MIN_REPS = 10
DEFAULT_MAX_REPS = 10000
#: Per-repetition samples kept per point (a random subset when there are more): the
#: files grow with the links, not with links x repetitions.
DEFAULT_KEEP_SAMPLES = 64
DTYPE = "float32"
TOPOLOGY = "link"
#: Fields a links row adds to the sweep's point record (contract 3).
LINK_FIELDS = ("src", "dst", "src_host", "dst_host", "src_rank", "dst_rank", "round",
               "step", "concurrent", "ack_s", "samples_kept", "timing_loop")
#: Options that may differ between a run and its ``--resume``.
RESUME_FREE = ("point_timeout", "out", "resume")
_TAG_WORK, _TAG_ROWS = 11, 12
_POLL_S = 0.0005


# ---------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------

def _para(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), 88, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (defaults None: :func:`validate` fills them in)."""
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_para(
            "Measure latency and bandwidth between every pair of endpoints (one rank per "
            "node by default) with a ping-pong over a few message sizes, and write a "
            "links run directory (metadata.json with kind collcost-links, points.jsonl, "
            "points.csv). Pairs are scheduled as a round-robin tournament: n-1 rounds "
            "(n for odd n, one endpoint sitting out each round) of n/2 disjoint pairs "
            "measured at once; --concurrent 1 measures one pair at a time. Run it under "
            "mpiexec (as mpiexec ... python -m mpi4py -m collectives.links on several "
            "hosts, so a dying rank ends the job); only rank 0 writes and prints. The "
            "plan and its estimated duration are printed before anything is measured."),
        epilog=_para(
            "Times in the files are seconds: --direction one stores half the round trip "
            "of a symmetric ping-pong; --direction both stores, per direction, the round "
            "trip of SIZE bytes src->dst with an empty reply, minus the pair's "
            "empty-message one-way time (ack_s: half its fastest empty round trip). The summary prints microseconds and "
            "GB/s (1e9 bytes/s). Analyse a run with python -m fits.links RUN.") + "\n\n"
        + _para("Exit status: 0 done, 1 error during the run (job aborted), 2 bad "
                "arguments (nothing measured or written), 3 a point exceeded "
                "--point-timeout."))
    a = p.add_argument
    a("--mode", metavar="MODE",
      help="what a link joins: node (one rank per node, the node's lowest rank), group "
           "(one rank per NIC-local group: each node's ranks cut into --groups-per-node "
           "consecutive blocks, the first rank of each), rank (every rank: all rank "
           "pairs, also those inside a node) (default node)")
    a("--groups-per-node", type=int, metavar="G",
      help="with --mode group: groups per node, e.g. its NICs; each node needs at least "
           "G ranks")
    a("--sizes", metavar="RANGE|LIST",
      help=f"message bytes: MIN:MAX[:FACTOR] or a comma list, units K, M, G = 2^10, 2^20, "
           f"2^30; each a multiple of 4 (float32 elements) (default {DEFAULT_SIZES})")
    a("--direction", metavar="one|both",
      help="one: one point per pair and size (symmetric ping-pong, src = lower "
           "endpoint); both: src->dst and dst->src separately (default one)")
    a("--concurrent", type=int, metavar="K",
      help="pairs measured at once: 1 is the serial schedule (one pair at a time); 0 "
           "or more than n/2 means a whole tournament round at once (default 0)")
    a("--sync", metavar="barrier|window",
      help="how repetitions start inside a pair, as in the sweep (default barrier)")
    a("--target-ci", type=float, metavar="FRAC",
      help="stop a point when the 95%% CI half-width of its median is within FRAC of "
           f"the median (default {DEFAULT_TARGET_CI})")
    a("--time-budget", type=float, metavar="SECONDS",
      help="time per point at most, roughly (--min-reps wins over it) (default "
           f"{DEFAULT_TIME_BUDGET})")
    a("--min-reps", type=int, metavar="N",
      help=f"repetitions per point at least (default {DEFAULT_MIN_REPS})")
    a("--max-reps", type=int, metavar="N",
      help=f"repetitions per point at most (default {DEFAULT_MAX_REPS})")
    a("--warmup", type=int, metavar="N",
      help="untimed calls before each point (default: automatic, 3 and then up to 1%% "
           "of the time budget)")
    a("--keep-samples", type=int, metavar="K",
      help="per-repetition times stored per point at most: a random subset of K "
           "repetitions when there were more (the statistics use all of them), so the "
           "files grow with the number of links, not links x repetitions (default "
           f"{DEFAULT_KEEP_SAMPLES})")
    a("--point-timeout", type=float, metavar="SECONDS",
      help="abort the job (status 3) when one point runs longer than this, naming the "
           "link; 0 disables (default 120 + 20 x --time-budget)")
    a("--out", metavar="DIR",
      help="run directory to create; must not exist or be empty (default "
           "data/links-<run id>)")
    a("--resume", metavar="DIR",
      help="continue the links run in DIR on the same endpoints: its stored options are "
           "used (options given again must match), points already on disk are skipped")
    return p


@dataclass(frozen=True)
class LinksOptions:
    """A validated links configuration (stored under ``options`` in metadata.json)."""

    mode: str
    groups_per_node: int | None
    sizes: tuple
    direction: str
    concurrent: int
    sync: str
    target_ci: float
    time_budget: float
    min_reps: int
    max_reps: int
    warmup: int | None
    keep_samples: int
    point_timeout: float
    out: str
    resume: str | None = None
    # what the sweep's point record needs (fixed for links)
    dtype: str = DTYPE
    op: str = "sum"
    buffer: str = "numpy"

    def to_metadata(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def timing(self):
        from .harness import TimingOptions
        return TimingOptions(sync=self.sync, target_ci=self.target_ci,
                             time_budget=self.time_budget, min_reps=self.min_reps,
                             max_reps=self.max_reps, warmup=self.warmup)


def _get(raw, key, default):
    value = raw.get(key)
    return default if value is None else value


def validate(raw: dict, layout, *, run_id: str = "run"):
    """Check everything before anything is created or measured.

    Returns ``(LinksOptions, endpoints, Plan)``; raises :class:`UsageError` naming the
    option."""
    from .harness import SYNC_MODES, TimingOptions
    from .operations import element_count, memory_per_rank
    from .parsing import check_timeout, parse_sizes, physical_memory
    try:
        sizes = parse_sizes(_get(raw, "sizes", DEFAULT_SIZES))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for s in sizes:
        try:
            element_count(s, DTYPE)
        except ValueError as exc:
            raise UsageError(f"--sizes: {exc}") from None
    crowded = max(len(r) for r in layout.ranks_by_node)
    limit = physical_memory() // (4 * crowded)
    if memory_per_rank("pingpong", sizes[-1], 2) > limit:
        raise UsageError(f"--sizes {sizes[-1]} B: a ping-pong needs about "
                         f"{memory_per_rank('pingpong', sizes[-1], 2)} B per rank, more "
                         f"than a quarter of this node's memory per rank ({limit} B)")
    mode = _get(raw, "mode", "node")
    direction = _get(raw, "direction", "one")
    concurrent = _get(raw, "concurrent", 0)
    try:
        ends = lp.endpoints(layout, mode, raw.get("groups_per_node"))
        plan = lp.Plan(len(ends), sizes, direction, concurrent)
    except lp.PlanError as exc:
        raise UsageError(str(exc)) from None
    sync = _get(raw, "sync", "barrier")
    if sync not in SYNC_MODES:
        raise UsageError(f"--sync: unknown value {sync!r}; expected one of "
                         f"{', '.join(SYNC_MODES)}")
    from .parsing import MAX_REPS, MAX_TIME_BUDGET, bounded_float, bounded_int
    # the sweep's bounds, before anything is allocated or a timeout derived from them
    bounded_float(_get(raw, "target_ci", DEFAULT_TARGET_CI), "--target-ci", 0, 10,
                  low_open=True)
    budget = bounded_float(_get(raw, "time_budget", DEFAULT_TIME_BUDGET), "--time-budget",
                           0, MAX_TIME_BUDGET, low_open=True)
    for name, low, default in (("min_reps", 1, DEFAULT_MIN_REPS),
                               ("max_reps", 1, DEFAULT_MAX_REPS),
                               ("keep_samples", 1, DEFAULT_KEEP_SAMPLES),
                               ("warmup", 0, 0)):
        bounded_int(_get(raw, name, default), "--" + name.replace("_", "-"), low, MAX_REPS)
    warmup = raw.get("warmup")
    try:
        TimingOptions(sync=sync, target_ci=_get(raw, "target_ci", DEFAULT_TARGET_CI),
                      time_budget=budget, min_reps=_get(raw, "min_reps", DEFAULT_MIN_REPS),
                      max_reps=_get(raw, "max_reps", DEFAULT_MAX_REPS), warmup=warmup)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"timing options: {exc}") from None
    keep = _get(raw, "keep_samples", DEFAULT_KEEP_SAMPLES)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UsageError(f"--keep-samples must be a whole number >= 1, got {keep!r}")
    timeout = raw.get("point_timeout")
    timeout = check_timeout(120 + 20 * float(budget) if timeout is None else timeout,
                            "--point-timeout")
    resume = raw.get("resume")
    out = raw.get("out") or str(Path("data") / f"links-{run_id}")
    if resume is None:
        out = str(_rundir().check_new_run_dir(out, option="--out"))
    opts = LinksOptions(mode=mode, groups_per_node=raw.get("groups_per_node"),
                        sizes=sizes, direction=direction, concurrent=int(concurrent),
                        sync=sync, target_ci=float(_get(raw, "target_ci",
                                                        DEFAULT_TARGET_CI)),
                        time_budget=float(budget),
                        min_reps=int(_get(raw, "min_reps", DEFAULT_MIN_REPS)),
                        max_reps=int(_get(raw, "max_reps", DEFAULT_MAX_REPS)),
                        warmup=None if warmup is None else int(warmup),
                        keep_samples=keep,
                        point_timeout=timeout, out=str(resume or out), resume=resume)
    return opts, ends, plan


def _resume_options(args: dict, layout, meta: dict, path: str):
    stored = dict(meta.get("options") or {})
    raw = {k: stored.get(k) for k in ("mode", "groups_per_node", "sizes", "direction",
                                      "concurrent", "sync", "target_ci", "time_budget",
                                      "min_reps", "max_reps", "warmup", "keep_samples",
                                      "point_timeout")}
    for k, v in args.items():
        if v is not None and k not in ("resume", "out"):
            raw[k] = v
    raw["resume"] = path
    opts, ends, plan = validate(raw, layout)
    mine = opts.to_metadata()
    diffs = [k for k in mine if k not in RESUME_FREE and mine[k] != stored.get(k)]
    if diffs:
        raise UsageError(f"--resume {path}: options differ from the stored run: "
                         + "; ".join(f"{k} is {stored.get(k)!r} in the run, {mine[k]!r} "
                                     "here" for k in diffs))
    have = [e.to_dict() for e in ends]
    was = (meta.get("links") or {}).get("endpoints")
    if have != was:
        if not isinstance(was, list) or len(was) != len(have):
            raise UsageError(f"--resume {path}: the run has "
                             f"{len(was) if isinstance(was, list) else '?'} endpoints, "
                             f"this launch {len(have)}")
        k = next(i for i, (x, y) in enumerate(zip(was, have)) if x != y)
        raise UsageError(f"--resume {path}: endpoint {k} is {was[k]} in the run but "
                         f"{have[k]} in this launch (a links run resumes on the same "
                         "hosts and ranks)")
    return opts, ends, plan


def _setup(argv, layout):
    """Rank 0: parse and validate.  ``("ok", opts, ends, plan, stored_meta, run_id)`` or
    ``("exit", status, message)``."""
    from .results import new_run_id
    from .parsing import reject_empty_arguments
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # an empty --out or --resume would mean the default or "here"
        reject_empty_arguments(argv)
    except UsageError as exc:
        return ("exit", 2, f"{parser.format_usage()}{PROG}: error: {exc}\n")
    try:
        args = vars(parser.parse_args(argv))
    except SystemExit as exc:  # --help (0) or an argparse usage error (2)
        return ("exit", exc.code if isinstance(exc.code, int) else 2, None)
    try:
        if args.get("resume"):
            if args.get("out"):
                raise UsageError("--out and --resume exclude each other (--resume DIR "
                                 "appends to DIR)")
            meta = read_links_metadata(args["resume"], option="--resume")
            return ("ok", *_resume_options(args, layout, meta, args["resume"]), meta,
                    meta.get("run_id"))
        run_id = new_run_id()
        return ("ok", *validate(args, layout, run_id=run_id), None, run_id)
    except UsageError as exc:
        return ("exit", 2, f"{parser.format_usage()}{PROG}: error: {exc}\n")


# ---------------------------------------------------------------------------------
# The run directory
# ---------------------------------------------------------------------------------

def read_links_metadata(path, option: str = "RUN") -> dict:
    """metadata.json of a links run; :class:`UsageError` naming ``option`` otherwise
    (a sweep run, a damaged file, an unknown schema version)."""
    from . import rundir
    try:
        return rundir.read_metadata(path, KIND, LinkRunWriter.SCHEMA_VERSION)
    except rundir.RunDirError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _iter_rows(pfile: Path):
    """``(row, end offset)`` of each complete line, streamed; a last line that does not
    parse (a write interrupted by a kill) ends the iteration with ``(None, offset)``;
    a damaged line elsewhere is a :class:`UsageError` naming it."""
    offset = 0
    with open(pfile, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            end = offset + len(line)
            text = line.strip()
            if text:
                try:
                    row = json.loads(text)
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    if not line.endswith(b"\n"):
                        yield None, offset
                        return
                    raise UsageError(f"{pfile}: line {lineno} is damaged ({exc}) and is "
                                     "not the last line") from None
                yield row, end
            offset = end


def _check_link_point(row: dict) -> None:
    """The sweep's point checks (collectives.results), plus the link fields."""
    from .results import _check_point
    kept = row.get("samples_kept")
    # the sweep's checks, the link topology and a subset of the samples aside
    _check_point(dict(row, topology="inter", **({} if kept is None else
                                                 {"repetitions": kept})))
    if kept is not None and not (isinstance(row.get("repetitions"), int)
                                 and row["repetitions"] >= kept):
        raise ValueError(f"links point keeps {kept} samples of "
                         f"{row.get('repetitions')!r} repetitions")
    if row.get("topology") != TOPOLOGY:
        raise ValueError(f"a links point has topology {TOPOLOGY!r}, got "
                         f"{row.get('topology')!r}")
    for k in ("src", "dst", "round", "step", "concurrent", "src_rank", "dst_rank"):
        v = row.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"links point field {k} must be a whole number >= 0, "
                             f"got {v!r}")
    if row["src"] == row["dst"]:
        raise ValueError(f"links point has src == dst == {row['src']}")


def _rundir():
    from . import rundir
    return rundir


class LinkRunWriter(_rundir().RunWriter):
    """Rank 0's writer: the shared run directory (:mod:`collectives.rundir`: atomic
    creation, lock, metadata, durable lines) for links points, streaming: nothing per
    row is kept in memory (the :class:`collectives.linkplan.Ledger` is the bookkeeping),
    one flush + fsync per step's batch, ``points.csv`` streamed from ``points.jsonl``
    at the end, and ``--resume`` reads the points file line by line."""

    KIND = KIND
    SCHEMA_VERSION = 1
    check_point = staticmethod(_check_link_point)

    @staticmethod
    def point_key(row: dict) -> tuple:
        return (int(row["src"]), int(row["dst"]), int(row["bytes"]))

    def __init__(self, path, metadata: dict, launch: str, rows=(), lock=None):
        self.path = Path(path)
        self.metadata = metadata
        self.launch = launch
        self.lock = lock
        self.written = 0
        self._fh = open(self.path / "points.jsonl", "a", encoding="utf-8")

    @classmethod
    def fields(cls) -> tuple:
        from .results import POINT_FIELDS
        return POINT_FIELDS + LINK_FIELDS

    @classmethod
    def resume_into(cls, path, ledger: lp.Ledger, command_line=None) -> "LinkRunWriter":
        """Reopen ``path`` under its lock: mark its rows in ``ledger`` (streamed), cut a
        truncated last line, record the new launch."""
        rd = _rundir()
        path = Path(path)
        read_links_metadata(path, option="--resume")
        lock = rd.RunLock(path).acquire(option="--resume")
        try:
            meta = read_links_metadata(path, option="--resume")
            pfile = path / rd.POINTS_FILE
            good_end = 0
            if pfile.exists():
                for lineno, (row, end) in enumerate(_iter_rows(pfile), 1):
                    if row is None:
                        sys.stderr.write(f"collcost: {pfile}: dropping a truncated last "
                                         "line before resuming\n")
                        break
                    try:
                        cls.check_point(row)
                        key = cls.point_key(row)
                        if ledger.is_done(*key):
                            raise ValueError(f"point {key} appears twice")
                        ledger.mark(*key, row.get("median_s"))
                    except (KeyError, TypeError, ValueError) as exc:
                        raise UsageError(f"--resume {pfile}: point line {lineno}: "
                                         f"{exc}") from None
                    good_end = end
                rd.repair_tail(pfile, good_end)
            launches = list(meta.get("launches") or [{"launch": meta["run_id"]}])
            launch = f"{meta['run_id']}+{len(launches)}"
            launches.append({"launch": launch, "date_utc": rd.utc_now(),
                             "command_line": command_line})
            meta["launches"] = launches
            atomic_write_text(path / rd.METADATA_FILE, rd.dumps(meta, indent=2) + "\n")
            return cls(path, meta, launch, lock=lock)
        except BaseException:
            lock.release()
            raise

    def append(self, rows) -> list:
        """Write ``rows`` (one step's) durably: one line each, one flush + fsync."""
        rd = _rundir()
        fields = self.fields()
        lines, out = [], []
        for point in rows:
            row = dict(point)
            row.setdefault("launch", self.launch)
            row.setdefault("timestamp_utc", rd.utc_now())
            self.check_point(row)
            ordered = {k: row[k] for k in fields if k in row}
            ordered.update({k: v for k, v in row.items() if k not in ordered})
            lines.append(rd.dumps(ordered, separators=(",", ":")) + "\n")
            out.append(ordered)
        self._fh.write("".join(lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.written += len(rows)
        return out

    def finish(self) -> Path:
        """Write points.csv (every row on disk, without samples) atomically, streamed
        from points.jsonl; close; release the lock."""
        from .files import atomic_path
        rd = _rundir()
        try:
            if not self._fh.closed:
                self._fh.close()
            columns = [c for c in self.fields() if c != "samples"]
            target = self.path / rd.CSV_FILE
            with atomic_path(target) as tmp:
                with open(tmp, "w", encoding="utf-8", newline="") as fh:
                    w = csv.DictWriter(fh, columns, extrasaction="ignore",
                                       lineterminator="\n")
                    w.writeheader()
                    for row, _ in _iter_rows(self.path / rd.POINTS_FILE):
                        if row is None:
                            break
                        w.writerow({k: ("" if row.get(k) is None else row.get(k))
                                    for k in columns})
            return target
        finally:
            self.release()


@dataclass(frozen=True)
class LinksRun:
    """A links run read back: ``path``, ``metadata``, ``points`` (DataFrame, no samples
    unless asked) and ``endpoints`` (list of dicts)."""

    path: Path
    metadata: dict
    points: object

    @property
    def endpoints(self) -> list:
        return list(self.metadata["links"]["endpoints"])


def read_links(path, samples: bool = False) -> LinksRun:
    """Read a links run directory (:class:`UsageError` if it is not one).  Rows come
    from points.jsonl (a truncated last line is dropped with a warning); ``samples``
    keeps the per-repetition times (memory grows with them)."""
    import pandas as pd
    path = Path(path)
    meta = read_links_metadata(path)
    pfile = path / "points.jsonl"
    rows = []
    if pfile.exists():
        for row, _ in _iter_rows(pfile):
            if row is None:
                warnings.warn(f"{pfile}: ignoring a truncated last line", stacklevel=2)
                break
            if not samples:
                row.pop("samples", None)
            rows.append(row)
    return LinksRun(path, meta, pd.DataFrame(rows))


# ---------------------------------------------------------------------------------
# Measuring one pair
# ---------------------------------------------------------------------------------

def _sleepy_probe(comm, source, tag):
    """Wait for a message without spinning on a core; return its (source, tag)."""
    from .mpi import MPI
    status = MPI.Status()
    while not comm.Iprobe(source=source, tag=tag, status=status):
        time.sleep(_POLL_S)
    return status.Get_source(), status.Get_tag()


def _sleepy_send(comm, obj, dest, tag):
    _wait_all([comm.isend(obj, dest=dest, tag=tag)])


def _one_way(pair, size, sender: int):
    """A :class:`collectives.operations.Prepared`-like record: ``sender`` (pair rank)
    sends ``size`` bytes, the other answers with an empty message."""
    from .operations import Prepared, _fill, _pattern, _spec, allocate, element_count
    count = element_count(size, DTYPE)
    rank = pair.Get_rank()
    other = 1 - rank
    buf = allocate(count, DTYPE)
    ack = allocate(0, DTYPE)
    bspec, aspec = _spec(buf, count, DTYPE), _spec(ack, 0, DTYPE)
    Send, Recv, tag = pair.Send, pair.Recv, 19
    if rank == sender:
        def call():
            Send(bspec, other, tag)
            Recv(aspec, other, tag)
    else:
        def call():
            Recv(bspec, other, tag)
            Send(aspec, other, tag)

    def check():
        g = _pattern(0, count, DTYPE)
        _fill(buf, g if rank == sender else np.zeros(count, DTYPE))
        call()
        ok = bool(np.array_equal(buf, g))
        return bool(pair.allreduce(ok, op=_land()))

    return Prepared("pingpong", "native", count, call, check, scale=1.0)


def _land():
    from .mpi import MPI
    return MPI.LAND


def _row(opts, plan, ends, a: lp.Assignment, src, dst, size, prepared, timing, correct,
         ack=None) -> dict:
    from .sweep import _point_row
    nodes = 1 if ends[src].host == ends[dst].host else 2
    row = _point_row(opts, TOPOLOGY, 2, nodes, "pingpong", "native", size, prepared,
                     timing, correct)
    if ack is not None:  # one way: the round trip minus the empty reply's one-way time
        for k in ("median_s", "ci_low_s", "ci_high_s", "mean_s", "min_s", "p95_s",
                  "p99_s"):
            row[k] = row[k] - ack
        row["samples"] = {k: [x - ack for x in v] for k, v in row["samples"].items()}
    n = len(row["samples"]["max"])
    if n > opts.keep_samples:  # a random subset, in measurement order
        import random
        keep = sorted(random.Random(f"{src}/{dst}/{size}").sample(range(n),
                                                                  opts.keep_samples))
        row["samples"] = {k: [v[i] for i in keep] for k, v in row["samples"].items()}
    row.update(src=src, dst=dst, src_host=ends[src].host, dst_host=ends[dst].host,
               src_rank=ends[src].rank, dst_rank=ends[dst].rank, round=a.round,
               step=a.step, concurrent=a.concurrent, ack_s=ack,
               samples_kept=len(row["samples"]["max"]))
    row.setdefault("timing_loop", "python")
    return row


def _measure(world, opts, plan, ends, a: lp.Assignment, watchdog, hooks) -> list:
    """Both ranks of a pair: time every point of ``a``; the leader returns the rows."""
    from .harness import time_call
    from .operations import prepare
    me, other = (world.Get_rank(), a.partner_rank)
    members = [me, other] if a.leader else [other, me]
    group = world.Get_group().Incl(members)
    pair = world.Create_group(group)
    group.Free()
    timing_opts = opts.timing()
    rows = []
    try:
        first = members[0]
        ack = None
        if plan.direction == "both":
            watchdog.arm(f"empty ping-pong {a.me}<->{a.other} ({ends[a.me].host} <-> "
                         f"{ends[a.other].host})")
            zero = prepare(pair, "pingpong", "native", 0, DTYPE)
            # half the FASTEST empty round trip: a median taken from a few repetitions
            # on a busy host is inflated and drove one-way times below zero (seen under
            # load: medians of -4.65 ms); no round trip carrying bytes is faster than
            # the fastest empty one, so one-way times stay >= 0 and err on the slow side
            ack = float(np.min(time_call(pair, zero.call, timing_opts).max_s)) * 0.5
            watchdog.disarm()
        for src, dst, size in a.points:
            label = (f"link {src}->{dst} ({ends[src].host} -> {ends[dst].host}) "
                     f"{size}B, round {a.round}")
            watchdog.arm(label)
            hooks.before_point(label)
            if plan.direction == "one":
                prepared = prepare(pair, "pingpong", "native", size, DTYPE)
            else:
                sender = 0 if ends[src].rank == first else 1
                prepared = _one_way(pair, size, sender)
            correct = prepared.check()
            timing = time_call(pair, prepared.call, timing_opts,
                               native=getattr(prepared, "native", None))
            if a.leader:
                rows.append(_row(opts, plan, ends, a, src, dst, size, prepared, timing,
                                 correct, ack))
            del prepared, timing
            watchdog.disarm()
            hooks.after_point()
    finally:
        pair.Free()
    return rows


# ---------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------

def _estimate_per_point(opts) -> float:
    warm = 0.01 * opts.time_budget if opts.warmup is None else 0.0
    return opts.time_budget + warm + 0.005  # + preparing and checking the point


def _links_section(opts, plan, ends) -> dict:
    return {"mode": opts.mode, "groups_per_node": opts.groups_per_node,
            "endpoints": [e.to_dict() for e in ends], "schedule": plan.schedule,
            "direction": opts.direction, "sizes": list(opts.sizes),
            "concurrent": plan.concurrent, "rounds": plan.rounds,
            "pairs_per_round": plan.pairs_per_round, "steps": plan.total_steps,
            "time": ("one-way seconds of one message of `bytes` from src to dst: half "
                     "the symmetric ping-pong round trip" if opts.direction == "one" else
                     "one-way seconds of one message of `bytes` from src to dst: the "
                     "round trip with an empty reply minus ack_s (the pair's "
                     "empty-message one-way time)")}


def _open_run(argv, world, layout, opts, plan, ends, stored, run_id, ledger, overhead):
    from . import metadata as md
    from .harness import timer_properties
    command_line = [sys.executable, "-m", "collectives.links"] + list(
        sys.argv[1:] if argv is None else argv)
    if stored is not None:
        return LinkRunWriter.resume_into(opts.out, ledger, command_line)
    meta = md.collect(world, layout, options=opts.to_metadata(), command_line=command_line,
                      seed=None, timer=timer_properties(),
                      harness_overhead_s=overhead or {},
                      gpu=None, run_id=run_id)
    meta["size_convention"] = {"pingpong": _links_section(opts, plan, ends)["time"]}
    meta["links"] = _links_section(opts, plan, ends)
    return LinkRunWriter.create(opts.out, meta)



def _run(argv) -> int:
    from .faults import FaultHooks
    from .harness import TimingOptions, harness_overhead
    from .mpi import MPI
    from .topology import detect
    from .watchdog import Watchdog

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    layout = detect(world)
    setup = _setup(argv, layout) if rank == 0 else None
    setup = world.bcast(setup, root=0)
    if setup[0] == "exit":
        if rank == 0 and setup[2]:
            sys.stderr.write(setup[2])
            sys.stderr.flush()
        return setup[1]
    _, opts, ends, plan, stored, run_id = setup
    watchdog = Watchdog(opts.point_timeout, rank=rank)
    hooks = FaultHooks(rank, world.Get_size())
    overhead = None
    if stored is None:  # the harness's own cost, once per run, on the whole job
        probe = TimingOptions(sync=opts.sync, time_budget=min(0.2, opts.time_budget))
        with watchdog.phase("harness overhead probe"):
            overhead = {opts.sync: float(harness_overhead(world, probe))}
    ctrl = world.Dup()  # control traffic never matches a pair's messages
    try:
        if rank == 0:
            status = _coordinate(argv, world, ctrl, layout, opts, plan, ends, stored,
                                 run_id, overhead, watchdog, hooks)
        else:
            status = _follow(world, ctrl, opts, plan, ends, watchdog, hooks)
    finally:
        ctrl.Free()
    return status


def _step_deadline(opts, plan) -> float:
    """Longest a rank may wait for one step to end (0: no deadline): every point of
    one pair at its --point-timeout, plus two more (the empty-message probe of
    ``--direction both``; rank 0 writing the step)."""
    if opts.point_timeout <= 0:
        return 0.0
    return (plan.directions * len(plan.sizes) + 2) * opts.point_timeout


def _step_end(ctrl, last: bool):
    """Post this rank's part of a step's end: a nonblocking MAX-allreduce of one flag,
    1 only from rank 0 after the last step.  Returns (request, result array)."""
    from .mpi import MPI
    flag = np.array([1 if last else 0], dtype=np.int32)
    result = np.zeros(1, dtype=np.int32)
    return ctrl.Iallreduce(flag, result, op=MPI.MAX), result, flag


def _follow(world, ctrl, opts, plan, ends, watchdog, hooks) -> int:
    """Every rank but 0.  Every step ends with a small nonblocking allreduce on
    ``ctrl`` that rank 0 joins once the step's rows are in (its flag says whether that
    was the last step).  While it waits -- sleeping in short polls, under a deadline,
    so a stopped or starved rank 0 never leaves the job hanging -- a rank takes the
    assignment rank 0 may send, measures it and sends the rows back."""
    deadline = _step_deadline(opts, plan)
    while True:
        req, result, _flag = _step_end(ctrl, False)
        watchdog.arm("links step (waiting for rank 0)", deadline, what="phase")
        while not req.Test():
            if ctrl.Iprobe(source=0, tag=_TAG_WORK):
                a = ctrl.recv(source=0, tag=_TAG_WORK)
                rows = _measure(world, opts, plan, ends, a, watchdog, hooks)
                if a.leader:
                    _sleepy_send(ctrl, rows, 0, _TAG_ROWS)
                watchdog.arm("links step (waiting for rank 0)", deadline, what="phase")
            else:
                time.sleep(_POLL_S)
        watchdog.disarm()
        if result[0]:
            return 0


def _coordinate(argv, world, ctrl, layout, opts, plan, ends, stored, run_id, overhead,
                watchdog, hooks) -> int:
    """Rank 0: walk the plan, hand out assignments, write the rows, print."""
    ledger = lp.Ledger(plan.n, plan.sizes)
    writer = _open_run(argv, world, layout, opts, plan, ends, stored, run_id, ledger,
                       overhead)
    left = ledger.remaining(plan)
    start_round = ledger.first_round_left(plan)
    estimate = plan.estimate(_estimate_per_point(opts), remaining_points=left,
                             step_overhead=0.02)
    err = sys.stderr
    err.write(plan.describe(ends, opts.mode) + "\n")
    err.write(f"collcost: {left} point(s) to measure"
              f"{' (resuming ' + opts.out + ')' if stored else ''}; estimated "
              f"{lp.format_duration(estimate)} if every point stops at --time-budget "
              f"{opts.time_budget:g} s (sooner when the CI target is met; longer when "
              f"--min-reps {opts.min_reps} repetitions of the largest size outlast the "
              f"budget); writing {opts.out}\n")
    err.flush()
    from .progress import Progress
    from .watchdog import at_abort
    at_abort(writer.release)  # a deadline or an error on rank 0 frees the run's lock
    progress = Progress(max(1, (plan.rounds - start_round) * plan.steps_per_round),
                        every=2.0)
    deadline = _step_deadline(opts, plan)
    started = time.monotonic()
    for step in plan.steps(start_round):
        told = plan.assignments(step, ends, ledger)
        if not told:
            progress.total -= 1
            continue
        sends = [ctrl.isend(a, dest=r, tag=_TAG_WORK) for r, a in told.items() if r]
        rows = []
        if 0 in told:  # endpoint 0 is world rank 0: the leader of its pair
            rows += _measure(world, opts, plan, ends, told[0], watchdog, hooks)
        watchdog.arm(f"links step {step.index} (collecting the pairs' rows)", deadline,
                     what="phase")
        _wait_all(sends)
        waiting = {r for r, a in told.items() if a.leader and r != 0}
        while waiting:
            src, _ = _sleepy_probe(ctrl, _any_source(), _TAG_ROWS)
            rows += ctrl.recv(source=src, tag=_TAG_ROWS)
            waiting.discard(src)
        req, _result, _flag = _step_end(ctrl, False)  # the step is over for everyone
        _wait_all([req])
        watchdog.disarm()
        hooks.at(f"write step {step.index}")
        writer.append(rows)
        for r in rows:
            ledger.mark(r["src"], r["dst"], r["bytes"], r["median_s"])
            if not r["correct"]:
                err.write(f"\ncollcost: WARNING: link {r['src']}->{r['dst']} "
                          f"{r['bytes']}B delivered wrong data (recorded with "
                          "correct=false)\n")
        progress.update(f"round {step.round + 1}/{plan.rounds}: {len(told) // 2} "
                        f"pair(s), {ledger.count()}/{plan.points} points")
    watchdog.arm("links end (every rank leaving)", deadline, what="phase")
    req, _result, _flag = _step_end(ctrl, True)  # the last step: every rank leaves
    _wait_all([req])
    watchdog.disarm()
    progress.close()
    csv_path = writer.finish()
    print(summary(ledger, plan, ends))
    print(f"wrote {writer.written} point(s) this launch to {writer.path} ({csv_path.name}, "
          f"points.jsonl, metadata.json) in "
          f"{lp.format_duration(time.monotonic() - started)} (planned as "
          f"{lp.format_duration(estimate)})")
    sys.stdout.flush()
    return 0


def _any_source():
    from .mpi import MPI
    return MPI.ANY_SOURCE


def _wait_all(requests) -> None:
    for req in requests:
        while not req.Test():
            time.sleep(_POLL_S)


# ---------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------

def summary(ledger: lp.Ledger, plan: lp.Plan, ends, top: int = 5,
            matrix_limit: int = 12) -> str:
    """Per size: links measured, median/min/max one-way time and bandwidth over links,
    the slowest links; per endpoint (largest size): median bandwidth with its partners;
    the bandwidth matrix when there are at most ``matrix_limit`` endpoints."""
    n = plan.n
    mask = ~np.eye(n, dtype=bool) if plan.direction == "both" else \
        np.triu(np.ones((n, n), dtype=bool), 1)
    out = ["units: one-way time in microseconds (us); bandwidth in GB/s = 1e9 bytes/s "
           "(bytes / one-way time)",
           f"{'bytes':>8s} {'links':>7s} {'median_us':>10s} {'min_us':>10s} "
           f"{'max_us':>10s} {'median_GB/s':>11s} {'min_GB/s':>9s}  slowest links"]
    from .progress import human_bytes as _human
    by_host = len({e.host for e in ends}) == n  # host names tell the endpoints apart
    for k, size in enumerate(plan.sizes):
        t = ledger.median[:, :, k][mask].astype(float)
        ok = np.isfinite(t)
        if not ok.any():
            out.append(f"{_human(size):>8s} {0:7d}")
            continue
        tt = t[ok]
        src, dst = np.nonzero(mask)
        src, dst = src[ok], dst[ok]
        worst = np.argsort(tt)[::-1][:top]
        slow = ", ".join(_link_name(ends, src[i], dst[i], by_host) for i in worst
                         if tt[i] > 1.2 * np.median(tt))
        bw = size / tt / 1e9 if size else np.full_like(tt, np.nan)
        out.append(f"{_human(size):>8s} {tt.size:7d} {np.median(tt) * 1e6:10.2f} "
                   f"{tt.min() * 1e6:10.2f} {tt.max() * 1e6:10.2f} "
                   f"{np.nanmedian(bw):11.4f} {np.nanmin(bw):9.4f}  "
                   f"{slow or '-'}")
    big = plan.sizes[-1]
    t = ledger.median[:, :, -1].astype(float)
    both = np.where(np.isfinite(t), t, t.T)  # one direction: fill the lower triangle
    np.fill_diagonal(both, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_end = np.nanmedian(big / both, axis=1) / 1e9
    order = np.argsort(per_end)
    shown = order if n <= 2 * top else order[:top]
    out.append(f"per endpoint at {_human(big)}: median bandwidth with its partners (GB/s)"
               + ("" if n <= 2 * top else f", the {top} lowest of {n}"))
    for i in shown:
        out.append(f"  {i:5d} {ends[i].host:24s} rank {ends[i].rank:5d} "
                   f"{per_end[i]:9.4f}")
    if n <= matrix_limit:
        out.append(f"bandwidth matrix at {_human(big)} (GB/s, row src, column dst)")
        out.append("      " + "".join(f"{j:>9d}" for j in range(n)))
        for i in range(n):
            cells = "".join(f"{'-':>9s}" if i == j or not np.isfinite(both[i, j]) else
                            f"{big / both[i, j] / 1e9:9.4f}" for j in range(n))
            out.append(f"{i:5d} {cells}")
    return "\n".join(out)


def _link_name(ends, i, j, by_host: bool) -> str:
    return f"{ends[i].host}->{ends[j].host}" if by_host else f"{i}->{j}"


def main(argv=None) -> int:
    """Entry point: any exception on any rank aborts the whole job."""
    from .watchdog import guarded_main
    return guarded_main(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
