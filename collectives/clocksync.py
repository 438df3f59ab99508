"""Clock offsets of every rank against rank 0, and window-based start scheduling.

``MPI.WTIME_IS_GLOBAL`` is false with MPICH: timestamps of different ranks cannot be
compared until each rank knows how its clock relates to rank 0's.  We estimate that the
SKaMPI / ReproMPI way: rank 0 and each other rank in turn exchange ``rounds``
ping-pongs; rank ``r`` sends at local time ``ts``, rank 0 answers with its own time
``t0``, ``r`` receives at ``te``; the candidate offset is ``(ts + te) / 2 - t0`` and
the candidate of the shortest round trip wins (its error is at most half that round
trip, printed as ``error_ns``).  Optionally (``drift=True``) the estimate is repeated
after ``drift_interval`` seconds and a linear drift fitted between the two, for runs
long enough that clocks of different hosts wander apart (on one host all ranks read the
same ``CLOCK_MONOTONIC``: ranks on rank 0's host whose estimate is within its error
of 0 use exactly 0).

Times are integers in nanoseconds of ``time.perf_counter_ns`` (``CLOCK_MONOTONIC``);
"global" time is rank 0's clock.  The model of one rank is::

    local = global + offset_ns + slope * (global - ref_ns)

Estimates are cached on the communicator (an MPI attribute), so a sweep pays for them
once per communicator.  Clock-sync traffic runs on a private duplicate of the
communicator and can never match a user's message.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["ClockModel", "estimate_offset", "clock_model", "window_targets"]

_TAG = 7177


@dataclass(frozen=True)
class ClockModel:
    """This rank's clock against rank 0's: ``local = global + offset + slope*(global-ref)``."""

    offset_ns: float = 0.0
    slope: float = 0.0
    ref_ns: int = 0
    error_ns: float = 0.0   # half the best round trip: bound on the offset's error

    def to_local(self, global_ns):
        """Local clock reading (ns) at rank-0 time ``global_ns`` (scalar or array)."""
        g = np.asarray(global_ns, dtype=np.float64)
        return g + self.offset_ns + self.slope * (g - self.ref_ns)

    def to_global(self, local_ns):
        """Rank-0 time (ns) at local clock reading ``local_ns`` (inverse of :meth:`to_local`)."""
        t = np.asarray(local_ns, dtype=np.float64)
        return (t - self.offset_ns + self.slope * self.ref_ns) / (1.0 + self.slope)


def _check_rounds(rounds):
    if isinstance(rounds, bool) or int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be a whole number >= 1, got {rounds!r}")
    return int(rounds)


def estimate_offset(comm, *, rounds: int = 30, clock=time.perf_counter_ns):
    """Collective: ``(offset_ns, error_ns, mid_ns)`` of this rank's clock against rank 0.

    ``mid_ns`` is the rank-0 time of the chosen exchange (for drift fits).  Rank 0 gets
    ``(0.0, 0.0, its time)``.  ``clock`` is injectable so tests can skew a rank's clock.
    Ranks are served one after the other, so the cost is ``(p-1) * rounds`` round trips.
    """
    rounds = _check_rounds(rounds)
    rank, size = comm.Get_rank(), comm.Get_size()
    buf = np.zeros(1, dtype=np.int64)
    if rank == 0:
        for peer in range(1, size):
            for _ in range(rounds):
                comm.Recv(buf, source=peer, tag=_TAG)
                buf[0] = clock()
                comm.Send(buf, dest=peer, tag=_TAG)
        comm.Barrier()
        return 0.0, 0.0, int(clock())
    best_rtt, best = None, None
    for _ in range(rounds):
        ts = clock()
        comm.Send(buf, dest=0, tag=_TAG)
        comm.Recv(buf, source=0, tag=_TAG)
        te = clock()
        rtt = te - ts
        if best_rtt is None or rtt < best_rtt:
            best_rtt, best = rtt, ((ts + te) / 2.0 - float(buf[0]), int(buf[0]))
    comm.Barrier()
    return best[0], best_rtt / 2.0, best[1]


_KEYVAL = None


def _shares_clock_with_root(comm, offset_ns: float, error_ns: float) -> bool:
    """Collective: True on ranks whose host is rank 0's and whose estimate is within
    its error of 0.  Processes of one Linux host read one ``CLOCK_MONOTONIC``; using
    exactly 0 there removes the estimate's error (up to half a round trip, several µs
    on a loaded machine) from every window start."""
    from .mpi import MPI

    names = comm.allgather(MPI.Get_processor_name())
    return names[comm.Get_rank()] == names[0] and abs(offset_ns) <= error_ns


def _keyval(MPI):
    global _KEYVAL
    if _KEYVAL is None:
        _KEYVAL = MPI.Comm.Create_keyval()
    return _KEYVAL


def clock_model(comm, *, rounds: int = 30, drift: bool = False,
                drift_interval: float = 0.2, clock=time.perf_counter_ns,
                refresh: bool = False) -> ClockModel:
    """Collective: this rank's :class:`ClockModel`, estimated once per communicator.

    The model is cached on ``comm`` (for the default ``clock`` only) unless
    ``refresh``.  With ``drift``, two estimates ``drift_interval`` seconds apart give
    the slope.
    """
    from .mpi import MPI

    rounds = _check_rounds(rounds)
    if drift and not drift_interval > 0:
        raise ValueError(f"drift_interval must be > 0 seconds, got {drift_interval!r}")
    cache = clock is time.perf_counter_ns
    key = _keyval(MPI)
    cached = (comm.Get_attr(key) or {}) if cache else {}
    if not refresh:
        # the same decision on every rank: it depends only on the calls made so far
        if True in cached:
            return cached[True]
        if not drift and False in cached:
            return cached[False]
    private = comm.Dup()
    try:
        off, err, mid = estimate_offset(private, rounds=rounds, clock=clock)
        slope = 0.0
        if drift:
            time.sleep(drift_interval)
            off2, err2, mid2 = estimate_offset(private, rounds=rounds, clock=clock)
            if comm.Get_rank() != 0 and mid2 != mid:
                slope = (off2 - off) / float(mid2 - mid)
            err = max(err, err2)
        if _shares_clock_with_root(private, off, err):
            off, slope = 0.0, 0.0
    finally:
        private.Free()
    model = ClockModel(offset_ns=float(off), slope=float(slope), ref_ns=int(mid),
                       error_ns=float(err))
    if cache:
        cached = dict(cached)
        cached[bool(drift)] = model
        comm.Set_attr(key, cached)
    return model


def window_targets(model: ClockModel, start_global_ns: int, window_ns: int,
                   count: int) -> list:
    """Local clock readings (int ns) of the ``count`` window boundaries
    ``start + k * window`` (k = 0..count-1) of rank-0 time ``start_global_ns``."""
    if window_ns <= 0:
        raise ValueError(f"window_ns must be > 0, got {window_ns!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    g = start_global_ns + window_ns * np.arange(count, dtype=np.float64)
    return np.ceil(model.to_local(g)).astype(np.int64).tolist()

