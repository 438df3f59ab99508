"""GPU buffers: CUDA-awareness verdict, device choice, memory check, host staging.

A device pointer handed to an MPI library that is not CUDA-aware crashes the rank with no
Python exception (neither PyPI MPI wheel is CUDA-aware).  So nothing here or in the sweep
hands a device buffer to MPI unless :func:`cuda_awareness` returned a positive verdict,
and ``--buffer cupy-staged`` copies device -> host -> MPI -> host -> device instead.

Buffer kinds (the ``buffer`` column of the results, ``docs/formats.md``):

``numpy``
    host memory; nothing in this module runs and cupy is never imported.
``cupy``
    device memory handed to the MPI library directly (requires a CUDA-aware MPI).
``cupy-staged``
    device memory; every timed call copies its inputs to pinned host memory, runs the
    MPI operation on host memory, and copies its outputs back, with stream
    synchronizations around each copy.  The copies are part of the measured time.  A
    hand-written algorithm then runs wholly on the host copies (its local reductions
    use numpy); the staged ping-pong's echoing rank copies each message to the device
    and back before returning it.

The verdict (:func:`decide`) is a pure function of evidence gathered by small probes:

1. an explicit override -- ``--cuda-aware yes|no`` (CLI) or ``COLLCOST_CUDA_AWARE=yes|no``
   (environment); the CLI wins over the environment;
2. library variables that switch GPU support off, or that must be set to switch it on
   (MPICH ``MPIR_CVAR_ENABLE_GPU=0``, Cray MPICH ``MPICH_GPU_SUPPORT_ENABLED``, MVAPICH
   ``MV2_USE_CUDA``, Intel MPI ``I_MPI_OFFLOAD``, Open MPI ``OMPI_MCA_opal_cuda_support``);
3. ``MPIX_Query_cuda_support()`` called through ctypes on the loaded libmpi (MPICH, Open
   MPI, MVAPICH and Intel MPI export it; it must be called after ``MPI_Init``);
4. the MPI 4.1 info key ``mpi_memory_alloc_kinds`` of ``MPI_COMM_WORLD`` (lists ``cuda``
   when device memory is supported);
5. for Open MPI, ``ompi_info``'s ``mpi_built_with_cuda_support``.

Anything short of a positive answer is "not confirmed": device buffers are then refused
unless the user stages them or overrides the verdict.
"""
from __future__ import annotations

import ctypes
import numbers
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from .arrays import is_device, synchronize

__all__ = [
    "BUFFERS", "DEVICE_BUFFERS", "OVERRIDE_ENV", "GpuSetupError", "CudaAwareness",
    "DeviceSetup", "add_arguments", "parse_override", "decide", "library_family",
    "library_variables", "loaded_mpi_libraries", "query_cuda_support",
    "memory_alloc_kinds", "ompi_built_with_cuda", "cuda_awareness", "import_cupy",
    "node_local_rank", "select_device", "check_device_memory", "describe",
    "device_array", "device_zeros", "pinned_empty", "pinned_zeros", "copy_in",
    "copy_out", "staged", "staged_algorithm", "device_relay", "timed_call", "stage_point",
    "prepare",
]

#: Values of ``--buffer``.
BUFFERS = ("numpy", "cupy", "cupy-staged")
#: Buffer kinds that allocate device memory.
DEVICE_BUFFERS = ("cupy", "cupy-staged")
#: Environment override of the CUDA-awareness verdict (``yes`` or ``no``).
OVERRIDE_ENV = "COLLCOST_CUDA_AWARE"

_YES = {"yes", "1", "true", "on"}
_NO = {"no", "0", "false", "off"}


class GpuSetupError(RuntimeError):
    """The requested buffer kind cannot be used here (usage error: exit status 2)."""


# ----------------------------------------------------------------------------------
# Command-line options (one call per CLI)
# ----------------------------------------------------------------------------------

def add_arguments(parser, *, buffer: bool = True, defaults: bool = True) -> None:
    """Add ``--buffer`` (unless ``buffer=False``) and ``--cuda-aware`` to a parser.

    With ``defaults=False`` both default to None (for CLIs that fill defaults in later,
    e.g. to tell options given again on ``--resume`` from defaults).
    """
    if buffer:
        _add_buffer(parser, defaults)
    parser.add_argument(
        "--cuda-aware", choices=("auto", "yes", "no"), default="auto" if defaults else None,
        help="is the MPI library CUDA-aware? auto (default) asks the library "
             "(MPIX_Query_cuda_support, its variables) and refuses --buffer cupy unless "
             f"it confirms; yes/no override the answer (so does {OVERRIDE_ENV}=yes|no). "
             "Saying yes to a library that is not CUDA-aware crashes the ranks")


def _add_buffer(parser, defaults):
    parser.add_argument(
        "--buffer", choices=BUFFERS, default="numpy" if defaults else None,
        help="where the buffers live: numpy (host memory), cupy (GPU memory handed to "
             "the MPI library; needs a CUDA-aware MPI) or cupy-staged (GPU memory copied "
             "to host memory around every MPI call, copies included in the time). "
             "Default: numpy")


def parse_override(cli: str | None = "auto", env: dict | None = None) -> bool | None:
    """The user's override: True/False, or None for ``auto``.

    ``cli`` is the ``--cuda-aware`` value (``auto``, ``yes``, ``no`` or None); it wins over
    ``COLLCOST_CUDA_AWARE`` in ``env`` (``os.environ`` by default).
    """
    env = os.environ if env is None else env
    if cli not in (None, "auto", "yes", "no"):
        raise ValueError(f"--cuda-aware must be auto, yes or no, got {cli!r}")
    if cli in ("yes", "no"):
        return cli == "yes"
    raw = env.get(OVERRIDE_ENV)
    if raw is None or raw.strip().lower() in ("", "auto"):
        return None
    value = raw.strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ValueError(f"{OVERRIDE_ENV} must be yes, no or auto, got {raw!r}")


# ----------------------------------------------------------------------------------
# The verdict
# ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaAwareness:
    """Can device pointers be handed to this MPI library?

    ``aware`` is the verdict, ``source`` the evidence that decided it (``override``,
    ``variable``, ``MPIX_Query_cuda_support``, ``mpi_memory_alloc_kinds``, ``ompi_info``,
    ``none``), ``reason`` a sentence for people, ``evidence`` everything gathered.
    """

    aware: bool
    source: str
    reason: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready record for metadata."""
        return asdict(self)


def library_family(library_version: str) -> str:
    """``openmpi``, ``cray-mpich``, ``mvapich``, ``intel``, ``mpich`` or ``unknown``."""
    text = (library_version or "").lower()
    for family, marker in (("openmpi", "open mpi"), ("cray-mpich", "cray mpich"),
                           ("mvapich", "mvapich"), ("intel", "intel(r) mpi"),
                           ("intel", "intel mpi"), ("mpich", "mpich")):
        if marker in text:
            return family
    return "unknown"


#: Per library family: (variable, default when unset, meaning).  GPU support is off when
#: the variable's value (or its default, when unset) is false.
_LIBRARY_SWITCHES = {
    "mpich": [("MPIR_CVAR_ENABLE_GPU", "1", "MPICH GPU support")],
    "cray-mpich": [("MPICH_GPU_SUPPORT_ENABLED", "0", "Cray MPICH GPU support"),
                   ("MPIR_CVAR_ENABLE_GPU", "1", "MPICH GPU support")],
    "mvapich": [("MV2_USE_CUDA", "0", "MVAPICH CUDA support"),
                ("MPIR_CVAR_ENABLE_GPU", "1", "MPICH GPU support")],
    "intel": [("I_MPI_OFFLOAD", "0", "Intel MPI GPU support")],
    "openmpi": [("OMPI_MCA_opal_cuda_support", "1", "Open MPI CUDA support")],
    "unknown": [],
}


def _truthy(value: str) -> bool:
    value = value.strip().lower()
    if value in _NO or value == "":
        return False
    try:
        return int(value) > 0
    except ValueError:
        return value in _YES or value in ("enable", "enabled")


def library_variables(family: str, env: dict | None = None) -> dict:
    """The GPU switches of ``family`` as set in ``env``: name -> value (None if unset)."""
    env = os.environ if env is None else env
    return {name: env.get(name) for name, _, _ in _LIBRARY_SWITCHES.get(family, [])}


def _switched_off(family: str, variables: dict) -> str | None:
    """Sentence naming the variable that turns GPU support off, or None."""
    for name, default, meaning in _LIBRARY_SWITCHES.get(family, []):
        value = variables.get(name)
        if not _truthy(default if value is None else value):
            how = f"{name}={value}" if value is not None else f"{name} is not set"
            return f"{meaning} is off ({how})"
    return None


def decide(*, override: bool | None = None, library_version: str = "",
           variables: dict | None = None, query: int | None = None,
           query_library: str | None = None, alloc_kinds: str | None = None,
           ompi_info: bool | None = None) -> CudaAwareness:
    """The CUDA-awareness verdict from evidence (pure; see the module docstring).

    ``query`` is what ``MPIX_Query_cuda_support()`` returned (None: not exported or not
    callable), ``alloc_kinds`` the ``mpi_memory_alloc_kinds`` info value (None: absent),
    ``ompi_info`` Open MPI's ``mpi_built_with_cuda_support`` (None: not asked).
    """
    family = library_family(library_version)
    variables = dict(variables or {})
    evidence = {"library_family": family, "variables": variables, "query": query,
                "query_library": query_library, "alloc_kinds": alloc_kinds,
                "ompi_info_built_with_cuda": ompi_info, "override": override}
    if override is not None:
        return CudaAwareness(
            override, "override",
            f"CUDA-awareness {'asserted' if override else 'denied'} by the user "
            f"(--cuda-aware or {OVERRIDE_ENV})", evidence)
    off = _switched_off(family, variables)
    if off:
        return CudaAwareness(False, "variable", off, evidence)
    if query is not None:
        where = f" ({query_library})" if query_library else ""
        return CudaAwareness(bool(query), "MPIX_Query_cuda_support",
                             f"MPIX_Query_cuda_support() returned {query}{where}",
                             evidence)
    kinds = [k.strip().lower() for k in (alloc_kinds or "").split(",") if k.strip()]
    if any(k == "cuda" or k.startswith("cuda:") for k in kinds):
        return CudaAwareness(True, "mpi_memory_alloc_kinds",
                             f"mpi_memory_alloc_kinds lists CUDA memory ({alloc_kinds})",
                             evidence)
    if ompi_info is not None:
        return CudaAwareness(ompi_info, "ompi_info",
                             f"ompi_info: mpi_built_with_cuda_support is "
                             f"{str(ompi_info).lower()}", evidence)
    if kinds:
        return CudaAwareness(False, "mpi_memory_alloc_kinds",
                             f"mpi_memory_alloc_kinds lists no CUDA memory ({alloc_kinds})"
                             " and MPIX_Query_cuda_support is not exported", evidence)
    return CudaAwareness(False, "none",
                         "could not confirm CUDA support: MPIX_Query_cuda_support is not "
                         "exported and the library reports no CUDA memory kind", evidence)


# ----------------------------------------------------------------------------------
# Probes (each returns None when it has nothing to say)
# ----------------------------------------------------------------------------------

_LIBMPI = re.compile(r"^lib(mpi|mpich)[\w.+-]*\.so(\.|$)")


def loaded_mpi_libraries(maps_text: str | None = None) -> list[str]:
    """Paths of MPI libraries mapped into this process, from ``/proc/self/maps``.

    Only libraries already loaded are listed, so the probe can never query a libmpi other
    than the one mpi4py uses.  Empty where ``/proc`` is unavailable.
    """
    if maps_text is None:
        try:
            with open("/proc/self/maps") as fh:
                maps_text = fh.read()
        except OSError:
            return []
    paths = []
    for line in maps_text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        path = parts[5].strip()
        if _LIBMPI.match(os.path.basename(path)) and path not in paths:
            paths.append(path)
    return paths


def _open_loaded(path: str):
    """ctypes handle on an already-loaded library (RTLD_NOLOAD: never loads a new one)."""
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
    try:
        return ctypes.CDLL(path, mode=mode)
    except OSError:
        return None


def query_cuda_support(libraries: list[str] | None = None,
                       opener=_open_loaded) -> tuple[int | None, str | None]:
    """Call ``MPIX_Query_cuda_support()`` on the loaded libmpi: ``(result, library)``.

    ``(None, None)`` when no loaded library exports it, or MPI is not initialized (the
    function must be called between ``MPI_Init`` and ``MPI_Finalize``).
    """
    from .mpi import MPI
    if not MPI.Is_initialized() or MPI.Is_finalized():
        return None, None
    candidates = loaded_mpi_libraries() if libraries is None else list(libraries)
    candidates.append(None)  # the global namespace, for statically linked programs
    for path in candidates:
        handle = opener(path) if path is not None else _global_namespace()
        fn = getattr(handle, "MPIX_Query_cuda_support", None) if handle else None
        if fn is None:
            continue
        fn.restype = ctypes.c_int
        fn.argtypes = []
        return int(fn()), path or "global namespace"
    return None, None


def _global_namespace():
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def memory_alloc_kinds(comm=None) -> str | None:
    """The MPI 4.1 ``mpi_memory_alloc_kinds`` info value of ``comm`` (world by default)."""
    from .mpi import MPI
    comm = MPI.COMM_WORLD if comm is None else comm
    try:
        info = comm.Get_info()
    except Exception:  # noqa: BLE001 -- MPI < 4 or an info-less library: no evidence
        return None
    try:
        return info.Get("mpi_memory_alloc_kinds")
    finally:
        info.Free()


def ompi_built_with_cuda(ompi_info_output: str | None = None,
                         timeout: float = 20.0) -> bool | None:
    """Open MPI's ``mpi_built_with_cuda_support`` from ``ompi_info --parsable --all``."""
    if ompi_info_output is None:
        exe = shutil.which("ompi_info")
        if exe is None:
            return None
        try:
            ompi_info_output = subprocess.run(
                [exe, "--parsable", "--all"], capture_output=True, text=True,
                timeout=timeout).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    match = re.search(r"mpi_built_with_cuda_support:value:(\w+)", ompi_info_output)
    return None if match is None else match.group(1).lower() == "true"


def cuda_awareness(cli: str | None = "auto", comm=None, env: dict | None = None
                   ) -> CudaAwareness:
    """The verdict for this process, agreed over ``comm`` when one is given.

    With ``comm`` every rank returns the same verdict: positive only if every rank's is,
    otherwise the negative verdict of the lowest such rank.  Collective over ``comm``.
    """
    from .mpi import MPI
    env = os.environ if env is None else env
    try:
        override = parse_override(cli, env)
        error = None
    except ValueError as exc:
        override, error = None, str(exc)
    if comm is not None:
        _agree(comm, error)
    elif error:
        raise GpuSetupError(error)
    version = MPI.Get_library_version()
    family = library_family(version)
    variables = library_variables(family, env)
    query, where = (None, None) if override is not None else query_cuda_support()
    kinds = memory_alloc_kinds() if override is None else None
    ompi = (ompi_built_with_cuda() if override is None and query is None
            and family == "openmpi" else None)
    verdict = decide(override=override, library_version=version, variables=variables,
                     query=query, query_library=where, alloc_kinds=kinds, ompi_info=ompi)
    if comm is None or comm.Get_size() == 1:
        return verdict
    verdicts = comm.allgather(verdict)
    if all(v.aware for v in verdicts):
        return verdicts[0]
    rank, bad = next((r, v) for r, v in enumerate(verdicts) if not v.aware)
    if all(not v.aware for v in verdicts):
        return bad
    return CudaAwareness(False, bad.source, f"rank {rank}: {bad.reason}", bad.evidence)


def _agree(comm, error: str | None) -> None:
    """Raise GpuSetupError on every rank of ``comm`` if any rank has an ``error``."""
    errors = comm.allgather(error) if comm is not None else [error]
    for rank, message in enumerate(errors):
        if message:
            prefix = f"rank {rank}: " if len(errors) > 1 else ""
            raise GpuSetupError(prefix + message)


# ----------------------------------------------------------------------------------
# CuPy, device choice, memory
# ----------------------------------------------------------------------------------

def import_cupy():
    """Import cupy, or raise GpuSetupError saying how to get it."""
    try:
        import cupy
    except ImportError as exc:
        raise GpuSetupError(
            f"--buffer cupy needs CuPy, which cannot be imported here ({exc}); install "
            "it with pip install 'collcost[gpu]' (or the cupy-cudaXXx wheel matching "
            "your CUDA), or use --buffer numpy") from None
    return cupy


def node_local_rank(comm) -> tuple[int, int]:
    """``(rank, size)`` of this process among the ranks of its node (collective)."""
    from .mpi import MPI
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_rank(), local.Get_size()
    finally:
        local.Free()


def select_device(comm, xp=None) -> dict:
    """Make GPU ``node-local rank % device count`` current; return what was chosen.

    Collective over ``comm``.  Returns ``{"device", "device_count", "local_rank",
    "local_size", "ranks_per_device"}``.  Raises GpuSetupError when there is no GPU.
    """
    xp = import_cupy() if xp is None else xp
    rank, size = node_local_rank(comm)
    try:
        count = int(xp.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 -- a CUDA runtime error is "no GPU" here
        raise GpuSetupError(f"no usable GPU: {exc}") from None
    if count < 1:
        raise GpuSetupError("no GPU visible to this process (CUDA_VISIBLE_DEVICES="
                            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
    device = rank % count
    xp.cuda.Device(device).use()
    sharing = len(range(device, size, count))
    return {"device": device, "device_count": count, "local_rank": rank,
            "local_size": size, "ranks_per_device": sharing}


def check_device_memory(nbytes_needed: int, *, ranks_per_device: int = 1,
                        xp=None) -> dict:
    """Check the current GPU has room for ``nbytes_needed`` bytes per rank.

    Free memory counts what CuPy's memory pool already holds but does not use.  Raises
    GpuSetupError naming the sizes when ``nbytes_needed * ranks_per_device`` does not fit;
    returns ``{"free_bytes", "total_bytes", "needed_bytes"}`` otherwise.
    """
    if isinstance(nbytes_needed, bool) or not isinstance(nbytes_needed, numbers.Integral) \
            or nbytes_needed < 0:
        raise ValueError(f"nbytes_needed must be a whole number >= 0, got {nbytes_needed!r}")
    if not isinstance(ranks_per_device, int) or ranks_per_device < 1:
        raise ValueError(f"ranks_per_device must be an integer >= 1, got "
                         f"{ranks_per_device!r}")
    xp = import_cupy() if xp is None else xp
    free, total = (int(v) for v in xp.cuda.Device().mem_info)
    pool = getattr(xp, "get_default_memory_pool", None)
    if pool is not None:
        free += int(pool().free_bytes())
    needed = nbytes_needed * ranks_per_device
    if needed > free:
        share = f" ({ranks_per_device} ranks share this GPU)" if ranks_per_device > 1 else ""
        raise GpuSetupError(
            f"the requested sizes need {needed / 2**20:.1f} MiB of GPU memory{share} but "
            f"only {free / 2**20:.1f} MiB of {total / 2**20:.1f} MiB is free; lower "
            "--sizes or run fewer ranks per GPU")
    return {"free_bytes": free, "total_bytes": total, "needed_bytes": needed}


def _version(number: int) -> str:
    """CUDA version integer (12040) as text (``12.4``)."""
    number = int(number)
    return f"{number // 1000}.{(number % 1000) // 10}"


def describe(buffer: str = "numpy", verdict: CudaAwareness | None = None,
             device: dict | None = None, xp=None) -> dict:
    """Metadata record: GPU model, driver/runtime versions, CuPy version, verdict.

    For ``buffer="numpy"`` it imports nothing and says no GPU was used.  Otherwise it
    describes the current device (``device`` is :func:`select_device`'s result).
    """
    if buffer not in BUFFERS:
        raise ValueError(f"buffer must be one of {', '.join(BUFFERS)}, got {buffer!r}")
    record = {"buffer": buffer, "gpu_used": buffer in DEVICE_BUFFERS,
              "staged": buffer == "cupy-staged",
              "cuda_aware": verdict.to_dict() if verdict is not None else None,
              "model": None, "compute_capability": None, "memory_bytes": None,
              "driver_version": None, "runtime_version": None, "cupy_version": None,
              "device": device}
    if buffer not in DEVICE_BUFFERS:
        record["reason"] = "host (numpy) buffers: no GPU used"
        return record
    xp = import_cupy() if xp is None else xp
    runtime = xp.cuda.runtime
    index = xp.cuda.Device().id
    props = runtime.getDeviceProperties(index)
    name = props.get("name", b"")
    record.update(
        model=name.decode() if isinstance(name, bytes) else str(name),
        compute_capability=f"{props.get('major')}.{props.get('minor')}",
        memory_bytes=int(props.get("totalGlobalMem", 0)) or None,
        driver_version=_version(runtime.driverGetVersion()),
        runtime_version=_version(runtime.runtimeGetVersion()),
        cupy_version=getattr(xp, "__version__", None))
    return record


# ----------------------------------------------------------------------------------
# Device allocation and host staging
# ----------------------------------------------------------------------------------

def device_array(host, xp=None):
    """A device copy of the host array ``host`` (current device, CuPy)."""
    xp = import_cupy() if xp is None else xp
    out = xp.empty(host.shape, dtype=host.dtype)
    out.set(host)
    synchronize(out)
    return out


def device_zeros(count: int, dtype, xp=None):
    """``count`` zeros of ``dtype`` on the current device."""
    xp = import_cupy() if xp is None else xp
    out = xp.zeros(int(count), dtype=dtype)
    synchronize(out)
    return out


def pinned_empty(shape, dtype, xp=None):
    """Page-locked host array (fast device copies); plain numpy if pinning fails."""
    import numpy as np
    xp = import_cupy() if xp is None else xp
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    alloc = getattr(getattr(xp, "cuda", None), "alloc_pinned_memory", None)
    if alloc is not None and count > 0:
        try:
            mem = alloc(count * dtype.itemsize)
            return np.frombuffer(mem, dtype=dtype, count=count).reshape(shape)
        except Exception:  # noqa: BLE001 -- pinning is an optimisation only
            pass
    return np.empty(shape, dtype=dtype)


def pinned_zeros(count: int, dtype, xp=None):
    """``count`` zeros of ``dtype`` in page-locked host memory."""
    out = pinned_empty((int(count),), dtype, xp)
    out[...] = 0
    return out


def _mirrors(buffers):
    """Host mirror per device buffer (one per distinct buffer: aliases stay aliases)."""
    from .arrays import array_module
    seen = {}
    hosts = []
    for b in buffers:
        if not is_device(b):
            hosts.append(b)
            continue
        if id(b) not in seen:
            seen[id(b)] = pinned_empty(b.shape, b.dtype, array_module(b))
        hosts.append(seen[id(b)])
    return hosts


def _positions(name, positions, count):
    positions = tuple(range(count)) if positions is None else tuple(positions)
    bad = [i for i in positions if not (isinstance(i, int) and 0 <= i < count)]
    if bad:
        raise ValueError(f"{name} must be positions 0..{count - 1} of the buffers, "
                         f"got {bad}")
    return positions


def _unique(pairs):
    """Pairs with distinct first members (an aliased buffer is copied once)."""
    return list({id(a): (a, b) for a, b in pairs}.values())


def copy_in(pairs) -> None:
    """Device -> host for each ``(device, host)`` pair, after the device work is done."""
    for dev, host in pairs:
        synchronize(dev)       # kernels writing the device buffer have finished
        dev.get(out=host)      # blocking copy


def copy_out(pairs) -> None:
    """Host -> device for each ``(host, device)`` pair, synchronized before returning."""
    for host, dev in pairs:
        dev.set(host)
    for _, dev in pairs:
        synchronize(dev)       # the copies have landed before anyone reads or times them


def staged(fn, *buffers, inputs=None, outputs=None):
    """Wrap ``fn(*device_buffers)`` as ``device -> host, fn(*host_buffers), host -> device``.

    Returns ``(call, host_buffers)``: ``call()`` copies the device buffers at positions
    ``inputs`` (all by default) into page-locked host mirrors, runs ``fn`` on the mirrors
    (so MPI only ever sees host memory), copies the mirrors at positions ``outputs`` (all
    by default) back to the device and synchronizes before returning.  Host buffers and
    other arguments (``MPI.IN_PLACE``) pass through unchanged; a buffer given twice gets
    one mirror, so in-place calls stay in place.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    inputs = _positions("inputs", inputs, len(buffers))
    outputs = _positions("outputs", outputs, len(buffers))
    hosts = _mirrors(buffers)
    ins = _unique([(buffers[i], hosts[i]) for i in inputs if is_device(buffers[i])])
    outs = _unique([(hosts[i], buffers[i]) for i in outputs if is_device(buffers[i])])

    def call():
        copy_in(ins)
        fn(*hosts)
        copy_out(outs)

    return call, hosts


def staged_algorithm(fn):
    """An algorithm ``fn(comm, *buffers, **kw)`` run through host staging (all buffers
    copied in and out).  Mirrors are allocated per call: for correctness checks, not
    for timing (the sweep stages with :func:`stage_point`)."""
    def run(comm, *buffers, **kwargs):
        call, _ = staged(lambda *hosts: fn(comm, *hosts, **kwargs), *buffers)
        call()
    run.__name__ = getattr(fn, "__name__", "staged")
    run.__doc__ = f"{fn.__doc__ or ''}\n\n(through host staging)"
    return run


def device_relay(host, xp=None):
    """``relay()``: copy ``host`` to a device twin and back, synchronized.

    The echoing rank of a staged ping-pong uses it between its receive and its send, so
    each direction of the round trip carries both copies of a staged message.
    """
    xp = import_cupy() if xp is None else xp
    twin = xp.empty(host.shape, dtype=host.dtype)
    synchronize(twin)
    there, back = [(host, twin)], [(twin, host)]

    def relay():
        copy_out(there)
        copy_in(back)

    return relay


def timed_call(call, buffer: str, xp=None):
    """``(call, before)`` for the harness, synchronizing around device work.

    For host buffers: ``(call, None)``, untouched.  For device kinds, ``before`` waits
    for the current stream (the harness runs it, untimed, before each repetition's start
    and so before its first timer read) and the returned call ends with the same wait,
    so the timer read that closes a repetition follows the completion of its device
    work.
    """
    if buffer not in BUFFERS:
        raise ValueError(f"buffer must be one of {', '.join(BUFFERS)}, got {buffer!r}")
    if buffer not in DEVICE_BUFFERS:
        return call, None
    cuda = (import_cupy() if xp is None else xp).cuda

    def before():
        cuda.get_current_stream().synchronize()

    def call_then_synchronize():
        call()
        cuda.get_current_stream().synchronize()

    return call_then_synchronize, before


def stage_point(point, comm, xp=None):
    """A prepared point (``collectives.operations.Prepared``) measured through staging.

    ``point`` was built on host buffers; its ``inputs``/``outputs`` name the host buffers
    its MPI call reads and writes.  Each gets a device twin; the returned point's
    ``call()`` copies the input twins to the host, runs the MPI call, copies the outputs
    back to their twins and synchronizes, so the timed region holds the copies.  Its
    ``check()`` runs the host check, then the staged path on device data: inputs set on
    the device, host buffers cleared, one staged call, device outputs compared with the
    host results (collective over ``comm``).
    """
    import dataclasses

    import numpy as np
    from .mpi import MPI
    xp = import_cupy() if xp is None else xp
    twins = {}
    for h in tuple(point.inputs) + tuple(point.outputs):
        if id(h) not in twins:
            twins[id(h)] = xp.zeros(h.shape, dtype=h.dtype)
    ins = [(twins[id(h)], h) for h in point.inputs]
    outs = [(h, twins[id(h)]) for h in point.outputs]
    if twins:
        synchronize(next(iter(twins.values())))
    inner = point.call

    def call():
        copy_in(ins)
        inner()
        copy_out(outs)

    def check():
        ok = point.check()
        expected = [h.copy() for h, _ in outs]
        for dev, h in ins:
            dev.set(h)
        for h in list(point.inputs) + list(point.outputs):
            h[...] = 0
        if twins:
            synchronize(next(iter(twins.values())))
        call()
        for want, (_, dev) in zip(expected, outs):
            ok = ok and np.array_equal(dev.get(), want)
        return bool(comm.allreduce(bool(ok), op=MPI.LAND))

    return dataclasses.replace(point, call=call, check=check)


# ----------------------------------------------------------------------------------
# One call for a CLI: everything checked up front, collectively, before any measurement
# ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceSetup:
    """What :func:`prepare` established: buffer kind, verdict, device, metadata record."""

    buffer: str
    verdict: CudaAwareness | None
    device: dict | None
    record: dict


def prepare(comm, buffer: str = "numpy", cuda_aware: str = "auto",
            nbytes_needed: int = 0) -> DeviceSetup:
    """Validate ``--buffer``/``--cuda-aware`` collectively before anything is measured.

    For ``numpy`` it returns at once (cupy is not imported).  For device buffers it
    imports cupy, makes the node-local rank's GPU current, reaches a verdict agreed by all
    ranks, refuses ``cupy`` unless the verdict is positive, and checks that
    ``nbytes_needed`` bytes per rank fit on the GPU.  Every rank raises the same
    GpuSetupError when any rank fails, so callers print it on rank 0 and exit with 2.
    """
    if buffer not in BUFFERS:
        raise GpuSetupError(f"--buffer must be one of {', '.join(BUFFERS)}, got {buffer!r}")
    if cuda_aware not in ("auto", "yes", "no"):
        raise GpuSetupError(f"--cuda-aware must be auto, yes or no, got {cuda_aware!r}")
    if buffer == "numpy":
        return DeviceSetup(buffer, None, None, describe(buffer))
    verdict = cuda_awareness(cuda_aware, comm)
    if buffer == "cupy" and not verdict.aware:
        raise GpuSetupError(
            "refusing --buffer cupy: the MPI library is not confirmed CUDA-aware "
            f"({verdict.reason}); handing it device memory would crash the ranks. Use "
            "--buffer cupy-staged (copies through host memory), or --cuda-aware yes if "
            "you know the library is CUDA-aware")
    xp, device, error = None, None, None
    try:
        xp = import_cupy()
        device = select_device(comm, xp)
    except GpuSetupError as exc:
        error = str(exc)
    _agree(comm, error)
    try:
        check_device_memory(int(nbytes_needed), ranks_per_device=device["ranks_per_device"],
                            xp=xp)
        error = None
    except GpuSetupError as exc:
        error = str(exc)
    _agree(comm, error)
    record = describe(buffer, verdict, device, xp)
    record["devices_by_rank"] = comm.allgather(device["device"])
    return DeviceSetup(buffer, verdict, device, record)


# ----------------------------------------------------------------------------------
# python -m collectives.gpu: print the verdict and each rank's device
# ----------------------------------------------------------------------------------

def _rank_ranges(ranks) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    ranks = sorted(ranks)
    parts, start = [], None
    for i, r in enumerate(ranks):
        if start is None:
            start = r
        if i + 1 == len(ranks) or ranks[i + 1] != r + 1:
            parts.append(f"{start}" if start == r else f"{start}-{r}")
            start = None
    return ", ".join(parts)


def _device_text(rec: dict) -> str:
    """One rank's device as a sentence (no GPU, or which GPU with its versions)."""
    if not rec.get("gpu_used"):
        return "no GPU used (host buffers)"
    dev = rec.get("device") or {}
    where = f"GPU {dev.get('device')} of {dev.get('device_count')}"
    if (dev.get("ranks_per_device") or 1) > 1:
        where += f" (shared by {dev['ranks_per_device']} ranks)"
    memory = rec.get("memory_bytes")
    parts = [rec.get("model") or "unknown model",
             f"compute capability {rec.get('compute_capability')}",
             f"{memory / 2**30:.1f} GiB" if memory else None]
    versions = [f"CUDA driver {rec.get('driver_version')}",
                f"runtime {rec.get('runtime_version')}", f"CuPy {rec.get('cupy_version')}"]
    return (f"{where}: " + ", ".join(p for p in parts if p) + "; " + ", ".join(versions)
            + ("; MPI sees host copies (staged)" if rec.get("staged") else ""))


def format_report(records, width: int = 100) -> str:
    """The human report of :func:`main`: the verdict, then one line per group of ranks
    with the same device description (rank ranges), wrapped to ``width`` columns."""
    import textwrap
    lines = []
    verdicts = {}
    groups = {}
    for rank, rec in enumerate(records):
        aware = rec.get("cuda_aware") or {}
        if aware:
            key = (aware.get("aware"), aware.get("source"), aware.get("reason"))
            verdicts.setdefault(key, []).append(rank)
        text = "not usable (the error is on stderr)" if rec.get("error") \
            else _device_text(rec)
        groups.setdefault(text, []).append(rank)
    one = len(verdicts) == 1
    for (aware, source, reason), ranks in verdicts.items():
        head = "CUDA-aware MPI" + ("" if one else f" (ranks {_rank_ranges(ranks)})")
        lines += textwrap.wrap(f"{head}: {'yes' if aware else 'no'} -- {reason} "
                               f"(decided by {source})", width, subsequent_indent="    ")
    buffer = records[0].get("buffer") if records else None
    lines.append(f"buffer {buffer}: {len(records)} rank(s)")
    for text, ranks in groups.items():
        label = f"rank {ranks[0]}" if len(ranks) == 1 else \
            f"ranks {_rank_ranges(ranks)} ({len(ranks)})"
        lines += textwrap.wrap(f"{label}: {text}", width, subsequent_indent="    ")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Print the CUDA-awareness verdict and, for device buffers, each rank's GPU."""
    import argparse
    import json
    import sys
    parser = argparse.ArgumentParser(
        prog="python -m collectives.gpu",
        description="Report whether the loaded MPI library is CUDA-aware (the verdict "
                    "the sweep and the check use) and, with --buffer cupy or "
                    "cupy-staged, which GPU each rank gets and its versions. Run it "
                    "under mpiexec with the ranks and environment of the real job. "
                    "Exit status 0 when the requested buffer kind is usable, 2 if not.")
    add_arguments(parser)
    parser.add_argument("--bytes", type=int, default=0, metavar="N",
                        help="also check that N bytes per rank fit on the GPU (default 0)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: the verdict and one line per group of ranks with the "
                             "same device (default); json: one JSON record per rank "
                             "(all evidence gathered), one per line")
    args = parser.parse_args(argv)
    from .mpi import MPI
    comm = MPI.COMM_WORLD
    try:
        setup = prepare(comm, args.buffer, args.cuda_aware, args.bytes)
        record, status = setup.record, 0
        if setup.verdict is None:
            record["cuda_aware"] = cuda_awareness(args.cuda_aware, comm).to_dict()
    except GpuSetupError as exc:
        record, status = {"buffer": args.buffer, "error": str(exc)}, 2
    records = comm.gather(record, root=0)
    if comm.Get_rank() == 0:
        if args.format == "json":
            for rank, rec in enumerate(records):
                print(json.dumps({"rank": rank, **rec}, sort_keys=True))
        else:
            print(format_report(records))
        if status:
            print(f"error: {record['error']}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
