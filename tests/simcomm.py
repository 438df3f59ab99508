"""A counting stand-in for an mpi4py communicator: p ranks as threads.

:func:`simulate` runs one algorithm on ``p`` simulated ranks (threads exchanging copies
of numpy buffers through queues) and returns, per rank, a logical clock of the
critical path under the model of ``shared/reference/cost-models.md``: a message of
``m`` bytes costs ``alpha + m beta`` and starts when both its sender and its receiver
have reached the call (rendezvous: ``Send`` blocks until the receive is posted, so an
algorithm that would deadlock above MPI's eager threshold deadlocks here too); a rank
sends and receives at once (``Sendrecv``: its clock becomes the later of the two ends);
a local reduction of ``m`` bytes costs ``m gamma``.  Running with
(alpha, beta, gamma) = (1, 0, 0), (0, 1, 0), (0, 0, 1) gives the number of messages, the
bytes and the reduced bytes on the critical path (the maximum over ranks of the final
clock) -- the coefficients the cost registry must predict.

Local reductions are observed by wrapping
:func:`collectives.algorithms.reductions.reducer` (see :func:`counting_reductions`).
Only the subset of the mpi4py API the algorithms use is implemented: ``Get_rank``,
``Get_size``, ``Dup``, ``Get_attr``, ``Set_attr``, ``Send``, ``Recv``, ``Sendrecv``.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from collectives.algorithms import reductions

TIMEOUT_S = 10.0


class SimulationError(RuntimeError):
    """A simulated rank failed (exception, mismatched message, deadlock)."""


@dataclass
class _World:
    p: int
    alpha: float
    beta: float
    gamma: float
    clocks: list = field(default_factory=list)
    messages: list = field(default_factory=list)   # messages sent, per rank
    bytes_sent: list = field(default_factory=list)
    reduced: list = field(default_factory=list)    # bytes reduced, per rank
    timeout: float = TIMEOUT_S
    channels: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.clocks = [0.0] * self.p
        self.messages = [0] * self.p
        self.bytes_sent = [0] * self.p
        self.reduced = [0] * self.p

    def channel(self, key) -> queue.Queue:
        with self.lock:
            return self.channels.setdefault(key, queue.Queue())


def _array(spec):
    buf = spec[0] if isinstance(spec, (list, tuple)) else spec
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"simulated communicator takes numpy buffers, got {type(buf)}")
    return buf


class SimComm:
    """One simulated rank's view of a communicator (context ``ctx``)."""

    def __init__(self, world: _World, rank: int, ctx=()):
        self._world, self._rank, self._ctx = world, rank, ctx
        self._dups = 0
        self._attrs = {}

    def Get_rank(self):
        return self._rank

    def Get_size(self):
        return self._world.p

    def Dup(self):
        self._dups += 1
        return SimComm(self._world, self._rank, self._ctx + (self._dups,))

    def Get_attr(self, keyval):
        return self._attrs.get(keyval)

    def Set_attr(self, keyval, value):
        self._attrs[keyval] = value

    def _check_peer(self, peer, what):
        if not (isinstance(peer, int) and 0 <= peer < self._world.p) or peer == self._rank:
            raise SimulationError(f"rank {self._rank}: bad {what} {peer!r}")

    def _offer(self, spec, dest, tag):
        """Post a message; returns the queue on which the receiver acknowledges it."""
        self._check_peer(dest, "destination")
        w = self._world
        data = _array(spec).copy()
        w.messages[self._rank] += 1
        w.bytes_sent[self._rank] += data.nbytes
        ack = queue.Queue(1)
        w.channel((self._ctx, self._rank, dest, tag)).put(
            (data, w.clocks[self._rank], ack))
        return ack

    def _get(self, q, what):
        try:
            return q.get(timeout=self._world.timeout)
        except queue.Empty:
            raise SimulationError(f"rank {self._rank}: {what} within "
                                  f"{self._world.timeout} s "
                                  "(deadlock)") from None

    def _take(self, spec, source, tag):
        """Receive a message; returns the time its transfer ends."""
        self._check_peer(source, "source")
        w = self._world
        data, posted, ack = self._get(
            w.channel((self._ctx, source, self._rank, tag)), f"no message from {source}")
        buf = _array(spec)
        if data.size != buf.size or data.dtype != buf.dtype:
            ack.put(None)
            raise SimulationError(f"rank {self._rank}: message from {source} has "
                                  f"{data.size} {data.dtype}, receive buffer "
                                  f"{buf.size} {buf.dtype}")
        buf[...] = data
        end = max(posted, w.clocks[self._rank]) + w.alpha + data.nbytes * w.beta
        ack.put(end)
        return end

    def _finish(self, ack, dest):
        end = self._get(ack, f"message to {dest} not received")
        if end is None:
            raise SimulationError(f"rank {self._rank}: message to {dest} rejected")
        return end

    def Send(self, spec, dest, tag=0):
        self._world.clocks[self._rank] = self._finish(self._offer(spec, dest, tag), dest)

    def Recv(self, spec, source, tag=0, status=None):
        self._world.clocks[self._rank] = self._take(spec, source, tag)

    def Sendrecv(self, sendspec, dest, sendtag, recvspec, source, recvtag, status=None):
        ack = self._offer(sendspec, dest, sendtag)
        received = self._take(recvspec, source, recvtag)
        self._world.clocks[self._rank] = max(self._finish(ack, dest), received)


_current = threading.local()


@contextlib.contextmanager
def counting_reductions():
    """Patch :func:`reductions.reducer` so each local reduction advances the clock."""
    original = reductions.reducer

    def reducer(op, buf):
        reduce = original(op, buf)

        def counted(a, b, out):
            reduce(a, b, out)
            w, rank = _current.world, _current.rank
            w.reduced[rank] += out.nbytes
            w.clocks[rank] += out.nbytes * w.gamma

        return counted

    reductions.reducer = reducer
    try:
        yield
    finally:
        reductions.reducer = original


@dataclass
class Outcome:
    """Per-rank results of one simulation."""

    clocks: list
    messages: list
    bytes_sent: list
    reduced: list
    results: list   # what ``body`` returned on each rank

    @property
    def critical(self) -> float:
        """Time of the collective: the maximum final clock over ranks."""
        return max(self.clocks)


def simulate(p, body, *, alpha=1.0, beta=0.0, gamma=0.0, timeout=TIMEOUT_S) -> Outcome:
    """Run ``body(comm)`` on ``p`` simulated ranks; return the :class:`Outcome`.

    Must run inside :func:`counting_reductions` for reductions to be timed.  A rank
    waiting longer than ``timeout`` seconds for a message raises (deadlock).
    """
    world = _World(p, alpha, beta, gamma, timeout=timeout)
    results, errors = [None] * p, []

    def run(rank):
        _current.world, _current.rank = world, rank
        try:
            results[rank] = body(SimComm(world, rank))
        except BaseException as exc:  # reported below, on the main thread
            errors.append((rank, exc))

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in range(p)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * 2 + 5)
    if any(t.is_alive() for t in threads):
        raise SimulationError(f"p={p}: simulation did not finish")
    if errors:
        rank, exc = errors[0]
        raise SimulationError(f"p={p}: rank {rank} failed: {exc!r}") from exc
    leftover = [k for k, q in world.channels.items() if not q.empty()]
    if leftover:
        raise SimulationError(f"p={p}: unreceived messages on {leftover}")
    return Outcome(world.clocks, world.messages, world.bytes_sent, world.reduced, results)
