"""Output files: atomic writes and the one check every output path goes through.

Every command of collcost writes its outputs through this module:

* :func:`atomic_write_text`, :func:`atomic_write_bytes`, :func:`atomic_write_json`
  and the :func:`atomic_path` context manager (for writers that want a file name, such
  as matplotlib's ``savefig``) write a temporary file in the destination's directory,
  fsync it, rename it over the destination and fsync the directory: readers see the
  old file or the complete new one, never a partial one, and a failure leaves the old
  file (or nothing).
* :func:`check_output` refuses, before any work, an output path that is empty, is or
  lies inside one of the command's inputs (symbolic links resolved, hard links
  compared by inode), has no writable directory to go in, or exists when it must not.
  It raises :class:`UsageError` (a ``ValueError``) whose message starts with the
  option's name; the commands print it and exit with status 2.

This module imports nothing heavy (no MPI, numpy or pandas).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["UsageError", "atomic_write_text", "atomic_write_bytes", "atomic_write_json",
           "atomic_path", "check_output", "check_input", "fsync_dir", "drop_stdout"]


class UsageError(ValueError):
    """A bad command line or input file: one line naming the option, file, line or
    field; the command exits with status 2 and writes nothing."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path) -> None:
    """fsync directory ``path`` (makes a rename or a new file in it durable); errors
    (e.g. file systems that refuse directory fsync) are ignored."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Context manager yielding a temporary path next to ``path``; on a normal exit the
    temporary file is fsynced and renamed over ``path``, on an exception it is removed
    and ``path`` is left as it was.  ``suffix`` is kept on the temporary name (some
    writers pick the format from it, e.g. ``".png"``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; act like open()
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync,
    rename, directory fsync)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: readers see either the old file or
    the complete new one, never a partial one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _strict(obj):
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _strict(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path, obj, *, indent: int | None = 2) -> None:
    """Write ``obj`` as strict JSON (numpy values as Python values, NaN and infinities
    as ``null``) plus a newline, atomically.  Serialisation happens before the file is
    touched: an object that cannot be written leaves ``path`` as it was."""
    text = json.dumps(_strict(obj), indent=indent, allow_nan=False) + "\n"
    atomic_write_text(path, text)


#: Longest file name (bytes) of the usual file systems, and the room the temporary
#: name of an atomic write needs on top of the final name ("." + name + ".XXXXXXXX.tmp").
_NAME_MAX = 255
_TEMP_EXTRA = 24


def _resolve(path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve(strict=False)


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _probe_writable(directory: Path, option: str, shown, what="write") -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".collcost-probe-", dir=directory)
    except OSError as exc:
        raise UsageError(f"{option} {shown}: cannot {what} in {directory} "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass


def check_input(path, *, option: str = "input", directory: bool | None = False) -> Path:
    """A usage error unless ``path`` is non-empty and names an existing readable file
    (``directory=False``), directory (``True``) or either (``None``); returns it
    resolved.  A file must be a regular file: named pipes (also ``<(...)``), devices
    and sockets are refused, since reading one can block forever."""
    text = "" if path is None else str(path)
    if not text.strip():
        raise UsageError(f"{option} is empty")
    p = Path(text)
    if not p.exists():
        raise UsageError(f"{option} {text}: no such file or directory")
    if directory is False and p.is_dir():
        raise UsageError(f"{option} {text}: is a directory, expected a file")
    if directory is True and not p.is_dir():
        raise UsageError(f"{option} {text}: is not a directory")
    if not p.is_dir() and not p.is_file():
        # a named pipe, device or socket: reading a pipe with no writer (or a device)
        # can wait forever, and a pipe read once is gone for the next reader
        what = "a named pipe" if p.is_fifo() else "a socket" if p.is_socket() else \
            "a device" if p.is_char_device() or p.is_block_device() else "a special file"
        raise UsageError(f"{option} {text}: is {what}, not a regular file (reading it "
                         "could wait forever; save it to a file first)")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{option} {text}: not readable")
    return _resolve(p)


#: Files of a run directory (collectives.rundir); never an output of another command,
#: even where writing inside an input directory is allowed.
RUN_FILES = ("metadata.json", "points.jsonl", "points.csv", ".lock")


def check_output(path, *, inputs=(), option: str = "--out", overwrite: bool = False,
                 directory: bool = False, parents: bool = False,
                 inside_ok: bool = False) -> Path:
    """Check an output path before any work; return it resolved.

    Raises :class:`UsageError` (message starting with ``option``) when ``path`` is
    empty; is, or is inside, one of ``inputs`` (files or run directories; symbolic
    links resolved, hard links detected); is one of a run directory's own files
    (:data:`RUN_FILES` next to a ``metadata.json``), input or not; has no writable directory to be created in (a probe file is created and removed); or
    exists when it must not:

    * ``directory=False`` (a file): an existing directory is always refused; an
      existing file only when ``overwrite`` is False.
    * ``directory=True`` (a directory to create or fill): an existing non-directory is
      refused; an existing non-empty directory only when ``overwrite`` is False.

    ``parents=True`` allows missing parent directories (the caller creates them); the
    nearest existing ancestor must then be a writable directory.  ``inside_ok=True``
    allows an output inside an input directory (e.g. ``RUN/constants.json``) unless it
    is, or is under, one of a run directory's own files (:data:`RUN_FILES`) or a
    hidden name there.
    """
    text = "" if path is None else str(path)
    if not text.strip():
        raise UsageError(f"{option} is empty")
    if "\0" in text:
        raise UsageError(f"{option} {text!r}: contains a NUL character")
    out = _resolve(text)
    too_long = [part for part in out.parts if len(part.encode()) > _NAME_MAX - _TEMP_EXTRA]
    if too_long:
        raise UsageError(f"{option} {text[:80]}...: the name {too_long[0][:40]}... is "
                         f"longer than {_NAME_MAX - _TEMP_EXTRA} bytes (the file system "
                         f"allows {_NAME_MAX}, less room for the temporary name)")
    for inp in inputs:
        if inp is None or not str(inp).strip():
            continue
        src = _resolve(inp)
        if inside_ok and out != src and _inside(out, src) and src.is_dir() \
                and not _same_file(out, src):
            rel = out.relative_to(src)
            if rel.parts[0] not in RUN_FILES and not rel.parts[0].startswith("."):
                continue
        if _inside(out, src) or _same_file(out, src):
            what = "is" if out == src or _same_file(out, src) else "is inside"
            raise UsageError(f"{option} {text}: {what} the input {inp}; refusing to "
                             "overwrite an input (choose another path)")
    if not directory and out.name in RUN_FILES and (out.parent / "metadata.json").is_file():
        raise UsageError(f"{option} {text}: is a file of the run directory {out.parent}; "
                         "refusing to overwrite measurements (choose another path)")
    if out.exists() or os.path.islink(text):
        if not out.exists():  # a dangling symbolic link
            raise UsageError(f"{option} {text}: is a dangling symbolic link")
        if directory:
            if not out.is_dir():
                raise UsageError(f"{option} {text}: exists and is not a directory")
            if not overwrite and any(out.iterdir()):
                raise UsageError(f"{option} {text}: directory exists and is not empty")
            _probe_writable(out, option, text)
            return out
        if out.is_dir():
            raise UsageError(f"{option} {text}: is a directory, expected a file name")
        if not overwrite:
            raise UsageError(f"{option} {text}: exists (refusing to overwrite it)")
        if not out.is_file():
            raise UsageError(f"{option} {text}: exists and is not a regular file")
    parent = out.parent
    if parents:
        while not parent.exists() and parent.parent != parent:
            parent = parent.parent
    if not parent.exists():
        raise UsageError(f"{option} {text}: directory {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"{option} {text}: {parent} is not a directory")
    _probe_writable(parent, option, text,
                    "create a directory" if directory else "write")
    return out


def drop_stdout() -> None:
    """After a BrokenPipeError on stdout (output piped into ``head``): point stdout at
    /dev/null so that the interpreter's final flush does not fail again; the command
    then exits with its own status, without a traceback."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
