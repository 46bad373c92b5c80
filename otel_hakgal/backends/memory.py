"""Backend ``memory``: keeps spans and metrics in process, for tests and the demo."""

from __future__ import annotations

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

    def create_parts(self) -> Parts:
        # Synchronous, so a span is visible the moment it ends.
        return Parts(span_processors=(SimpleSpanProcessor(self.exporter),), metric_readers=(self.reader,))

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> MetricsData | None:
        """A fresh collection of all metrics (cumulative)."""
        return self.reader.get_metrics_data()

    def clear(self) -> None:
        self.exporter.clear()
