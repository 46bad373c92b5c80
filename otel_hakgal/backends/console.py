"""Backend ``console``: each finished trace as an indented waterfall with its log lines, metrics as lines.

A log record emitted inside a span is printed with its trace, one line under
that span (among its children, in time order); one outside any span, of a
trace that is not recorded, or of a trace already printed is printed at once,
on a line of its own.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
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
_MAX_LOGS_PER_TRACE = 200  # a trace that logs in a loop shows its first lines and a count of the rest
_PRINTED_TRACES = 1000  # traces remembered as printed: their late log lines print alone at once


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


@dataclass(frozen=True)
class LogLine:
    """What the console shows of one log record (kept instead of the record: no context, no attributes)."""

    trace_id: int
    span_id: int
    sampled: bool
    time_ns: int
    text: str  # "WARN otel_hakgal.demo.commands: command ask failed: ..."

    @classmethod
    def of(cls, record: ReadWriteLogRecord) -> LogLine:
        log = record.log_record
        severity = log.severity_text or (log.severity_number.name if log.severity_number is not None else "LOG")
        scope = record.instrumentation_scope.name if record.instrumentation_scope is not None else ""
        message = "" if log.body is None else str(log.body)
        first, newline, _ = message.partition("\n")
        text = f"{severity} {scope}: {first}" if scope else f"{severity} {first}"
        return cls(
            trace_id=log.trace_id or 0,
            span_id=log.span_id or 0,
            sampled=bool(log.trace_flags is not None and log.trace_flags.sampled),
            time_ns=log.timestamp or log.observed_timestamp or 0,
            text=text + (" …" if newline else ""),
        )

    def alone(self) -> str:
        """The line printed for a record outside any printed trace."""
        ids = f"  (trace {self.trace_id:032x} span {self.span_id:016x})" if self.trace_id else ""
        return f"log {self.text}{ids}"


def render_waterfall(spans: Sequence[ReadableSpan], logs: Sequence[LogLine] = (), more_logs: int = 0) -> str:
    """One trace as an indented waterfall, children under parents and log lines under their span, in time order.

    A log line whose span is not among ``spans`` (it ended after the trace was printed) shows under the roots;
    ``more_logs`` lines the trace logged beyond :data:`_MAX_LOGS_PER_TRACE` are counted on its last line.
    """
    if not spans:
        return "\n".join(line.alone() for line in logs)
    text = render_trace(spans, logs)
    return text + f"\n  ▸ {more_logs} more log lines not shown" if more_logs else text


class Waterfall:
    """Buffers spans and log lines per trace; prints the trace when its local root ends.

    Spans that end after their root (a timed-out command's worker) print alone, as do their log lines.
    """

    def __init__(self, printer: _Printer) -> None:
        self._printer = printer
        self._open: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._logs: OrderedDict[int, list[LogLine]] = OrderedDict()
        self._more_logs: dict[int, int] = {}  # per trace in _logs: lines beyond _MAX_LOGS_PER_TRACE
        self._printed: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()

    def span_ended(self, span: ReadableSpan) -> None:
        trace_id = span.context.trace_id
        is_local_root = span.parent is None or span.parent.is_remote
        if not span.context.trace_flags.sampled:  # recorded, not sampled (tail sampling dropped it)
            if is_local_root:
                self._forget(trace_id)
            return
        with self._lock:
            spans = self._open.setdefault(trace_id, [])
            spans.append(span)
            if not is_local_root:
                if len(self._open) > _MAX_OPEN_TRACES:
                    self._open.popitem(last=False)
                return
            del self._open[trace_id]
            logs = self._logs.pop(trace_id, [])
            more_logs = self._more_logs.pop(trace_id, 0)
            self._printed[trace_id] = None
            if len(self._printed) > _PRINTED_TRACES:
                self._printed.popitem(last=False)
        self._printer.print(render_waterfall(spans, logs, more_logs))

    def _forget(self, trace_id: int) -> None:
        """Let go of a trace that will not be printed: its log lines print alone."""
        with self._lock:
            self._open.pop(trace_id, None)
            lines = self._logs.pop(trace_id, [])
            self._more_logs.pop(trace_id, None)
            self._printed[trace_id] = None  # its later lines print alone at once
            if len(self._printed) > _PRINTED_TRACES:
                self._printed.popitem(last=False)
        for line in lines:
            self._printer.print(line.alone())

    def logged(self, line: LogLine) -> None:
        evicted: list[LogLine] = []
        with self._lock:
            # Outside a span, in a trace no span processor sees end, or in one already printed: now, alone.
            keep = bool(line.trace_id) and line.sampled and line.trace_id not in self._printed
            if keep:
                logs = self._logs.setdefault(line.trace_id, [])
                if len(logs) < _MAX_LOGS_PER_TRACE:
                    logs.append(line)
                else:
                    self._more_logs[line.trace_id] = self._more_logs.get(line.trace_id, 0) + 1
                if len(self._logs) > _MAX_OPEN_TRACES:
                    oldest, evicted = self._logs.popitem(last=False)
                    self._more_logs.pop(oldest, None)
        if not keep:
            self._printer.print(line.alone())
        for lost in evicted:
            self._printer.print(lost.alone())

    def flush(self) -> None:
        with self._lock:
            pending = list(self._open.items())
            self._open.clear()
            logs, self._logs = self._logs, OrderedDict()
            more_logs, self._more_logs = self._more_logs, {}
        for trace_id, spans in pending:
            self._printer.print(render_waterfall(spans, logs.pop(trace_id, []), more_logs.get(trace_id, 0)))
        for lines in logs.values():
            for line in lines:
                self._printer.print(line.alone())


class WaterfallSpanProcessor(SpanProcessor):
    """Hands ended spans to the :class:`Waterfall`."""

    def __init__(self, waterfall: Waterfall) -> None:
        self._waterfall = waterfall

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._waterfall.span_ended(span)

    def shutdown(self) -> None:
        self.force_flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._waterfall.flush()
        return True


class WaterfallLogProcessor(LogRecordProcessor):
    """Hands log records to the :class:`Waterfall`, synchronously: a line outside a span prints at once."""

    def __init__(self, waterfall: Waterfall) -> None:
        self._waterfall = waterfall

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self._waterfall.logged(LogLine.of(log_record))

    def shutdown(self) -> None:
        self._waterfall.flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._waterfall.flush()
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
        waterfall = Waterfall(self.printer)
        log_processors = (WaterfallLogProcessor(waterfall),) if self.config.logs.enabled else ()
        return Parts(
            span_processors=(WaterfallSpanProcessor(waterfall),), metric_readers=readers, log_processors=log_processors
        )
