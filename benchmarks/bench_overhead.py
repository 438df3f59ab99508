"""Harness overhead: collectives.harness.time_call against a minimal C timing loop.

Both sides time the same operation the same way, in the same launch conditions:
MPI_Allreduce (float32 sum) or MPI_Bcast (bytes, root 0) of the same sizes, a barrier
before every repetition (untimed), ``CLOCK_MONOTONIC`` around the one call, the
repetition's time the maximum over ranks, the median over a fixed number of
repetitions after the same warm-up.  The C loop is ``benchmarks/c/timing_loop.c``,
built with the environment's ``mpicc`` into ``benchmarks/build/`` (same MPI library);
the Python side is ``time_call(sync="barrier", min_reps=max_reps=REPS)`` on a
``functools.partial(comm.Allreduce, sendspec, recvspec, MPI.SUM)`` with prebuilt
``[memoryview, count, datatype]`` specs.  Launches alternate C / Python (order
swapped every launch, so drift on a shared machine hits both); each size reports the
median over launches of each side's median, their ratio and difference, and whether
the targets hold: within +1.0 µs of C at 4-8 B, within 5% from 64 KiB up.

    python benchmarks/bench_overhead.py [--ranks 2] [--launches 5] [--ops allreduce,bcast]

With ``--compare-sync`` it instead times Allreduce with the adaptive default options
under both start modes (``barrier``, ``window``) at several rank counts and prints
median, CI half-width, repetitions, discarded starts and stop rules: the measurement
behind the harness's default start mode.

    python benchmarks/bench_overhead.py --compare-sync --compare-ranks 2,4 --sizes 4,65536,1048576

Run it on an otherwise idle machine: with other jobs on the cores both sides slow
down, unevenly.  Progress goes to stderr, the table to stdout.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "benchmarks" / "c" / "timing_loop.c"
BINARY = ROOT / "benchmarks" / "build" / "timing_loop"
OPS = ("allreduce", "bcast")
DEFAULT_SIZES = "4,8,64,1024,8192,65536,262144,1048576,4194304"
SMALL_TARGET_S = 1.0e-6      # at 4-8 B: ours - C <= 1.0 µs
LARGE_TARGET_RATIO = 1.05    # from 64 KiB up: ours / C <= 1.05


def _tool(name: str) -> str:
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"error: {name} not found next to {sys.executable} or on PATH "
                         "(pip install 'collcost[mpich]')")
    return found


def build(force: bool = False) -> Path:
    """Compile the C loop with mpicc -O2 unless the binary is newer than the source."""
    if not force and BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_tool("mpicc"), "-O2", "-o", str(BINARY), str(SOURCE)]
    print("building:", " ".join(cmd), file=sys.stderr)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"error: could not build {SOURCE} with {cmd[0]}")
    return BINARY


def reps_for(nbytes: int, scale: float) -> int:
    """OSU-like repetition counts, scaled: many for small sizes, few for large."""
    base = 10000 if nbytes <= 8192 else 1000 if nbytes <= 262144 else 200
    return max(10, int(base * scale))


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated integers, got {text!r}")
    if not sizes or any(s < 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be >= 0 bytes, got {text!r}")
    return sizes


def _parse_ops(text: str) -> list[str]:
    ops = [s for s in text.split(",") if s]
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise argparse.ArgumentTypeError(f"ops must be among {', '.join(OPS)}, got {text!r}")
    return ops


def _positive(kind):
    def parse(text):
        v = kind(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return v
    return parse


# ---------------------------------------------------------------------------- worker

def worker(op: str, warmup: int, specs: list[str]) -> None:
    """Under mpiexec: time each BYTES:REPS with the harness, print like the C loop."""
    import functools

    import numpy as np

    from collectives.harness import TimingOptions, time_call, timer_properties
    from collectives.mpi import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() == 0:
        props = timer_properties()
        print(f"# timer {props['name']} resolution {props['resolution_s']:.1e} s "
              f"overhead {props['overhead_s']:.1e} s", flush=True)
    for spec in specs:
        nbytes, reps = (int(v) for v in spec.split(":"))
        # float32 ones, as the C loop (every page touched)
        a = np.ones(nbytes // 4, dtype=np.float32)
        b = np.zeros_like(a)
        if op == "allreduce":
            call = functools.partial(comm.Allreduce, [memoryview(a), a.size, MPI.FLOAT],
                                     [memoryview(b), b.size, MPI.FLOAT], MPI.SUM)
        else:
            a = np.frombuffer(np.ones(-(-nbytes // 4), dtype=np.float32).data,
                              dtype=np.uint8)[:nbytes].copy()
            call = functools.partial(comm.Bcast, [memoryview(a), nbytes, MPI.BYTE], 0)
        opts = TimingOptions(sync="barrier", min_reps=reps, max_reps=reps, warmup=warmup,
                             time_budget=1e9)
        t = time_call(comm, call, opts)
        if comm.Get_rank() == 0:
            print(f"{nbytes} {np.median(t.max_s):.9e} {t.max_s.min():.9e} {t.max_s.size}",
                  flush=True)


def sync_worker(sizes: list[int], budget: float) -> None:
    """Under mpiexec: adaptive time_call of Allreduce under each start mode."""
    import functools

    import numpy as np

    from collectives.harness import SYNC_MODES, TimingOptions, time_call
    from collectives.mpi import MPI

    comm = MPI.COMM_WORLD
    for nbytes in sizes:
        a = np.ones(nbytes // 4, dtype=np.float32)
        b = np.zeros_like(a)
        call = functools.partial(comm.Allreduce, [memoryview(a), a.size, MPI.FLOAT],
                                 [memoryview(b), b.size, MPI.FLOAT], MPI.SUM)
        for sync in SYNC_MODES:
            t = time_call(comm, call, TimingOptions(sync=sync, time_budget=budget))
            s = t.summary()
            if comm.Get_rank() == 0:
                print(f"{sync} {nbytes} {s['median_s']:.9e} {s['ci_rel']:.4f} "
                      f"{s['repetitions']} {s['discarded']} {s['stop_rule']} "
                      f"{t.elapsed_s:.3f} {int(s['unstable'])}", flush=True)


# ---------------------------------------------------------------------------- driver

def _run(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    full = ["timeout", "-k", "5", str(int(timeout))] + cmd
    proc = subprocess.run(full, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: launch failed with exit status {proc.returncode}: "
                         f"{' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc


def _launch(cmd: list[str], env: dict, timeout: float) -> dict[int, float]:
    proc = _run(cmd, env, timeout)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split()
        out[int(fields[0])] = float(fields[1])
    return out


def compare_sync(args) -> int:
    """Launch the sync worker at each rank count; print medians and stability per mode."""
    import numpy as np

    print("# Allreduce, default adaptive options (target CI 5%), time budget "
          f"{args.budget} s per point; median over {args.launches} launches (median µs "
          "over the launches that kept any repetition); "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'ranks':>5} {'bytes':>8} {'sync':>8} {'median µs':>10} {'CI rel':>7} "
          f"{'reps':>6} {'discard':>7} {'s/point':>7} {'stop rules':>18} {'unstable':>8}")
    for ranks in args.compare_ranks:
        env = _env(ranks)
        cmd = [_tool("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpi4py",
               str(Path(__file__).resolve()), "--sync-worker", str(args.budget)] + \
            [str(s) for s in args.sizes if s % 4 == 0]
        rows = {}
        for i in range(args.launches):
            print(f"sync comparison: {ranks} ranks, launch {i + 1}/{args.launches}",
                  file=sys.stderr)
            proc = _run(cmd, env, args.timeout)
            for line in proc.stdout.splitlines():
                f = line.split()
                rows.setdefault((int(f[1]), f[0]), []).append(f)
        for (nbytes, sync), fs in sorted(rows.items()):
            col = lambda k, typ=float: np.array([typ(f[k]) for f in fs])  # noqa: E731
            rules = ",".join(sorted(set(f[6] for f in fs)))
            med = np.nanmedian(col(2)) if np.isfinite(col(2)).any() else np.nan
            print(f"{ranks:>5} {nbytes:>8} {sync:>8} {med * 1e6:>10.3f} "
                  f"{np.median(col(3)):>7.3f} {np.median(col(4)):>6.0f} "
                  f"{np.median(col(5)):>7.0f} {np.median(col(7)):>7.2f} {rules:>18} "
                  f"{int(col(8, int).sum())}/{len(fs)}")
    print(f"# load average at end {os.getloadavg()[0]:.1f}")
    return 0


def _env(ranks: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if ranks > (os.cpu_count() or 1):
        env["MPIR_CVAR_DEVICE_COLLECTIVES"] = "none"
        print(f"warning: {ranks} ranks on {os.cpu_count()} cores: oversubscribed "
              "(MPIR_CVAR_DEVICE_COLLECTIVES=none), timings are not representative",
              file=sys.stderr)
    return env


def run(args) -> int:
    import numpy as np

    binary = build(args.rebuild)
    env = _env(args.ranks)
    mpiexec = [_tool("mpiexec"), "-n", str(args.ranks)]
    specs = [f"{s}:{reps_for(s, args.reps_scale)}" for s in args.sizes]
    met = True
    print(f"# {args.ranks} ranks, {args.launches} launches, barrier before every "
          "repetition; median over launches of per-launch medians (max over ranks); "
          f"load average at start {os.getloadavg()[0]:.1f}")
    for op in args.ops:
        sizes = [s for s in args.sizes if op != "allreduce" or s % 4 == 0]
        op_specs = [sp for sp, s in zip(specs, args.sizes) if s in sizes]
        c_cmd = mpiexec + [str(binary), op, "1", str(args.warmup)] + op_specs
        py_cmd = mpiexec + [sys.executable, "-m", "mpi4py", str(Path(__file__).resolve()),
                            "--worker", op, str(args.warmup)] + op_specs
        results = {"c": [], "py": []}
        for i in range(args.launches):
            order = (("c", c_cmd), ("py", py_cmd))
            for side, cmd in (order if i % 2 == 0 else order[::-1]):
                print(f"{op}: launch {i + 1}/{args.launches} ({side})", file=sys.stderr)
                results[side].append(_launch(cmd, env, args.timeout))
        print(f"\n{op}\n{'bytes':>9} {'C µs':>10} {'ours µs':>10} {'ours/C':>7} "
              f"{'diff µs':>8} {'paired diff µs':>15}  target")
        for s in sizes:
            c = np.array([r[s] for r in results["c"]])
            py = np.array([r[s] for r in results["py"]])
            cm, pm = float(np.median(c)), float(np.median(py))
            ratio, diff = pm / cm, pm - cm
            paired = float(np.median(py - c))
            if s <= 8:
                ok = diff <= SMALL_TARGET_S
                verdict = f"{'met' if ok else 'MISSED'} (<= +1.0 µs)"
            elif s >= 65536:
                ok = ratio <= LARGE_TARGET_RATIO
                verdict = f"{'met' if ok else 'MISSED'} (<= 5%)"
            else:
                ok, verdict = True, "-"
            met &= ok
            print(f"{s:>9} {cm * 1e6:>10.3f} {pm * 1e6:>10.3f} {ratio:>7.3f} "
                  f"{diff * 1e6:>+8.3f} {paired * 1e6:>+15.3f}  {verdict}")
        print(f"  per-launch C medians at {sizes[0]} B (µs): "
              + " ".join(f"{r[sizes[0]] * 1e6:.3f}" for r in results["c"]))
        print(f"  per-launch ours medians at {sizes[0]} B (µs): "
              + " ".join(f"{r[sizes[0]] * 1e6:.3f}" for r in results["py"]))
    print(f"\nall targets {'met' if met else 'NOT met'}; "
          f"load average at end {os.getloadavg()[0]:.1f}")
    return 0 if met or not args.strict else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        if len(argv) < 4 or argv[1] not in OPS:
            print("usage: bench_overhead.py --worker OP WARMUP BYTES:REPS...", file=sys.stderr)
            return 2
        worker(argv[1], int(argv[2]), argv[3:])
        return 0
    if argv[:1] == ["--sync-worker"]:
        sync_worker([int(v) for v in argv[2:]], float(argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--ranks", type=_positive(int), default=2,
                   help="MPI ranks of every launch (default 2)")
    p.add_argument("--launches", type=_positive(int), default=5,
                   help="launches of each side per op; medians are taken over them (default 5)")
    p.add_argument("--ops", type=_parse_ops, default=list(OPS),
                   help="comma-separated operations: allreduce, bcast (default both)")
    p.add_argument("--sizes", type=_parse_sizes, default=_parse_sizes(DEFAULT_SIZES),
                   help=f"comma-separated message sizes in bytes (default {DEFAULT_SIZES}); "
                        "allreduce skips sizes that are not multiples of 4")
    p.add_argument("--warmup", type=_positive(int), default=100,
                   help="untimed calls before each size, both sides (default 100)")
    p.add_argument("--reps-scale", type=_positive(float), default=1.0,
                   help="multiply the repetition counts (10000 up to 8 KiB, 1000 up to "
                        "256 KiB, 200 above) by this (default 1)")
    p.add_argument("--timeout", type=_positive(float), default=300,
                   help="seconds before a launch is killed (default 300)")
    p.add_argument("--rebuild", action="store_true", help="recompile the C loop")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a target is missed")
    p.add_argument("--compare-sync", action="store_true",
                   help="instead: compare the barrier and window start modes (adaptive "
                        "options) at each of --compare-ranks on --sizes")
    p.add_argument("--compare-ranks", type=lambda t: [_positive(int)(v) for v in t.split(",")],
                   default=[2, 4], help="rank counts for --compare-sync (default 2,4)")
    p.add_argument("--budget", type=_positive(float), default=1.0,
                   help="time budget per point for --compare-sync (default 1 s)")
    args = p.parse_args(argv)
    return compare_sync(args) if args.compare_sync else run(args)


if __name__ == "__main__":
    sys.exit(main())
