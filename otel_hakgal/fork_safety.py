"""What the OTel SDK's metrics leave unsafe across ``fork()``, made safe.

gunicorn's master runs the pipeline (under the launcher, or with ``--preload``) and forks its
workers. Python copies the forking process with every lock as it was: a lock that another thread
of the parent held at that instant stays held in the child, whose copy of that thread never runs.
The SDK renews most of its locks in a child; the two below it does not, and each left a worker
that never exported a metric again.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Final

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

# How long a fork waits for a metric collection in progress (observable callbacks: tens of ms).
FORK_WAIT_S: Final = 2.0


class ForkSafeMetricReader(PeriodicExportingMetricReader):
    """The SDK's periodic metric reader, with a fresh export lock in a forked child.

    The SDK restarts the reader's thread in a child but keeps the export lock: a fork while the
    parent's reader was exporting left it held in the child for good. (A fork waits for a collection,
    see :func:`guard_collection_at_fork`, but not for an export, which may take its whole timeout.)
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
