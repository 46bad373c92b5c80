"""How exporting backends batch: spans and log records through one configured batch processor each that
counts its drops, metrics through one periodic reader at ``export.metric_interval``; and how what any
backend's queues drop is counted (``otel_hakgal.export.dropped``) and reported (one warning per interval).

Span processors that scrub on export (:class:`ScrubsOnExport`: the batch span processor here, the Sentry
transaction processor) take the secret scrubber off the request thread: ``setup()`` hands them their
configuration's scrubber, and the fan-out then passes them ended spans as they are; each span is scrubbed
on the processor's own thread, before its exporter (or the transaction's JSON) sees any of its data.
Processors that read nothing but a span's ids when it ends (:class:`ReadsOnlySpanContext`) get it as it is.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_hakgal import log_limits
from otel_hakgal.backends.base import Backend, Parts, QueueStats
from otel_hakgal.config import Config
from otel_hakgal.conventions import ExportDropReason, Metric
from otel_hakgal.delivery import SignalOff
from otel_hakgal.fork_safety import ForkSafeMetricReader

if TYPE_CHECKING:
    from otel_hakgal.redaction import SecretScrubber


def _batch_arguments(config: Config) -> dict[str, Any]:
    """The ``[batch]`` settings as the SDK's batch processors (spans and log records alike) take them."""
    batch = config.batch
    return {
        "max_queue_size": batch.max_queue_size,
        "schedule_delay_millis": batch.schedule_delay * 1000,
        "max_export_batch_size": batch.max_export_batch_size,
        "export_timeout_millis": batch.export_timeout * 1000,
    }


class _DropCounter:
    """Counts what a batch processor's queue loses for being full.

    The SDK drops those with one log line and no public count; ``queue_stats``
    reports them (the only place this layer reads the SDK's private queue).
    """

    _queue: deque[Any]
    _capacity: int
    dropped: int

    def _count_drops(self, batch_processor: Any, capacity: int) -> None:
        self._queue = batch_processor._queue
        self._capacity = capacity
        self.dropped = 0

    def _full(self) -> bool:
        return len(self._queue) >= self._capacity

    def _dropping(self) -> None:
        self.dropped += 1
        DROPS.noticed()

    def queue_stats(self) -> QueueStats:
        return QueueStats(queued=len(self._queue), capacity=self._capacity, dropped=self.dropped)


class ScrubsOnExport:
    """A span processor that scrubs the spans it sends itself, off the request thread.

    ``setup()`` hands it its configuration's scrubber (:meth:`scrub_with`) before any span reaches it.
    From then on :class:`~otel_hakgal.pipeline.FanOutSpanProcessor` passes it ended spans unscrubbed
    (only while ``export_scrubber`` is the scrubber the fan-out would use), and the processor scrubs
    every span with ``export_scrubber`` before anything reads its data: its exporter, a Sentry
    transaction's JSON. Until then, or for another scrubber, it gets scrubbed spans like any processor.
    """

    export_scrubber: SecretScrubber | None = None

    def scrub_with(self, scrubber: SecretScrubber) -> None:
        """Scrub exported spans with ``scrubber`` (the one of the configuration this processor belongs to)."""
        self.export_scrubber = scrubber


class ReadsOnlySpanContext:
    """A span processor whose ``on_end`` reads only the span's context (ids, flags) and keeps nothing else of
    it, never its name, attributes, events, links or status: the fan-out hands it spans unscrubbed."""


class ScrubbingSpanExporter(SpanExporter):
    """``exporter``, given each span scrubbed by ``owner``'s ``export_scrubber``: runs on the batch thread."""

    def __init__(self, exporter: SpanExporter, owner: ScrubsOnExport) -> None:
        self.exporter = exporter
        self._owner = owner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        scrubber = self._owner.export_scrubber
        if scrubber is not None:
            spans = scrubber.scrub_spans(spans)
        return self.exporter.export(spans)

    def shutdown(self, timeout_millis: float | None = None) -> None:
        # As the SDK's batch processor calls an exporter: with the time left, if its shutdown takes it.
        shutdown: Any = self.exporter.shutdown
        if timeout_millis is not None and "timeout_millis" in inspect.getfullargspec(shutdown).args:
            shutdown(timeout_millis=timeout_millis)
        else:
            shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class CountingBatchSpanProcessor(ScrubsOnExport, _DropCounter, BatchSpanProcessor):
    """The SDK's batch span processor with the ``[batch]`` settings, counting spans lost to a full queue.

    It scrubs on export (:class:`ScrubsOnExport`): the secret scrubber runs on its export thread.
    """

    def __init__(self, exporter: SpanExporter, config: Config) -> None:
        self.exporter = exporter
        BatchSpanProcessor.__init__(self, ScrubbingSpanExporter(exporter, self), **_batch_arguments(config))
        self._count_drops(self._batch_processor, config.batch.max_queue_size)

    def on_end(self, span: ReadableSpan) -> None:
        # BatchSpanProcessor.on_end, inlined on the request path (no super()), counting a drop first.
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if len(self._queue) >= self._capacity:
            self._dropping()
        self._batch_processor.emit(span)


class CountingBatchLogRecordProcessor(_DropCounter, BatchLogRecordProcessor):
    """The SDK's batch log record processor with the ``[batch]`` settings (a queue of its own, as large as the
    span queue), counting records lost to a full queue.

    The SDK's ``OTEL_BLRP_*`` variables are not read: one ``[batch]`` section configures both queues.
    """

    def __init__(self, exporter: LogRecordExporter, config: Config) -> None:
        BatchLogRecordProcessor.__init__(self, exporter, **_batch_arguments(config))
        self._count_drops(self._batch_processor, config.batch.max_queue_size)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self._full():
            self._dropping()
        super().on_emit(log_record)


def batch_queues(parts: Parts) -> dict[str, QueueStats]:
    """The queues of the counting batch processors among ``parts``, by the name ``Backend.stats()`` gives them."""
    queues = {
        f"batch span processor {index}": processor.queue_stats()
        for index, processor in enumerate(parts.span_processors)
        if isinstance(processor, CountingBatchSpanProcessor)
    }
    queues.update(
        (f"batch log processor {index}", processor.queue_stats())
        for index, processor in enumerate(parts.log_processors)
        if isinstance(processor, CountingBatchLogRecordProcessor)
    )
    return queues


def periodic_reader(exporter: MetricExporter, config: Config) -> PeriodicExportingMetricReader:
    """The metric reader of an exporting backend: ``exporter`` every ``export.metric_interval`` seconds."""
    return ForkSafeMetricReader(exporter, export_interval_millis=config.export.metric_interval * 1000)


# --- drops: counted in otel_hakgal.export.dropped, reported in one warning per interval ---

# Queues (by the name ``stats()`` gives them) whose drops have another reason than a full export queue.
_QUEUE_REASONS: Final[Mapping[str, ExportDropReason]] = {
    "sentry transport": ExportDropReason.TRANSPORT_QUEUE_FULL,
    "sentry open transactions": ExportDropReason.SPAN_LIMIT,
    "sentry open spans": ExportDropReason.SPAN_LIMIT,
}
SETTLE_S: Final = 1.0  # a report waits this long after the first drop, so a burst is reported whole

drop_logger = logging.getLogger("otel_hakgal.export")


def drop_reason(queue: str) -> str:
    """The reason (``error.type`` of ``otel_hakgal.export.dropped``) items dropped by ``queue`` count under."""
    return _QUEUE_REASONS.get(queue, ExportDropReason.QUEUE_FULL)


class DropTally:
    """What the backends dropped (mostly beyond a queue's capacity), for the process's lifetime.

    The backends' ``stats()`` are the source: each queue counts its own drops.
    :meth:`totals` adds what each backend dropped since it was last read, so the
    sums only grow, across reconfigurations too (the ``otel_hakgal.export.dropped``
    counter reads them). A queue calls :meth:`noticed` when it drops: the drops
    are then reported in one warning, :data:`SETTLE_S` later and at most once per
    :data:`~otel_hakgal.log_limits.INTERVAL_S`, with the counts since the last one.
    """

    def __init__(self, interval_s: float = log_limits.INTERVAL_S, settle_s: float = SETTLE_S) -> None:
        self.interval_s = interval_s
        self.settle_s = settle_s
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._seen: weakref.WeakKeyDictionary[Backend, dict[str, int]] = weakref.WeakKeyDictionary()
        self._totals: dict[tuple[str, str], int] = {}
        self._unreported: dict[tuple[str, str], int] = {}
        self._timer: threading.Timer | None = None
        self._next_report = 0.0

    def totals(self, backends: Iterable[Backend] | None = None) -> dict[tuple[str, str], int]:
        """Items dropped since the process started, by (backend name, reason); reads ``backends``
        (default: the running ones) first."""
        with self._lock:
            if self._observe(_running_backends() if backends is None else backends):
                self._schedule()  # drops no queue noticed (a plugin's): reported too
            return dict(self._totals)

    def noticed(self) -> None:
        """A queue dropped something: report it, with whatever else drops meanwhile, soon."""
        if self._timer is None:  # one check without the lock: a flood of drops calls this for each
            with self._lock:
                self._schedule()

    def report(self) -> None:
        """Log one warning with what was dropped since the last one (none when nothing was)."""
        backends = _running_backends()
        with self._lock:
            self._timer = None
            self._next_report = time.monotonic() + self.interval_s
            self._observe(backends)
            unreported, self._unreported = self._unreported, {}
        if not unreported:
            return
        by_backend: dict[str, list[str]] = {}
        for (backend, reason), count in sorted(unreported.items()):
            by_backend.setdefault(backend, []).append(f"{count} {reason}")
        drop_logger.warning(
            "otel_hakgal: %d telemetry items dropped (%s); counted in the metric %s, "
            "queues in Handle.stats(); if this load is expected, raise the queue sizes "
            "(batch.max_queue_size, sentry.max_queue_size)",
            sum(unreported.values()),
            "; ".join(f"{backend}: {', '.join(counts)}" for backend, counts in by_backend.items()),
            Metric.EXPORT_DROPPED,
        )

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        delay = max(self.settle_s, self._next_report - time.monotonic())
        timer = threading.Timer(delay, self.report)
        timer.name = "otel_hakgal-drop-report"
        timer.daemon = True
        try:
            timer.start()
        except RuntimeError:  # no new threads at interpreter shutdown: the drops stay counted, unreported
            return
        self._timer = timer

    def _observe(self, backends: Iterable[Backend]) -> bool:
        """Add what ``backends`` dropped since they were last read; whether they dropped anything."""
        found = False
        for backend in backends:
            try:
                backend_stats = backend.stats()
            except Exception:  # a plugin's broken stats() must not break the metric or the report
                continue
            queues = backend_stats.queues
            self._observe_refused(backend, backend_stats.signals_off)
            # Every running backend has its series from the start, at 0: alerts on increase() see the first drop.
            self._totals.setdefault((backend.name, ExportDropReason.QUEUE_FULL), 0)
            seen = self._seen.setdefault(backend, {})
            for queue, stats in queues.items():
                self._totals.setdefault((backend.name, drop_reason(queue)), 0)
                new = stats.dropped - seen.get(queue, 0)
                if new <= 0:
                    continue
                seen[queue] = stats.dropped
                key = (backend.name, drop_reason(queue))
                self._totals[key] = self._totals.get(key, 0) + new
                self._unreported[key] = self._unreported.get(key, 0) + new
                found = True
        return found

    def _observe_refused(self, backend: Backend, signals_off: Mapping[str, SignalOff]) -> None:
        """Count what ``backend`` did not send of signals its receiver refused; not reported again here:
        the refusal was warned about once (:class:`~otel_hakgal.delivery.SignalGate`)."""
        seen = self._seen.setdefault(backend, {})
        for signal, off in signals_off.items():
            new = off.unsent - seen.get(f"signal {signal}", 0)
            if not off.refused or new <= 0:
                continue
            seen[f"signal {signal}"] = off.unsent
            key = (backend.name, ExportDropReason.SIGNAL_REFUSED)
            self._totals[key] = self._totals.get(key, 0) + new

    def reset(self) -> None:
        """Forget every count and any pending report (for tests that stage drops; the counter restarts)."""
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self._reset()

    def _after_fork_in_child(self) -> None:
        self._reset()  # the parent's timer thread does not exist here, nor are its drops the child's


def _running_backends() -> tuple[Backend, ...]:
    from otel_hakgal import runtime

    return runtime.current.backends


DROPS: Final = DropTally()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=DROPS._after_fork_in_child)
