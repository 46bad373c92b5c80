"""Receiver outages for tests and benchmarks: fault names, queue depths, captured warnings.

Faults of a push backend's receiver (``otlp``, ``sentry``, ``sentry-otlp``):

- ``unreachable``: the port refuses connections (:meth:`LoopbackServer.go_down`);
- ``http-500`` / ``http-429``: every request answered with that status
  (429 with ``Retry-After: 1``);
- ``delay-5s``: every request answered only after 5 s.

``prometheus`` is pulled, so its faults are the scraper's (see :mod:`tests.test_outages`
and ``benchmarks/outages.py``): ``unreachable`` means no Prometheus scrapes at all,
``delay-5s`` a scraper whose connection stalls.

The app's own log lines during an outage come from :data:`APP_LOGGER`: they are
the telemetry being exported, not warnings about it, so :class:`WarningCapture`
can leave them out (``ignore``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from otel_hakgal import log_limits
from otel_hakgal.testing.receiver import LoopbackServer

FAULTS: Final = ("unreachable", "http-500", "http-429", "delay-5s")
DELAY_S: Final = 5.0
APP_LOGGER: Final = "hakgal.outage.app"  # the app's log lines during an outage (exported, not counted as warnings)
# Loggers of the export machinery: their records must never be exported as log records (an export
# that fails would log, and that record be exported, and fail...).
EXPORT_LOGGERS: Final = (
    "opentelemetry",
    "urllib3",
    "requests",
    "sentry_sdk",
    "otel_hakgal.delivery",
    "otel_hakgal.export",
)


def is_export_logger(name: str) -> bool:
    """Whether ``name`` is one of :data:`EXPORT_LOGGERS` or below one."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in EXPORT_LOGGERS)


def apply_fault(receiver: LoopbackServer, fault: str) -> None:
    """Switch ``receiver`` to ``fault`` (one of :data:`FAULTS`); :meth:`LoopbackServer.heal` clears it."""
    if fault == "unreachable":
        receiver.go_down()
    elif fault.startswith("http-"):
        receiver.fail(int(fault.removeprefix("http-")))
    elif fault == "delay-5s":
        receiver.fail(delay_s=DELAY_S)
    else:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")


def queue_depths(handle: Any) -> dict[str, tuple[int, int]]:
    """Queue name -> (items queued now, cap), for every export queue of the handle's backends.

    From :meth:`Handle.stats`: the batch span and log record processors (``otlp``, ``sentry-otlp``),
    this layer's Sentry span worker and open spans (``sentry``) and Sentry's
    transport queue (both Sentry backends). Names are prefixed with the backend's.
    """
    return {
        f"{backend} {queue_name}": (queue.queued, queue.capacity)
        for backend, stats in handle.stats().items()
        for queue_name, queue in stats.queues.items()
    }


class WarningCapture(logging.Handler):
    """Keeps every WARNING-or-worse record that passed the loggers' filters, but those of ``ignore``'s loggers.

    Use as a context manager (a handler on the root logger).
    """

    def __init__(self, ignore: tuple[str, ...] = ()) -> None:
        super().__init__(logging.WARNING)
        self._records_lock = threading.Lock()
        self._ignore = frozenset(ignore)
        self.records: list[tuple[str, str]] = []  # (logger, message)
        self._export = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in self._ignore:
            return
        with self._records_lock:
            self.records.append((record.name, record.getMessage()))
            self._export += log_limits.limited(record)

    @property
    def export_warnings(self) -> int:
        """Records that passed the export warning budget (see :mod:`otel_hakgal.log_limits`)."""
        with self._records_lock:
            return self._export

    def by_logger(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._records_lock:
            for name, _ in self.records:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def clear(self) -> None:
        with self._records_lock:
            self.records.clear()
            self._export = 0

    def __enter__(self) -> WarningCapture:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)


def max_depths(samples: list[Mapping[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """The largest depth seen per queue over ``samples`` of :func:`queue_depths`, with its cap."""
    worst: dict[str, tuple[int, int]] = {}
    for sample in samples:
        for name, (depth, cap) in sample.items():
            if name not in worst or depth > worst[name][0]:
                worst[name] = (depth, cap)
    return worst
