"""Bounded FIFOs of work run by background threads, off the thread that submits it.

The ``sentry`` backend converts transactions in a :class:`FifoWorker` (one thread), so requests
do not pay for Sentry's serialisation; sentry-sdk's transport sends envelopes through a
:class:`SenderPool` (a few threads), so a slow round trip does not bound delivery. No sentry-sdk import.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Final

from otel_hakgal.backends.base import QueueStats

logger = logging.getLogger("otel_hakgal.delivery")  # rate-limited: see otel_hakgal.log_limits

DEFAULT_QUEUE_SIZE: Final = 8192  # items waiting; more are dropped and counted
DEFAULT_DELAY_S: Final = 0.003  # the worker starts this long after new work arrives, then runs all queued


class FifoWorker:
    """One background thread running submitted work in submission order, off the request thread.

    The queue is bounded: when it is full, :meth:`submit` drops the work and
    counts it in :attr:`dropped` instead of blocking the caller. The thread
    starts at the first submit, also again in a forked child (the child starts
    with an empty queue). After :meth:`stop`, work runs inline.
    """

    _instances: weakref.WeakSet[FifoWorker] = weakref.WeakSet()
    _fork_hook_registered = False

    def __init__(
        self,
        max_queue_size: int = DEFAULT_QUEUE_SIZE,
        name: str = "otel_hakgal-sentry",
        delay_s: float = DEFAULT_DELAY_S,
    ) -> None:
        self.max_queue_size = max_queue_size
        self.delay_s = delay_s
        self.name = name
        self.dropped = 0
        self._reset()
        FifoWorker._instances.add(self)
        if not FifoWorker._fork_hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=FifoWorker._after_fork_in_child)
            FifoWorker._fork_hook_registered = True

    def _reset(self) -> None:
        lock = threading.Lock()
        self._condition = threading.Condition(lock)  # the worker waits here for work
        self._idle = threading.Condition(lock)  # drain() waits here for an empty queue
        self._items: deque[Callable[[], None]] = deque()
        self._pending = 0  # queued plus running
        self._flushing = 0  # drains waiting: no delay then
        self._thread: threading.Thread | None = None
        self._stopped = False

    @classmethod
    def _after_fork_in_child(cls) -> None:
        for worker in list(cls._instances):
            stopped = worker._stopped
            worker._reset()  # the parent's thread does not exist here; its queue is the parent's to send
            worker._stopped = stopped

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work``; False (and counted) if the queue is full. Never blocks on the work."""
        with self._condition:
            if not self._stopped:
                if self._pending >= self.max_queue_size:
                    self.dropped += 1
                    return False
                self._items.append(work)
                self._pending += 1
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
                self._condition.notify()
                return True
        _run_quietly(work)  # stopped: nothing left to hand it to
        return True

    def _run(self) -> None:
        condition = self._condition
        while True:
            with condition:
                while not self._items and not self._stopped:
                    condition.wait()
                if not self._items:
                    return
                lazy = not self._stopped and not self._flushing
            if lazy and self.delay_s > 0:
                # Let the thread that queued the work finish its request first: under the GIL,
                # running at once would hold the response back for a switch interval (5 ms).
                time.sleep(self.delay_s)
            while True:
                with condition:
                    if not self._items:
                        break
                    work = self._items.popleft()
                _run_quietly(work)
                with condition:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

    @property
    def pending(self) -> int:
        return self._pending

    def queue_stats(self) -> QueueStats:
        """Work waiting or running now, the queue's capacity, work dropped because it was full."""
        return QueueStats(queued=self._pending, capacity=self.max_queue_size, dropped=self.dropped)

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far has run; False on timeout."""
        with self._idle:
            self._flushing += 1
            try:
                return self._idle.wait_for(lambda: self._pending == 0, timeout_s)
            finally:
                self._flushing -= 1

    def stop(self, timeout_s: float) -> bool:
        """Drain, then end the thread; later work runs inline."""
        done = self.drain(timeout_s)
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        return done


def _run_quietly(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        logger.warning("otel_hakgal: background work failed; its telemetry is lost", exc_info=True)


# Envelopes sentry-sdk's transport sends at once (``sentry.max_concurrent_requests``): 16 at 100 ms is ~160/s.
DEFAULT_SENDERS: Final = 16


class SenderPool:
    """A bounded FIFO run by up to ``senders`` threads at once: the Sentry transport's worker.

    Stands in for sentry-sdk's one-thread ``BackgroundWorker`` with the same interface (``submit``,
    ``full``, ``flush``, ``kill``, ``is_alive``), so several envelopes are in flight at once while a
    slow round trip holds each one. :meth:`submit` never blocks: a full queue refuses the work (the
    transport then counts the envelope as lost). The threads start at the first submit, again in a
    forked child (whose queue starts empty: what the parent queued is the parent's to send) and
    after :meth:`kill`. Taken in submission order, finished in any order.
    """

    _instances: weakref.WeakSet[SenderPool] = weakref.WeakSet()
    _fork_hook_registered = False

    def __init__(self, queue_size: int, senders: int = DEFAULT_SENDERS, name: str = "otel_hakgal-sentry-send") -> None:
        self.maxsize = queue_size
        self.senders = max(1, senders)
        self.name = name
        self._reset()
        SenderPool._instances.add(self)
        if not SenderPool._fork_hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=SenderPool._after_fork_in_child)
            SenderPool._fork_hook_registered = True

    def _reset(self) -> None:
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # the senders wait here for work
        self._done = threading.Condition(lock)  # flush() waits here for nothing unfinished
        self._items: deque[Callable[[], object]] = deque()
        self._unfinished = 0  # queued plus running
        self._busy = 0  # running now
        self._threads: list[threading.Thread] = []
        self._killed = False
        self._pid = os.getpid()

    @classmethod
    def _after_fork_in_child(cls) -> None:
        for pool in list(cls._instances):
            pool._reset()  # the parent's threads do not exist here, and its locks may be held

    # --- what sentry-sdk's transport calls -------------------------------------------

    @property
    def is_alive(self) -> bool:
        return self._pid == os.getpid() and any(thread.is_alive() for thread in self._threads)

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def submit(self, callback: Callable[[], object]) -> bool:
        """Queue ``callback``; False if the queue is full. Never waits for a sender."""
        with self._work:
            if len(self._items) >= self.maxsize:
                return False
            self._killed = False  # a killed pool works again if given work, as sentry-sdk's worker does
            self._items.append(callback)
            self._unfinished += 1
            if self._busy + len(self._items) > len(self._threads) and len(self._threads) < self.senders:
                self._start_sender()
            self._work.notify()
            return True

    def _start_sender(self) -> None:
        thread = threading.Thread(target=self._run, name=f"{self.name}-{len(self._threads) + 1}", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # the interpreter is shutting down: nothing can be sent any more
            return
        self._threads.append(thread)

    def _run(self) -> None:
        me = threading.current_thread()
        work = self._work
        while True:
            with work:
                while not self._items and not self._killed:
                    work.wait()
                if not self._items:  # killed and nothing left
                    self._threads.remove(me)
                    return
                callback = self._items.popleft()
                self._busy += 1
            try:
                callback()
            except Exception:
                logger.warning("otel_hakgal: a Sentry send failed; its envelope is lost", exc_info=True)
            finally:
                with work:
                    self._busy -= 1
                    self._unfinished -= 1
                    if self._unfinished == 0:
                        self._done.notify_all()

    def flush(self, timeout: float, callback: Callable[[int, float], object] | None = None) -> None:
        """Wait up to ``timeout`` s until everything submitted has been sent (or failed).

        ``callback(pending, timeout)`` is called, as sentry-sdk's worker calls it, once after 0.1 s
        if envelopes are still pending then.
        """
        if timeout <= 0 or not self.is_alive:
            return
        deadline = time.monotonic() + timeout
        with self._done:
            if self._done.wait_for(lambda: self._unfinished == 0, min(0.1, timeout)):
                return
            pending = self._unfinished
        if callback is not None:
            callback(pending, timeout)
        with self._done:
            self._done.wait_for(lambda: self._unfinished == 0, max(0.0, deadline - time.monotonic()))

    def kill(self) -> None:
        """Let the senders end once the queue is empty; returns at once (flush first to wait)."""
        with self._work:
            self._killed = True  # each sender leaves its list when it ends: a later submit starts new ones
            self._work.notify_all()

    # --- for the layer -----------------------------------------------------------------

    def depth(self) -> tuple[int, int]:
        """(envelopes waiting for a sender, capacity): sentry-sdk's queue depth, in flight left out."""
        return len(self._items), self.maxsize

    @property
    def in_flight(self) -> int:
        return self._busy
