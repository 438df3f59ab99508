"""Pin the MPI library's own collective (``native``) to one of its algorithms.

Each library picks the algorithm of ``MPI_Allreduce`` & co. itself, from message size
and rank count, unless environment variables read at ``MPI_Init`` select one:

* MPICH: ``MPIR_CVAR_<CALL>_INTRA_ALGORITHM=<name>``; read only by MPICH's generic
  collectives, so a pin also needs ``MPIR_CVAR_DEVICE_COLLECTIVES=none`` (ch4's device
  collectives bypass them; docs/measurement notes);
* Open MPI: ``OMPI_MCA_coll_tuned_<call>_algorithm=<name>`` with
  ``OMPI_MCA_coll_tuned_use_dynamic_rules=1``; coll/han (priority 35, above tuned's
  30) takes over communicators that span nodes, so a pin also sets
  ``OMPI_MCA_coll_han_priority=0`` (on one node han disqualifies itself anyway);
* Intel MPI: ``I_MPI_ADJUST_<CALL>=<preset id>`` (ids of Intel's developer reference
  2021.x).

:data:`PINS` says which library algorithm is which registry algorithm
(``collectives/costs.py`` names).  A pin covers every MPI call the native collective
makes (``collectives/operations.py``: ``Reduce_scatter_block`` and, for uneven counts,
``Reduce_scatter``; ``Allgather`` and ``Allgatherv``); a library that lacks the
algorithm for one of them is not offered it.  Where the library's algorithm is only
close to the registry's, :data:`NOTES` says so.

The request comes as ``allreduce=ring,bcast=binomial`` (the sweep's
``--native-algorithm``, or ``COLLCOST_NATIVE_ALGORITHM`` for any command);
:mod:`collectives.mpi` applies it before ``MPI_Init`` (:func:`apply`), because every
library reads these variables once, at initialization.  The variables then appear in
the run's ``env`` record like any tuning variable, so merge, ``--resume`` and the fitter
refuse to mix launches pinned differently.
"""
from __future__ import annotations

import os

__all__ = ["ENV", "OPTION", "PINS", "REQUIRED", "NOTES", "family", "parse", "variables",
           "apply", "algorithm_variables", "table_markdown", "PinError", "pinned", "error",
           "request_from_argv", "check_request"]

#: Environment variable carrying the request to collectives.mpi (set by the sweep).
ENV = "COLLCOST_NATIVE_ALGORITHM"
#: The sweep's option.
OPTION = "--native-algorithm"

_M = "MPIR_CVAR_{}_INTRA_ALGORITHM"
_O = "OMPI_MCA_coll_tuned_{}_algorithm"
_I = "I_MPI_ADJUST_{}"

#: family -> collective -> registry algorithm -> {variable: value}
PINS: dict = {
    "mpich": {
        "allreduce": {
            "ring": {_M.format("ALLREDUCE"): "ring"},
            "recursive_doubling": {_M.format("ALLREDUCE"): "recursive_doubling"},
            "rabenseifner": {_M.format("ALLREDUCE"): "reduce_scatter_allgather"},
        },
        "bcast": {
            "binomial": {_M.format("BCAST"): "binomial"},
            "scatter_allgather": {_M.format("BCAST"): "scatter_ring_allgather"},
        },
        "reduce_scatter": {
            "pairwise": {_M.format("REDUCE_SCATTER_BLOCK"): "pairwise",
                         _M.format("REDUCE_SCATTER"): "pairwise"},
            "recursive_halving": {_M.format("REDUCE_SCATTER_BLOCK"): "recursive_halving",
                                  _M.format("REDUCE_SCATTER"): "recursive_halving"},
        },
        "allgather": {
            "ring": {_M.format("ALLGATHER"): "ring", _M.format("ALLGATHERV"): "ring"},
            "recursive_doubling": {_M.format("ALLGATHER"): "recursive_doubling",
                                   _M.format("ALLGATHERV"): "recursive_doubling"},
        },
    },
    "openmpi": {
        "allreduce": {
            "ring": {_O.format("allreduce"): "ring"},
            "recursive_doubling": {_O.format("allreduce"): "recursive_doubling"},
            "rabenseifner": {_O.format("allreduce"): "rabenseifner"},
            "binomial": {_O.format("allreduce"): "nonoverlapping"},
        },
        "bcast": {
            "binomial": {_O.format("bcast"): "binomial"},
            "scatter_allgather": {_O.format("bcast"): "scatter_allgather_ring"},
        },
        "reduce_scatter": {
            "recursive_halving": {_O.format("reduce_scatter_block"): "recursive_halving",
                                  _O.format("reduce_scatter"): "recursive_halving"},
        },
        "allgather": {
            "ring": {_O.format("allgather"): "ring", _O.format("allgatherv"): "ring"},
        },
    },
    "intel": {
        "allreduce": {
            "recursive_doubling": {_I.format("ALLREDUCE"): "1"},
            "rabenseifner": {_I.format("ALLREDUCE"): "2"},
            "binomial": {_I.format("ALLREDUCE"): "3"},
            "ring": {_I.format("ALLREDUCE"): "8"},
        },
        "bcast": {
            "binomial": {_I.format("BCAST"): "1"},
            "scatter_allgather": {_I.format("BCAST"): "3"},
        },
        "reduce_scatter": {
            "recursive_halving": {_I.format("REDUCE_SCATTER_BLOCK"): "1",
                                  _I.format("REDUCE_SCATTER"): "1"},
            "pairwise": {_I.format("REDUCE_SCATTER_BLOCK"): "2",
                         _I.format("REDUCE_SCATTER"): "2"},
        },
        "allgather": {
            "recursive_doubling": {_I.format("ALLGATHER"): "1",
                                   _I.format("ALLGATHERV"): "1"},
            "ring": {_I.format("ALLGATHER"): "3", _I.format("ALLGATHERV"): "3"},
        },
    },
}

#: Set with every pin of the family (see the module docstring).
REQUIRED = {
    "mpich": {"MPIR_CVAR_DEVICE_COLLECTIVES": "none"},
    "openmpi": {"OMPI_MCA_coll_tuned_use_dynamic_rules": "1",
                "OMPI_MCA_coll_han_priority": "0"},
    "intel": {},
}

#: (family, collective, algorithm) -> where the library's algorithm differs from the
#: registry's.
NOTES = {
    ("openmpi", "allreduce", "binomial"): "nonoverlapping: Reduce then Bcast, with the "
                                          "trees tuned picks for those",
    ("intel", "allreduce", "binomial"): "preset 3: Reduce + Bcast",
    ("intel", "bcast", "scatter_allgather"): "preset 3 (ring): scatter + ring allgather",
}

_FAMILY_NAMES = {"mpich": "MPICH", "openmpi": "Open MPI", "intel": "Intel MPI"}


class PinError(ValueError):
    """A request that cannot be pinned (names the request, the library, what it offers)."""


def family(library_version: str) -> str | None:
    """``mpich`` / ``openmpi`` / ``intel`` for a version string, None for libraries
    without a pin table (Cray MPICH and MVAPICH are MPICH derivatives whose variables
    differ: not offered)."""
    from .gpu import library_family
    fam = library_family(library_version)
    return fam if fam in PINS else None


def parse(text: str) -> dict:
    """``"allreduce=ring,bcast=binomial"`` -> ``{"allreduce": "ring", ...}`` (names
    checked against the registry; raises :class:`PinError`)."""
    from .costs import COLLECTIVES, algorithms
    out = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        coll, sep, alg = (s.strip() for s in item.partition("="))
        if not sep or not coll or not alg:
            raise PinError(f"'{item}' is not COLLECTIVE=ALGORITHM")
        if coll not in COLLECTIVES:
            raise PinError(f"'{item}': unknown collective '{coll}'; expected one of "
                           f"{', '.join(COLLECTIVES)}")
        known = algorithms(coll)
        if alg not in known:
            raise PinError(f"'{item}': '{alg}' is not an algorithm of {coll}; expected "
                           f"one of {', '.join(known)}")
        if coll in out and out[coll] != alg:
            raise PinError(f"{coll} pinned twice ({out[coll]} and {alg})")
        out[coll] = alg
    if not out:
        raise PinError("is empty")
    return out


def variables(fam: str | None, pins: dict, library: str = "") -> dict:
    """The environment that pins ``pins`` (``{collective: algorithm}``) on library
    family ``fam``; raises :class:`PinError` naming what the library offers."""
    if fam not in PINS:
        raise PinError(f"no algorithm table for this MPI library ({library or fam}); "
                       f"pinning is offered for {', '.join(_FAMILY_NAMES.values())}")
    out = dict(REQUIRED[fam])
    for coll, alg in pins.items():
        offered = PINS[fam].get(coll, {})
        if alg not in offered:
            raise PinError(f"{_FAMILY_NAMES[fam]} has no {alg} {coll} for "
                           f"every call the native {coll} makes; it offers "
                           f"{', '.join(offered) or 'none'}")
        out.update(offered[alg])
    return out


def algorithm_variables(env: dict) -> dict:
    """The algorithm-selection variables among ``env`` (every library's)."""
    return {k: v for k, v in sorted(env.items())
            if (k.startswith("MPIR_CVAR_") and k.endswith("_ALGORITHM"))
            or k.startswith(("OMPI_MCA_coll_tuned_", "I_MPI_ADJUST_"))
            or k in ("MPIR_CVAR_DEVICE_COLLECTIVES", "OMPI_MCA_coll_han_priority",
                     "OMPI_MCA_coll")}


#: What :func:`apply` did in this process: ``{collective: algorithm}`` and the error
#: (a sentence), for the commands to report (exit 2) once MPI is up.
_state = {"pinned": {}, "error": None}


def pinned() -> dict:
    """``{collective: algorithm}`` pinned in this process (empty: library defaults)."""
    return dict(_state["pinned"])


def error() -> str | None:
    """Why the requested pin was not applied, or None."""
    return _state["error"]


def apply(library_version: str, request: str, environ=None) -> dict:
    """Set the variables of ``request`` in ``environ`` (``os.environ``) before
    ``MPI_Init``.  Nothing is set when the request is bad, names an algorithm the
    library lacks, or conflicts with a variable the user already set to another value:
    the reason is kept (:func:`error`) for the command to report as a usage error."""
    environ = os.environ if environ is None else environ
    _state["pinned"], _state["error"] = {}, None
    try:
        pins = parse(request)
        fam = family(library_version)
        env = variables(fam, pins, library_version.split("\n")[0].strip("\x00 "))
        clash = [f"{k}={environ[k]!r} (the pin needs {v!r})" for k, v in env.items()
                 if k in environ and environ[k] != v]
        if clash:
            raise PinError("conflicts with the environment: " + "; ".join(clash))
    except PinError as exc:
        _state["error"] = f"{request!r}: {exc}"
        return {}
    environ.update(env)
    _state["pinned"] = pins
    return env


def request_from_argv(argv) -> str | None:
    """Find ``--native-algorithm VALUE`` (or ``=VALUE``) in a command line and hand it
    to :mod:`collectives.mpi` through :data:`ENV`; call before MPI is imported.  When
    MPI is already initialized the pin cannot take effect, and :func:`error` says so."""
    argv = [str(a) for a in argv]
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == OPTION and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(OPTION + "="):
            value = arg[len(OPTION) + 1:]
    if value is None:
        return None
    import sys
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and os.environ.get(ENV) != value:
        _state["pinned"], _state["error"] = {}, (
            f"{value!r}: MPI was initialized before the pin could be set (pin in a fresh "
            f"process, or set {ENV} before starting it)")
        return value
    os.environ[ENV] = value
    return value


def check_request(value: str | None) -> str | None:
    """Why the pin requested on the command line (``value``) or in :data:`ENV` is not in
    effect, or None when it is (or nothing was requested)."""
    if _state["error"]:
        return _state["error"]
    if value is None:
        return None
    try:
        wanted = parse(value)
    except PinError as exc:
        return f"{value!r}: {exc}"
    if wanted != _state["pinned"]:
        return (f"{value!r} was not applied (MPI was initialized before it was read; set "
                f"{ENV} before the process starts)")
    return None


def table_markdown() -> str:
    """The pin table (README): registry algorithm -> each library's setting."""
    from .costs import COLLECTIVES, algorithms
    fams = list(PINS)
    lines = ["| collective | registry algorithm | " + " | ".join(
        _FAMILY_NAMES[f] for f in fams) + " |", "|---" * (2 + len(fams)) + "|"]
    for coll in COLLECTIVES:
        for alg in algorithms(coll):
            cells = []
            for f in fams:
                env = PINS[f].get(coll, {}).get(alg)
                if not env:
                    cells.append("—")
                    continue
                cell = ", ".join(f"`{k}={v}`" for k, v in env.items())
                note = NOTES.get((f, coll, alg))
                cells.append(cell + (f" ({note})" if note else ""))
            if any(c != "—" for c in cells):
                lines.append(f"| {coll} | {alg} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
