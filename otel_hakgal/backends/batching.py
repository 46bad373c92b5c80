"""How exporting backends batch: spans through one configured batch processor that counts its drops,
metrics through one periodic reader at ``export.metric_interval``."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_hakgal.backends.base import QueueStats
from otel_hakgal.config import Config


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor with the ``[batch]`` settings, counting spans lost to a full queue.

    The SDK drops those with one log line and no public count; ``queue_stats``
    reports them (the only place this layer reads the SDK's private queue).
    """

    def __init__(self, exporter: SpanExporter, config: Config) -> None:
        batch = config.batch
        super().__init__(
            exporter,
            max_queue_size=batch.max_queue_size,
            schedule_delay_millis=batch.schedule_delay * 1000,
            max_export_batch_size=batch.max_export_batch_size,
            export_timeout_millis=batch.export_timeout * 1000,
        )
        self._queue = self._batch_processor._queue
        self._capacity = batch.max_queue_size
        self.dropped = 0

    def on_end(self, span: ReadableSpan) -> None:
        if len(self._queue) >= self._capacity and span.context is not None and span.context.trace_flags.sampled:
            self.dropped += 1
        super().on_end(span)

    def queue_stats(self) -> QueueStats:
        return QueueStats(queued=len(self._queue), capacity=self._capacity, dropped=self.dropped)


def periodic_reader(exporter: MetricExporter, config: Config) -> PeriodicExportingMetricReader:
    """The metric reader of an exporting backend: ``exporter`` every ``export.metric_interval`` seconds."""
    return PeriodicExportingMetricReader(exporter, export_interval_millis=config.export.metric_interval * 1000)
