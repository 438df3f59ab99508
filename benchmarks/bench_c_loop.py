"""collcost's compiled timing loop against the project's C reference loop, side by side.

Issue 17's targets: for all-reduce, broadcast, reduce-scatter and the ping-pong, the
compiled loop's median (collectives.cloop, through ``harness.time_call(native=...)``, the
path the sweep takes) is within +0.05 µs or 5% (whichever is larger) of the reference at
4 B up to 64 KiB, and within 3% from 64 KiB up.  The reference is
``benchmarks/c/timing_loop.c`` (built here against the same MPI library, into
``benchmarks/build/<library>/``).  Both sides: float32 sum, a barrier before every
repetition (untimed), CLOCK_MONOTONIC around the one call, the repetition's time the
maximum over ranks, the median over a fixed number of repetitions after the same
warm-up; the ping-pong is half the round trip on both sides.  The Python loop's median
(``time_call`` without ``native``, what every point cost before) is printed alongside.
All-gather is measured and printed without a target.

Launches alternate reference / collcost (order swapped every launch, so drift on a
shared machine hits both); each size reports the median over launches of each side's
median, the ratio, the difference, the paired difference (median over launches of
collcost - reference, each pair launched back to back) and the verdict, which is taken
on the paired difference: on a shared machine a launch's medians shift as a whole (by up
to 3x at 8 B here, with where the ranks land and what else runs), and two independent
medians of such launches differ by that shift, while back-to-back pairs mostly share it.  The MPI library is that of the Python running
this script: run it with each environment's Python to cover MPICH, Open MPI and Intel MPI,
e.g.  ``.venv-openmpi/bin/python benchmarks/bench_c_loop.py``.

    python benchmarks/bench_c_loop.py [--ranks 2] [--launches 5] [--ops allreduce,bcast]

Run it on an otherwise idle machine; the command is printed at the end for that.
Progress goes to stderr, the table to stdout; exit status 1 with ``--strict`` when a
target is missed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCE = ROOT / "benchmarks" / "c" / "timing_loop.c"
BUILD = ROOT / "benchmarks" / "build"
OPS = ("allreduce", "bcast", "reduce_scatter", "pingpong", "allgather")
TARGET_OPS = ("allreduce", "bcast", "reduce_scatter", "pingpong")
DEFAULT_SIZES = "4,8,64,1024,8192,65536,262144,1048576,4194304"
SMALL_ABS_S = 0.05e-6     # below 64 KiB: |collcost - reference| <= max(0.05 µs, 5%)
SMALL_REL = 0.05
LARGE_FROM = 65536        # from here: |collcost / reference - 1| <= 3%
LARGE_REL = 0.03


def _tool(name: str) -> str:
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"error: {name} not found next to {sys.executable} or on PATH")
    return found


def reps_for(nbytes: int, scale: float) -> int:
    """OSU-like repetition counts, scaled: many for small sizes, few for large."""
    base = 10000 if nbytes <= 8192 else 1000 if nbytes <= 262144 else 200
    return max(10, int(base * scale))


def valid(op: str, nbytes: int, ranks: int) -> bool:
    """Sizes both sides can run: float32 elements; whole blocks per rank."""
    if op == "bcast":
        return nbytes % 4 == 0
    if op in ("reduce_scatter", "allgather"):
        return nbytes % (4 * ranks) == 0 and nbytes > 0
    return nbytes % 4 == 0


def verdict(op: str, nbytes: int, ref: float, ours: float) -> tuple[bool, str]:
    if op not in TARGET_OPS:
        return True, "-"
    if nbytes >= LARGE_FROM:
        ok = abs(ours / ref - 1.0) <= LARGE_REL
        return ok, f"{'met' if ok else 'MISSED'} (within 3%)"
    bound = max(SMALL_ABS_S, SMALL_REL * ref)
    ok = abs(ours - ref) <= bound
    return ok, f"{'met' if ok else 'MISSED'} (within {bound * 1e6:.3f} µs)"


# ---------------------------------------------------------------------------- worker

def worker(op: str, warmup: int, python_loop: bool, specs: list[str]) -> None:
    """Under mpiexec: time each BYTES:REPS with collcost's compiled loop (and the Python
    loop), print ``BYTES C_MEDIAN_S PY_MEDIAN_S`` (round trip for the ping-pong)."""
    import numpy as np

    from collectives.harness import TimingOptions, time_call
    from collectives.mpi import MPI
    from collectives.operations import prepare

    comm = MPI.COMM_WORLD
    for spec in specs:
        nbytes, reps = (int(v) for v in spec.split(":"))
        point = prepare(comm, op, "native", nbytes, "float32", "sum")
        point.check()
        opts = TimingOptions(sync="barrier", min_reps=reps, max_reps=reps, warmup=warmup,
                             time_budget=1e9)
        t = time_call(comm, point.call, opts, native=point.native)
        if t.timing_loop != "c":
            raise SystemExit(f"the compiled loop was not used for {op} {nbytes} B")
        py = float("nan")
        if python_loop:
            tp = time_call(comm, point.call, opts)
            py = float(np.median(tp.max_s))
        if comm.Get_rank() == 0:
            print(f"{nbytes} {np.median(t.max_s):.9e} {py:.9e}", flush=True)


# ---------------------------------------------------------------------------- driver

def _launcher(ranks: int) -> tuple[list, dict]:
    """mpiexec command prefix and environment for ``ranks`` ranks of this library."""
    mpiexec = _tool("mpiexec")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["COLLCOST_TIMING_LOOP"] = "c"
    cmd = [mpiexec, "-n", str(ranks)]
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                             timeout=30)
    text = version.stdout + version.stderr
    over = ranks > (os.cpu_count() or 1)
    if "Open MPI" in text or "OpenRTE" in text:
        if os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
        if over:
            cmd.append("--oversubscribe")
    elif over:
        env.setdefault("MPIR_CVAR_DEVICE_COLLECTIVES", "none")
        env.setdefault("I_MPI_PIN", "0")
    if over:
        print(f"warning: {ranks} ranks on {os.cpu_count()} cores: oversubscribed, "
              "timings are not representative", file=sys.stderr)
    return cmd, env


def _run(cmd: list, env: dict, timeout: float) -> str:
    full = ["timeout", "-k", "5", str(int(timeout))] + cmd
    proc = subprocess.run(full, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: launch failed with exit status {proc.returncode}: "
                         f"{' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def _parse(out: str) -> dict:
    rows = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].isdigit():
            rows[int(f[0])] = [float(v) for v in f[1:]]
    return rows


def build_reference(lib: dict, rebuild: bool) -> Path:
    """The reference loop built against ``lib`` (one binary per library and source)."""
    from collectives import cloop
    tag = hashlib.sha256((lib["path"] + lib["version"]).encode()
                         + SOURCE.read_bytes()).hexdigest()[:12]
    binary = BUILD / tag / "timing_loop"
    if rebuild or not binary.exists():
        cmd = cloop.compile_program(SOURCE, binary, lib)
        print("built the reference:", " ".join(cmd), file=sys.stderr)
    return binary


def prepare_worker(rebuild: bool) -> None:
    """Under a 1-rank mpiexec: build (or find) both loops, print their record as JSON
    (the driver itself never initializes MPI: its children are mpiexec launches)."""
    import json

    from collectives import cloop
    from collectives.mpi import MPI  # noqa: F401 -- the library this Python uses

    lib = cloop.library_info()
    try:
        cloop.load()
    except cloop.LoopUnavailable as exc:
        print(json.dumps({"error": f"collcost's compiled loop is unavailable: {exc}"}))
        return
    try:
        binary = build_reference(lib, rebuild)
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}))
        return
    print(json.dumps({"library": lib, "loop": cloop.describe(), "reference": str(binary)}))


def run(args) -> int:
    import json

    import numpy as np

    launcher, env = _launcher(args.ranks)
    one = [a if a != str(args.ranks) or i != 2 else "1" for i, a in enumerate(launcher)]
    out = _run(one + [sys.executable, "-m", "mpi4py", str(Path(__file__).resolve()),
                      "--prepare", "1" if args.rebuild else "0"], env, args.timeout)
    prep = json.loads(out.strip().splitlines()[-1])
    if "error" in prep:
        raise SystemExit(f"error: {prep['error']}")
    lib, info, binary = prep["library"], prep["loop"], prep["reference"]
    first = lib["version"].splitlines()[0]
    print(f"# MPI library: {first} ({lib['path']})")
    print(f"# collcost loop: {info['path']} built by {info['compiler']} "
          f"(header {info['header']})")
    print(f"# reference: {binary}")
    print(f"# {args.ranks} ranks, {args.launches} launches per side, barrier before "
          "every repetition, float32; median over launches of per-launch medians (max "
          f"over ranks); ping-pong: half round trip; load average at start "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    met = True
    for op in args.ops:
        if op == "pingpong" and args.ranks != 2:
            print(f"\n{op}: skipped (needs --ranks 2)")
            continue
        sizes = [s for s in args.sizes if valid(op, s, args.ranks)]
        if not sizes:
            print(f"\n{op}: no size fits (multiples of {4 * args.ranks} B needed)")
            continue
        specs = [f"{s}:{reps_for(s, args.reps_scale)}" for s in sizes]
        ref_cmd = launcher + [str(binary), op, "1", str(args.warmup)] + specs
        our_cmd = launcher + [sys.executable, "-m", "mpi4py", str(Path(__file__).resolve()),
                              "--worker", op, str(args.warmup),
                              "0" if args.no_python else "1"] + specs
        res = {"ref": [], "ours": []}
        for i in range(args.launches):
            order = (("ref", ref_cmd), ("ours", our_cmd))
            for side, cmd in (order if i % 2 == 0 else order[::-1]):
                print(f"{op}: launch {i + 1}/{args.launches} ({side})", file=sys.stderr)
                res[side].append(_parse(_run(cmd, env, args.timeout)))
        half = 0.5 if op == "pingpong" else 1.0
        print(f"\n{op}\n{'bytes':>9} {'ref µs':>9} {'C loop µs':>10} {'C/ref':>7} "
              f"{'diff µs':>8} {'paired µs':>9} {'Py loop µs':>10} {'Py/ref':>7}  target")
        for s in sizes:
            ref = np.array([r[s][0] for r in res["ref"]]) * half
            ours = np.array([r[s][0] for r in res["ours"]]) * half
            py = np.array([r[s][1] for r in res["ours"]]) * half
            rm, cm = float(np.median(ref)), float(np.median(ours))
            pm = float(np.median(py)) if np.isfinite(py).any() else float("nan")
            paired = float(np.median(ours - ref))
            ok, text = verdict(op, s, rm, rm + paired)
            met &= ok
            print(f"{s:>9} {rm * 1e6:>9.3f} {cm * 1e6:>10.3f} {cm / rm:>7.3f} "
                  f"{(cm - rm) * 1e6:>+8.3f} {paired * 1e6:>+9.3f} "
                  f"{pm * 1e6:>10.3f} {pm / rm:>7.3f}  {text}")
        for s in sizes[:1]:  # launch-to-launch spread: how busy the machine was
            print(f"  per-launch medians at {s} B (µs): reference "
                  + " ".join(f"{r[s][0] * half * 1e6:.3f}" for r in res["ref"])
                  + "; C loop " + " ".join(f"{r[s][0] * half * 1e6:.3f}" for r in res["ours"]))
    print(f"\nall targets {'met' if met else 'NOT met'}; load average at end "
          f"{os.getloadavg()[0]:.1f}")
    print("rerun on a quiet machine: " + " ".join(shlex.quote(a) for a in
                                                  [sys.executable] + sys.argv))
    return 0 if met or not args.strict else 1


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated integers, "
                                         f"got {text!r}") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be > 0 bytes, got {text!r}")
    return sorted(set(sizes))


def _parse_ops(text: str) -> list[str]:
    ops = [s for s in text.split(",") if s]
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise argparse.ArgumentTypeError(f"ops must be among {', '.join(OPS)}, got {text!r}")
    return list(dict.fromkeys(ops))


def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not v > 0 or v == float("inf"):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return v
    return parse


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--prepare"]:
        prepare_worker(argv[1:2] == ["1"])
        return 0
    if argv[:1] == ["--worker"]:
        if len(argv) < 5 or argv[1] not in OPS:
            print("usage: bench_c_loop.py --worker OP WARMUP 0|1 BYTES:REPS...",
                  file=sys.stderr)
            return 2
        worker(argv[1], int(argv[2]), argv[3] == "1", argv[4:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--ranks", type=_positive(int), default=2,
                   help="MPI ranks of every launch (default 2; the ping-pong needs 2)")
    p.add_argument("--launches", type=_positive(int), default=5,
                   help="launches of each side per op; medians over them (default 5)")
    p.add_argument("--ops", type=_parse_ops, default=list(OPS),
                   help=f"comma-separated operations among {', '.join(OPS)} (default all)")
    p.add_argument("--sizes", type=_parse_sizes, default=_parse_sizes(DEFAULT_SIZES),
                   help=f"comma-separated message sizes in bytes (default {DEFAULT_SIZES}); "
                        "sizes an operation cannot run (float32 elements, whole blocks "
                        "per rank) are skipped for it")
    p.add_argument("--warmup", type=_positive(int), default=100,
                   help="untimed calls before each size, both sides (default 100)")
    p.add_argument("--reps-scale", type=_positive(float), default=1.0,
                   help="multiply the repetition counts (10000 up to 8 KiB, 1000 up to "
                        "256 KiB, 200 above) by this (default 1)")
    p.add_argument("--no-python", action="store_true",
                   help="skip the Python loop's column (faster)")
    p.add_argument("--timeout", type=_positive(float), default=300,
                   help="seconds before a launch is killed (default 300)")
    p.add_argument("--rebuild", action="store_true", help="recompile the reference loop")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a target is missed")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
