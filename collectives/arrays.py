"""Array-library-neutral helpers: the buffer's own array module and stream sync.

Algorithms never branch on numpy vs cupy: they call :func:`array_module` to get the
module that owns a buffer (for the local reduction) and :func:`synchronize` right before
every MPI call that touches device memory and after every local reduction.  For host
arrays both are trivial.  (The GPU issue fills in the device side; see
:mod:`collectives.gpu`.)
"""
from __future__ import annotations

import functools
import importlib

import numpy as np


def is_device(buf) -> bool:
    """True when ``buf`` lives in GPU memory (exposes ``__cuda_array_interface__``)."""
    return hasattr(buf, "__cuda_array_interface__")


@functools.lru_cache(maxsize=None)
def _device_module(cls):
    """The array library owning device array type ``cls``: the outermost module of
    ``cls.__module__`` that has ``cuda.get_current_stream`` (``cupy`` for cupy arrays)."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = importlib.import_module(".".join(parts[:end]))
        if hasattr(getattr(module, "cuda", None), "get_current_stream"):
            return module
    raise TypeError(f"device array type {cls.__module__}.{cls.__qualname__} belongs to no "
                    "module with cuda.get_current_stream(); only cupy arrays are supported")


def array_module(buf):
    """The array module owning ``buf`` (numpy for host memory, cupy for device)."""
    if is_device(buf):
        return _device_module(type(buf))
    return np


def synchronize(buf) -> None:
    """Wait for pending device work on the current stream (no-op for host arrays).

    Call it after every local reduction on a device buffer and right before every MPI
    call or timer read that involves one: mpi4py does not synchronize streams.
    """
    if is_device(buf):
        _device_module(type(buf)).cuda.get_current_stream().synchronize()

