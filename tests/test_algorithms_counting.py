"""Code and cost model check each other: messages, bytes and reduced bytes on the
critical path of every hand-written algorithm, counted by the simulated communicator
(:mod:`simcomm`), equal the registry's α, β and γ coefficients at p = 1..9.

Counts divisible by p and by p' = 2**floor(lg p) (Rabenseifner splits over p') give
equal blocks: the comparison is exact.  Other counts give
blocks one element apart; then the α count is still exact and the bytes may differ from
``b(p) n`` by at most one element per block per message: ``a(p) * p * itemsize``.
The same simulations check the results against numpy references.
"""
import itertools
import re

import numpy as np
import pytest

from collectives import costs
from collectives.algorithms import ALGORITHMS, block_counts, block_displs, messages
from collectives.mpi import MPI
from simcomm import SimulationError, counting_reductions, simulate

PS = range(1, 10)
OPS = {"sum": (MPI.SUM, np.sum), "max": (MPI.MAX, np.max), "min": (MPI.MIN, np.min)}
CASES = sorted(ALGORITHMS)


def contribution(rank, count, dtype):
    """Rank's input vector: small integers (exact in every dtype and op)."""
    return ((np.arange(count) * 7 + 3 * rank * rank) % 11 - 5).astype(dtype)


def make_body(collective, fn, count, dtype="float64", op="sum", root=0, in_place=False):
    """``body(comm)`` running ``fn`` on one simulated rank; returns (result, expected)."""
    mpi_op, reduce = OPS[op]

    def body(comm):
        p, r = comm.Get_size(), comm.Get_rank()
        counts, displs = block_counts(count, p), block_displs(count, p)
        inputs = np.stack([contribution(q, count, dtype) for q in range(p)])
        total = reduce(inputs, axis=0).astype(dtype) if count else np.zeros(0, dtype)
        mine = slice(displs[r], displs[r] + counts[r])
        if collective == "bcast":
            buf = inputs[r].copy()
            fn(comm, buf, root=root)
            return buf, inputs[root]
        if collective == "allgather":
            out = np.full(count, 99, dtype)
            fn(comm, inputs[r][mine].copy(), out)
            return out, np.concatenate([inputs[q][displs[q]:displs[q] + counts[q]]
                                        for q in range(p)])
        send = inputs[r].copy()
        if collective == "reduce_scatter":
            out = np.full(counts[r], 99, dtype)
            fn(comm, send, out, mpi_op)
            assert np.array_equal(send, inputs[r]), "sendbuf modified"
            return out, total[mine]
        out = send if in_place else np.full(count, 99, dtype)
        fn(comm, send, out, mpi_op)
        if not in_place:
            assert np.array_equal(send, inputs[r]), "sendbuf modified"
        return out, total

    return body


def critical_path(collective, algorithm, p, count, dtype="float64"):
    """(messages, bytes, reduced bytes) on the critical path, checking results too."""
    fn = ALGORITHMS[(collective, algorithm)]
    found = []
    with counting_reductions():
        for alpha, beta, gamma in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
            out = simulate(p, make_body(collective, fn, count, dtype), alpha=alpha,
                           beta=beta, gamma=gamma)
            for got, want in out.results:
                np.testing.assert_array_equal(got, want)
            found.append(out.critical)
    return found


@pytest.mark.parametrize("collective,algorithm", CASES)
def test_critical_path_equals_registry(collective, algorithm):
    for p in PS:
        a, b, c = (float(x) for x in costs.coefficients(collective, algorithm, p))
        for per_rank in (1, 5):
            count = p * 8 * per_rank
            n = count * 8
            msgs, nbytes, reduced = critical_path(collective, algorithm, p, count)
            where = f"{collective}/{algorithm} p={p} count={count}"
            assert msgs == pytest.approx(a, abs=1e-9), f"{where}: messages"
            assert nbytes == pytest.approx(b * n, abs=1e-6), f"{where}: bytes"
            assert reduced == pytest.approx(c * n, abs=1e-6), f"{where}: reduced bytes"


@pytest.mark.parametrize("collective,algorithm", CASES)
def test_uneven_blocks_within_one_element_per_block(collective, algorithm):
    for p in PS:
        a, b, c = (float(x) for x in costs.coefficients(collective, algorithm, p))
        for count in sorted({0, max(p - 1, 0), 3 * p + 2}):
            n, slack = count * 4, a * p * 4
            msgs, nbytes, reduced = critical_path(collective, algorithm, p, count, "int32")
            where = f"{collective}/{algorithm} p={p} count={count}"
            assert msgs == pytest.approx(a, abs=1e-9), f"{where}: messages"
            assert abs(nbytes - b * n) <= slack, f"{where}: bytes {nbytes} vs {b * n}"
            assert abs(reduced - c * n) <= slack, f"{where}: reduced {reduced} vs {c * n}"
            if count == 0:
                assert nbytes == 0 and reduced == 0


@pytest.mark.parametrize("collective,algorithm", CASES)
def test_results_every_dtype_op_root(collective, algorithm):
    fn = ALGORITHMS[(collective, algorithm)]
    ops = list(OPS) if collective in ("reduce_scatter", "allreduce") else ["sum"]
    dtypes = ("float32", "float64", "int32", "int64")
    with counting_reductions():
        for p, dtype, op in itertools.product((1, 3, 8), dtypes, ops):
            roots = sorted({0, p // 2, p - 1}) if collective == "bcast" else [0]
            modes = (False, True) if collective == "allreduce" else (False,)
            for count, root, in_place in itertools.product((0, p + 1, 13),
                                                           roots, modes):
                body = make_body(collective, fn, count, dtype, op, root, in_place)
                for got, want in simulate(p, body).results:
                    assert got.dtype == np.dtype(dtype)
                    np.testing.assert_array_equal(
                        got, want, err_msg=f"p={p} {dtype} {op} count={count} "
                                           f"root={root} in_place={in_place}")


def test_traffic_uses_a_private_duplicate():
    comm_ids = []

    def body(comm):
        private = messages.private(comm)
        assert private is not comm and messages.private(comm) is private  # cached
        out = np.zeros(4)
        ALGORITHMS[("allreduce", "ring")](comm, np.ones(4), out, MPI.SUM)
        comm_ids.append(private._ctx)
        return out

    with counting_reductions():
        out = simulate(3, body)
    assert all(np.array_equal(r, np.full(4, 3.0)) for r in out.results)
    assert len(set(comm_ids)) == 1 and comm_ids[0] != ()


def test_simulator_detects_send_send_deadlock():
    """Negative control: blocking Send on both sides never completes (rendezvous)."""
    def body(comm):
        other = 1 - comm.Get_rank()
        comm.Send([np.ones(3), MPI.DOUBLE], other, 0)
        comm.Recv([np.ones(3), MPI.DOUBLE], other, 0)

    with pytest.raises(SimulationError, match="deadlock"):
        simulate(2, body, timeout=0.3)


def test_counter_sees_a_wrong_cost():
    """Negative control: an extra message shows up in the count."""
    def body(comm):
        if comm.Get_rank() == 0:
            comm.Send([np.ones(2), MPI.DOUBLE], 1, 0)
            comm.Send([np.ones(2), MPI.DOUBLE], 1, 0)
        else:
            comm.Recv([np.ones(2), MPI.DOUBLE], 0, 0)
            comm.Recv([np.ones(2), MPI.DOUBLE], 0, 0)

    assert simulate(2, body).critical == 2
    assert simulate(2, body, alpha=0, beta=1).critical == 32


@pytest.mark.parametrize("call,match", [
    (lambda c: ALGORITHMS[("allreduce", "ring")](c, np.ones(3), np.ones(4), MPI.SUM),
     "recvbuf must have 3 elements"),
    (lambda c: ALGORITHMS[("allreduce", "ring")](c, np.ones(3), np.ones(3), MPI.PROD),
     "op must be one of"),
    (lambda c: ALGORITHMS[("reduce_scatter", "ring")](c, np.ones(5), np.ones(5), MPI.SUM),
     r"recvbuf must have (3|2) elements \(block"),
    (lambda c: ALGORITHMS[("bcast", "binomial")](c, np.ones(3), root=2), "root must be"),
    (lambda c: ALGORITHMS[("allgather", "ring")](c, np.ones(3, "f4"), np.ones(6), ),
     "dtype float32 differs"),
    (lambda c: ALGORITHMS[("bcast", "binomial")](c, np.ones((2, 2))), "buf must be 1-D"),
    (lambda c: ALGORITHMS[("bcast", "binomial")](c, np.ones(3, "f2")), "dtype float16"),
    (lambda c: ALGORITHMS[("bcast", "binomial")](c, [1.0, 2.0]), "buf must be an array"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(SimulationError) as info:
        simulate(2, call, timeout=2)
    assert isinstance(info.value.__cause__, (ValueError, TypeError))
    assert re.search(match, str(info.value.__cause__)), str(info.value.__cause__)


def test_block_partition():
    import doctest

    from collectives.algorithms import blocks
    assert doctest.testmod(blocks).failed == 0
    for count in range(0, 30):
        for p in range(1, 10):
            counts, displs = block_counts(count, p), block_displs(count, p)
            assert sum(counts) == count and max(counts) - min(counts) <= 1
            assert counts == sorted(counts, reverse=True)
            assert [blocks.block_range(count, p, i) for i in range(p)] == \
                [(d, d + c) for d, c in zip(displs, counts)]
    with pytest.raises(ValueError, match="count must be"):
        block_counts(-1, 3)
    with pytest.raises(ValueError, match="p \\(number of blocks\\)"):
        block_counts(4, 0)


@pytest.mark.parametrize("collective,algorithm", [k for k in CASES
                                                  if k[0] in ("allgather", "allreduce")])
def test_mpi_in_place(collective, algorithm):
    fn = ALGORITHMS[(collective, algorithm)]

    def body(comm):
        p, r = comm.Get_size(), comm.Get_rank()
        counts, displs = block_counts(11, p), block_displs(11, p)
        buf = np.full(11, 99.0)
        if collective == "allgather":
            buf[displs[r]:displs[r] + counts[r]] = r
            fn(comm, MPI.IN_PLACE, buf)
            return buf, np.repeat(np.arange(p, dtype=float), counts)
        buf[:] = r
        fn(comm, MPI.IN_PLACE, buf, MPI.SUM)
        return buf, np.full(11, p * (p - 1) / 2)

    for p in (1, 3, 4):
        for got, want in simulate(p, body).results:
            np.testing.assert_array_equal(got, want)
