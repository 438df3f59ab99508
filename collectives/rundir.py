"""Run directories, whatever they measure: one writer, atomic creation, durable points.

Shared by every measuring command (``collectives.sweep``, ``collectives.links``); the
point schema of each kind of run lives with its command (the sweep's in
:mod:`collectives.results`).  A run directory holds::

    metadata.json   provenance, written atomically before the first point
    points.jsonl    one JSON object per completed point (append + flush + fsync)
    points.csv      the same rows without samples (atomic replace at the end)
    .lock           present while a job writes the directory (see RunLock)

* :class:`RunLock`: ``.lock`` is created with ``O_EXCL`` and holds the writer's host,
  pid, process start time and command line.  A second writer is refused
  (:class:`LockHeld`, a usage error naming the holder).  A lock is *provably stale*
  when its host is this host and its pid is not running (or is another process now,
  by its start time); such a lock is removed automatically, with a message.  A lock of
  another host cannot be checked from here: ``break_lock=True`` (the sweep's
  ``--break-lock``) removes it.  Removal renames the lock aside and checks it is the
  one judged stale, so two jobs clearing the same stale lock cannot both win.
* :func:`create_run_dir`: the directory is built under a temporary name next to its
  destination (metadata, empty points file, lock) and renamed into place in one step:
  readers never see a half-created run, and of two jobs creating the same run
  directory exactly one succeeds.
* :class:`RunWriter`: create or resume a run under its lock and append points
  durably; subclasses say what a point is (``KIND``, :meth:`check_point`,
  :meth:`point_key`).  :func:`read_points` reads ``points.jsonl`` back: a truncated
  last line (a job killed mid-write) is reported, a damaged line elsewhere is an error
  naming the line, duplicated points are reported (:class:`Duplicate`) for the caller
  to refuse or drop.

This module imports neither MPI nor pandas.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .files import UsageError, atomic_write_text, check_output, fsync_dir

__all__ = ["METADATA_FILE", "POINTS_FILE", "CSV_FILE", "LOCK_FILE", "RunLock",
           "LockHeld", "RunDirError", "Duplicate", "check_new_run_dir", "create_run_dir",
           "read_metadata", "read_points", "repair_tail", "RunWriter", "dumps",
           "utc_now", "new_run_id"]

METADATA_FILE = "metadata.json"
POINTS_FILE = "points.jsonl"
CSV_FILE = "points.csv"
LOCK_FILE = ".lock"


class RunDirError(ValueError):
    """A run directory or point line that does not follow docs/formats.md."""


class LockHeld(UsageError):
    """Another job holds the run directory's lock."""


def utc_now() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id() -> str:
    """A fresh run id: UTC timestamp plus 6 random hex digits (sortable, unique)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def plain_json(obj):
    """numpy scalars/arrays -> Python values; NaN and infinities -> None (null), so the
    files stay strict JSON."""
    if isinstance(obj, dict):
        return {k: plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return plain_json(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj, **kw) -> str:
    """Strict JSON text of ``obj`` (see :func:`plain_json`)."""
    return json.dumps(plain_json(obj), allow_nan=False, **kw)


# ---------------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------------

def _proc_start(pid: int):
    """Start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().decode("ascii", "replace").rsplit(")", 1)[1].split()[0] in "ZX":
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _holder(info) -> str:
    if not isinstance(info, dict):
        return "an unknown job (the lock file is unreadable)"
    cmd = info.get("command")
    return (f"pid {info.get('pid')} on host {info.get('host')} since "
            f"{info.get('started_utc')}" + (f" ({cmd})" if cmd else ""))


class RunLock:
    """The one-writer lock of run directory ``directory`` (file ``.lock``)."""

    #: a lock file without content younger than this may be a writer between
    #: creating and filling it, older it is a job killed right then
    UNREADABLE_GRACE_S = 10.0
    #: how long a same-host holder is watched for dying before a refusal (a job killed
    #: a moment ago, e.g. by its launcher, is still exiting)
    DYING_GRACE_S = 3.0

    def __init__(self, directory):
        self.directory = Path(directory)
        self.held = False
        self.info = None
        self._mutex = threading.Lock()

    @property
    def path(self) -> Path:
        return self.directory / LOCK_FILE

    @staticmethod
    def new_info() -> dict:
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "proc_start": _proc_start(pid),
                "started_utc": utc_now(),
                "command": " ".join([os.path.basename(sys.executable)] + sys.argv)[:500]}

    def _read(self):
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except OSError:
            return None, ""
        try:
            info = json.loads(text)
        except ValueError:
            info = None
        return (info if isinstance(info, dict) else None), text

    def stale_reason(self, info, text) -> str | None:
        """Why the lock described by ``info`` is provably stale, or None."""
        if info is None:
            try:
                age = (datetime.now().timestamp() - self.path.stat().st_mtime)
            except OSError:
                return "the lock file is gone"
            if age > self.UNREADABLE_GRACE_S:
                return f"the lock file is unreadable and {age:.0f} s old"
            return None
        if info.get("host") != socket.gethostname():
            return None
        try:
            pid = int(info.get("pid"))
        except (TypeError, ValueError):
            return "the lock names no process"
        if not _pid_running(pid):
            return f"pid {pid} is not running on {info.get('host')}"
        start = _proc_start(pid)
        if info.get("proc_start") is not None and start is not None \
                and start != info.get("proc_start"):
            return f"pid {pid} on {info.get('host')} is another process now"
        return None

    def _clear(self, text, reason: str) -> None:
        aside = self.directory / f"{LOCK_FILE}.stale-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            taken = aside.read_text(encoding="utf-8")
        except OSError:
            taken = None
        if taken != text:  # another job took the lock meanwhile: give it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        else:
            sys.stderr.write(f"collcost: removed the lock of {self.directory} ({reason})\n")
            sys.stderr.flush()
        try:
            os.unlink(aside)
        except OSError:
            pass

    def acquire(self, *, break_lock: bool = False, option: str = "--resume") -> "RunLock":
        """Take the lock or raise :class:`LockHeld` naming its holder.  A provably stale
        lock is removed; ``break_lock`` removes any lock (the user says its job is gone)."""
        for _ in range(5):
            info = self.new_info()
            text = json.dumps(info) + "\n"
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                held, held_text = self._read()
                if held_text is None:
                    continue  # released meanwhile
                reason = self.stale_reason(held, held_text)
                deadline = time.monotonic() + self.DYING_GRACE_S
                while reason is None and held is not None and time.monotonic() < deadline \
                        and held.get("host") == socket.gethostname():
                    # a job just killed may take a moment to be gone: look again
                    time.sleep(0.2)
                    reason = self.stale_reason(held, held_text)
                    if not self.path.exists():
                        break
                if not self.path.exists():
                    continue
                if reason is None and break_lock:
                    reason = f"--break-lock; it was held by {_holder(held)}"
                if reason is None:
                    raise LockHeld(
                        f"{option} {self.directory}: the run is being written by "
                        f"{_holder(held)} (lock file {self.path}); wait for that job, or "
                        "if it is gone (e.g. on another host) pass --break-lock") from None
                self._clear(held_text, reason)
                continue
            except FileNotFoundError:
                raise UsageError(f"{option} {self.directory}: no such directory") from None
            except OSError as exc:
                raise UsageError(f"{option} {self.directory}: cannot create the lock file "
                                 f"({exc.strerror or exc})") from None
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.directory)
            self._taken(info)
            return self
        raise LockHeld(f"{option} {self.directory}: could not take the lock (other jobs "
                       "keep taking it)")

    def _taken(self, info) -> None:
        self.info, self.held = info, True
        atexit.register(self.release)

    def release(self) -> None:
        """Remove the lock if this process holds it (idempotent; safe from any thread)."""
        with self._mutex:
            if not self.held:
                return
            self.held = False
            info, _ = self._read()
            if isinstance(info, dict) and info.get("pid") == os.getpid() \
                    and info.get("host") == socket.gethostname():
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
                fsync_dir(self.directory)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


# ---------------------------------------------------------------------------------
# Creating a run directory
# ---------------------------------------------------------------------------------

def check_new_run_dir(path, *, option: str = "--out", inputs=()) -> Path:
    """A usage error unless ``path`` can become a new run directory: non-empty, not an
    input, absent or an empty directory, its nearest existing ancestor a writable
    directory.  Returns the resolved path."""
    try:
        return check_output(path, inputs=inputs, option=option, directory=True,
                            parents=True)
    except UsageError as exc:
        if "not empty" in str(exc):
            raise UsageError(f"{option} {path}: directory is not empty (use --resume "
                             f"{path} to continue that run, or choose another "
                             f"{option})") from None
        raise


def create_run_dir(path, files: dict, *, option: str = "--out") -> RunLock:
    """Create run directory ``path`` atomically holding ``files`` (name -> text; an
    empty points file is added) and its lock, held by this process (returned).

    Raises :class:`UsageError` when ``path`` exists and is not empty (e.g. another job
    created it meanwhile); nothing is left behind then."""
    path = Path(os.path.abspath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=path.parent))
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create it ({exc.strerror or exc})") \
            from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        for name, text in files.items():
            atomic_write_text(tmp / name, text)
        (tmp / POINTS_FILE).touch()
        lock = RunLock(tmp)
        lock.acquire(option=option)
        lock.held = False  # not ours to release under the temporary name
        try:
            os.rename(tmp, path)
        except OSError as exc:
            raise UsageError(f"{option} {path}: exists and is not empty (another job "
                             f"created it meanwhile?) ({exc.strerror or exc})") from None
        fsync_dir(path)
        fsync_dir(path.parent)
    except OSError as exc:  # e.g. the disk filled up: nothing is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"{option} {path}: cannot create it ({exc.strerror or exc})") \
            from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = RunLock(path)
    final._taken(lock.info)
    return final


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------

def read_metadata(path, kinds, schema_version: int) -> dict:
    """``path/metadata.json`` as a dict; :class:`RunDirError` unless it is a run of one
    of ``kinds`` with ``schema_version``."""
    path = Path(path)
    mfile = path / METADATA_FILE
    if not str(path).strip():
        raise RunDirError("the run directory path is empty")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a run directory ("
                          + ("not a directory" if path.exists() else "no such directory")
                          + ")")
    if not mfile.is_file():
        raise RunDirError(f"{path}: not a run directory (no {METADATA_FILE})")
    try:
        meta = json.loads(mfile.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{mfile}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise RunDirError(f"{mfile}: cannot read ({exc.strerror or exc})") from None
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not isinstance(meta, dict) or meta.get("kind") not in kinds:
        raise RunDirError(f"{mfile}: not a collcost run (kind is "
                          f"{meta.get('kind') if isinstance(meta, dict) else None!r}, "
                          f"expected {' or '.join(map(repr, kinds))})")
    version = meta.get("schema_version")
    if version != schema_version:
        raise RunDirError(f"{mfile}: unknown schema_version {version!r}; this collcost "
                          f"reads schema_version {schema_version} only")
    if not isinstance(meta.get("run_id"), str) or not meta["run_id"]:
        raise RunDirError(f"{mfile}: field run_id must be a non-empty string")
    launches = meta.get("launches")
    if launches is not None and not (isinstance(launches, list) and all(
            isinstance(x, dict) for x in launches)):
        raise RunDirError(f"{mfile}: field launches must be a list of objects")
    if meta.get("options") is not None and not isinstance(meta["options"], dict):
        raise RunDirError(f"{mfile}: field options must be an object")
    return meta


@dataclass(frozen=True)
class Duplicate:
    """A point line whose identity an earlier line already had."""

    line: int        # 1-based line number of the repeat
    first: int       # line number of the first occurrence
    key: tuple       # the point's identity
    identical: bool  # the two lines are byte for byte the same

    def describe(self, pfile) -> str:
        what = "repeats" if self.identical else "measures the same point as"
        return f"{pfile}: line {self.line} {what} line {self.first} (point {self.key})"


def read_points(pfile, check, key, *, per_launch: bool = False):
    """Read ``points.jsonl``: ``(rows, good_end, truncated, duplicates)``.

    ``check(row)`` validates a row (raising ``ValueError``); ``key(row)`` is its
    identity, extended by its ``launch`` when ``per_launch`` (merged runs hold one row
    per key and launch).  ``good_end`` is the byte length of the complete lines,
    ``truncated`` whether a damaged last line was left out; ``duplicates`` lists the
    :class:`Duplicate` lines, which are *not* in ``rows``.  A damaged line that is not
    the last raises :class:`RunDirError` naming the file and line.
    """
    pfile = Path(pfile)
    if not pfile.exists():
        return [], 0, False, []
    if not pfile.is_file():
        raise RunDirError(f"{pfile}: is not a file")
    rows, dups, seen = [], [], {}
    good_end, truncated, lineno = 0, False, 0
    with open(pfile, "rb") as fh, _gc_paused():  # 10^5+ rows: GC passes cost ~30%
        offset = 0
        for raw in fh:
            lineno += 1
            last = not raw.endswith(b"\n")
            line = raw.strip()
            if line:
                try:
                    row = json.loads(line)
                    check(row)
                    ident = key(row) + ((row.get("launch"),) if per_launch else ())
                except (ValueError, TypeError, KeyError) as exc:
                    if last:  # a write interrupted mid-line: the job was killed
                        truncated = True
                        break
                    if isinstance(exc, json.JSONDecodeError):
                        raise RunDirError(f"{pfile}: line {lineno} is not valid JSON "
                                          f"({exc}) and is not the last line") from None
                    raise RunDirError(f"{pfile}: line {lineno}: {exc}") from None
                digest = hash(line)
                if ident in seen:
                    first, first_digest = seen[ident]
                    dups.append(Duplicate(lineno, first, ident, digest == first_digest))
                else:
                    seen[ident] = (lineno, digest)
                    rows.append(row)
            offset += len(raw)
            good_end = offset
    return rows, good_end, truncated, dups


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection inside (reading many rows creates only acyclic
    objects; collections triggered by their number are wasted time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def repair_tail(pfile, good_end: int) -> None:
    """Cut ``pfile`` after its last complete line and make it end with a newline."""
    with open(pfile, "r+b") as fh:
        fh.truncate(good_end)
        if good_end:
            fh.seek(good_end - 1)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------

class RunWriter:
    """Writes one run directory under its lock: metadata first, then points one durable
    line at a time.  ``append`` returns only after the line is on disk (flush + fsync),
    so a job killed at any moment loses no completed point; at most the line being
    written is truncated, and readers drop it.

    Subclasses set :attr:`KIND`, :attr:`SCHEMA_VERSION`, :attr:`FIELDS` (column order
    of a line) and override :meth:`check_point` and :meth:`point_key`;
    :meth:`csv_text` writes ``points.csv``.
    """

    KIND = "collcost-run"
    SCHEMA_VERSION = 1
    FIELDS: tuple = ()

    @staticmethod
    def check_point(row: dict) -> None:
        """Raise ``ValueError`` unless ``row`` is a valid point of this kind."""
        if not isinstance(row, dict):
            raise RunDirError(f"a point must be a dict, got {type(row).__name__}")

    @staticmethod
    def point_key(row: dict) -> tuple:
        """The identity of a point (a tuple of plain values)."""
        raise NotImplementedError

    @classmethod
    def csv_text(cls, rows: list) -> str:
        """points.csv of ``rows`` (dicts without samples)."""
        import csv
        import io
        cols = list(cls.FIELDS) or sorted({k for r in rows for k in r})
        cols = [c for c in cols if c != "samples"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def __init__(self, path, metadata: dict, launch: str, rows: list, lock=None):
        """Internal: use :meth:`create` or :meth:`resume`."""
        self.path = Path(path)
        self.metadata = metadata
        self.launch = launch
        self.lock = lock
        self._rows = [_without_samples(r) for r in rows]  # for points.csv
        self._keys = {self.point_key(r) for r in rows}
        self._fh = open(self.path / POINTS_FILE, "a", encoding="utf-8")

    # -- construction ---------------------------------------------------------------
    @classmethod
    def _complete_metadata(cls, metadata: dict) -> dict:
        meta = dict(metadata)
        meta["schema_version"] = cls.SCHEMA_VERSION
        meta["kind"] = cls.KIND
        meta.setdefault("run_id", new_run_id())
        meta.setdefault("date_utc", utc_now())
        meta.setdefault("launches", [{"launch": meta["run_id"], "date_utc": meta["date_utc"],
                                      "command_line": meta.get("command_line"),
                                      "seed": meta.get("seed"), "env": meta.get("env")}])
        return meta

    @classmethod
    def create(cls, path, metadata: dict, *, option: str = "--out"):
        """Create run directory ``path`` (absent or empty) atomically with its
        ``metadata.json`` and lock.  ``schema_version``, ``kind``, ``run_id``,
        ``date_utc`` and ``launches`` are filled in when absent.  Nothing is created if
        ``metadata`` is not JSON-able; :class:`UsageError` if ``path`` is taken."""
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"{option} {path}: already exists and is not an empty "
                             "directory; choose another --out or use --resume")
        meta = cls._complete_metadata(metadata)
        text = dumps(meta, indent=2) + "\n"  # fails before anything is created
        lock = create_run_dir(path, {METADATA_FILE: text}, option=option)
        return cls(path, meta, meta["run_id"], [], lock=lock)

    @classmethod
    def open_for_resume(cls, path, *, option: str = "--resume", break_lock=False):
        """Take the lock of run ``path`` and read it back for :meth:`resume`:
        ``(lock, metadata, rows, good_end, truncated)``.  Everything wrong is a
        :class:`UsageError` naming the option, file, line or field (the lock is released
        then): damaged metadata, a damaged line that is not the last, duplicated points."""
        path = Path(path)
        if not str(path).strip():
            raise UsageError(f"{option} is empty")
        try:
            read_metadata(path, cls.KIND, cls.SCHEMA_VERSION)  # before touching it
        except RunDirError as exc:
            raise UsageError(f"{option}: {exc}") from None
        for name in (METADATA_FILE, POINTS_FILE, CSV_FILE):
            f = path / name
            if f.is_symlink():
                raise UsageError(f"{option}: {f} is a symbolic link; appending would change "
                                 "the file it points to (copy the run instead)")
            if f.is_file() and f.stat().st_nlink > 1:
                raise UsageError(f"{option}: {f} has {f.stat().st_nlink} hard links (a "
                                 "'cp -l' copy?); appending would change the other copies "
                                 "too (copy the run without -l)")
        lock = RunLock(path).acquire(break_lock=break_lock, option=option)
        try:
            meta = read_metadata(path, cls.KIND, cls.SCHEMA_VERSION)
            pfile = path / POINTS_FILE
            rows, good_end, truncated, dups = read_points(
                pfile, cls.check_point, cls.point_key,
                per_launch=bool(meta.get("merged_from")))
            if dups:
                more = f" (and {len(dups) - 1} more)" if len(dups) > 1 else ""
                raise UsageError(f"{option}: {dups[0].describe(pfile)}{more}; a run with "
                                 "duplicated points is not resumed (remove the repeated "
                                 "lines, or merge the launches into a new run)")
        except RunDirError as exc:
            lock.release()
            raise UsageError(f"{option}: {exc}") from None
        except BaseException:
            lock.release()
            raise
        return lock, meta, rows, good_end, truncated

    @classmethod
    def resume(cls, path, *, command_line=None, seed=None, env=None, opened=None,
               option: str = "--resume", break_lock: bool = False):
        """Reopen run ``path`` to append more points as a new launch ``<run_id>+<n>``
        (recorded in ``launches`` with its command line, seed and ``env``).  ``opened``
        is what :meth:`open_for_resume` returned (taken here when None).  A truncated
        last line is cut off (with a message) before anything is appended."""
        path = Path(path)
        lock, meta, rows, good_end, truncated = opened or cls.open_for_resume(
            path, option=option, break_lock=break_lock)
        try:
            pfile = path / POINTS_FILE
            if truncated:
                warnings.warn(f"{pfile}: dropping a truncated last line before resuming",
                              stacklevel=2)
            if pfile.exists():
                repair_tail(pfile, good_end)
            launches = list(meta.get("launches") or [{"launch": meta["run_id"]}])
            launch = f"{meta['run_id']}+{len(launches)}"
            launches.append({"launch": launch, "date_utc": utc_now(),
                             "command_line": command_line, "seed": seed, "env": env})
            meta["launches"] = launches
            atomic_write_text(path / METADATA_FILE, dumps(meta, indent=2) + "\n")
            return cls(path, meta, launch, rows, lock=lock)
        except BaseException:
            lock.release()
            raise

    # -- writing --------------------------------------------------------------------
    def completed_keys(self) -> set:
        """Keys (:meth:`point_key`) of every point already on disk."""
        return set(self._keys)

    def append(self, point: dict) -> dict:
        """Validate ``point``, add ``launch``/``timestamp_utc`` if absent, write it
        durably.  Returns the row as written.  Raises ``ValueError`` for a bad point
        or one whose key was already written."""
        row = dict(point)
        row.setdefault("launch", self.launch)
        row.setdefault("timestamp_utc", utc_now())
        self.check_point(row)
        key = self.point_key(row)
        if key in self._keys:
            raise ValueError(f"point {key} was already written to {self.path / POINTS_FILE}")
        ordered = {k: row[k] for k in self.FIELDS if k in row}
        ordered.update({k: v for k, v in row.items() if k not in ordered})
        line = dumps(ordered, separators=(",", ":"))
        if "\n" in line:
            raise RunDirError("a point serialized to several lines")
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._rows.append(_without_samples(json.loads(line)))
        self._keys.add(key)
        return ordered

    def finish(self) -> Path:
        """Write points.csv atomically (all rows so far, no samples), close, release
        the lock."""
        try:
            if not self._fh.closed:
                self._fh.close()
            csv = self.path / CSV_FILE
            atomic_write_text(csv, self.csv_text(self._rows))
            return csv
        finally:
            self.release()

    def close(self) -> None:
        """Close the points file without writing points.csv; release the lock."""
        if not self._fh.closed:
            self._fh.close()
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def rows(self) -> list:
        """Rows written so far (including those found on resume), without samples."""
        return list(self._rows)


def _without_samples(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "samples"}
