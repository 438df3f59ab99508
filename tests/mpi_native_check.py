"""Run under mpiexec by tests/test_native.py: every native collective once, checked,
with whatever COLLCOST_NATIVE_ALGORITHM pinned; rank 0 prints one JSON line."""
import json
import os

import numpy as np

from collectives import native
from collectives.metadata import mpi_library
from collectives.mpi import MPI

comm = MPI.COMM_WORLD
p, rank = comm.Get_size(), comm.Get_rank()
problems = []
for n in (p * 3, p * 3 + 1, (3 << 20) // 8 // p * p):  # even, uneven, several MiB
    a = np.arange(n, dtype=np.float64) + rank
    want = p * np.arange(n, dtype=np.float64) + p * (p - 1) / 2
    b = np.empty_like(a)
    comm.Allreduce(a, b)
    problems += [] if np.array_equal(b, want) else [f"allreduce n={n}"]
    c = a.copy() if rank == 0 else np.zeros_like(a)
    comm.Bcast(c, 0)
    problems += [] if np.array_equal(c, np.arange(n, dtype=np.float64)) else [f"bcast n={n}"]
    counts = [n // p + (1 if i < n % p else 0) for i in range(p)]
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    mine = np.empty(counts[rank])
    if n % p == 0:
        comm.Reduce_scatter_block(a, mine)
    else:
        comm.Reduce_scatter(a, mine, counts)
    lo = displs[rank]
    problems += [] if np.array_equal(mine, want[lo:lo + counts[rank]]) else [
        f"reduce_scatter n={n}"]
    full = np.empty(n)
    block = np.arange(lo, lo + counts[rank], dtype=np.float64)
    if n % p == 0:
        comm.Allgather(block, full)
    else:
        comm.Allgatherv(block, [full, counts, displs, MPI.DOUBLE])
    problems += [] if np.array_equal(full, np.arange(n, dtype=np.float64)) else [
        f"allgather n={n}"]
problems = [f"rank {r}: {x}" for r, mine in enumerate(comm.gather(problems)
                                                    or []) for x in mine]
if rank == 0:
    print(json.dumps({"library": mpi_library(MPI)["library"], "pinned": native.pinned(),
                      "error": native.error(), "problems": problems,
                      "thread_level": MPI.Query_thread(),
                      "algorithm_variables": native.algorithm_variables(dict(os.environ))}))
