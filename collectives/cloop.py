"""The compiled timing loop: build, cache and load ``collectives/cloop.c``.

The library's own operations (native collectives and the ping-pong) are timed by a C
loop so a small message's time is the network's and the MPI library's, not Python's:
mpi4py's call costs 0.3-0.6 µs, as much as the intra-node latency being measured
(issue 17).  Each batch of repetitions -- the barrier or window starts of
:mod:`collectives.harness`, the timed call, the per-repetition times -- runs in C; the
harness keeps the adaptive stopping, statistics, validation and files.

Which MPI library.  The C object must call the library mpi4py loaded, not another one
on the system.  That library is found in ``/proc/self/maps`` (the ``libmpi*.so`` mapped
into this process); the build links that very file (``-Wl,-rpath`` to its directory),
and after loading, the object's ``MPI_Get_library_version`` must equal mpi4py's and no
second MPI library may have been mapped, else the object is not used.  Handles travel by
address (``MPI._addressof``), so int handles (MPICH, Intel MPI) and pointer handles
(Open MPI, the MPI-5 ABI) need no conversion; the build asserts the handle size.

How it is built (first success wins; each attempt is recorded):

1. the library's compiler wrapper from its own prefix (``<prefix>/bin/mpicc``, or
   ``mpicc_abi`` for the MPI-5 ABI library): the MPICH and Open MPI wheels ship one
   (the impi-devel wheel ships one too, but its paths are unsubstituted placeholders,
   ``I_MPI_SUBSTITUTE_INSTALLDIR``, so it fails and the next attempt builds);
2. the C compiler with ``<prefix>/include/mpi.h`` and the library file;
3. the C compiler with the few declarations in ``cloop.c`` (``-DCOLLCOST_BUILTIN_MPI``,
   handle size from mpi4py) and the library file: runtime-only installs such as the
   impi-rt wheel (no header, no wrapper).

The C compiler is ``$COLLCOST_CC``, else ``$CC``, else ``cc``; a wrapper is told to use
it through ``MPICH_CC``/``OMPI_CC``/``I_MPI_CC`` when one of those variables is set.

Cache.  ``$COLLCOST_CACHE_DIR``, else ``$XDG_CACHE_HOME/collcost``, else
``~/.cache/collcost``; one directory per key under ``timing-loop/``.  The key hashes the
loop's source, the MPI library (path, size, modification time, version string, handle
size) and the toolchain (wrapper, compiler path and ``--version``, the compiler
variables), so another MPI library, an upgraded one or another compiler builds anew.
Ranks of one node build under an exclusive ``flock`` (waiting at most
:data:`LOCK_TIMEOUT_S`) into a temporary directory renamed into place, so concurrent
ranks never see half a build and build once.  A failed build is cached as well (with
its reason) so a thousand ranks do not retry it; installing a compiler changes the key.

``COLLCOST_TIMING_LOOP``: ``auto`` (default: C where it builds, else Python), ``python``
(never build or use the C loop), ``c`` (fail when it cannot be used).

Where no C loop can be used, the harness runs its Python loop and every point records
which loop timed it (``timing_loop``: ``"c"`` | ``"python"``); :func:`describe` is the
run's record of the build (path, compiler, library, or the reason it is not used).
Device buffers (``cupy``, ``cupy-staged``) keep the Python loop: their timed call must
synchronize the device stream, which this loop does not do.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SOURCE", "ENV_MODE", "ENV_CACHE", "ENV_CC", "KINDS", "NativeOp", "Loop",
           "LoopUnavailable", "mode", "cache_root", "library_info", "load", "describe",
           "build", "compile_program",
           "agree", "runner"]

SOURCE = Path(__file__).with_name("cloop.c")
ENV_MODE = "COLLCOST_TIMING_LOOP"
ENV_CACHE = "COLLCOST_CACHE_DIR"
ENV_CC = "COLLCOST_CC"
MODES = ("auto", "c", "python")
#: Operation kinds, in the order of the C enum.
KINDS = ("noop", "bcast", "allreduce", "reduce_scatter_block", "reduce_scatter",
         "allgather", "allgatherv", "pingpong")
LOOP_ABI = 1
LOCK_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 120.0
LIBRARY_NAME = "libcollcost_loop.so"
_MPI_LIB = re.compile(r"^lib(mpi|mpich|mpi_abi)\.so(\.\d+)*$")
_WRAPPER_CC_VARS = ("MPICH_CC", "OMPI_CC", "I_MPI_CC")


class LoopUnavailable(RuntimeError):
    """The C loop cannot be used here (the message says why)."""


class _Op(ctypes.Structure):
    """Mirrors ``cc_op`` in cloop.c."""

    _fields_ = [("comm", ctypes.c_void_p), ("dtype", ctypes.c_void_p),
                ("op", ctypes.c_void_p), ("sbuf", ctypes.c_void_p),
                ("rbuf", ctypes.c_void_p), ("counts", ctypes.c_void_p),
                ("displs", ctypes.c_void_p), ("count", ctypes.c_longlong),
                ("kind", ctypes.c_int), ("role", ctypes.c_int), ("peer", ctypes.c_int),
                ("tag", ctypes.c_int)]


@dataclass(frozen=True)
class NativeOp:
    """One native operation for the C loop: what the prepared Python call does.

    ``send``/``recv`` are host numpy arrays (kept alive here); ``count`` is the element
    count of the call (per block for ``reduce_scatter_block`` and ``allgather``);
    ``datatype``/``op`` are mpi4py handles; ``counts``/``displs`` the int arrays of
    ``reduce_scatter``/``allgatherv``; ``root`` the bcast root; ``tag`` the ping-pong's.
    """

    kind: str
    send: object = None
    recv: object = None
    count: int = 0
    datatype: object = None
    op: object = None
    counts: object = None
    displs: object = None
    root: int = 0
    tag: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("send", "recv"):
            buf = getattr(self, name)
            if buf is not None and not (isinstance(buf, np.ndarray)
                                        and buf.flags.c_contiguous):
                raise TypeError(f"{name} must be a C-contiguous numpy array (host memory)")
        for name in ("counts", "displs"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, np.ascontiguousarray(v, dtype=np.intc))


# ----------------------------------------------------------------------------- settings

def mode() -> str:
    """``COLLCOST_TIMING_LOOP`` (auto, c, python); ValueError naming it when bad."""
    value = os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV_MODE}={os.environ.get(ENV_MODE)!r}: expected one of "
                         f"{', '.join(MODES)}")
    return value


def cache_root() -> Path:
    """Where builds are cached (module docstring)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "collcost"
    return Path.home() / ".cache" / "collcost"


def _compiler() -> str:
    return os.environ.get(ENV_CC) or os.environ.get("CC") or "cc"


# ----------------------------------------------------------------------------- library

def _mapped_mpi_libraries() -> list[str]:
    """MPI libraries mapped into this process (from /proc/self/maps), in map order."""
    seen = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if path.startswith("/") and _MPI_LIB.match(os.path.basename(path)) \
                            and path not in seen:
                        seen.append(path)
    except OSError:
        pass
    return seen


def library_info() -> dict:
    """The MPI library mpi4py uses: path, version string, ABI, handle size, file stat."""
    from .mpi import MPI
    import mpi4py

    mapped = _mapped_mpi_libraries()
    abi = None
    try:
        from mpi4py import _mpiabi
        abi = _mpiabi._get_mpiabi()
    except Exception:  # noqa: BLE001 -- older mpi4py: no ABI registry
        abi = None
    info = {"path": mapped[0] if mapped else None, "mapped": mapped,
            "version": _clean(MPI.Get_library_version()), "abi": abi,
            "handle_size": int(MPI._sizeof(MPI.Comm)), "mpi4py": mpi4py.__version__}
    if info["path"]:
        st = os.stat(info["path"])
        info.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return info


def _clean(version: str) -> str:
    """A library version string without trailing NULs and blanks (Open MPI counts its
    terminating NUL in the length)."""
    return version.replace("\x00", "").strip()


def _prefixes(libdir: Path):
    """``libdir/..`` and up to two more ancestors (oneAPI: ``lib/release``)."""
    p = libdir
    for _ in range(3):
        p = p.parent
        yield p


def _toolchain(lib: dict) -> dict:
    """The build's tools for ``lib``: wrapper (or None), compiler, include dir."""
    libpath = Path(lib["path"])
    abi_lib = "abi" in libpath.name
    names = ("mpicc_abi",) if abi_lib else ("mpicc",)
    wrapper = include = None
    for prefix in _prefixes(libpath.parent):
        for name in names:
            cand = prefix / "bin" / name
            if wrapper is None and cand.is_file() and os.access(cand, os.X_OK):
                wrapper = cand
        if include is None and not abi_lib and (prefix / "include" / "mpi.h").is_file():
            include = prefix / "include"
    cc = _compiler()
    cc_path = shutil.which(cc)
    version = None
    if cc_path:
        try:
            out = subprocess.run([cc_path, "--version"], capture_output=True, text=True,
                                 timeout=30)
            version = (out.stdout or out.stderr).strip().splitlines()[0] \
                if out.returncode == 0 and (out.stdout or out.stderr).strip() else None
        except (OSError, subprocess.SubprocessError, IndexError):
            version = None
    return {"wrapper": str(wrapper) if wrapper else None, "cc": cc, "cc_path": cc_path,
            "cc_version": version, "include": str(include) if include else None,
            "cc_variables": {k: os.environ[k] for k in ("CC", ENV_CC) + _WRAPPER_CC_VARS
                             if k in os.environ}}


def _key(lib: dict, tools: dict) -> str:
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    h.update(json.dumps({"lib": {k: lib.get(k) for k in ("path", "size", "mtime_ns",
                                                        "version", "handle_size")},
                         "tools": tools, "abi": LOOP_ABI, "machine": os.uname().machine},
                        sort_keys=True).encode())
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------- build

def _attempts(lib: dict, tools: dict, out: str, source: Path = SOURCE,
              shared: bool = True) -> list[tuple[str, list, dict]]:
    libpath = lib["path"]
    libdir = str(Path(libpath).parent)
    common = ["-O2"] + (["-fPIC", "-shared",
                         f"-DCOLLCOST_HANDLE_SIZE={lib['handle_size']}"] if shared else []) \
        + ["-o", out, str(source)]
    rpath = [f"-Wl,-rpath,{libdir}"]
    env = dict(os.environ)
    attempts = []
    if tools["wrapper"]:
        wenv = dict(env)
        if tools["cc_variables"].get(ENV_CC) or tools["cc_variables"].get("CC"):
            for var in _WRAPPER_CC_VARS:
                wenv[var] = tools["cc"]
        attempts.append(("wrapper", [tools["wrapper"]] + common + rpath, wenv))
    cc = tools["cc_path"] or tools["cc"]
    if tools["include"]:
        attempts.append(("cc+mpi.h", [cc] + common[:-1] + ["-I", tools["include"],
                                                            common[-1], libpath] + rpath, env))
    if shared:  # a program of its own (compile_program) needs the real mpi.h
        attempts.append(("cc+builtin", [cc] + common[:-1] + [
            f"-DCOLLCOST_BUILTIN_MPI={lib['handle_size']}", common[-1], libpath] + rpath,
            env))
    return attempts


def compile_program(source, out, lib: dict | None = None) -> list:
    """Compile the MPI program ``source`` into the executable ``out`` against ``lib``
    (default: mpi4py's library) the way the loop is built (wrapper, else the compiler
    with the library's mpi.h).  Returns the command that worked; RuntimeError with each
    attempt's error otherwise.  (The benchmarks' C reference loop.)"""
    lib = library_info() if lib is None else lib
    if not lib.get("path"):
        raise RuntimeError("cannot tell which MPI library mpi4py loaded")
    tools = _toolchain(lib)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    errors = []
    for how, cmd, env in _attempts(lib, tools, str(tmp), Path(source), shared=False):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{how}: {exc}")
            continue
        if proc.returncode == 0 and tmp.exists():
            os.replace(tmp, out)
            return [str(out) if c == str(tmp) else c for c in cmd]
        errors.append(f"{how}: exit status {proc.returncode}: "
                      + _last_lines(proc.stderr or proc.stdout))
    raise RuntimeError(f"cannot build {source}: " + "; ".join(errors))


def _build(lib: dict, tools: dict, dest: Path) -> dict:
    """Compile into a temporary directory beside ``dest``, then rename it to ``dest``.

    Returns the build record (also written as ``dest/build.json``), ``ok`` false with
    the attempts' errors when none succeeded.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=dest.parent))
    try:
        out = str(tmp / LIBRARY_NAME)
        tried = []
        record = {"ok": False, "key": dest.name, "library": lib, "tools": tools,
                  "attempts": tried, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime())}
        for how, cmd, env in _attempts(lib, tools, out):
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                      timeout=BUILD_TIMEOUT_S)
                error = None if proc.returncode == 0 and os.path.exists(out) else \
                    f"exit status {proc.returncode}: " + _last_lines(proc.stderr or proc.stdout)
            except (OSError, subprocess.SubprocessError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            shown = [str(dest / LIBRARY_NAME) if c == out else c for c in cmd]
            tried.append({"how": how, "command": shown, "error": error})
            if error is None:
                record.update(ok=True, how=how, command=shown,
                              header="builtin" if how == "cc+builtin" else "mpi.h")
                break
        (tmp / "build.json").write_text(json.dumps(record, indent=2))
        try:
            os.rename(tmp, dest)
        except OSError as exc:  # another process got there first (no lock on this fs)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return json.loads((dest / "build.json").read_text())
        return record
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _last_lines(text: str, n: int = 4) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "(no output)"


def _locked(lock_path: Path, timeout: float):
    """An exclusive flock on ``lock_path``, polled up to ``timeout`` seconds."""
    import fcntl

    fh = open(lock_path, "a+")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                fh.close()
                raise
            if time.monotonic() > deadline:
                fh.close()
                raise LoopUnavailable(f"timed out after {timeout:g} s waiting for the "
                                      f"build lock {lock_path}")
            time.sleep(0.05)


def build(lib: dict | None = None, *, root: Path | None = None) -> dict:
    """The cached build record for ``lib`` (default: mpi4py's library), building it
    if needed.  Never raises for a failed compile: the record has ``ok`` false."""
    lib = library_info() if lib is None else lib
    if not lib.get("path"):
        raise LoopUnavailable("cannot tell which MPI library mpi4py loaded (no libmpi "
                              "in /proc/self/maps)")
    tools = _toolchain(lib)
    base = (cache_root() if root is None else Path(root)) / "timing-loop"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoopUnavailable(f"cache directory {base}: {exc.strerror or exc} (set "
                              f"{ENV_CACHE})") from None
    key = _key(lib, tools)
    dest = base / key
    record = _cached(dest)
    if record is None:
        try:
            fh = _locked(base / f"{key}.lock", LOCK_TIMEOUT_S)
        except OSError as exc:
            raise LoopUnavailable(f"build lock in {base}: {exc.strerror or exc}") from None
        try:
            record = _cached(dest)  # built by another rank while we waited?
            if record is None:
                if dest.exists():  # damaged (shared object or record missing): redo
                    shutil.rmtree(dest, ignore_errors=True)
                record = _build(lib, tools, dest)
                record["cached"] = False
        finally:
            fh.close()
    record["path"] = str(dest / LIBRARY_NAME)
    return record


def _cached(dest: Path) -> dict | None:
    """The build record in ``dest`` when it is whole (a record that reads, and the
    shared object a successful build names), else None."""
    try:
        record = json.loads((dest / "build.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or (record.get("ok")
                                        and not (dest / LIBRARY_NAME).is_file()):
        return None
    record["cached"] = True
    return record


# ----------------------------------------------------------------------------- loading

class Loop:
    """The loaded C loop (``ctypes``); :func:`load` makes one per process."""

    def __init__(self, path: str, record: dict, lib: dict):
        before = set(_mapped_mpi_libraries())
        self.dll = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        added = [p for p in _mapped_mpi_libraries() if p not in before]
        if added:
            raise LoopUnavailable(f"{path} loaded a second MPI library ({added[0]}); "
                                  f"mpi4py uses {lib['path']}")
        d = self.dll
        d.collcost_loop_abi.restype = ctypes.c_int
        d.collcost_op_size.restype = ctypes.c_int
        if d.collcost_loop_abi() != LOOP_ABI or d.collcost_op_size() != ctypes.sizeof(_Op):
            raise LoopUnavailable(f"{path}: built from another version of cloop.c")
        buf = ctypes.create_string_buffer(1 << 14)
        n = ctypes.c_int(0)
        d.collcost_library_version.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        d.collcost_library_version(buf, ctypes.byref(n))
        theirs = _clean(buf.raw[:n.value].decode(errors="replace"))
        if theirs != lib["version"]:
            raise LoopUnavailable(f"{path} calls another MPI library than mpi4py "
                                  f"({theirs.splitlines()[:1]} vs "
                                  f"{lib['version'].splitlines()[:1]})")
        d.collcost_comm_size.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        d.collcost_barrier_batch.argtypes = [ctypes.POINTER(_Op), ctypes.c_longlong,
                                             ctypes.c_void_p]
        d.collcost_window_batch.argtypes = [ctypes.POINTER(_Op), ctypes.c_longlong,
                                            ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_void_p]
        self.path, self.record, self.library = path, record, lib

    def comm_size(self, comm) -> int:
        from .mpi import MPI
        size = ctypes.c_int(-1)
        _check(self.dll.collcost_comm_size(ctypes.c_void_p(MPI._addressof(comm)),
                                           ctypes.byref(size)))
        return size.value


def _check(rc: int) -> None:
    if rc == 0:
        return
    from .mpi import MPI
    if rc < 0:
        raise ValueError("the C timing loop rejected its arguments")
    raise MPI.Exception(rc)


_STATE: dict = {}


def load() -> Loop:
    """This process's C loop, built and loaded on first use; :class:`LoopUnavailable`
    (with the reason, also kept for :func:`describe`) when it cannot be used."""
    if "loop" in _STATE:
        return _STATE["loop"]
    if "error" in _STATE:
        raise LoopUnavailable(_STATE["error"])
    record, lib = None, None
    try:
        m = mode()
        if m == "python":
            raise LoopUnavailable(f"disabled ({ENV_MODE}=python)")
        lib = library_info()
        record = build(lib)
        if not record.get("ok"):
            raise LoopUnavailable("no build succeeded: " + "; ".join(
                f"{a['how']} ({a['command'][0]}): {a['error']}" for a in record["attempts"])
                + (f" (a failure cached in {Path(record['path']).parent}: remove it to "
                   "retry)" if record.get("cached") else ""))
        loop = Loop(record["path"], record, lib)
    except (LoopUnavailable, OSError, ValueError) as exc:
        _STATE.update(error=str(exc), record=record, library=lib)
        raise LoopUnavailable(str(exc)) from None
    _STATE.update(loop=loop, record=record, library=lib)
    return loop


def describe() -> dict:
    """The build record for a run's metadata (after :func:`load` was tried).

    ``loop`` ("c" | "python"), ``reason`` (why not C, or null), ``path`` of the shared
    object, ``compiler`` (how it was built: wrapper or compiler, with its version),
    ``command``, ``header`` (``mpi.h`` or ``builtin``), ``cached`` (reused from an
    earlier build), ``library`` (path, version's first line, ABI, handle size), and the
    failed ``attempts`` when none succeeded.
    """
    if not _STATE:
        try:
            load()
        except LoopUnavailable:
            pass
    rec = _STATE.get("record") or {}
    lib = _STATE.get("library") or rec.get("library") or {}
    tools = rec.get("tools") or {}
    out = {"loop": "c" if "loop" in _STATE else "python", "reason": _STATE.get("error"),
           "mode": os.environ.get(ENV_MODE, "auto"),
           "path": rec.get("path") if rec.get("ok") else None,
           "compiler": None, "command": rec.get("command"), "header": rec.get("header"),
           "cached": rec.get("cached"), "cache_key": rec.get("key"),
           "library": {"path": lib.get("path"), "abi": lib.get("abi"),
                       "handle_size": lib.get("handle_size"),
                       "version": (lib.get("version") or "").splitlines()[0]
                       if lib.get("version") else None}}
    if rec.get("ok"):
        cc = f"{tools.get('cc_path') or tools.get('cc')} ({tools.get('cc_version')})"
        out["compiler"] = (f"{tools['wrapper']} -> {cc}" if rec.get("how") == "wrapper"
                           else cc)
    elif rec.get("attempts"):
        out["attempts"] = [{"how": a["how"], "error": a["error"]} for a in rec["attempts"]]
    return out


def agree(comm, ok: bool) -> bool:
    """Collective: True when ``ok`` on every rank of ``comm``."""
    from .mpi import MPI
    return bool(comm.allreduce(bool(ok), op=MPI.LAND))


# ----------------------------------------------------------------------------- running

class Runner:
    """Batches of one :class:`NativeOp` on one communicator, timed in C.

    Same interface as the harness's Python runner: :meth:`barrier` and :meth:`window`
    return int64 nanoseconds.
    """

    loop = "c"

    def __init__(self, loop: Loop, comm, native: NativeOp):
        from .mpi import MPI
        self._loop, self._comm, self._native = loop, comm, native
        rank, size = comm.Get_rank(), comm.Get_size()
        if native.kind == "pingpong" and size != 2:
            raise ValueError(f"pingpong needs a 2-rank communicator, got {size}")
        op = _Op()
        op.comm = MPI._addressof(comm)
        op.dtype = MPI._addressof(native.datatype) if native.datatype is not None else None
        op.op = MPI._addressof(native.op) if native.op is not None else None
        op.sbuf = native.send.ctypes.data if native.send is not None else None
        op.rbuf = native.recv.ctypes.data if native.recv is not None else None
        op.counts = native.counts.ctypes.data if native.counts is not None else None
        op.displs = native.displs.ctypes.data if native.displs is not None else None
        op.count = int(native.count)
        op.kind = KINDS.index(native.kind)
        op.role = rank if native.kind == "pingpong" else int(native.root)
        op.peer = 1 - rank if native.kind == "pingpong" else 0
        op.tag = int(native.tag)
        self._op = op
        self._ref = ctypes.byref(op)
        self._barrier = loop.dll.collcost_barrier_batch
        self._window = loop.dll.collcost_window_batch

    def barrier(self, n: int) -> np.ndarray:
        t = np.empty(int(n), dtype=np.int64)
        _check(self._barrier(self._ref, int(n), t.ctypes.data))
        return t

    def window(self, targets) -> tuple[np.ndarray, np.ndarray]:
        tg = np.ascontiguousarray(targets, dtype=np.int64)
        t = np.empty_like(tg)
        late = np.empty_like(tg)
        _check(self._window(self._ref, tg.size, tg.ctypes.data, t.ctypes.data,
                            late.ctypes.data))
        return t, late


def runner(comm, native: NativeOp) -> Runner:
    """A C runner for ``native`` on ``comm`` (local, no communication);
    :class:`LoopUnavailable` when the C loop cannot be used in this process."""
    loop = load()
    if loop.comm_size(comm) != comm.Get_size():
        raise LoopUnavailable("the C loop sees another communicator size than mpi4py")
    return Runner(loop, comm, native)
