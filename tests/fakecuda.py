"""A fake device-array library: host memory behind ``__cuda_array_interface__``.

Lets the device code path (no branching on the array library, stream synchronization
before MPI reads a buffer) run on machines without a GPU, as mpi4py's own tests do.

* :class:`FakeDeviceArray` wraps a 1-D numpy array and exposes
  ``__cuda_array_interface__`` (version 3) with its host pointer; mpi4py passes it to
  MPI, which reads host memory.  It has no ``__array__``: numpy cannot silently use it.
* This module plays the array library (``collectives.arrays.array_module`` returns it
  because it has ``cuda.get_current_stream``): ``empty``, ``asarray``, ``copyto``,
  ``add``, ``maximum``, ``minimum``.
* Kernels are asynchronous like on a GPU: ``copyto`` and the ufuncs are queued on the
  stream and only run at ``cuda.get_current_stream().synchronize()`` (or ``.get()``,
  which synchronizes like cupy's).  A missing synchronization before an MPI call
  therefore sends stale data.  ``STREAM.synchronizations`` counts the calls.
"""
from __future__ import annotations

import sys
import types

import numpy as np

from collectives.arrays import is_device as _is_device

__all__ = ["FakeDeviceArray", "STREAM", "EXPOSURES", "cuda", "empty", "zeros", "asarray",
           "copyto", "add", "maximum", "minimum", "pending", "install"]


class _Stream:
    """The one stream: a queue of kernels run in order at ``synchronize``."""

    def __init__(self):
        self.queue = []
        self.synchronizations = 0

    def synchronize(self):
        self.synchronizations += 1
        self._drain()

    def _drain(self):
        queue, self.queue = self.queue, []
        for kernel in queue:
            kernel()


STREAM = _Stream()
#: Names of the Python functions through which an array's device pointer was read
#: (mpi4py reads ``__cuda_array_interface__`` from C: the caller is the function that
#: made the MPI call).  ``collectives.arrays.is_device`` only tests for the attribute
#: and is not recorded.  Empty after a staged run: MPI never saw device memory.
EXPOSURES = []
_IS_DEVICE_CODE = _is_device.__code__
#: Namespace mirroring ``cupy.cuda``.
cuda = types.SimpleNamespace(get_current_stream=lambda: STREAM)


def pending() -> int:
    """Number of queued kernels not yet run."""
    return len(STREAM.queue)


class FakeDeviceArray:
    """1-D 'device' array over host memory (see the module docstring)."""

    def __init__(self, host: np.ndarray):
        if host.ndim != 1 or not host.flags["C_CONTIGUOUS"]:
            raise ValueError("FakeDeviceArray wraps contiguous 1-D arrays only")
        self._host = host

    dtype = property(lambda self: self._host.dtype)
    shape = property(lambda self: self._host.shape)
    size = property(lambda self: self._host.size)
    ndim = property(lambda self: 1)
    nbytes = property(lambda self: self._host.nbytes)

    def __len__(self):
        return self._host.size

    @property
    def __cuda_array_interface__(self):
        caller = sys._getframe(1).f_code
        if caller is not _IS_DEVICE_CODE:  # anyone but is_device: the pointer escapes
            EXPOSURES.append(caller.co_name)
        return {"shape": self._host.shape, "typestr": self._host.dtype.str,
                "data": (self._host.ctypes.data, False), "strides": None,
                "version": 3}

    def __getitem__(self, index):
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("FakeDeviceArray supports contiguous slices only")
        return FakeDeviceArray(self._host[index])

    def get(self, out=None) -> np.ndarray:
        """Copy to host after the queued kernels ran (like ``cupy.ndarray.get``);
        into ``out`` (a host array of the same shape) when given."""
        STREAM._drain()
        if out is None:
            return self._host.copy()
        np.copyto(out, self._host)
        return out

    def set(self, host) -> None:
        """Queue the host-to-device copy of ``host`` (like ``cupy.ndarray.set``:
        asynchronous on the stream, so readers must synchronize first)."""
        src = np.array(host, dtype=self.dtype, copy=True).reshape(self.shape)
        dst = self._host
        STREAM.queue.append(lambda: np.copyto(dst, src))

    def __repr__(self):
        return f"FakeDeviceArray({self._host!r})"


def _host(a):
    if not isinstance(a, FakeDeviceArray):
        raise TypeError(f"fakecuda kernels take FakeDeviceArray, got {type(a).__name__}")
    return a._host


def _length(n) -> int:
    if isinstance(n, tuple):
        if len(n) != 1:
            raise ValueError(f"fakecuda arrays are 1-D, got shape {n}")
        n = n[0]
    return int(n)


def empty(n, dtype) -> FakeDeviceArray:
    """New uninitialized array (filled with a marker so stale reads show)."""
    host = np.empty(_length(n), dtype=dtype)
    host[...] = 99
    return FakeDeviceArray(host)


def asarray(host) -> FakeDeviceArray:
    """A device copy of host data (synchronous, like ``cupy.asarray``)."""
    return FakeDeviceArray(np.array(host, copy=True).reshape(-1))


def copyto(dst, src) -> None:
    """Queue ``dst[...] = src``."""
    d, s = _host(dst), _host(src)
    STREAM.queue.append(lambda: np.copyto(d, s))


def _ufunc(np_ufunc):
    def kernel(a, b, out):
        x, y, o = _host(a), _host(b), _host(out)
        STREAM.queue.append(lambda: np_ufunc(x, y, out=o))
    kernel.__name__ = np_ufunc.__name__
    kernel.__doc__ = f"Queue ``out = {np_ufunc.__name__}(a, b)``."
    return kernel


add = _ufunc(np.add)
maximum = _ufunc(np.maximum)
minimum = _ufunc(np.minimum)


# ---------------------------------------------------------------------------------
# Device management, as much of cupy as collectives.gpu uses.  install() registers this
# module as ``cupy`` so a whole program (sweep, check) takes its cupy code path here.
# FAKECUDA_DEVICES (default 1) and FAKECUDA_FREE_BYTES (default 1 GiB) set what the
# fake runtime reports.
# ---------------------------------------------------------------------------------

import os  # noqa: E402

__version__ = "0.0-fakecuda"
_CURRENT = [0]


def zeros(n, dtype) -> FakeDeviceArray:
    """New array of zeros (synchronous)."""
    return FakeDeviceArray(np.zeros(_length(n), dtype=dtype))


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return int(os.environ.get("FAKECUDA_DEVICES", "1"))

    @staticmethod
    def getDeviceProperties(index):
        return {"name": b"FakeGPU", "major": 9, "minor": 0,
                "totalGlobalMem": 2 * _free_bytes(), "pciBusID": index}

    @staticmethod
    def driverGetVersion():
        return 12040

    @staticmethod
    def runtimeGetVersion():
        return 12020


def _free_bytes():
    return int(os.environ.get("FAKECUDA_FREE_BYTES", str(1 << 30)))


class Device:
    """``cupy.cuda.Device``: ``Device(i).use()``, ``Device().id``, ``.mem_info``."""

    def __init__(self, index=None):
        self.id = _CURRENT[0] if index is None else int(index)
        if not 0 <= self.id < _Runtime.getDeviceCount():
            raise ValueError(f"fakecuda: no device {self.id}")

    def use(self):
        _CURRENT[0] = self.id

    @property
    def mem_info(self):
        return _free_bytes(), 2 * _free_bytes()


PINNED_ALLOCATIONS = [0]


def _alloc_pinned_memory(nbytes):
    PINNED_ALLOCATIONS[0] += 1
    return bytearray(int(nbytes))


cuda.runtime = _Runtime
cuda.Device = Device
cuda.alloc_pinned_memory = _alloc_pinned_memory


def install():
    """Make ``import cupy`` return this module (call before the program imports it)."""
    sys.modules["cupy"] = sys.modules[__name__]
