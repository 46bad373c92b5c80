"""What the OTel SDK and the exporters leave unsafe across ``fork()``, made safe.

gunicorn's master runs the pipeline (under the launcher, or with ``--preload``) and forks its
workers. Python copies the forking process with every lock as it was: a lock that another thread
of the parent held at that instant stays held in the child, whose copy of that thread never runs.
The SDK renews most of its locks in a child; the two metric locks below it does not, and each left
a worker that never exported a metric again. An export in flight holds locks no one renews at all
(the import lock of a module that ``requests`` imports on its first send, urllib3's pool locks), so
a fork waits for it: see :data:`EXPORTS_IN_FLIGHT`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Final

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

# How long a fork waits for a metric collection in progress (observable callbacks: tens of ms).
FORK_WAIT_S: Final = 2.0


class ForkSafeMetricReader(PeriodicExportingMetricReader):
    """The SDK's periodic metric reader, with a fresh export lock in a forked child.

    The SDK restarts the reader's thread in a child but keeps the export lock: a fork while the
    parent's reader was exporting left it held in the child for good. (A fork waits for the HTTP request
    of an export, see :data:`EXPORTS_IN_FLIGHT`, but only so long, and the lock spans the whole export.)
    """

    def _at_fork_reinit(self) -> None:
        self._export_lock = threading.Lock()
        super()._at_fork_reinit()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped


def guard_collection_at_fork(meter_provider: MeterProvider) -> None:
    """Make a fork wait (up to :data:`FORK_WAIT_S`) for a collection of ``meter_provider``'s metrics.

    A collection holds the provider's measurement-consumer lock while it runs every observable
    callback (the launcher's system metrics among them). The SDK renews the provider's own locks in
    a child, not that one: a worker forked mid-collection waited on it at its first collection, forever.
    The lock is taken before the fork and released on both sides; if a collection outlasts the wait,
    the child gets a new lock.
    """
    consumer = weakref.ref(meter_provider._measurement_consumer)
    held = [False]

    def before() -> None:
        target = consumer()
        held[0] = target is not None and target._lock.acquire(timeout=FORK_WAIT_S)

    def after_in_parent() -> None:
        target = consumer()
        if held[0] and target is not None:
            target._lock.release()
        held[0] = False

    def after_in_child() -> None:
        target = consumer()
        if target is not None:
            if held[0]:
                target._lock.release()
            else:  # the collection still running belongs to a thread the child does not have
                target._lock = threading.Lock()
        held[0] = False

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=after_in_child)


class ExportsInFlight:
    """Counts the HTTP exports in flight in this process; a fork waits (up to :data:`FORK_WAIT_S`) for them.

    An export holds locks for its whole send: ``requests`` imports ``netrc`` on a session's first
    request, and a worker forked during that import waited on the module's import lock forever, so
    its first span export never left. While a fork waits, no new export starts; both resume after it.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork, after_in_child=self._reset)

    def _reset(self) -> None:
        # In a child the exports counted belong to threads it does not have, and the forking thread
        # holds the old condition's lock: a new condition and count.
        self._changed = threading.Condition(threading.Lock())
        self._count = 0
        self._forking = False

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Wrap one export's whole request (preparing it as well as sending it)."""
        with self._changed:
            self._changed.wait_for(lambda: not self._forking)
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def _before_fork(self) -> None:
        self._changed.acquire()
        self._forking = True
        self._changed.wait_for(lambda: self._count == 0, timeout=FORK_WAIT_S)

    def _after_fork(self) -> None:
        self._forking = False
        self._changed.notify_all()
        self._changed.release()


EXPORTS_IN_FLIGHT: Final = ExportsInFlight()
