"""Backend ``memory``: keeps spans and metrics in process, for tests and the demo."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_hakgal.backends import Backend


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()

    def span_processors(self) -> Sequence[SpanProcessor]:
        # Synchronous, so a span is visible the moment it ends.
        return (SimpleSpanProcessor(self.exporter),)

    def metric_readers(self) -> Sequence[MetricReader]:
        return (self.reader,)

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> MetricsData | None:
        """A fresh collection of all metrics (cumulative)."""
        return self.reader.get_metrics_data()

    def clear(self) -> None:
        self.exporter.clear()


BACKEND = MemoryBackend
