"""Check every hand-written algorithm against the MPI library's own collective.

Run as ``mpiexec -n P python -m collectives.check [options]``.  For each rank count in
``--ranks`` (default 1..P) the first ranks of ``MPI_COMM_WORLD`` form a communicator;
on it every selected (collective, algorithm) runs on random data for every dtype, op,
element count and broadcast root, and its result is compared with the native call
(``Bcast``, ``Reduce_scatter``, ``Allreduce``, ``Allgatherv``) on the same input:
exactly for integers, max, min, broadcast and allgather; for floating-point sums within
``p * eps * sum_ranks |x|`` elementwise (summation order differs).  The input vector is
also checked to be unchanged, and the whole-vector results to be bitwise identical on
every rank.

Rank 0 prints one line per (ranks, collective, algorithm) and names every failing case;
the exit status is 0 when all cases pass, 1 on any mismatch or error, 2 on bad
arguments.  Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import zlib
from dataclasses import dataclass


def _early_timeout(argv) -> float:
    """--timeout as read before the parser exists (600 when absent or unreadable)."""
    for i, a in enumerate(argv):
        text = a.split("=", 1)[1] if a.startswith("--timeout=") else (
            argv[i + 1] if a == "--timeout" and i + 1 < len(argv) else None)
        if text is not None:
            try:
                value = float(text)
            except ValueError:
                return 600.0
            return value if 0 <= value <= 1e6 else 600.0
    return 600.0


if __name__ == "__main__":  # MPI_Init (the imports below) under the --timeout deadline
    import faulthandler
    if _early_timeout(sys.argv[1:]) > 0:  # it holds the GIL: faulthandler's C thread
        faulthandler.dump_traceback_later(_early_timeout(sys.argv[1:]), exit=True)

import numpy as np

from collectives import costs, gpu
from collectives.algorithms import ALGORITHMS, block_counts, block_displs
from collectives.algorithms.arguments import SUPPORTED_DTYPES
from collectives.algorithms.messages import datatype
from collectives.algorithms.reductions import SUPPORTED_OPS
from collectives.arrays import is_device

__all__ = ["Case", "BUFFERS", "allocate", "to_host", "parse_counts", "resolve_counts",
           "build_cases", "run_case", "main"]

_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3,
          "mb": 10**6, "gb": 10**9}
_SIZE = re.compile(r"^(\d+)\s*([kmg]?i?b)$", re.IGNORECASE)
_OPS = {name: op for op, _, name in SUPPORTED_OPS}
#: Largest buffer one case may use (bytes): --counts sizes and --large, checked before
#: anything is allocated.
MAX_CASE_BYTES = 1 << 30
#: Largest element count of --counts (N or p+K), and most entries of --counts.
MAX_CASE_COUNT = 1 << 27
MAX_COUNT_TOKENS = 256
#: Collectives that take a reduction op.
_REDUCING = ("reduce_scatter", "allreduce")


# ---------------------------------------------------------------------------------
# Buffers: one small allocator per kind, so device kinds can be added here.
# ---------------------------------------------------------------------------------

def _numpy_buffer(host: np.ndarray):
    return np.array(host, copy=True)


def _device_buffer(host: np.ndarray):
    return gpu.device_array(host)  # cupy-staged too: the staging wraps the algorithm


#: ``--buffer`` kind -> function turning a host array into a buffer of that kind.
BUFFERS = {"numpy": _numpy_buffer, "cupy": _device_buffer, "cupy-staged": _device_buffer}


def allocate(kind: str, host: np.ndarray):
    """A buffer of kind ``kind`` holding a copy of ``host``."""
    try:
        return BUFFERS[kind](host)
    except KeyError:
        raise ValueError(f"buffer must be one of {', '.join(BUFFERS)}, got {kind!r}") from None


def to_host(buf) -> np.ndarray:
    """A numpy copy of ``buf`` (host or device array)."""
    if is_device(buf):
        get = getattr(buf, "get", None)
        if get is None:
            raise TypeError(f"device array {type(buf).__name__} has no .get()")
        return np.asarray(get())
    return np.array(buf, copy=True)


# ---------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------

def parse_counts(text: str) -> list[str]:
    """Validate a comma list of element counts: ``N``, ``p``, ``p-K``, ``p+K`` or a size
    with a unit (``8MiB``: bytes, turned into elements per dtype)."""
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise ValueError("--counts is empty")
    if len(tokens) > MAX_COUNT_TOKENS:
        raise ValueError(f"--counts: {len(tokens)} entries, more than the limit of "
                         f"{MAX_COUNT_TOKENS} (each runs for every dtype, op and root)")
    for t in tokens:
        m = _SIZE.match(t)
        if not (re.fullmatch(r"\d{1,15}", t) or re.fullmatch(r"p([+-]\d{1,15})?", t) or m):
            raise ValueError(f"--counts: cannot read {t!r}; expected N, p, p-K, p+K or a "
                             "size such as 8MiB")
        if m and len(m.group(1)) > 15 or m and \
                int(m.group(1)) * _UNITS[m.group(2).lower()] > MAX_CASE_BYTES:
            raise ValueError(f"--counts {t}: larger than the limit of {MAX_CASE_BYTES} "
                             "bytes per case")
        if not m and int(t.lstrip("p+") or 0) > MAX_CASE_COUNT and "-" not in t:
            raise ValueError(f"--counts {t}: more than the limit of {MAX_CASE_COUNT} "
                             "elements per case")
    return tokens


def resolve_counts(tokens, p: int, itemsize: int) -> list[int]:
    """Element counts of ``tokens`` for ``p`` ranks and elements of ``itemsize`` bytes
    (sorted, duplicates and negative values dropped)."""
    out = set()
    for t in tokens:
        m = _SIZE.match(t)
        if t.isdigit():
            n = int(t)
        elif m:
            n = int(m.group(1)) * _UNITS[m.group(2).lower()] // itemsize
        else:
            n = p + int(t[1:] or 0)
        if n >= 0:
            out.add(n)
    return sorted(out)


@dataclass(frozen=True)
class Case:
    """One comparison against the native collective."""

    ranks: int
    collective: str
    algorithm: str
    dtype: str
    op: str | None
    count: int
    root: int | None = None
    in_place: bool = False

    @property
    def name(self) -> str:
        parts = [f"{self.collective}/{self.algorithm}", f"p={self.ranks}", self.dtype]
        if self.op:
            parts.append(self.op)
        parts.append(f"count={self.count}")
        if self.root is not None:
            parts.append(f"root={self.root}")
        if self.in_place:
            parts.append("in-place")
        return " ".join(parts)


def _roots(spec: str, p: int) -> list[int]:
    if spec == "all":
        return list(range(p))
    roots = set()
    for t in spec.split(","):
        roots.add(p - 1 if t.strip() == "last" else int(t))
    return sorted(r for r in roots if r < p)


def build_cases(p, selection, dtypes, ops, count_tokens, large, roots):
    """All cases at ``p`` ranks, in a deterministic order (identical on every rank).

    ``selection`` lists (collective, algorithm); small counts run for every dtype, op,
    root; ``large`` (bytes, 0 for none) runs once per algorithm with the first dtype,
    op and root.  All-reduce small counts of the first dtype also run in place.
    """
    cases = []
    for coll, alg in selection:
        coll_ops = ops if coll in _REDUCING else [None]
        coll_roots = _roots(roots, p) if coll == "bcast" else [None]
        for dtype in dtypes:
            counts = resolve_counts(count_tokens, p, np.dtype(dtype).itemsize)
            for count in counts:
                for op in coll_ops:
                    for root in coll_roots:
                        cases.append(Case(p, coll, alg, dtype, op, count, root))
                        if coll == "allreduce" and dtype == dtypes[0]:
                            cases.append(Case(p, coll, alg, dtype, op, count, root, True))
        if large and coll_roots:
            dtype = dtypes[0]
            cases.append(Case(p, coll, alg, dtype, coll_ops[0],
                              large // np.dtype(dtype).itemsize, coll_roots[0]))
    return cases


def _random(rng, dtype, n):
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(n, dtype=dtype)
    return rng.integers(-1000, 1000, n, dtype=dtype)


def _compare(case, got, want, scale):
    """Return (ok, error): exact, or within p*eps*scale for float sums."""
    if got.shape != want.shape:
        return False, float("inf")
    if np.dtype(case.dtype).kind == "f" and case.op == "sum":
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        bound = case.ranks * np.finfo(case.dtype).eps * scale.astype(np.float64)
        ok = bool(np.all(err <= bound)) if got.size else True
        rel = float(np.max(err / np.maximum(scale, np.finfo(case.dtype).tiny))) if got.size else 0.0
        return ok, rel
    return bool(np.array_equal(got, want)), 0.0


def run_case(comm, case: Case, fn, buffer="numpy", seed=0):
    """Run one case on ``comm``; return ``(ok, error, message)`` on this rank.

    ``fn`` is the algorithm; ``buffer`` the buffer kind it runs on.  The native reference
    always runs on host numpy arrays.
    """
    from collectives.mpi import MPI
    p, rank = comm.Get_size(), comm.Get_rank()
    rng = np.random.default_rng([seed, rank, case.count, p])
    counts, displs = block_counts(case.count, p), block_displs(case.count, p)
    mtype = datatype(case.dtype)
    sentinel = np.full(case.count, 77, dtype=case.dtype)
    x = _random(rng, case.dtype, case.count)
    scale = None
    if case.collective == "bcast":
        want = np.array(x, copy=True)
        comm.Bcast([want, mtype], root=case.root)
        buf = allocate(buffer, x if rank == case.root else sentinel)
        fn(comm, buf, root=case.root)
        got, inputs_ok = to_host(buf), True
    elif case.collective == "allgather":
        mine = x[displs[rank]:displs[rank] + counts[rank]]
        want = np.empty(case.count, case.dtype)
        comm.Allgatherv([mine, mtype], [want, counts, displs, mtype])
        send, recv = allocate(buffer, mine), allocate(buffer, sentinel)
        fn(comm, send, recv)
        got, inputs_ok = to_host(recv), np.array_equal(to_host(send), mine)
    else:
        op = _OPS[case.op]
        mine = slice(displs[rank], displs[rank] + counts[rank])
        if case.collective == "reduce_scatter":
            want = np.empty(counts[rank], case.dtype)
            comm.Reduce_scatter([x, mtype], [want, mtype], counts, op)
            scale = np.empty(counts[rank], case.dtype)
            comm.Reduce_scatter([np.abs(x), mtype], [scale, mtype], counts, MPI.SUM)
            send, recv = allocate(buffer, x), allocate(buffer, sentinel[mine])
        else:
            want = np.empty(case.count, case.dtype)
            comm.Allreduce([x, mtype], [want, mtype], op)
            scale = np.empty(case.count, case.dtype)
            comm.Allreduce([np.abs(x), mtype], [scale, mtype], MPI.SUM)
            send = allocate(buffer, x)
            recv = send if case.in_place else allocate(buffer, sentinel)
        fn(comm, send, recv, op)
        got = to_host(recv)
        inputs_ok = case.in_place or np.array_equal(to_host(send), x)
    ok, err = _compare(case, got, want, scale)
    # every rank must hold bitwise the same vector (replicas must not drift apart)
    same = case.collective == "reduce_scatter" or \
        len(set(comm.allgather(zlib.crc32(got.tobytes())))) == 1
    message = ""
    if ok and not same:
        ok, message = False, f"rank {rank}: result differs bitwise between ranks"
    elif not ok:
        bad = np.flatnonzero(got != want) if got.shape == want.shape else []
        where = f"first difference at element {bad[0]}: got {got[bad[0]]}, want {want[bad[0]]}" \
            if len(bad) else f"got {got.shape} elements, want {want.shape}"
        message = f"rank {rank}: wrong result ({where})"
    elif not inputs_ok:
        ok, message = False, f"rank {rank}: the input buffer was modified"
    return ok, err, message


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------

class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def _list(choices, what):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if items == ["all"]:
            return list(choices)
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or '(none)'}; expected 'all' or a comma "
                f"list of {', '.join(choices)}")
        return items
    return parse


def _ranks(text):
    try:
        if any(len(t.strip()) > 12 for t in text.split(",")):
            raise ValueError
        ranks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ranks must be a comma list of whole "
                                         f"numbers, got {text!r}") from None
    if not ranks or ranks[0] < 1:
        raise argparse.ArgumentTypeError(f"--ranks must be >= 1, got {text!r}")
    return ranks


def _size(text):
    m = _SIZE.match(text.strip())
    if text.strip() == "0":
        return 0
    if not m or len(m.group(1)) > 15:
        raise argparse.ArgumentTypeError(f"--large must be a size such as 8MiB or 0, "
                                         f"got {text!r}")
    n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if n > MAX_CASE_BYTES:
        raise argparse.ArgumentTypeError(f"--large {text}: larger than the limit of "
                                         f"{MAX_CASE_BYTES} bytes (1 GiB)")
    return n


def _roots_arg(text):
    if text.count(",") >= 4096:
        raise argparse.ArgumentTypeError("--roots: more than 4096 entries")
    if text != "all" and not all(t.strip() == "last" or t.strip().isdigit() and
                                 len(t.strip()) <= 12 for t in text.split(",")):
        raise argparse.ArgumentTypeError(f"--roots must be 'all' or a comma list of ranks "
                                         f"and 'last', got {text!r}")
    return text


def _seed(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a whole number, got {text!r}") \
            from None
    if not 0 <= n < 2**63:
        raise argparse.ArgumentTypeError(f"--seed must be between 0 and 2^63-1, got {n}")
    return n


def _timeout(text):
    from collectives.parsing import check_timeout
    try:
        return check_timeout(text, "--timeout")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _unused_roots(spec: str, ranks) -> list:
    """Roots of ``--roots`` that no selected communicator has (``last`` always fits)."""
    if spec == "all":
        return []
    top = max(ranks)
    return [int(t) for t in spec.split(",") if t.strip() != "last" and int(t) >= top]


def build_parser(algorithms=None):
    """The argument parser (``algorithms``: the registry to check, default ALGORITHMS)."""
    algorithms = ALGORITHMS if algorithms is None else algorithms
    names = sorted({a for _, a in algorithms})
    parser = _Parser(prog="python -m collectives.check", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collectives", type=_list(costs.COLLECTIVES, "collective"),
                        default=list(costs.COLLECTIVES),
                        help="comma list of collectives to check, or 'all' (default all)")
    parser.add_argument("--algorithms", type=_list(names, "algorithm"), default=names,
                        help="comma list of hand-written algorithms, or 'all' (default "
                             "all); each is checked for the selected collectives that "
                             "have it")
    parser.add_argument("--dtypes", type=_list(SUPPORTED_DTYPES, "dtype"),
                        default=list(SUPPORTED_DTYPES),
                        help="comma list of element types (default all: "
                             f"{','.join(SUPPORTED_DTYPES)})")
    parser.add_argument("--ops", type=_list(list(_OPS), "op"), default=list(_OPS),
                        help="reduction ops for reduce_scatter and allreduce (default "
                             "sum,max,min)")
    parser.add_argument("--counts", default="0,1,p-1,p+1,97",
                        help="comma list of element counts run for every dtype, op and "
                             "root: N, p, p-K, p+K (p the rank count) or a size with "
                             "unit (8MiB). Default 0,1,p-1,p+1,97")
    parser.add_argument("--large", type=_size, default=8 << 20,
                        help="one extra case per algorithm and rank count of this many "
                             "bytes (first dtype, op, root), above the eager threshold; "
                             "0 for none. Default 8MiB")
    parser.add_argument("--roots", type=_roots_arg, default="all",
                        help="broadcast roots: 'all' or a comma list of ranks and 'last' "
                             "(default all)")
    parser.add_argument("--ranks", type=_ranks, default=None,
                        help="comma list of communicator sizes (default 1..P, P the "
                             "number of launched ranks)")
    parser.add_argument("--buffer", choices=sorted(BUFFERS), default="numpy",
                        help="memory the algorithms run on (default numpy); the native "
                             "reference always uses host memory")
    gpu.add_arguments(parser, buffer=False)
    parser.add_argument("--seed", type=_seed, default=0,
                        help="random seed, 0 to 2^63-1 (default 0)")
    parser.add_argument("--timeout", type=_timeout, default=600.0, metavar="SECONDS",
                        help="end the job (status 3) when one case, or a wait between "
                             "rank counts, takes longer than this, naming it (a rank that "
                             "is stopped or dead never hangs the check); 0 disables "
                             "(default 600)")
    parser.add_argument("--verbose", action="store_true",
                        help="print every case, not only the summary per algorithm")
    return parser


def _selection(args, algorithms):
    return [(c, a) for (c, a) in algorithms
            if c in args.collectives and a in args.algorithms]


def _log(world, *lines, err=False):
    if world.Get_rank() == 0:
        print(*lines, sep="\n", file=sys.stderr if err else sys.stdout, flush=True)


def main(argv=None, *, algorithms=None) -> int:
    """Entry point; returns the exit status (0 pass, 1 mismatch, 2 usage)."""
    from collectives.mpi import MPI
    world = MPI.COMM_WORLD
    algorithms = ALGORITHMS if algorithms is None else algorithms
    parser = build_parser(algorithms)
    try:
        args = parser.parse_args(argv)
        count_tokens = parse_counts(args.counts)
        ranks = args.ranks or list(range(1, world.Get_size() + 1))
        if ranks[-1] > world.Get_size():
            raise _UsageError(f"--ranks asks for {ranks[-1]} ranks but only "
                              f"{world.Get_size()} were launched")
        selection = _selection(args, algorithms)
        if not selection:
            raise _UsageError("no algorithm of --algorithms belongs to --collectives")
        unused = _unused_roots(args.roots, ranks)
        if unused and any(c == "bcast" for c, _ in selection):
            raise _UsageError(f"--roots {args.roots}: root {unused[0]} is not a rank of "
                              f"any communicator checked (the largest has {max(ranks)} "
                              f"ranks: 0..{max(ranks) - 1})")
        empty = [f"{c}/{a}" for c, a in selection
                 if not any(build_cases(p, [(c, a)], args.dtypes, args.ops, count_tokens,
                                        args.large, args.roots) for p in ranks)]
        if empty:
            raise _UsageError(f"the options select no case for {', '.join(empty)} (check "
                              "--counts, --roots, --large, --ranks)")
    except (_UsageError, ValueError) as exc:
        if world.Get_rank() == 0:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:  # GPU buffers: verdict, device, memory (send, receive, scratch, staging)
        if args.buffer in gpu.DEVICE_BUFFERS:
            gpu.prepare(world, args.buffer, args.cuda_aware, 4 * max(args.large, 1 << 20))
    except gpu.GpuSetupError as exc:
        _log(world, f"{parser.prog}: error: {exc}", err=True)
        return 2

    from collectives.faults import FaultHooks
    from collectives.watchdog import Watchdog
    watchdog = Watchdog(args.timeout, rank=world.Get_rank(), option="--timeout")
    hooks = FaultHooks(world.Get_rank(), world.Get_size())  # tests only (env)
    failures, rows = [], []
    for p in ranks:
        with watchdog.phase(f"split for p={p}"):
            comm = world.Split(0 if world.Get_rank() < p else MPI.UNDEFINED,
                               world.Get_rank())
        start = time.perf_counter()
        cases = build_cases(p, selection, args.dtypes, args.ops, count_tokens, args.large,
                            args.roots)
        if comm != MPI.COMM_NULL:
            summary = {}
            for case in cases:
                watchdog.arm(case.name, what="case")
                outcome = comm.gather(_run_guarded(comm, case, algorithms, args), root=0)
                watchdog.disarm()
                if comm.Get_rank() == 0:
                    ok_all = all(ok for ok, _, _ in outcome)
                    err = max(e for _, e, _ in outcome)
                    messages = [m for _, _, m in outcome]
                    s = summary.setdefault((case.collective, case.algorithm),
                                           [0, 0, 0.0, 0])
                    s[0] += 1
                    s[1] += not ok_all
                    s[2] = max(s[2], err)
                    s[3] = max(s[3], case.count)
                    if args.verbose:
                        print(f"{'ok  ' if ok_all else 'FAIL'} {case.name}", flush=True)
                    if not ok_all:
                        why = "; ".join(m for m in messages if m)
                        failures.append(f"{case.name}: {why}")
            if comm.Get_rank() == 0:
                for (coll, alg), (n, bad, err, biggest) in summary.items():
                    rows.append((p, coll, alg, n, bad, err, biggest))
            comm.Free()
        _log(world, f"check: p={p}: {len(cases)} cases in "
                    f"{time.perf_counter() - start:.1f} s", err=True)
        # ranks outside the communicator wait here while it checks: every case's time
        limit = args.timeout * (len(cases) + 1) if world.Get_rank() >= p else args.timeout
        with watchdog.phase(f"wait after p={p}", limit):
            hooks.at(f"wait after p={p}")
            _idle_barrier(world)

    header = f"{'ranks':>5} {'collective':<15} {'algorithm':<19} {'cases':>6} " \
             f"{'failed':>6} {'max rel err':>11} {'max count':>10}"
    lines = [header] + [f"{p:>5} {c:<15} {a:<19} {n:>6} {bad:>6} {err:>11.2e} {big:>10}"
                        for p, c, a, n, bad, err, big in rows]
    _log(world, *lines)
    if failures:
        _log(world, f"{len(failures)} failing case(s):", *(f"FAIL {f}" for f in failures),
             err=True)
        return 1
    _log(world, f"all {sum(r[3] for r in rows)} cases match the native MPI result")
    return 0


def _idle_barrier(comm):
    from collectives.watchdog import idle_wait
    idle_wait(comm)


def _run_guarded(comm, case, algorithms, args):
    """run_case; an exception fails the case (all ranks raise alike on bad arguments;
    an exception on one rank only would leave the others waiting, so abort then)."""
    from collectives.mpi import MPI
    try:
        fn = algorithms[(case.collective, case.algorithm)]
        if args.buffer == "cupy-staged":
            fn = gpu.staged_algorithm(fn)  # MPI sees host copies of the device buffers
        return run_case(comm, case, fn, args.buffer, args.seed)
    except Exception as exc:  # report which case failed, then stop the whole job
        print(f"FAIL {case.name}: rank {comm.Get_rank()} raised {exc!r}", file=sys.stderr,
              flush=True)
        MPI.COMM_WORLD.Abort(1)
        raise


def _command_line() -> int:
    """``python -m collectives.check``: MPI_Init and MPI_Finalize under the --timeout
    deadline too (collectives.watchdog.init_mpi / finalize_mpi)."""
    import faulthandler
    from collectives.watchdog import finalize_mpi, init_mpi
    faulthandler.cancel_dump_traceback_later()  # MPI_Init is done (module imports)
    limit = _early_timeout(sys.argv[1:])
    mpi = init_mpi(limit)
    status = main()
    finalize_mpi(mpi, limit)
    return status


if __name__ == "__main__":
    sys.exit(_command_line())
