"""Hand-written algorithms against the MPI library's own collectives, side by side.

Run: ``timeout -k 5 600 mpiexec -n 2 python benchmarks/bench_algorithms.py``.

In one run it measures

1. a ping-pong (half round trip) at the benchmark sizes, fitted to Hockney
   ``t = alpha + beta m`` (least squares on the medians);
2. the local reduction kernel ``np.add(a, b, out=a)`` over n bytes: gamma = t / n;
3. every selected hand-written algorithm and the native call at each size, alternating
   them repetition by repetition (barrier before each call; a repetition's time is the
   maximum over ranks; medians are reported).

It prints, per (collective, size): the native median, each algorithm's median, the
ratio algorithm / native of the medians (``ratio``, what the target uses) and of the
fastest repetitions (``min_ratio``, less sensitive to other load on the machine), and
the fraction of the Chan et al. lower bound
(``collectives.costs.lower_bound`` with the fitted alpha, beta, gamma) the algorithm
reaches (bound / time; 1.0 is optimal).  The target line checks the ring all-reduce
against native (within 1.25x from 1 MiB).  Exit status 0; 1 with ``--strict`` when the
target is missed; 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from collectives import costs  # noqa: E402
from collectives.algorithms import ALGORITHMS, block_counts, block_displs, messages  # noqa: E402
from collectives.mpi import MPI  # noqa: E402
from collectives.sweep import parse_sizes  # noqa: E402

TARGET = ("allreduce", "ring", 1.25, 1 << 20)


def quiet_parser(prog, rank):
    """An argparse parser for a benchmark run on every rank: only rank 0 prints."""
    parser = argparse.ArgumentParser(prog=prog, description=sys.modules["__main__"].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collectives", default=",".join(costs.COLLECTIVES),
                        help="comma list (default all)")
    if rank != 0:
        parser.print_usage = parser.print_help = lambda *a, **k: None
        parser._print_message = lambda *a, **k: None
    return parser


def checked(parser, argv, rank, problem):
    """Parse ``argv``; exit 2 (message on rank 0) on an unknown collective or when
    ``problem(args)`` names one."""
    args = parser.parse_args(argv)
    colls = [c for c in args.collectives.split(",") if c]
    bad = [c for c in colls if c not in costs.COLLECTIVES]
    message = f"unknown collective(s) {', '.join(bad)}" if bad else problem(args)
    if message:
        if rank == 0:
            print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
    args.collectives = colls
    return args


def parse(argv, rank):
    parser = quiet_parser("bench_algorithms.py", rank)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1M,4M,16M"),
                        help="message sizes in bytes by each collective's convention "
                             "(default 1MiB,4MiB,16MiB)")
    parser.add_argument("--repetitions", type=int, default=30,
                        help="timed repetitions per algorithm and size (default 30)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="element type (default float32)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the ring all-reduce misses its target")
    return checked(parser, argv, rank,
                   lambda a: "--repetitions below 3" if a.repetitions < 3 else None)


def once(comm, call):
    """Time of one ``call`` after a barrier: the maximum over ranks."""
    comm.Barrier()
    t0 = time.perf_counter()
    call()
    return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)


def timed(comm, call, reps):
    """Per-repetition times of ``call``; one warm-up call first."""
    call()
    return [once(comm, call) for _ in range(reps)]


def pingpong(comm, nbytes, reps):
    buf = np.zeros(nbytes, np.uint8)
    rank = comm.Get_rank()

    def call():
        if rank == 0:
            comm.Send([buf, MPI.BYTE], 1, 3)
            comm.Recv([buf, MPI.BYTE], 1, 3)
        elif rank == 1:
            comm.Recv([buf, MPI.BYTE], 0, 3)
            comm.Send([buf, MPI.BYTE], 0, 3)

    return float(np.median(timed(comm, call, reps))) / 2


def reduce_local(nbytes, reps):
    a, b = np.ones(nbytes // 4, np.float32), np.ones(nbytes // 4, np.float32)
    np.add(a, b, out=a)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.add(a, b, out=a)
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def calls(comm, collective, nbytes, dtype):
    """``{algorithm: zero-argument call}`` for native and every hand-written algorithm."""
    p, rank = comm.Get_size(), comm.Get_rank()
    count = nbytes // np.dtype(dtype).itemsize
    mtype = messages.datatype(np.dtype(dtype))
    counts, displs = block_counts(count, p), block_displs(count, p)
    whole = np.ones(count, dtype)
    out = {}
    if collective == "bcast":
        out["native"] = lambda: comm.Bcast([whole, mtype], 0)
        mk = lambda fn: (lambda: fn(comm, whole, root=0))  # noqa: E731
    elif collective == "allgather":
        mine = np.ones(counts[rank], dtype)
        out["native"] = lambda: comm.Allgatherv([mine, mtype], [whole, counts, displs, mtype])
        mk = lambda fn: (lambda: fn(comm, mine, whole))  # noqa: E731
    elif collective == "reduce_scatter":
        block = np.empty(counts[rank], dtype)
        out["native"] = lambda: comm.Reduce_scatter([whole, mtype], [block, mtype], counts,
                                                    MPI.SUM)
        mk = lambda fn: (lambda: fn(comm, whole, block, MPI.SUM))  # noqa: E731
    else:
        result = np.empty(count, dtype)
        out["native"] = lambda: comm.Allreduce([whole, mtype], [result, mtype], MPI.SUM)
        mk = lambda fn: (lambda: fn(comm, whole, result, MPI.SUM))  # noqa: E731
    for (c, name), fn in ALGORITHMS.items():
        if c == collective:
            out[name] = mk(fn)
    return out


def main(argv=None):
    comm = MPI.COMM_WORLD
    p, rank = comm.Get_size(), comm.Get_rank()
    args = parse(argv, rank)
    if p < 2:
        if rank == 0:
            print("bench_algorithms.py: error: run under mpiexec -n 2 (or more)",
                  file=sys.stderr)
        return 2

    def log(msg):
        if rank == 0:
            print(msg, file=sys.stderr, flush=True)

    log("bench: ping-pong and local reduction ...")
    pp_sizes = sorted(set(args.sizes) | {1 << 16, 1 << 18})
    pp_times = [pingpong(comm, s, args.repetitions) for s in pp_sizes]
    beta, alpha = np.polyfit(pp_sizes, pp_times, 1)
    alpha = max(float(alpha), 0.0)
    gamma = float(np.median([reduce_local(s, args.repetitions) / s for s in args.sizes]))
    if rank == 0:
        print(f"# p={p} {MPI.Get_library_version().splitlines()[0].strip()} "
              f"dtype={args.dtype} repetitions={args.repetitions}")
        print(f"# ping-pong fit: alpha={alpha * 1e6:.2f} us, beta={beta * 1e12:.1f} ps/B "
              f"({1 / beta / 1e9:.2f} GB/s); local reduction gamma={gamma * 1e12:.1f} ps/B")
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if beta <= 0 or load > cores:
            print(f"# WARNING: timings unreliable: load average {load:.1f} on {cores} cores"
                  f"{', ping-pong beta <= 0' if beta <= 0 else ''} (other work on the "
                  "machine); compare min_ratio, rerun when idle")
        print(f"{'collective':<15} {'algorithm':<19} {'bytes':>9} {'median_ms':>10} "
              f"{'native_ms':>10} {'ratio':>6} {'min_ratio':>9} {'bound_ms':>9} "
              f"{'of_bound':>8}")
    target_ok = True
    for collective in args.collectives:
        for nbytes in args.sizes:
            log(f"bench: {collective} {nbytes} B ...")
            fns = calls(comm, collective, nbytes, args.dtype)
            names = list(fns)
            samples = {name: [] for name in names}
            for name in names:  # warm-up (and private communicator creation)
                fns[name]()
            for _ in range(args.repetitions):  # alternate algorithms repetition by repetition
                for name in names:
                    samples[name].append(once(comm, fns[name]))
            med = {name: float(np.median(v)) for name, v in samples.items()}
            low = {name: float(np.min(v)) for name, v in samples.items()}
            bound = float(costs.lower_bound(collective, p, nbytes, alpha, beta, gamma))
            if rank == 0:
                for name in names:
                    print(f"{collective:<15} {name:<19} {nbytes:>9} {med[name] * 1e3:>10.3f} "
                          f"{med['native'] * 1e3:>10.3f} {med[name] / med['native']:>6.2f} "
                          f"{low[name] / low['native']:>9.2f} {bound * 1e3:>9.3f} "
                          f"{bound / med[name]:>8.2f}", flush=True)
            coll, alg, limit, from_bytes = TARGET
            if collective == coll and nbytes >= from_bytes:
                target_ok &= med[alg] / med["native"] <= limit
    if rank == 0 and "allreduce" in args.collectives:
        print(f"# target: ring all-reduce within {TARGET[2]}x of native from 1 MiB: "
              f"{'met' if target_ok else 'MISSED'}")
    return 1 if args.strict and not target_ok else 0


if __name__ == "__main__":
    sys.exit(main())
