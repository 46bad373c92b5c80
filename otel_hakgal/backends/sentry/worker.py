"""A bounded FIFO of work run by one background thread, off the thread that submits it.

The ``sentry`` backend converts and sends transactions here, so requests do
not pay for Sentry's serialisation. No sentry-sdk import.
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
