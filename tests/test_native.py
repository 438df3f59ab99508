"""Pinning the library's own collective to one of its algorithms (collectives/native.py):
the table, the request parser, conflicts, and under mpiexec every pin this library
offers, applied before MPI_Init and giving correct results at 2 and 3 ranks."""
import json

import pytest

from collectives import native
from collectives.costs import algorithms
from collectives.metadata import env_kind
from mpirun import library, mpirun

@pytest.fixture(autouse=True)
def _keep_native_state():
    """native.apply records what it did in the process; leave no trace for other tests."""
    saved = dict(native._state)
    yield
    native._state.clear()
    native._state.update(saved)


MPICH = "MPICH Version:      5.0.2\n"
OPENMPI = "Open MPI v5.0.11, package: Open MPI user@localhost Distribution\x00"
INTEL = "Intel(R) MPI Library 2021.18.1 for Linux* OS\n"


def test_table_names_registry_algorithms_only():
    for fam, colls in native.PINS.items():
        for coll, algs in colls.items():
            assert set(algs) <= set(algorithms(coll, native=False)), (fam, coll)
            for env in algs.values():
                assert env and all(env_kind(k) == "tuning" for k in env)


def _call(variable: str) -> str:
    """The MPI call a selection variable is for: MPIR_CVAR_ALLGATHERV_INTRA_ALGORITHM,
    OMPI_MCA_coll_tuned_allgatherv_algorithm, I_MPI_ADJUST_ALLGATHERV -> allgatherv."""
    v = variable.lower()
    for prefix in ("mpir_cvar_", "ompi_mca_coll_tuned_", "i_mpi_adjust_"):
        v = v[len(prefix):] if v.startswith(prefix) else v
    for suffix in ("_intra_algorithm", "_algorithm"):
        v = v[:-len(suffix)] if v.endswith(suffix) else v
    return v


def test_every_mpi_call_of_the_native_collective_is_pinned():
    # collectives/operations.py: reduce_scatter is Reduce_scatter_block (even counts) or
    # Reduce_scatter; allgather is Allgather or Allgatherv
    calls = {"allreduce": {"allreduce"}, "bcast": {"bcast"},
             "reduce_scatter": {"reduce_scatter_block", "reduce_scatter"},
             "allgather": {"allgather", "allgatherv"}}
    for fam, colls in native.PINS.items():
        for coll, algs in colls.items():
            for alg, env in algs.items():
                assert {_call(k) for k in env} == calls[coll], (fam, coll, alg, env)


@pytest.mark.parametrize("text, fam", [(MPICH, "mpich"), (OPENMPI, "openmpi"),
                                       (INTEL, "intel"), ("CRAY MPICH version 8", None),
                                       ("MVAPICH2 2.3", None), ("Other MPI 1", None)])
def test_family(text, fam):
    assert native.family(text) == fam


@pytest.mark.parametrize("request_, message", [
    ("allreduce", "'allreduce' is not COLLECTIVE=ALGORITHM"),
    ("gather=ring", "unknown collective 'gather'"),
    ("allreduce=bogus", "'bogus' is not an algorithm of allreduce"),
    ("allreduce=ring,allreduce=rabenseifner", "allreduce pinned twice"),
    (" , ", "is empty"),
])
def test_bad_requests(request_, message):
    with pytest.raises(native.PinError, match=message):
        native.parse(request_)


def test_variables_per_library():
    pins = {"allreduce": "ring", "bcast": "binomial"}
    assert native.variables("mpich", pins) == {
        "MPIR_CVAR_DEVICE_COLLECTIVES": "none",
        "MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": "ring",
        "MPIR_CVAR_BCAST_INTRA_ALGORITHM": "binomial"}
    assert native.variables("openmpi", pins) == {
        "OMPI_MCA_coll_tuned_use_dynamic_rules": "1", "OMPI_MCA_coll_han_priority": "0",
        "OMPI_MCA_coll_tuned_allreduce_algorithm": "ring",
        "OMPI_MCA_coll_tuned_bcast_algorithm": "binomial"}
    assert native.variables("intel", pins) == {"I_MPI_ADJUST_ALLREDUCE": "8",
                                               "I_MPI_ADJUST_BCAST": "1"}
    with pytest.raises(native.PinError, match="Open MPI has no pairwise reduce_scatter.*"
                                              "offers recursive_halving"):
        native.variables("openmpi", {"reduce_scatter": "pairwise"})
    with pytest.raises(native.PinError, match="no algorithm table for this MPI library "
                                              r"\(CRAY MPICH"):
        native.variables(None, pins, "CRAY MPICH version 8")


def test_apply_sets_everything_or_nothing():
    env = {"UNRELATED": "1"}
    out = native.apply(MPICH, "allreduce=rabenseifner", env)
    assert out["MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM"] == "reduce_scatter_allgather"
    assert env["MPIR_CVAR_DEVICE_COLLECTIVES"] == "none"
    assert native.pinned() == {"allreduce": "rabenseifner"} and native.error() is None
    # a variable the user set to another value: nothing is set, the reason is kept
    env = {"MPIR_CVAR_DEVICE_COLLECTIVES": "all"}
    assert native.apply(MPICH, "allreduce=ring", env) == {}
    assert env == {"MPIR_CVAR_DEVICE_COLLECTIVES": "all"} and native.pinned() == {}
    assert "conflicts with the environment: MPIR_CVAR_DEVICE_COLLECTIVES='all'" \
        in native.error()
    env = {}
    assert native.apply(OPENMPI, "allgather=recursive_doubling", env) == {} and env == {}
    assert "'allgather=recursive_doubling': Open MPI has no recursive_doubling" \
        in native.error()
    # the same value already set is no conflict
    env = {"I_MPI_ADJUST_ALLREDUCE": "8"}
    assert native.apply(INTEL, "allreduce=ring", env) == {"I_MPI_ADJUST_ALLREDUCE": "8"}


def test_algorithm_variables():
    env = {"MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": "ring", "MPIR_CVAR_ENABLE_GPU": "0",
           "OMPI_MCA_coll_tuned_use_dynamic_rules": "1", "OMPI_MCA_btl": "self",
           "I_MPI_ADJUST_BCAST": "1", "I_MPI_PIN": "0", "UCX_TLS": "tcp"}
    assert native.algorithm_variables(env) == {
        "I_MPI_ADJUST_BCAST": "1", "MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": "ring",
        "OMPI_MCA_coll_tuned_use_dynamic_rules": "1"}


def test_table_markdown_lists_every_pin():
    text = native.table_markdown()
    for colls in native.PINS.values():
        for algs in colls.values():
            for env in algs.values():
                for k, v in env.items():
                    assert f"`{k}={v}`" in text


def _run(n, request, env=None):
    proc = mpirun(n, ["tests/mpi_native_check.py"], timeout=120,
                  env={"COLLCOST_NATIVE_ALGORITHM": request, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _rounds():
    """Every algorithm this library offers, in as few launches as possible (one
    algorithm per collective per launch)."""
    colls = native.PINS[library().family]
    width = max(len(a) for a in colls.values())
    return [",".join(f"{c}={list(a)[i]}" for c, a in colls.items() if i < len(a))
            for i in range(width)]


@pytest.mark.parametrize("n", [2, 3])
def test_every_pin_of_this_library_is_accepted_and_correct(n):
    for request in _rounds():
        out, stderr = _run(n, request)
        assert out["error"] is None and out["problems"] == [], (request, out)
        assert out["pinned"] == native.parse(request)
        assert out["thread_level"] == 0  # MPI_THREAD_SINGLE, as without a pin
        expected = native.variables(library().family, out["pinned"])
        for k, v in expected.items():
            assert out["algorithm_variables"][k] == v
        # Intel MPI ignores an id it does not know with a warning; MPICH refuses a name
        assert "Incorrect algorithm" not in stderr and "will be ignored" not in stderr


def test_unsupported_pin_sets_nothing_under_mpi():
    offered = native.PINS[library().family]["allreduce"]
    missing = [a for a in algorithms("allreduce", native=False) if a not in offered]
    request = f"allreduce={missing[0]}" if missing else "allreduce=bogus"
    out, _ = _run(2, request)
    assert out["pinned"] == {} and out["error"].startswith(repr(request))
    assert not any(k.endswith(("ALLREDUCE_INTRA_ALGORITHM", "allreduce_algorithm",
                               "ADJUST_ALLREDUCE")) for k in out["algorithm_variables"])
