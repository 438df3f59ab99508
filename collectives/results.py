"""Run directories: write points durably, read them back, merge launches.

The format is the contract in ``docs/formats.md`` (schema_version 1)::

    data/<run>/metadata.json   provenance, written atomically before the first point
    data/<run>/points.jsonl    one JSON object per completed point (append+flush+fsync)
    data/<run>/points.csv      the same rows without samples (atomic replace at the end)

Public API: :class:`RunWriter` (used by the sweep), :func:`read_run` returning a
:class:`Run`, :func:`merge_runs`, :func:`point_key` and the column/key tuples below.
This module does not import MPI: readers (the fitter) run without it.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .costs import AUXILIARY, COLLECTIVES
from .files import UsageError, atomic_write_text, fsync_dir
from .parsing import MAX_SIZE
from . import rundir
from .rundir import (CSV_FILE, METADATA_FILE, POINTS_FILE, RunDirError, dumps as _dumps,
                     new_run_id, plain_json as _plain_json, utc_now)
from .metadata import environment_differences, tuning_environment

__all__ = [
    "metadata_differences",
    "SCHEMA_VERSION", "KIND", "METADATA_KEYS", "POINT_FIELDS", "KEY_FIELDS",
    "SAMPLE_KEYS", "CHECKED_METADATA", "Run", "RunWriter", "RunFormatError",
    "STAT_FIELDS", "read_run", "merge_runs", "point_key", "atomic_write_text",
    "new_run_id", "utc_now",
]

if TYPE_CHECKING:  # pandas is imported lazily: the sweep's ranks write without it
    import pandas as pd

SCHEMA_VERSION = 1
KIND = "collcost-run"

#: Keys every sweep's ``metadata.json`` carries (docs/formats.md).
METADATA_KEYS = (
    "schema_version", "kind", "run_id", "date_utc", "command_line", "git_commit",
    "collcost_version", "mpi", "mpi4py_version", "numpy_version", "python_version",
    "world_size", "hosts", "nodes", "ranks_per_node", "env", "timer",
    "harness_overhead_s", "options", "seed", "size_convention", "gpu", "launches",
)

#: What identifies a point: one row per key and launch.
KEY_FIELDS = ("collective", "algorithm", "topology", "ranks", "nodes", "bytes",
              "dtype", "op", "buffer", "sync")

#: Columns of a point row, in file order (``samples`` is left out of points.csv).
POINT_FIELDS = KEY_FIELDS + (
    "count", "launch", "median_s", "ci_low_s", "ci_high_s", "mean_s", "min_s",
    "p95_s", "p99_s", "repetitions", "discarded", "warmup", "stop_rule", "unstable",
    "correct", "samples", "timestamp_utc",
)

SAMPLE_KEYS = ("max", "min", "mean")
#: Statistics columns (seconds; null in the file when undefined, NaN in the frame).
STAT_FIELDS = ("median_s", "ci_low_s", "ci_high_s", "mean_s", "min_s", "p95_s", "p99_s")
TOPOLOGIES = ("intra", "inter", "world")
STOP_RULES = ("ci", "budget", "max")

#: Metadata that must agree for runs to be merged: (description, getter).
CHECKED_METADATA = (
    ("MPI library", lambda m: (m.get("mpi") or {}).get("library")),
    ("MPI library version", lambda m: (m.get("mpi") or {}).get("version")),
    ("world size", lambda m: m.get("world_size")),
    ("nodes", lambda m: m.get("nodes")),
    ("ranks per node", lambda m: m.get("ranks_per_node")),
    ("dtype", lambda m: (m.get("options") or {}).get("dtype")),
    ("op", lambda m: (m.get("options") or {}).get("op")),
    ("sync", lambda m: (m.get("options") or {}).get("sync")),
    ("buffer", lambda m: (m.get("options") or {}).get("buffer")),
    # compared variable by variable (metadata.environment_differences): launcher
    # bookkeeping (random ids, working directories) is not compared
    ("MPI/transport tuning variables", tuning_environment),
    ("GPU", lambda m: m.get("gpu")),
)

#: A run directory or point that does not follow docs/formats.md.
RunFormatError = RunDirError

_fsync_dir = fsync_dir  # one implementation: collectives.files


def point_key(point) -> tuple:
    """The identity of a point: the values of :data:`KEY_FIELDS` (a tuple)."""
    try:
        return tuple(_plain(point[k]) for k in KEY_FIELDS)
    except KeyError as exc:
        raise RunFormatError(f"point lacks key field {exc.args[0]!r}") from None


def _plain(v):
    # numpy ints/floats -> Python scalars so keys compare and hash consistently.
    return v.item() if hasattr(v, "item") else v


def _check_point(point: dict) -> None:
    """Validate one point row against docs/formats.md (raises RunFormatError)."""
    if not isinstance(point, dict):
        raise RunFormatError(f"a point must be a dict, got {type(point).__name__}")
    missing = [k for k in POINT_FIELDS if k not in point]
    if missing:
        raise RunFormatError(f"point lacks field(s) {', '.join(missing)}")
    known = COLLECTIVES + AUXILIARY
    if point["collective"] not in known:
        raise RunFormatError(f"point has unknown collective {point['collective']!r}; "
                             f"expected one of {', '.join(known)}")
    if point["topology"] not in TOPOLOGIES:
        raise RunFormatError(f"point has unknown topology {point['topology']!r}; "
                             f"expected one of {', '.join(TOPOLOGIES)}")
    for k, low in (("ranks", 1), ("nodes", 1), ("bytes", 0), ("count", 0),
                   ("repetitions", 0)):
        v = _plain(point[k])
        if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, float)
                                       and v.is_integer()):
            raise RunFormatError(f"point field {k} must be a whole number, got {v!r}")
        if v < low:
            raise RunFormatError(f"point field {k} must be >= {low}, got {v!r}")
    if _plain(point["bytes"]) > MAX_SIZE:
        raise RunFormatError(f"point field bytes must be <= {MAX_SIZE}, got "
                             f"{point['bytes']!r}")
    for k in STAT_FIELDS:  # seconds or null (the sweep's reader also checks their sign)
        v = _plain(point[k])
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise RunFormatError(f"point field {k} must be a number of seconds or null, "
                                 f"got {v!r}")
    if point["stop_rule"] not in STOP_RULES:
        raise RunFormatError(f"point has unknown stop_rule {point['stop_rule']!r}; "
                             f"expected one of {', '.join(STOP_RULES)}")
    samples = point["samples"]
    if not isinstance(samples, dict) or any(k not in samples for k in SAMPLE_KEYS) \
            or any(not hasattr(samples[k], "__len__") for k in SAMPLE_KEYS):
        raise RunFormatError(f"point samples must be a dict of lists with keys "
                             f"{', '.join(SAMPLE_KEYS)}")
    lengths = {k: len(samples[k]) for k in SAMPLE_KEYS}
    if len(set(lengths.values())) != 1:
        raise RunFormatError(f"point samples differ in length: {lengths}")
    if lengths["max"] != int(point["repetitions"]):
        raise RunFormatError(f"point has {lengths['max']} samples but repetitions="
                             f"{point['repetitions']}")


_repair_tail = rundir.repair_tail


def _read_metadata(path: Path) -> dict:
    return rundir.read_metadata(path, KIND, SCHEMA_VERSION)


def _check_sweep_point(point: dict) -> None:
    """:func:`_check_point`, and a sweep's times are never negative or infinite (a
    sweep measures durations; only a links run's one-way times, round trip minus
    ``ack_s``, can come out below zero)."""
    _check_point(point)
    for k in STAT_FIELDS:
        v = _plain(point[k])
        if v is not None and (v < 0 or v == math.inf):
            raise RunFormatError(f"point field {k} must be finite and >= 0 seconds, "
                                 f"got {v!r}")


def _read_points(pfile: Path, *, per_launch: bool = False):
    """Rows of points.jsonl, the byte length of its complete lines, the truncated flag
    and the duplicated lines (:func:`collectives.rundir.read_points`)."""
    return rundir.read_points(pfile, _check_sweep_point, point_key, per_launch=per_launch)


@dataclass(frozen=True)
class Run:
    """A run directory read back: ``path``, ``metadata`` (dict), ``points`` (DataFrame).

    ``points`` has one row per point line in the order written, columns
    :data:`POINT_FIELDS` (``samples`` holds dicts of per-repetition seconds).
    """

    path: Path
    metadata: dict
    points: pd.DataFrame

    @property
    def run_id(self) -> str:
        return self.metadata["run_id"]

    @property
    def launches(self) -> list:
        """Launch ids present in the points (merged runs have several)."""
        return sorted(self.points["launch"].unique()) if len(self.points) else []


def _frame(rows: list[dict]):
    import pandas as pd  # lazily: the sweep's ranks write without pandas
    frame = pd.DataFrame(rows, columns=list(POINT_FIELDS))
    extra = [c for r in rows[:1] for c in r if c not in POINT_FIELDS]
    for c in extra:  # forward-compatible additive columns are kept
        frame[c] = [r.get(c) for r in rows]
    for c in STAT_FIELDS:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


def read_run(path) -> Run:
    """Read a run directory (see docs/formats.md).

    Rejects directories that are not collcost runs or carry an unknown
    ``schema_version``.  A truncated last line of points.jsonl (a rank killed while
    writing) is dropped with a :class:`UserWarning`; a bad line elsewhere is an error
    naming the line.  Duplicated points (one key twice; in a merged run one key and
    launch twice): a line repeating an earlier one byte for byte is dropped with a
    warning naming both lines; two different measurements of one point are an error
    naming both lines (two jobs wrote the run at once).
    """
    path = Path(path)
    meta = _read_metadata(path)
    pfile = path / POINTS_FILE
    rows, _, truncated, dups = _read_points(pfile,
                                            per_launch=bool(meta.get("merged_from")))
    if truncated:
        warnings.warn(f"{pfile}: ignoring a truncated last line "
                      "(a launch was killed while writing it)", stacklevel=2)
    conflicting = [d for d in dups if not d.identical]
    if conflicting:
        more = f" (and {len(conflicting) - 1} more)" if len(conflicting) > 1 else ""
        raise RunFormatError(f"{conflicting[0].describe(pfile)}{more}: two measurements "
                             "of one point (two jobs wrote this run at once?); remove "
                             "one of the lines")
    if dups:
        lines = ", ".join(str(d.line) for d in dups[:10]) + (" ..." if len(dups) > 10
                                                              else "")
        warnings.warn(f"{pfile}: dropping {len(dups)} duplicated line(s) ({lines}), each "
                      f"a copy of an earlier line; e.g. {dups[0].describe(pfile)}",
                      stacklevel=2)
    return Run(path=path, metadata=meta, points=_frame(rows))


def _without_samples(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "samples"}


def _csv_text(rows: list[dict]) -> str:
    frame = _frame([_without_samples(r) for r in rows]).drop(columns=["samples"])
    return frame.to_csv(index=False)


def _check_new_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists and is not an empty directory; "
                              "choose another --out or use --resume")


class RunWriter(rundir.RunWriter):
    """Writes one sweep run directory (:class:`collectives.rundir.RunWriter` with the
    sweep's point schema): atomic creation, the one-writer lock, durable points.

    Use :meth:`create` for a new run and :meth:`resume` to append to an existing one
    (which refuses a damaged or duplicated points file with a usage error).
    """

    KIND = KIND
    SCHEMA_VERSION = SCHEMA_VERSION
    FIELDS = POINT_FIELDS

    @staticmethod
    def check_point(row: dict) -> None:
        _check_point(row)

    @staticmethod
    def point_key(row: dict) -> tuple:
        return point_key(row)

    @classmethod
    def csv_text(cls, rows: list) -> str:
        return _csv_text(rows)


def metadata_differences(metas: list[tuple[str, dict]]) -> list[str]:
    """Sentences naming each checked metadata field (``CHECKED_METADATA``) on which the
    runs ``[(name, metadata), ...]`` disagree with the first; empty when they agree."""
    problems = []
    (first_name, first), rest = metas[0], metas[1:]
    for what, get in CHECKED_METADATA:
        ref = get(first)
        if get is tuning_environment:
            for name, meta in rest:
                problems += environment_differences(first, meta, (first_name, name))
            continue
        for name, meta in rest:
            val = get(meta)
            if val != ref:
                problems.append(f"{what} differs: {first_name} has {ref!r}, "
                                f"{name} has {val!r}")
    return problems


#: Stored options that change what a point measures: merged launches must agree on
#: them (which points a launch measured -- collectives, sizes, ranks -- may differ).
MERGE_OPTIONS = ("dtype", "op", "sync", "buffer", "target_ci", "time_budget", "min_reps",
                 "max_reps")


def option_differences(metas: list[tuple[str, dict]], names=MERGE_OPTIONS) -> list[str]:
    """Sentences naming each stored option of ``names`` on which the runs
    ``[(name, metadata), ...]`` disagree with the first."""
    problems = []
    (first_name, first), rest = metas[0], metas[1:]
    ref = first.get("options") if isinstance(first.get("options"), dict) else {}
    for name, meta in rest:
        mine = meta.get("options") if isinstance(meta.get("options"), dict) else {}
        for k in names:
            if ref.get(k) != mine.get(k):
                problems.append(f"option {k} differs: {first_name} has {ref.get(k)!r}, "
                                f"{name} has {mine.get(k)!r}")
    return problems


def merge_runs(paths, out_path) -> Run:
    """Merge launches of the same sweep into a new run directory ``out_path``.

    Every row keeps its ``launch`` id.  Refuses (``ValueError``, nothing written) runs
    whose checked metadata (:data:`CHECKED_METADATA`: MPI library and version, world
    size, nodes, ranks per node, dtype, op, sync, buffer, tuning variables, GPU) or
    measurement options (:data:`MERGE_OPTIONS`) disagree, a run given twice, a point
    of one launch found in two inputs, and an ``out_path`` that is empty, exists and
    is not empty, or is inside an input.  The output directory appears whole or not
    at all (collectives.rundir.create_run_dir).  Truncated last lines of the inputs
    are dropped with a warning.
    """
    from .files import check_output
    if any(p is None or not str(p).strip() for p in paths):
        raise UsageError("RUN is empty (an empty path)")
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"merge needs at least 2 runs, got {len(paths)}")
    check_output(out_path, inputs=paths, option="--out", directory=True, parents=True)
    out_path = Path(out_path)
    runs = []
    for p in paths:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = read_run(p)
        for w in caught:
            warnings.warn(str(w.message), stacklevel=2)
        runs.append(run)
    seen = {}
    for run in runs:
        if run.run_id in seen:
            raise ValueError(f"run {run.run_id} given twice ({seen[run.run_id]} and "
                             f"{run.path})")
        seen[run.run_id] = run.path
    metas = [(str(r.path), r.metadata) for r in runs]
    problems = metadata_differences(metas) + option_differences(metas)
    if problems:
        raise ValueError("refusing to merge runs with different metadata:\n  "
                         + "\n  ".join(problems))
    rows, launches, seen_rows = [], [], set()
    for run in runs:
        for row in run.points.to_dict("records"):
            ident = point_key(row) + (row["launch"],)
            if ident in seen_rows:
                raise ValueError(f"point {point_key(row)} of launch {row['launch']} "
                                 f"appears in more than one input run")
            seen_rows.add(ident)
            rows.append({k: _plain(v) for k, v in row.items()})
        launches += list(run.metadata.get("launches") or [{"launch": run.run_id}])
    meta = dict(runs[0].metadata)
    meta["run_id"] = new_run_id()
    meta["date_utc"] = utc_now()
    meta["launches"] = launches
    meta["merged_from"] = [{"path": str(r.path), "run_id": r.run_id,
                            "date_utc": r.metadata.get("date_utc")} for r in runs]
    body = "".join(_dumps(r, separators=(",", ":")) + "\n" for r in rows)
    files = {POINTS_FILE: body, CSV_FILE: _csv_text(rows),
             METADATA_FILE: _dumps(meta, indent=2) + "\n"}
    rundir.create_run_dir(out_path, files, option="--out").release()
    return read_run(out_path)
