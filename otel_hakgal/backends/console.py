"""Backend ``console``: each finished trace as an indented waterfall, metrics as lines."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, TextIO

from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_hakgal.backends.base import Backend, Parts
from otel_hakgal.backends.batching import periodic_reader
from otel_hakgal.config import Config, one_of, setting
from otel_hakgal.render import render_metrics, render_trace

_MAX_OPEN_TRACES = 1000  # bounds memory when local roots never end


@dataclass(frozen=True)
class ConsoleSettings:
    stream: str = setting("stderr", "Where to print.", validate=one_of("stderr", "stdout"))
    metrics: bool = setting(True, "Also print metrics at each export interval and at shutdown.")


class _Printer:
    def __init__(self, stream_name: str) -> None:
        self._stream_name = stream_name
        self._lock = threading.Lock()

    def print(self, text: str) -> None:
        stream: TextIO = sys.stdout if self._stream_name == "stdout" else sys.stderr
        with self._lock:
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):  # closed stream at interpreter exit
                pass


class WaterfallSpanProcessor(SpanProcessor):
    """Buffers spans per trace and prints the trace when its local root ends.

    Spans that end after their root (a timed-out command's worker) print alone.
    """

    def __init__(self, printer: _Printer) -> None:
        self._printer = printer
        self._open: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        trace_id = span.context.trace_id
        is_local_root = span.parent is None or span.parent.is_remote
        with self._lock:
            spans = self._open.setdefault(trace_id, [])
            spans.append(span)
            if not is_local_root:
                if len(self._open) > _MAX_OPEN_TRACES:
                    self._open.popitem(last=False)
                return
            del self._open[trace_id]
        self._printer.print(render_trace(spans))

    def shutdown(self) -> None:
        self.force_flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            pending = list(self._open.values())
            self._open.clear()
        for spans in pending:
            self._printer.print(render_trace(spans))
        return True


class ConsoleMetricExporter(MetricExporter):
    def __init__(self, printer: _Printer) -> None:
        super().__init__()
        self._printer = printer

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        text = render_metrics(metrics_data)
        if text:
            self._printer.print("metrics:\n" + text)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class ConsoleBackend(Backend):
    name = "console"
    Settings = ConsoleSettings

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        self.printer = _Printer(self.settings.stream)

    def create_parts(self) -> Parts:
        readers: tuple[MetricReader, ...] = ()
        if self.settings.metrics:
            readers = (periodic_reader(ConsoleMetricExporter(self.printer), self.config),)
        return Parts(span_processors=(WaterfallSpanProcessor(self.printer),), metric_readers=readers)
