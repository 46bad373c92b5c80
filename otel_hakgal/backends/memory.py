"""Backend ``memory``: keeps spans, metrics and log records in process, for tests and the demo."""

from __future__ import annotations

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_hakgal.backends.base import Backend, Parts
from otel_hakgal.config import Config


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]

    def create_parts(self) -> Parts:
        # Synchronous, so a span or log record is visible the moment it ends or is logged.
        log_processors = (SimpleLogRecordProcessor(self.log_exporter),) if self.config.logs.enabled else ()
        return Parts(
            span_processors=(SimpleSpanProcessor(self.exporter),),
            metric_readers=(self.reader,),
            log_processors=log_processors,
        )

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def logs(self) -> list[ReadableLogRecord]:
        """Exported log records (scrubbed, masked and cut as every backend gets them), in the order logged."""
        return list(self.log_exporter.get_finished_logs())

    def metrics(self) -> MetricsData | None:
        """A fresh collection of all metrics (cumulative)."""
        return self.reader.get_metrics_data()

    def clear(self) -> None:
        self.exporter.clear()
        self.log_exporter.clear()
