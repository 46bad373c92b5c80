"""At most one export warning per minute, however many exports fail while a receiver is down.

When a backend's receiver is down, the exporters and transports underneath
log per failed batch or envelope, and urllib3 three times per envelope
(Sentry's transport retries connection errors). Measured per failed export,
with the receiver refusing connections, answering 500/429 or answering late:

- ``opentelemetry.exporter.otlp.proto.http.trace_exporter`` / ``...metric_exporter``:
  an ERROR per failed batch, a WARNING per retry (backends ``otlp``, ``sentry-otlp``);
- ``opentelemetry.sdk._shared_internal``: "Queue full, dropping Span." (the batch processor);
- ``urllib3.connectionpool``: a WARNING per retry of each Sentry envelope;
- ``sentry_sdk.errors``: silent unless ``debug``; then a line per envelope;
- ``otel_hakgal.delivery``: this layer's own one line on a failed Sentry send.

:func:`install` (called by ``setup()``) puts a :class:`RateLimitFilter` on
each of these loggers, once per process, all drawing on one
:class:`WarningBudget`: the first WARNING-or-worse record in
:data:`INTERVAL_S` passes, the following ones are dropped and counted, and the
next record that passes ends with ``(N similar suppressed)``. One budget for
all of them because the loggers are shared (``otlp`` and ``sentry-otlp`` use
the same exporter) and one backend uses several (``sentry-otlp`` sends OTLP
and Sentry envelopes): so every backend, and the process as a whole, logs at
most one export warning per minute. On ``urllib3.connectionpool``, which the
app uses too, only records from the exporters' and Sentry's threads count.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

INTERVAL_S: Final = 60.0

# Thread-name prefixes of the threads that send: the SDK's batch processors and metric reader, Sentry's
# transport worker and this layer's Sentry span worker.
TELEMETRY_THREADS: Final = ("OtelBatch", "OtelPeriodicExportingMetricReader", "sentry-sdk.", "otel_hakgal")

# Logger -> thread-name prefixes whose records are limited (None: every record).
LIMITED_LOGGERS: Final[Mapping[str, tuple[str, ...] | None]] = {
    "opentelemetry.exporter.otlp.proto.http.trace_exporter": None,
    "opentelemetry.exporter.otlp.proto.http.metric_exporter": None,
    "opentelemetry.exporter.otlp.proto.http._log_exporter": None,
    "opentelemetry.sdk._logs._internal.export": None,
    "opentelemetry.exporter.otlp.common.http": None,
    "opentelemetry.sdk._shared_internal": None,
    "opentelemetry.sdk.trace.export": None,
    "opentelemetry.sdk.metrics._internal.export": None,
    "sentry_sdk.errors": None,
    "otel_hakgal.delivery": None,
    "urllib3.connectionpool": TELEMETRY_THREADS,
}


class WarningBudget:
    """One WARNING-or-worse record per ``interval_s``; counts the ones it refuses."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_allowed: float | None = None
        self._pending = 0  # refused since the last record that passed
        self.suppressed = 0  # refused in total

    def take(self) -> int | None:
        """Spend the budget: ``None`` when refused, else how many were refused since the last one admitted."""
        with self._lock:
            now = self._clock()
            if self._next_allowed is not None and now < self._next_allowed:
                self._pending += 1
                self.suppressed += 1
                return None
            self._next_allowed = now + self.interval_s
            pending, self._pending = self._pending, 0
        return pending

    def admit(self, record: logging.LogRecord) -> bool:
        pending = self.take()
        if pending is None:
            return False
        if pending:
            # Formatted once here: handlers then print the amended message as is.
            record.msg = f"{record.getMessage()} ({pending} similar suppressed)"
            record.args = None
        return True

    def reset(self) -> None:
        with self._lock:
            self._next_allowed = None
            self._pending = 0
            self.suppressed = 0


def limited(record: logging.LogRecord) -> bool:
    """Whether ``record`` counts against the export warning budget."""
    if record.levelno < logging.WARNING or record.name not in LIMITED_LOGGERS:
        return False
    threads = LIMITED_LOGGERS[record.name]
    return threads is None or (record.threadName or "").startswith(threads)


class RateLimitFilter(logging.Filter):
    """Lets the records :func:`limited` selects through only as ``budget`` admits them; others pass."""

    def __init__(self, budget: WarningBudget) -> None:
        super().__init__()
        self.budget = budget

    def filter(self, record: logging.LogRecord) -> bool:
        return self.budget.admit(record) if limited(record) else True


class _Installed:
    lock = threading.Lock()
    budget: WarningBudget | None = None


def install(interval_s: float = INTERVAL_S) -> WarningBudget:
    """Put a :class:`RateLimitFilter` last on each of :data:`LIMITED_LOGGERS`; idempotent. Returns the budget.

    Last, because a record that a later filter drops (sentry-sdk adds one to ``sentry_sdk.errors`` that drops
    everything unless ``debug``) would spend the budget unseen and silence the next real warning for a
    minute. ``setup()`` calls this again once the backends started, which is when sentry-sdk is imported.
    """
    with _Installed.lock:
        if _Installed.budget is None:
            _Installed.budget = WarningBudget(interval_s)
        for name in LIMITED_LOGGERS:
            target = logging.getLogger(name)
            ours = [f for f in target.filters if isinstance(f, RateLimitFilter)]
            if ours and target.filters[-1] is ours[-1]:
                continue
            for limiter in ours:
                target.removeFilter(limiter)
            target.addFilter(ours[-1] if ours else RateLimitFilter(_Installed.budget))
        return _Installed.budget


def suppressed() -> int:
    """Export warnings suppressed so far (0 before :func:`install`)."""
    budget = _Installed.budget
    return 0 if budget is None else budget.suppressed


def reset() -> None:
    """Open the budget again and zero its counts (for tests and benchmarks that stage outages)."""
    budget = _Installed.budget
    if budget is not None:
        budget.reset()


def count_value(counter: itertools.count[int]) -> int:
    """How far ``counter`` got. Counters that threads share are ``itertools.count`` objects, since
    ``next()`` on one is atomic under the GIL (``+=`` is not); it exposes its value only through repr."""
    return int(repr(counter)[6:-1])
