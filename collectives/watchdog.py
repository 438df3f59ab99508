"""Deadlines for every wait of an MPI job, and ending the job cleanly.

:class:`Watchdog` is a thread that ends the process with status 3 when the phase or
point it guards outlives its deadline, printing which (``collcost: point LABEL
exceeded --point-timeout 5s (rank R)`` or ``collcost: phase 'NAME' exceeded its
deadline of 60s (from --point-timeout) (rank R)``).  It ends the job with
``MPI_Abort(status 3)`` from its own thread (:func:`end_job`), which works while
the main thread is stuck inside MPI, where Python signal handlers would never run.
Once one rank exits, the launcher ends the others, so one watchdog that fires ends
the whole job: a rank that is stopped or killed can never leave the others waiting.

Each command guards all its collective waits::

    wd = Watchdog(timeout, rank=rank)
    with wd.phase("harness overhead probe"):
        ...                                   # collective calls
    wd.arm("allreduce/native/intra/4/8B")     # a point, with the point timeout
    ...
    wd.disarm()

:func:`at_abort` registers what must happen before the process ends on a deadline or
an error (e.g. releasing the run directory's lock); :func:`guarded_main` runs a
command's body, turning an exception on any rank into an abort of the whole job.
:func:`idle_wait` is a barrier that sleeps while waiting.
"""
from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import time
import traceback

from .files import UsageError

__all__ = ["Watchdog", "DeadlineExceeded", "idle_wait", "at_abort", "run_abort_handlers",
           "guarded_main", "end_job", "init_mpi", "finalize_mpi", "EXIT_TIMEOUT"]

#: Exit status of a job ended by a deadline.
EXIT_TIMEOUT = 3

_abort_handlers: list = []
_abort_lock = threading.Lock()


def at_abort(fn) -> None:
    """Call ``fn()`` before this process ends on a deadline or an error."""
    with _abort_lock:
        _abort_handlers.append(fn)


def run_abort_handlers() -> None:
    """Run (once) every function given to :func:`at_abort`; errors are ignored."""
    with _abort_lock:
        handlers = list(_abort_handlers)
        _abort_handlers.clear()
    for fn in reversed(handlers):
        try:
            fn()
        except BaseException:  # noqa: BLE001 -- ending anyway
            pass


class DeadlineExceeded(RuntimeError):
    """Raised instead of exiting when a :class:`Watchdog` is built with ``exit=False``
    (tests); never raised in the main thread otherwise."""


class Watchdog:
    """End the process (status 3) when an armed point or phase outlives its deadline.

    ``timeout`` (seconds) is the default deadline of :meth:`arm` and :meth:`phase`;
    0 disables the watchdog.  ``option`` names where the timeout comes from in the
    message of a point (``--point-timeout``).
    """

    def __init__(self, timeout: float, *, rank: int | None = None,
                 option: str = "--point-timeout", stream=None, exit_status=EXIT_TIMEOUT):
        self.timeout = float(timeout)
        self.rank = rank
        self.option = option
        self.stream = stream
        self.exit_status = exit_status
        self._cond = threading.Condition()
        self._armed = None  # (what, label, limit, deadline)
        self._generation = 0
        self._thread = None
        self.fired = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="collcost-watchdog",
                                            daemon=True)
            self._thread.start()

    def arm(self, label: str, timeout: float | None = None, what: str = "point") -> None:
        """Guard ``label`` for ``timeout`` seconds (default: the watchdog's; 0 or a
        disabled watchdog: unguarded) from now."""
        limit = self.timeout if timeout is None else float(timeout)
        if self.timeout <= 0 or not limit > 0:
            self.disarm()
            return
        limit = min(limit, 1e9)
        with self._cond:
            self._armed = (what, label, limit, time.monotonic() + limit)
            self._generation += 1
            self._ensure_thread()
            self._cond.notify_all()

    def disarm(self) -> None:
        with self._cond:
            self._armed = None
            self._generation += 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def phase(self, name: str, timeout: float | None = None):
        """Guard the body as phase ``name``; the previous guard is restored after it."""
        with self._cond:
            saved = self._armed
        self.arm(name, timeout, what="phase")
        try:
            yield
        finally:
            if saved is not None:
                what, label, limit, _ = saved
                self.arm(label, limit, what)
            else:
                self.disarm()

    def message(self, what, label, limit) -> str:
        who = "" if self.rank is None else f" (rank {self.rank})"
        if what == "point":
            return (f"\ncollcost: point {label} exceeded {self.option} "
                    f"{limit:g}s{who}; aborting\n")
        return (f"\ncollcost: {what} '{label}' exceeded its deadline of {limit:g}s "
                f"(from {self.option}){who}: a rank is stopped, dead or starved; "
                "aborting\n")

    def _watch(self):
        with self._cond:
            while True:
                while self._armed is None:
                    self._cond.wait()
                gen = self._generation
                what, label, limit, deadline = self._armed
                while self._generation == gen:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._fire(what, label, limit)
                        return
                    self._cond.wait(min(left, 3600.0))

    def _fire(self, what, label, limit):
        self.fired = (what, label)
        stream = self.stream or sys.stderr
        try:
            stream.write(self.message(what, label, limit))
            stream.flush()
        except (OSError, ValueError):
            pass
        if self.exit_status is None:  # tests: report only
            return
        run_abort_handlers()
        # let the launcher forward the message before the abort tears its I/O down
        # (without this pause Hydra lost it now and then)
        time.sleep(MESSAGE_GRACE_S)
        end_job(self.exit_status)


#: Seconds between the deadline message and the abort (the launcher forwards it).
MESSAGE_GRACE_S = 0.5

#: Seconds :func:`end_job` gives ``MPI_Abort`` before ending the process itself.
ABORT_GRACE_S = 10.0


def end_job(status: int) -> None:
    """End the whole MPI job with exit status ``status``, from any thread; never returns.

    ``MPI_Abort(MPI_COMM_WORLD, status)`` makes every launcher report ``status``:
    a rank that merely exits does not under Intel MPI, whose Hydra SIGKILLs the other
    ranks as soon as one exits non-zero and then reports 255 (a signal) instead of the
    exit code (MPICH and Open MPI report it).  It is called from the watchdog thread
    while the main thread may be blocked inside MPI at thread level ``single``: checked
    under MPICH 5.0.2, Open MPI 5.0.11 and Intel MPI 2021.18 (tests/test_sweep_failures).
    Should the abort not end the process within :data:`ABORT_GRACE_S` (or MPI is not
    initialized), the process exits with ``status`` itself.
    """
    timer = threading.Timer(ABORT_GRACE_S, os._exit, (status,))
    timer.daemon = True
    timer.start()
    try:
        MPI = sys.modules.get("mpi4py.MPI")
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
            MPI.COMM_WORLD.Abort(status)
    except BaseException:  # noqa: BLE001 -- ending anyway
        pass
    os._exit(status)


# MPI_Init and MPI_Finalize block holding the GIL, where the watchdog thread cannot run:
# their deadline is faulthandler's C thread, which prints "Timeout" and the stack (the
# function names below name the phase) and exits with status 1.

def init_mpi(limit: float):
    """Import (initialize) MPI under a deadline of ``limit`` seconds (0: none): a rank
    stopped or dead at start never leaves the others in MPI_Init.  Returns ``MPI``."""
    if limit > 0:
        sys.stderr.flush()
        faulthandler.dump_traceback_later(limit, exit=True)
    from .mpi import MPI  # MPI_Init
    faulthandler.cancel_dump_traceback_later()
    return MPI


def finalize_mpi(MPI, limit: float) -> None:
    """MPI_Finalize under a deadline of ``limit`` seconds (0: none); call it at the end
    of a command (mpi4py's own call at interpreter exit runs after the watchdog thread
    is gone)."""
    if limit > 0:
        sys.stderr.flush()
        faulthandler.dump_traceback_later(limit, exit=True)
    MPI.Finalize()
    faulthandler.cancel_dump_traceback_later()


def idle_wait(comm, poll: float = 0.0005) -> None:
    """Barrier on ``comm`` that sleeps while waiting (ranks outside a sub-communicator
    leave the cores to the ranks measuring)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(poll)


def _terminate_as_interrupt() -> None:
    """SIGTERM (a batch system ending the job) is handled like SIGINT: the lock is
    released and the job aborted, when the main thread gets back to Python."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):  # not the main thread
        pass


def guarded_main(body, argv=None) -> int:
    """Run ``body(argv)`` and return its status; an exception on any rank prints its
    traceback and the rank, runs the :func:`at_abort` handlers and aborts the whole
    job (``MPI_Abort``, status 1); a :class:`collectives.files.UsageError` (bad input
    found after the start) prints one line instead and aborts with status 2."""
    from .mpi import MPI
    _terminate_as_interrupt()
    try:
        return body(argv)
    except SystemExit:
        run_abort_handlers()
        raise
    except KeyboardInterrupt:  # SIGINT (Ctrl-C), forwarded by the launcher to each rank
        rank = MPI.COMM_WORLD.Get_rank()
        sys.stderr.write(f"collcost: rank {rank}: interrupted; completed points are on "
                         "disk (--resume continues the run); aborting the job\n")
        sys.stderr.flush()
        run_abort_handlers()
        time.sleep(MESSAGE_GRACE_S)
        MPI.COMM_WORLD.Abort(130)
        return 130
    except UsageError as exc:  # bad input found late (a damaged run met by --resume,
        # a run locked by another job): one line, status 2, as when found at the start
        rank = MPI.COMM_WORLD.Get_rank()
        sys.stderr.write(f"collcost: rank {rank}: error: {exc}; aborting the job\n")
        sys.stderr.flush()
        run_abort_handlers()
        time.sleep(MESSAGE_GRACE_S)
        MPI.COMM_WORLD.Abort(2)
        return 2
    except BaseException as exc:  # noqa: BLE001 -- report, then take the job down
        rank = MPI.COMM_WORLD.Get_rank()
        # one write: a second one can be lost when the abort tears the job down
        sys.stderr.write(traceback.format_exc() + f"collcost: rank {rank}: "
                         f"{type(exc).__name__}: {exc}; aborting the job\n")
        sys.stderr.flush()
        run_abort_handlers()
        time.sleep(MESSAGE_GRACE_S)  # the launcher forwards the message first
        MPI.COMM_WORLD.Abort(1)
        return 1
