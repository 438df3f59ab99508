"""Per-call cost of the hand-written algorithms next to bare Sendrecv and native MPI.

Run: ``timeout -k 5 300 mpiexec -n 2 python benchmarks/bench_algorithm_overhead.py``
(and ``-n 3``; ``--sizes 8`` for a quick small-message check).

In one run, interleaved batch by batch so that load from other work hits every entry
alike, it measures the time per call of

* ``sendrecv``: a bare mpi4py ``Sendrecv`` of a message of ``bytes`` to the right
  neighbour and from the left one, with ``[buffer, datatype]`` specifications: the
  cost of one message as the algorithms send it, Python call included;
* ``native``: the MPI library's own collective (``Bcast``, ``Reduce_scatter``,
  ``Allreduce``, ``Allgatherv``);
* every hand-written algorithm of :data:`collectives.algorithms.ALGORITHMS`.

A batch is ``k`` back-to-back calls after a barrier (``k`` chosen per entry from a
warm-up so that a batch lasts about ``--batch-time``); a batch's time per call is the
maximum over ranks.  Reported: the median and the minimum over ``--batches`` batches, in
microseconds per call.  For each algorithm, ``msgs`` is the number of messages on its
critical path (the registry's α coefficient, :func:`collectives.costs.coefficients`),
``over_us = median - msgs * sendrecv median`` at the same size is the cost beyond its
messages (the per-call Python overhead; meaningful at small sizes, where a message costs
about the same whatever its length), and ``x_native`` the ratio to the native median.
Exit status 0; 2 on bad arguments or fewer than 2 ranks.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from collectives import costs  # noqa: E402
from collectives.algorithms import messages  # noqa: E402
from collectives.mpi import MPI  # noqa: E402
from collectives.sweep import parse_sizes  # noqa: E402

from bench_algorithms import calls as collective_calls, checked, quiet_parser  # noqa: E402,E501  (same folder)


def parse(argv, rank):
    parser = quiet_parser("bench_algorithm_overhead.py", rank)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("8,64K,4M"),
                        help="sizes in bytes by each collective's convention (whole "
                             "vector; default 8,64KiB,4MiB)")
    parser.add_argument("--batches", type=int, default=15,
                        help="timed batches per entry and size (default 15, at least 3)")
    parser.add_argument("--batch-time", type=float, default=0.01,
                        help="target seconds per batch (default 0.01)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                        help="element type (default float64: 8 B is one element)")
    return checked(parser, argv, rank, lambda a: (
        "--batches below 3" if a.batches < 3 else
        "--batch-time not positive" if not a.batch_time > 0 else None))


def batch(comm, call, k):
    """Time per call of ``k`` back-to-back calls after a barrier: maximum over ranks."""
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(k):
        call()
    return comm.allreduce((time.perf_counter() - t0) / k, op=MPI.MAX)


def calls(comm, collective, nbytes, dtype):
    """``{entry: zero-argument call}``: sendrecv, native, every hand-written algorithm."""
    p, rank = comm.Get_size(), comm.Get_rank()
    count = nbytes // np.dtype(dtype).itemsize
    mtype = messages.datatype(np.dtype(dtype))
    peer = comm.Dup()
    right, left = (rank + 1) % p, (rank - 1) % p
    sbuf, rbuf = np.ones(count, dtype), np.empty(count, dtype)
    out = {"sendrecv": lambda: peer.Sendrecv([sbuf, mtype], right, 0, [rbuf, mtype], left, 0)}
    out.update(collective_calls(comm, collective, nbytes, dtype))
    return out, peer


def measure(comm, fns, args):
    """``{entry: (median, min)}`` seconds per call, batches interleaved over entries."""
    ks = {}
    for name, call in fns.items():  # warm-up (private communicators), then batch sizes
        call()
        comm.Barrier()
        t0 = time.perf_counter()
        call()
        t = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        ks[name] = max(1, min(20000, int(args.batch_time / max(t, 1e-7))))
        batch(comm, call, max(1, ks[name] // 4))
    samples = {name: [] for name in fns}
    for _ in range(args.batches):
        for name, call in fns.items():
            samples[name].append(batch(comm, call, ks[name]))
    return {name: (float(np.median(v)), float(np.min(v))) for name, v in samples.items()}


def main(argv=None):
    comm = MPI.COMM_WORLD
    p, rank = comm.Get_size(), comm.Get_rank()
    args = parse(argv, rank)
    if p < 2:
        if rank == 0:
            print("bench_algorithm_overhead.py: error: run under mpiexec -n 2 (or more)",
                  file=sys.stderr)
        return 2
    if rank == 0:
        load = os.getloadavg()
        print(f"# p={p} {MPI.Get_library_version().splitlines()[0].strip()} "
              f"dtype={args.dtype} batches={args.batches} load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
        if load[0] > (os.cpu_count() or 1):
            print("# WARNING: load average above the core count: other work is running; "
                  "compare the min_us column, rerun when idle")
        print(f"{'collective':<15} {'entry':<19} {'bytes':>8} {'median_us':>10} "
              f"{'min_us':>9} {'msgs':>5} {'over_us':>8} {'x_native':>8}")
    for collective in args.collectives:
        for nbytes in args.sizes:
            if rank == 0:
                print(f"bench: {collective} {nbytes} B ...", file=sys.stderr, flush=True)
            fns, peer = calls(comm, collective, nbytes, args.dtype)
            res = measure(comm, fns, args)
            peer.Free()
            if rank != 0:
                continue
            sr, native = res["sendrecv"][0], res["native"][0]
            for name, (med, low) in res.items():
                if name in ("sendrecv", "native"):
                    msgs, over = "", ""
                else:
                    a = int(round(float(costs.coefficients(collective, name, p)[0])))
                    msgs, over = str(a), f"{(med - a * sr) * 1e6:.2f}"
                print(f"{collective:<15} {name:<19} {nbytes:>8} {med * 1e6:>10.2f} "
                      f"{low * 1e6:>9.2f} {msgs:>5} {over:>8} {med / native:>8.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
