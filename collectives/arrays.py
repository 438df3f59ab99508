"""Array-library-neutral helpers: the buffer's own array module and stream sync.

Algorithms never branch on numpy vs cupy: they call :func:`array_module` to get the
module that owns a buffer (for the local reduction) and :func:`synchronize` right before
every MPI call that touches device memory and after every local reduction.  For host
arrays both are trivial.  (The GPU issue fills in the device side; see
:mod:`collectives.gpu`.)
"""
from __future__ import annotations

import numpy as np


def is_device(buf) -> bool:
    """True when ``buf`` lives in GPU memory (exposes ``__cuda_array_interface__``)."""
    return hasattr(buf, "__cuda_array_interface__")


def array_module(buf):
    """The array module owning ``buf`` (numpy for host memory, cupy for device)."""
    get = getattr(buf, "__array_namespace__", None)
    if is_device(buf):
        mod = type(buf).__module__.split(".")[0]
        import importlib
        return importlib.import_module(mod)
    if get is not None and isinstance(buf, np.ndarray):
        return np
    return np


def synchronize(buf) -> None:
    """Wait for pending device work on ``buf``'s stream (no-op for host arrays)."""
    if not is_device(buf):
        return
    mod = array_module(buf)
    sync = getattr(mod, "cuda", None)
    if sync is not None:
        mod.cuda.get_current_stream().synchronize()
