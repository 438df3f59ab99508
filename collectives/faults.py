"""Fault injection for the tests: kill, stop, starve or fail a rank at a named phase.

Inert unless the environment sets one of (read once, when :class:`FaultHooks` is
built):

``COLLCOST_TEST_FAULT="PHASE@RANK=ACTION[,PHASE@RANK=ACTION...]"``
    At the start of phase ``PHASE`` (a phase name of the command's
    :class:`collectives.watchdog.Watchdog`, matched as a prefix: ``setup``,
    ``harness``, ``plan``, ``split``, ``wait``, ``final``; or ``point:K``, the K-th
    point the rank takes part in, right after it was written; or ``before-point:K``,
    before it starts) world rank ``RANK`` (a number or ``last``) does ``ACTION``:
    ``kill`` (SIGKILL itself), ``stop`` (SIGSTOP itself: alive but never answering),
    ``sleep:S`` (starve: sleep S seconds, then go on), ``exit`` (``os._exit(9)``) or
    ``raise`` (a ``RuntimeError``).
``COLLCOST_TEST_KILL_AFTER_POINTS=k``
    world rank 1 (rank 0 in a 1-rank job) ``os._exit(9)`` right after the k-th point
    it took part in was written (same as ``point:k@1=exit``).
``COLLCOST_TEST_FAIL_AT_POINT=k``
    the last world rank raises ``RuntimeError`` when it starts the k-th point it takes
    part in.
"""
from __future__ import annotations

import os
import signal
import sys
import time

__all__ = ["FaultHooks", "FAULT_ENV", "KILL_ENV", "FAIL_ENV"]

FAULT_ENV = "COLLCOST_TEST_FAULT"
KILL_ENV = "COLLCOST_TEST_KILL_AFTER_POINTS"
FAIL_ENV = "COLLCOST_TEST_FAIL_AT_POINT"


class FaultHooks:
    """The faults of the environment for world rank ``rank`` of ``size``."""

    def __init__(self, rank: int, size: int, env=None):
        env = os.environ if env is None else env
        self.rank, self.size = rank, size
        self.taken = 0  # points this rank took part in
        self.faults = []  # (phase, action)
        for item in filter(None, (env.get(FAULT_ENV) or "").split(",")):
            try:
                where, action = item.strip().rsplit("=", 1)
                phase, who = where.rsplit("@", 1)
                who = size - 1 if who == "last" else int(who)
            except ValueError:
                raise RuntimeError(f"{FAULT_ENV}: cannot read {item!r} "
                                   "(PHASE@RANK=ACTION)") from None
            if who == rank:
                self.faults.append((phase, action))
        if env.get(KILL_ENV) and rank == min(1, size - 1):
            self.faults.append((f"point:{int(env[KILL_ENV])}", "exit-kill-env"))
        if env.get(FAIL_ENV) and rank == size - 1:
            self.faults.append((f"before-point:{int(env[FAIL_ENV])}", "raise-fail-env"))
        self.active = bool(self.faults)

    def at(self, phase: str) -> None:
        """Phase ``phase`` starts on this rank: do the faults planned for it."""
        if not self.active:
            return
        for want, action in self.faults:
            if phase == want or (":" not in want and phase.startswith(want)):
                self._do(phase, action)

    def before_point(self, label: str) -> None:
        self.at(f"before-point:{self.taken + 1}")

    def after_point(self) -> None:
        self.taken += 1
        self.at(f"point:{self.taken}")

    def _do(self, phase: str, action: str) -> None:
        say = lambda msg: (sys.stderr.write(f"collcost: rank {self.rank}: {msg}\n"),  # noqa
                           sys.stderr.flush())
        if action == "exit-kill-env":
            say(f"{KILL_ENV}={os.environ.get(KILL_ENV)}: rank {self.rank} exits now")
            os._exit(9)
        if action == "raise-fail-env":
            raise RuntimeError(f"{FAIL_ENV}={os.environ.get(FAIL_ENV)}: failure injected "
                               f"at point {self.taken + 1}")
        say(f"{FAULT_ENV}: {action} at {phase}")
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action == "exit":
            os._exit(9)
        elif action == "raise":
            raise RuntimeError(f"{FAULT_ENV}: failure injected at {phase}")
        elif action.startswith("sleep:"):
            time.sleep(float(action.split(":", 1)[1]))
        else:
            raise RuntimeError(f"{FAULT_ENV}: unknown action {action!r}")
