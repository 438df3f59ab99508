"""MPI worker: the algorithms' per-communicator caches stay correct across reuse and Free.

Run under mpiexec (tests/test_algorithms_cache.py).  For 30 cycles: split the world into
a sub-communicator of a varying size, run every hand-written algorithm on it at varying
element counts and dtypes (so cached layouts and scratch arrays are reused with other
shapes), compare with the native collective, free it.  Then checks that no context of a
freed communicator is left, and that a second Python object for one communicator finds
the same private duplicate.  Prints "cache ok" on rank 0; raises on any mismatch.
"""
import numpy as np

from collectives.algorithms import get, messages
from collectives.algorithms.blocks import block_counts
from collectives.mpi import MPI

world = MPI.COMM_WORLD
rng = np.random.default_rng(7)
DTYPES = [np.float64, np.int32, np.float32, np.int64]


def expect_equal(got, want, what):
    if not np.allclose(got, want, rtol=1e-5, atol=1e-5):
        raise AssertionError(f"{what}: hand-written result differs from native")


for cycle in range(30):
    size = 1 + cycle % world.size
    # every rank draws, so the random stream stays in step across ranks
    count = int(rng.integers(0, 5000)) if cycle % 3 else int(rng.integers(0, 3 * size + 2))
    comm = world.Split(0 if world.rank < size else MPI.UNDEFINED, world.rank)
    if comm == MPI.COMM_NULL:
        continue
    p, r = comm.Get_size(), comm.Get_rank()
    dtype = DTYPES[cycle % len(DTYPES)]
    x = (np.arange(count, dtype=dtype) % 13 + r).astype(dtype)
    # allreduce
    want = np.empty_like(x)
    comm.Allreduce(x, want, MPI.SUM)
    for name in ("ring", "recursive_doubling", "rabenseifner", "binomial"):
        got = np.empty_like(x)
        get("allreduce", name)(comm, x, got, MPI.SUM)
        expect_equal(got, want, f"cycle {cycle} allreduce/{name} p={p} n={count} {dtype}")
    # reduce-scatter
    mine = block_counts(count, p)[r]
    counts = block_counts(count, p)
    want_rs = np.empty(mine, dtype=dtype)
    comm.Reduce_scatter(x, want_rs, list(counts), MPI.SUM)
    for name in ("ring", "pairwise", "recursive_halving"):
        got = np.empty(mine, dtype=dtype)
        get("reduce_scatter", name)(comm, x, got, MPI.SUM)
        expect_equal(got, want_rs, f"cycle {cycle} reduce_scatter/{name} p={p} n={count}")
    # bcast from the last rank
    for name in ("binomial", "scatter_allgather"):
        buf = x.copy() if r == p - 1 else np.zeros_like(x)
        get("bcast", name)(comm, buf, root=p - 1)
        ref = (np.arange(count, dtype=dtype) % 13 + (p - 1)).astype(dtype)
        expect_equal(buf, ref, f"cycle {cycle} bcast/{name} p={p} n={count}")
    ctx = messages.context(comm)
    if messages.private(MPI.Comm(comm)) is not ctx.private:
        raise AssertionError("a second handle of one communicator got another duplicate")
    comm.Free()

stale = [c for c in messages._CONTEXTS.values() if c.comm == MPI.COMM_NULL]
if stale:
    raise AssertionError(f"{len(stale)} context(s) of freed communicators left")
world.Barrier()
if world.rank == 0:
    print("cache ok")
