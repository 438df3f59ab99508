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
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .costs import AUXILIARY, COLLECTIVES
from .files import atomic_write_text, fsync_dir
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
METADATA_FILE = "metadata.json"
POINTS_FILE = "points.jsonl"
CSV_FILE = "points.csv"

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

class RunFormatError(ValueError):
    """A run directory or point that does not follow docs/formats.md."""


def utc_now() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id() -> str:
    """A fresh run id: UTC timestamp plus 6 random hex digits (sortable, unique)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


_fsync_dir = fsync_dir  # one implementation: collectives.files


def _dumps(obj, **kw) -> str:
    return json.dumps(_plain_json(obj), allow_nan=False, **kw)


def _plain_json(obj):
    """numpy scalars/arrays -> Python values; NaN and infinities -> None (null), so the
    files stay strict JSON (e.g. the CI of a point with too few repetitions)."""
    if isinstance(obj, dict):
        return {k: _plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_json(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _plain_json(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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


def _repair_tail(pfile: Path, good_end: int) -> None:
    """Cut ``pfile`` after its last complete line and make it end with a newline."""
    with open(pfile, "r+b") as fh:
        fh.truncate(good_end)
        if good_end:
            fh.seek(good_end - 1)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_metadata(path: Path) -> dict:
    mfile = path / METADATA_FILE
    if not path.is_dir():
        raise RunFormatError(f"{path}: not a run directory (no such directory)")
    if not mfile.is_file():
        raise RunFormatError(f"{path}: not a run directory (no {METADATA_FILE})")
    try:
        meta = json.loads(mfile.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFormatError(f"{mfile}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise RunFormatError(f"{mfile}: not a collcost run (kind is "
                             f"{meta.get('kind') if isinstance(meta, dict) else None!r}, "
                             f"expected {KIND!r})")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunFormatError(f"{mfile}: unknown schema_version {version!r}; this collcost "
                             f"reads schema_version {SCHEMA_VERSION} only")
    return meta


def _read_points(pfile: Path) -> tuple[list[dict], int, bool]:
    """Rows of points.jsonl, the byte length of its complete lines, truncated flag."""
    if not pfile.exists():
        return [], 0, False
    data = pfile.read_bytes()
    rows, good_end, truncated = [], 0, False
    start = 0
    lineno = 0
    while start < len(data):
        end = data.find(b"\n", start)
        lineno += 1
        if end < 0:  # last line without newline: a write interrupted mid-line
            tail = data[start:]
            try:
                row = json.loads(tail)
                _check_point(row)
            except (ValueError, RunFormatError):
                truncated = True
                break
            # complete JSON but missing its newline: keep it, repair on next append
            rows.append(row)
            good_end = len(data)
            break
        line = data[start:end].strip()
        if line:
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise RunFormatError(f"{pfile}: line {lineno} is not valid JSON ({exc}) "
                                     "and is not the last line") from None
            try:
                _check_point(row)
            except RunFormatError as exc:
                raise RunFormatError(f"{pfile}: line {lineno}: {exc}") from None
            rows.append(row)
        start = end + 1
        good_end = start
    return rows, good_end, truncated


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
    writing) is dropped with a :class:`UserWarning`; a bad line elsewhere is an error.
    """
    path = Path(path)
    meta = _read_metadata(path)
    rows, _, truncated = _read_points(path / POINTS_FILE)
    if truncated:
        warnings.warn(f"{path / POINTS_FILE}: ignoring a truncated last line "
                      "(a launch was killed while writing it)", stacklevel=2)
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


class RunWriter:
    """Writes one run directory: metadata first, then points one durable line at a time.

    Use :meth:`create` for a new run and :meth:`resume` to append to an existing one.
    ``append`` returns only after the line is on disk (flush + fsync), so a launch
    killed at any moment loses no completed point; at most the line being written is
    truncated, and readers drop it.
    """

    def __init__(self, path: Path, metadata: dict, launch: str, rows: list[dict]):
        """Internal: use :meth:`create` or :meth:`resume`."""
        self.path = Path(path)
        self.metadata = metadata
        self.launch = launch
        self._rows = [_without_samples(r) for r in rows]  # for points.csv
        self._keys = {point_key(r) for r in rows}
        self._fh = open(self.path / POINTS_FILE, "a", encoding="utf-8")

    # -- construction ---------------------------------------------------------------
    @classmethod
    def create(cls, path, metadata: dict) -> "RunWriter":
        """Create run directory ``path`` (absent or empty) and write ``metadata.json``.

        ``schema_version``, ``kind``, ``run_id``, ``date_utc`` and ``launches`` are
        filled in when absent.  Nothing is created if ``metadata`` is not JSON-able.
        """
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        path = Path(path)
        _check_new_dir(path)
        meta = dict(metadata)
        meta["schema_version"] = SCHEMA_VERSION
        meta["kind"] = KIND
        meta.setdefault("run_id", new_run_id())
        meta.setdefault("date_utc", utc_now())
        meta.setdefault("launches", [{"launch": meta["run_id"], "date_utc": meta["date_utc"],
                                      "command_line": meta.get("command_line"),
                                      "seed": meta.get("seed")}])
        text = _dumps(meta, indent=2, sort_keys=False) + "\n"  # fails before mkdir
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / METADATA_FILE, text)
        (path / POINTS_FILE).touch()
        _fsync_dir(path)
        return cls(path, meta, meta["run_id"], [])

    @classmethod
    def resume(cls, path, *, command_line=None, seed=None) -> "RunWriter":
        """Reopen run directory ``path`` to append more points as a new launch.

        A truncated last line is cut off (with a warning) before anything is appended.
        The new launch id is ``<run_id>+<n>`` and is recorded in ``launches``.
        """
        path = Path(path)
        meta = _read_metadata(path)
        pfile = path / POINTS_FILE
        rows, good_end, truncated = _read_points(pfile)
        if truncated:
            warnings.warn(f"{pfile}: dropping a truncated last line before resuming",
                          stacklevel=2)
        if pfile.exists():
            _repair_tail(pfile, good_end)
        launches = list(meta.get("launches") or [{"launch": meta["run_id"]}])
        launch = f"{meta['run_id']}+{len(launches)}"
        launches.append({"launch": launch, "date_utc": utc_now(),
                         "command_line": command_line, "seed": seed})
        meta["launches"] = launches
        atomic_write_text(path / METADATA_FILE, _dumps(meta, indent=2) + "\n")
        return cls(path, meta, launch, rows)

    # -- writing --------------------------------------------------------------------
    def completed_keys(self) -> set:
        """Keys (:func:`point_key`) of every point already on disk."""
        return set(self._keys)

    def append(self, point: dict) -> dict:
        """Validate ``point``, add ``launch``/``timestamp_utc`` if absent, write it durably.

        Returns the row as written.  Raises :class:`RunFormatError` for a bad point and
        ``ValueError`` if a point with the same key was already written by this launch.
        """
        row = dict(point)
        row.setdefault("launch", self.launch)
        row.setdefault("timestamp_utc", utc_now())
        _check_point(row)
        key = point_key(row)
        if key in self._keys and row["launch"] == self.launch:
            raise ValueError(f"point {key} was already written by launch {self.launch}")
        ordered = {k: row[k] for k in POINT_FIELDS}
        ordered.update({k: v for k, v in row.items() if k not in ordered})
        line = _dumps(ordered, separators=(",", ":"))
        if "\n" in line:
            raise RunFormatError("a point serialized to several lines")
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._rows.append(_without_samples(json.loads(line)))
        self._keys.add(key)
        return ordered

    def finish(self) -> Path:
        """Write points.csv atomically (all rows so far, no samples) and close."""
        if not self._fh.closed:
            self._fh.close()
        csv = self.path / CSV_FILE
        atomic_write_text(csv, _csv_text(self._rows))
        return csv

    def close(self) -> None:
        """Close the points file without writing points.csv."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def rows(self) -> list[dict]:
        """Rows written so far (including those found on resume), without samples
        (a long sweep's samples would not fit in memory; they are in points.jsonl)."""
        return list(self._rows)


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


def merge_runs(paths, out_path) -> Run:
    """Merge launches of the same sweep into a new run directory ``out_path``.

    Every row keeps its ``launch`` id.  Refuses (``ValueError``, nothing written) runs
    whose checked metadata (:data:`CHECKED_METADATA`: MPI library and version, world
    size, nodes, ranks per node, dtype, op, sync, buffer, tuning variables, GPU)
    disagree, a run given twice, and an ``out_path`` that exists and is not empty.
    Truncated last lines of the inputs are dropped with a warning.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"merge needs at least 2 runs, got {len(paths)}")
    out_path = Path(out_path)
    _check_new_dir(out_path)
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
    problems = metadata_differences([(str(r.path), r.metadata) for r in runs])
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
    meta_text = _dumps(meta, indent=2) + "\n"
    out_path.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_text(out_path / POINTS_FILE, body)
        atomic_write_text(out_path / CSV_FILE, _csv_text(rows))
        atomic_write_text(out_path / METADATA_FILE, meta_text)  # last: marks complete
    except BaseException:
        for f in (METADATA_FILE, POINTS_FILE, CSV_FILE):
            try:
                (out_path / f).unlink()
            except OSError:
                pass
        raise
    return read_run(out_path)

