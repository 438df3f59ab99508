"""The timing harness: time one prepared operation on a communicator, adaptively.

:func:`time_call` is collective over ``comm``.  ``call()`` performs ONE operation (a
zero-argument callable the caller prepared with buffers and MPI message specs already
built, ideally ``functools.partial(comm.Allreduce, sspec, rspec, op)`` with
``sspec = [memoryview(a), a.size, MPI.FLOAT]``: a builtin partial adds no Python frame
and prebuilt specs skip mpi4py's buffer-type guessing, 0.1-0.3 µs per call here).

Two loops time the repetitions.  For the MPI library's own operations (native
collectives and the ping-pong) :func:`time_call` takes ``native=`` (a
:class:`collectives.cloop.NativeOp`, which :func:`collectives.operations.prepare` builds)
and every batch -- the starts, the timed call, the per-repetition times -- runs in C
(:mod:`collectives.cloop`, compiled against mpi4py's MPI library and cached): the time
is the library's, not Python's.  Everything else (hand-written algorithms, device
buffers, any ``before`` hook) runs in the Python loops below.  Where a small-message
time goes with the Python loop (idle machine, 2 ranks, 4-byte Allreduce, barrier
starts; ``benchmarks/bench_overhead.py``): C loop 0.39 µs, Python loop 1.12 µs.  The
+0.73 µs is mpi4py's own call (0.58 µs per Allreduce at 1 rank against 0.03 µs from C;
a ctypes call of ``MPI_Allreduce`` per repetition still costs 0.46 µs, which is why the
compiled loop runs whole batches) plus the timer reads (an empty call times 0.09 µs).
``benchmarks/bench_c_loop.py`` compares the compiled loop with the C reference loop.
Which loop timed a point is :attr:`Timing.timing_loop` (``"c"`` | ``"python"``); both
loops use the same starts, clock and statistics.

Per repetition every rank measures its own time; rank 0 gets, per repetition, the
maximum over ranks (the repetition's time), the minimum and the mean.  Two start modes:

``barrier`` (OSU style)
    ``comm.Barrier()`` (untimed), then ``t0 = clock(); call(); t1 = clock()``.
``window`` (ReproMPI style)
    Clock offsets to rank 0 are estimated once per communicator
    (:mod:`collectives.clocksync`); rank 0 broadcasts a start time and repetition ``k``
    starts at ``start + k * window`` on each rank's corrected clock (busy wait).  A
    rank's time is its exit time minus the window boundary, so the maximum over ranks is
    "last exit - common start" in global time.  A repetition in which any rank started
    more than ``late_tolerance`` after the boundary is discarded and counted.  The
    automatic window is ``2 * p90 of the warm-up call times + 20 µs`` and is doubled
    (up to 10 ms) after any batch whose p90 call time exceeds half of it; a window
    given in the options is kept fixed.  Late starts do not grow the window: on a
    shared machine they come from preemption, which longer windows do not cure.
    Ranks spin until their boundary; only waits above 20 ms sleep first (to 10 ms
    before it), because a sleep lets other jobs evict the caches -- measured here, a
    4-byte Allreduce after a 1 ms sleep-then-spin wait took 10 µs against 1.1 µs after
    a pure spin.

Warm-up (excluded): ``warmup`` calls with barrier starts; ``None`` means automatic: 3
calls, then as many as fill 1% of the time budget at their observed speed (at most
1000).  An automatic window needs at least one warm-up call to size it; ``warmup`` in
the result counts every untimed call.  Then batches of repetitions; between batches
(outside the timed region) the per-repetition times are reduced to rank 0, which applies
:func:`collectives.stats.stop_reason` and broadcasts its decision and the next batch
size (:func:`collectives.stats.next_batch_size`: ``min_reps`` first, then +25% each
time, so the CI is recomputed a logarithmic number of times).  ``time_budget`` is wall
time on rank 0 from the first timed repetition (warm-up, clock sync and calibration
excluded), checked between batches: a point overruns it by at most about one
repetition at the observed rate.  The garbage collector is off while a point is timed.

Timer: ``time.perf_counter_ns`` (``CLOCK_MONOTONIC``, integer nanoseconds).  Measured
here, one read costs 50-60 ns, the same as ``MPI.Wtime`` (which MPICH also serves
from a monotonic clock); we prefer it because it returns exact integers (differences
never round), it is the clock of the C reference loop (``benchmarks/c/timing_loop.c``)
and of :mod:`collectives.clocksync`, and it needs no MPI (tests inject skewed clocks).
Its effective resolution is bounded by the cost of a read (successive reads differ by
at least ~50 ns).  :func:`timer_properties` and :func:`harness_overhead` measure both
on the machine at hand so every run records them.

Default start mode: ``barrier``, chosen from ``python benchmarks/bench_overhead.py
--compare-sync`` on this 2-core machine (Allreduce, default adaptive options, 0.3 s
budget, median of 3 launches, load average ~3 from other jobs):

=====  ========  ==================================  ==================================
ranks  bytes     barrier: median / CI / s per point  window: median / CI / discarded
=====  ========  ==================================  ==================================
2      4         1.21 µs / 4.0% / 0.02 s             1.48 µs / 33% / 61 of 153
2      64 KiB    18.7 µs / 4.0% / 0.00 s             22.3 µs / 5.0% / 29 of 95
2      1 MiB     659 µs / 3.5% / 0.05 s              729 µs / 13% / 21 of 32
4      any       ms (oversubscribed)                 every start late: no result
=====  ========  ==================================  ==================================

Barrier starts reach the CI target an order of magnitude sooner, give equal or lower
medians, discard nothing, need no clock synchronization and are what the C reference
loop and OSU do.  Window starts need a core per rank: busy-waiting ranks that share
cores (more ranks than cores, or other jobs on the machine) are preempted across their
boundaries, and most starts are discarded.  With dedicated cores and a fixed window
they do remove the barrier's exit skew (4-byte Allreduce, p=2, idle: 1.12 µs window
against 1.17 µs barrier), so use ``window`` across nodes, where that skew is larger.

An exception raised by ``call`` on one rank leaves the others waiting: run programs
that use the harness under ``python -m mpi4py`` (the sweep does).
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass

import numpy as np

from . import stats
from .clocksync import clock_model, window_targets

__all__ = ["TimingOptions", "Timing", "time_call", "timer_properties",
           "harness_overhead", "SYNC_MODES", "DEFAULT_SYNC"]

SYNC_MODES = ("barrier", "window")
DEFAULT_SYNC = "barrier"

_clock = time.perf_counter_ns
_AUTO_WARMUP_MIN = 3
_AUTO_WARMUP_MAX = 1000
_AUTO_WARMUP_FRACTION = 0.01
_WINDOW_FLOOR_S = 20e-6
_WINDOW_BUSY_FRACTION = 0.5   # double an automatic window when p90 of calls exceeds this
_WINDOW_MAX_S = 1.0          # largest window accepted in the options
_WINDOW_MAX_AUTO_S = 0.01    # automatic windows stop doubling here
_START_LEAD_S = 1e-3         # first boundary of a batch: this long after the broadcast
_SLEEP_ABOVE_NS = 20_000_000  # waits longer than this sleep, then spin the last
_SPIN_LAST_NS = 10_000_000    # (a sleep lets other jobs evict our caches: 10 µs vs 1.1 µs)

# control words broadcast by rank 0 between batches
_GO, _STOP = 0, 1


def _whole(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


@dataclass(frozen=True)
class TimingOptions:
    """How :func:`time_call` times one point (module docstring for the semantics).

    sync
        ``"barrier"`` or ``"window"`` start of every repetition.
    target_ci
        stop when the 95% CI of the median is within this fraction of it (wider side).
    time_budget
        seconds of wall time on rank 0 per point, from the first timed repetition
        (warm-up, clock sync and window calibration excluded), checked between batches.
    min_reps, max_reps
        kept repetitions per point, at least / at most (``min_reps`` wins over the
        budget up to ``stats.HARD_LIMIT`` budgets).
    warmup
        untimed calls before timing; None: automatic (3, then ~1% of the budget, <= 1000).
    window
        window length in seconds for ``sync="window"``; None: automatic (sized from the
        warm-up, doubled while the p90 call time exceeds half of it, up to 10 ms).
    late_tolerance
        seconds after its window boundary a rank may start before the repetition is
        discarded as a late start (window mode).
    """

    sync: str = DEFAULT_SYNC
    target_ci: float = 0.05
    time_budget: float = 1.0
    min_reps: int = 10
    max_reps: int = 100000
    warmup: int | None = None
    window: float | None = None
    late_tolerance: float = 1e-6

    def __post_init__(self):
        if self.sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(SYNC_MODES)}, got {self.sync!r}")
        for name in ("target_ci", "time_budget"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        _whole("min_reps", self.min_reps, 1)
        _whole("max_reps", self.max_reps, 1)
        if self.max_reps < self.min_reps:
            raise ValueError(f"max_reps ({self.max_reps}) must be >= min_reps ({self.min_reps})")
        if self.warmup is not None:
            _whole("warmup", self.warmup, 0)
        if self.window is not None and (isinstance(self.window, bool)
                                        or not isinstance(self.window, (int, float))
                                        or not 0 < self.window <= _WINDOW_MAX_S):
            raise ValueError(f"window must be None or seconds in (0, {_WINDOW_MAX_S}], "
                             f"got {self.window!r}")
        if not isinstance(self.late_tolerance, (int, float)) or not self.late_tolerance >= 0:
            raise ValueError(f"late_tolerance must be seconds >= 0, got {self.late_tolerance!r}")


@dataclass
class Timing:
    """Per-repetition times of one point; identical on every rank after :func:`time_call`."""

    max_s: np.ndarray
    min_s: np.ndarray
    mean_s: np.ndarray
    discarded: int
    warmup: int
    stop_rule: str
    sync: str = DEFAULT_SYNC
    window_s: float | None = None
    elapsed_s: float = 0.0
    target_ci: float = 0.05
    #: which loop timed the repetitions: "c" (collectives.cloop) or "python"
    timing_loop: str = "python"

    def summary(self) -> dict:
        """``stats.summarize(max_s)`` plus discarded, warmup, stop_rule, sync, timing_loop.

        ``unstable`` is also set when the point stopped for any reason other than
        ``ci``.
        """
        out = stats.summarize(self.max_s, target_ci=self.target_ci)
        out.update(discarded=int(self.discarded), warmup=int(self.warmup),
                   stop_rule=self.stop_rule, sync=self.sync, timing_loop=self.timing_loop)
        out["unstable"] = bool(out["unstable"] or self.stop_rule != "ci")
        return out

    def samples(self) -> dict:
        """Per-repetition seconds as lists, the ``samples`` value of a points.jsonl row."""
        return {"max": self.max_s.tolist(), "min": self.min_s.tolist(),
                "mean": self.mean_s.tolist()}


# --------------------------------------------------------------------------------
# Timed loops.  Kept as tight as CPython allows: locals only, no attribute lookups,
# integer nanoseconds, results stored after the second clock read.
# --------------------------------------------------------------------------------

def _barrier_batch(call, barrier, n, before):
    clock = _clock
    t = [0] * n
    if before is None:
        for i in range(n):
            barrier()
            t0 = clock()
            call()
            t[i] = clock() - t0
    else:
        for i in range(n):
            before()
            barrier()
            t0 = clock()
            call()
            t[i] = clock() - t0
    return t


def _window_batch(call, targets, before):
    clock = _clock
    sleep = time.sleep
    n = len(targets)
    t = [0] * n
    late = [0] * n
    for i in range(n):
        if before is not None:
            before()
        target = targets[i]
        s = clock()
        if target - s > _SLEEP_ABOVE_NS:   # very long wait: give the core away first
            sleep((target - s - _SPIN_LAST_NS) * 1e-9)
            s = clock()
        while s < target:
            s = clock()
        call()
        t[i] = clock() - target
        late[i] = s - target
    return t, late


# --------------------------------------------------------------------------------

def _check_args(comm, call, options, before, native=None):
    for name in ("Get_rank", "Get_size", "Barrier", "Bcast", "Reduce"):
        if not hasattr(comm, name):
            raise TypeError(f"comm must be an MPI communicator, got {type(comm).__name__}")
    if not callable(call):
        raise TypeError(f"call must be a zero-argument callable, got {type(call).__name__}")
    if before is not None and not callable(before):
        raise TypeError(f"before must be None or a zero-argument callable, got "
                        f"{type(before).__name__}")
    if native is not None and type(native).__name__ != "NativeOp":
        raise TypeError(f"native must be None or a collectives.cloop.NativeOp, got "
                        f"{type(native).__name__}")
    if not isinstance(options, TimingOptions):
        raise TypeError(f"options must be a TimingOptions, got {type(options).__name__}")


class _PythonRunner:
    """Batches timed by the Python loops above (any call; ``before`` hooks)."""

    loop = "python"

    def __init__(self, comm, call, before):
        self.comm, self.call, self.before = comm, call, before

    def barrier(self, n: int) -> np.ndarray:
        t = _barrier_batch(self.call, self.comm.Barrier, int(n), self.before)
        return np.asarray(t, dtype=np.int64)

    def window(self, targets) -> tuple:
        t, late = _window_batch(self.call, targets, self.before)
        return np.asarray(t, dtype=np.int64), np.asarray(late, dtype=np.int64)


def _runner(comm, call, before, native):
    """The C loop's runner when ``native`` is given, no ``before`` hook is, and every
    rank of ``comm`` can use it (one collective vote); else the Python runner."""
    if native is None:
        return _PythonRunner(comm, call, before)
    from . import cloop
    local = None
    if before is None:
        try:
            local = cloop.runner(comm, native)
        except cloop.LoopUnavailable:
            if cloop.mode() == "c":
                raise
    if cloop.agree(comm, local is not None):
        return local
    if cloop.mode() == "c":
        raise cloop.LoopUnavailable(f"{cloop.ENV_MODE}=c but another rank cannot use "
                                    "the C loop" if local is not None else
                                    f"{cloop.ENV_MODE}=c but a 'before' hook needs the "
                                    "Python loop")
    return _PythonRunner(comm, call, before)


def _warmup(comm, runner, options, calibrate):
    """Run the warm-up; return (untimed calls made, p90 of their max over ranks in s).

    With ``calibrate`` (automatic window) at least one call is made even when
    ``options.warmup == 0``, and counted.
    """
    from .mpi import MPI

    if options.warmup is not None:
        t = runner.barrier(max(options.warmup, int(calibrate)))
    else:
        t = runner.barrier(_AUTO_WARMUP_MIN)
        slowest = comm.allreduce(int(t.max()), op=MPI.MAX)
        extra = int(min(_AUTO_WARMUP_MAX - _AUTO_WARMUP_MIN,
                        _AUTO_WARMUP_FRACTION * options.time_budget / max(slowest * 1e-9, 1e-9)))
        t = np.concatenate([t, runner.barrier(extra)])
    if not calibrate or not t.size:
        return int(t.size), 0.0
    local = t
    p90 = np.empty_like(local)
    comm.Allreduce(local, p90, op=MPI.MAX)
    return len(t), float(np.percentile(p90, 90)) * 1e-9


class _Point:
    """Rank 0's bookkeeping of one point between batches."""

    def __init__(self, options: TimingOptions, window_s: float | None):
        self.options = options
        self.window_s = window_s
        self.kept = {"max": [], "min": [], "mean": []}
        self.n_kept = 0
        self.discarded = 0
        self.rule = None
        self.t_begin = _clock()

    def elapsed(self) -> float:
        return (_clock() - self.t_begin) * 1e-9

    def decide(self, ctrl: np.ndarray) -> None:
        """Fill ``ctrl`` = [GO/STOP, batch, start_ns, window_ns] for the next batch."""
        o = self.options
        elapsed = self.elapsed()
        kept_max = np.concatenate(self.kept["max"]) if self.kept["max"] else np.empty(0)
        self.rule = stats.stop_reason(kept_max, elapsed, target_ci=o.target_ci,
                                      time_budget=o.time_budget, min_reps=o.min_reps,
                                      max_reps=o.max_reps)
        if self.rule is not None:
            ctrl[:] = (_STOP, 0, 0, 0)
            return
        batch = stats.next_batch_size(self.n_kept, elapsed, min_reps=o.min_reps,
                                      max_reps=o.max_reps, time_budget=o.time_budget)
        ctrl[:] = (_GO, batch, 0, 0)
        if self.window_s is not None:
            window_ns = int(self.window_s * 1e9)
            ctrl[2] = _clock() + int(_START_LEAD_S * 1e9) + window_ns
            ctrl[3] = window_ns

    def add(self, hi: np.ndarray, lo: np.ndarray, tot: np.ndarray, size: int) -> None:
        """Keep the repetitions no rank started late; adapt an automatic window."""
        ok = hi[1] <= self.options.late_tolerance * 1e9
        if (self.window_s is not None and self.options.window is None
                and np.percentile(hi[0], 90) * 1e-9 > _WINDOW_BUSY_FRACTION * self.window_s):
            self.window_s = max(self.window_s, min(2.0 * self.window_s, _WINDOW_MAX_AUTO_S))
        self.kept["max"].append(hi[0][ok] * 1e-9)
        self.kept["min"].append(lo[ok] * 1e-9)
        self.kept["mean"].append(tot[ok] * (1e-9 / size))
        late = int(ok.size - ok.sum())
        self.n_kept += ok.size - late
        self.discarded += late

    def samples(self) -> np.ndarray:
        return np.stack([np.concatenate(self.kept[k]) if self.kept[k] else np.empty(0)
                         for k in ("max", "min", "mean")])


def _run_batch(runner, ctrl, model):
    """One batch on this rank: int64 array [per-repetition ns, start lateness ns]."""
    batch = int(ctrl[1])
    if model is None:
        return np.stack([runner.barrier(batch), np.zeros(batch, dtype=np.int64)])
    targets = window_targets(model, int(ctrl[2]), int(ctrl[3]), batch)
    return np.stack(runner.window(targets))


def _reduce_batch(comm, local, point):
    """Max (times and lateness), min and sum over ranks to rank 0, which keeps them."""
    from .mpi import MPI

    root = comm.Get_rank() == 0
    n = local.shape[1]
    hi = np.empty_like(local) if root else None
    lo = np.empty(n, dtype=np.int64) if root else None
    tot = np.empty(n, dtype=np.int64) if root else None
    comm.Reduce(local, hi, op=MPI.MAX, root=0)
    comm.Reduce(local[0], lo, op=MPI.MIN, root=0)
    comm.Reduce(local[0], tot, op=MPI.SUM, root=0)
    if root:
        point.add(hi, lo, tot, comm.Get_size())


def _share(comm, point, options, n_warm, loop) -> Timing:
    """Broadcast rank 0's result so every rank returns the same :class:`Timing`."""
    root = comm.Get_rank() == 0
    head = np.zeros(3, dtype=np.int64)
    fhead = np.zeros(2, dtype=np.float64)
    if root:
        head[:] = (point.n_kept, point.discarded, stats.STOP_RULES.index(point.rule))
        fhead[:] = (point.elapsed(), point.window_s or 0.0)
    comm.Bcast(head, root=0)
    comm.Bcast(fhead, root=0)
    data = point.samples() if root else np.empty((3, int(head[0])), dtype=np.float64)
    comm.Bcast(data, root=0)
    return Timing(max_s=data[0].copy(), min_s=data[1].copy(), mean_s=data[2].copy(),
                  discarded=int(head[1]), warmup=n_warm,
                  stop_rule=stats.STOP_RULES[int(head[2])], sync=options.sync,
                  window_s=float(fhead[1]) if options.sync == "window" else None,
                  elapsed_s=float(fhead[0]), target_ci=options.target_ci,
                  timing_loop=loop)


def time_call(comm, call, options: TimingOptions = TimingOptions(), *, before=None,
              native=None) -> Timing:
    """Collective over ``comm``: time ``call()`` adaptively (module docstring).

    ``before`` is an optional zero-argument callable run untimed before each repetition
    (e.g. device synchronize or buffer reset); in window mode it must fit in the window.
    ``native`` (a :class:`collectives.cloop.NativeOp` doing what ``call`` does) lets the
    compiled loop time the batches instead; it is used when every rank can load that
    loop and no ``before`` hook is given, else ``call`` is timed by the Python loop.
    Every rank must pass ``native`` or none.  ``Timing.timing_loop`` says which timed.
    Returns a :class:`Timing`, identical on every rank.
    """
    _check_args(comm, call, options, before, native)
    runner = _runner(comm, call, before, native)
    window_mode = options.sync == "window"
    enabled = gc.isenabled()
    gc.disable()
    try:
        auto_window = window_mode and options.window is None
        n_warm, warm_p90 = _warmup(comm, runner, options, auto_window)
        model, window_s = None, None
        if window_mode:
            model = clock_model(comm)
            window_s = options.window or min(2.0 * warm_p90 + _WINDOW_FLOOR_S,
                                             _WINDOW_MAX_AUTO_S)
        point = _Point(options, window_s) if comm.Get_rank() == 0 else None
        ctrl = np.zeros(4, dtype=np.int64)
        while True:
            if point is not None:
                point.decide(ctrl)
            comm.Bcast(ctrl, root=0)
            if ctrl[0] == _STOP:
                break
            _reduce_batch(comm, _run_batch(runner, ctrl, model), point)
    finally:
        if enabled:
            gc.enable()
    return _share(comm, point, options, n_warm, runner.loop)


def timer_properties(samples: int = 20000) -> dict:
    """Resolution and per-read overhead of the harness's clock, measured now.

    ``resolution_s``: smallest positive difference between successive reads (at least
    the resolution the OS reports); ``overhead_s``: median cost of one read.
    """
    _whole("samples", samples, 2)
    clock = _clock
    reads = [clock() for _ in range(samples)]
    d = np.diff(np.asarray(reads, dtype=np.int64))
    positive = d[d > 0]
    info = time.get_clock_info("perf_counter")
    resolution = max(float(positive.min()) * 1e-9 if positive.size else math.nan,
                     float(info.resolution))
    return {"name": "time.perf_counter_ns", "implementation": info.implementation,
            "resolution_s": resolution, "overhead_s": float(np.median(d)) * 1e-9}


def _noop():
    return None


def harness_overhead(comm, options: TimingOptions = TimingOptions(), *,
                     loop: str = "python") -> float:
    """Collective: median seconds the harness adds per call (time_call of an empty call).

    This is the floor under every measured time: clock reads, the Python call and, in
    window mode, the start check.  Compare it with small-message medians to see how
    much of them is Python.  NaN when every repetition was discarded (window mode
    with more busy-waiting ranks than cores).  ``loop="c"``: the compiled loop's floor
    (an empty operation timed in C); NaN when that loop is not used on ``comm``.
    """
    if loop not in ("python", "c"):
        raise ValueError(f"loop must be 'python' or 'c', got {loop!r}")
    native = None
    if loop == "c":
        from .cloop import NativeOp
        native = NativeOp("noop")
    t = time_call(comm, _noop, options, native=native)
    if t.timing_loop != loop:
        return math.nan
    kept = t.max_s
    return float(np.median(kept)) if kept.size else math.nan
