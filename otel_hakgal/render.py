"""Human-readable rendering of traces and metrics, shared by the console backend and the demo."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv.attributes import http_attributes
from opentelemetry.trace import StatusCode

from otel_hakgal.conventions import Attr

# Attributes worth a glance in a waterfall line, in display order.
KEY_ATTRIBUTES: tuple[str, ...] = (
    http_attributes.HTTP_REQUEST_METHOD,
    http_attributes.HTTP_ROUTE,
    http_attributes.HTTP_RESPONSE_STATUS_CODE,
    "http.status_code",  # old HTTP semconv: only when the user opts out of the stable names
    Attr.COMMAND_OUTCOME,
    Attr.QUERY_FORMULA,
    Attr.QUERY_ANSWER,
    Attr.PROVER_ORDER,
    Attr.PROVER_RESULT,
    Attr.CACHE_HIT,
    Attr.GEN_AI_PROVIDER_NAME,
    Attr.GEN_AI_USAGE_INPUT_TOKENS,
    Attr.GEN_AI_USAGE_OUTPUT_TOKENS,
    Attr.LLM_COST_AMOUNT,
    Attr.LLM_COST_KNOWN,
    Attr.RAG_CHUNK_COUNT,
    Attr.RAG_FACT_COUNT,
    Attr.KB_OPERATION,
    Attr.KB_FACT_COUNT,
)
_MAX_VALUE_CHARS = 48


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def _duration_ms(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6


def span_line(span: ReadableSpan, depth: int, trace_start: int) -> str:
    """One span as a waterfall line: its offset in the trace, duration, name and key attributes."""
    offset_ms = ((span.start_time or trace_start) - trace_start) / 1e6
    attributes = span.attributes or {}
    shown = " ".join(
        f"{key.removeprefix('hakgal.').removeprefix('gen_ai.')}={_short(attributes[key])}"
        for key in KEY_ATTRIBUTES
        if key in attributes
    )
    mark = ""
    if span.status.status_code is StatusCode.ERROR:
        mark = f"  ✗ {attributes.get(Attr.ERROR_TYPE, 'error')}"
    name = ("  " * depth + span.name).ljust(44)
    return f"{name} {_duration_ms(span):9.2f} ms  +{offset_ms:8.2f}  {shown}{mark}".rstrip()


class TraceNote(Protocol):
    """A line shown under a span of the waterfall (a log record), at its time among the span's children."""

    @property
    def span_id(self) -> int: ...
    @property
    def time_ns(self) -> int: ...
    @property
    def text(self) -> str: ...


def render_trace(spans: Sequence[ReadableSpan], notes: Sequence[TraceNote] = ()) -> str:
    """Render the spans of one trace as an indented waterfall, children under parents.

    ``notes`` show under the span they name, in time order among its children (a log line
    between two provers shows between them); one whose span is not among ``spans`` shows
    under the roots.
    """
    if not spans:
        return ""
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children[parent if parent in by_id else None].append(span)
    notes_of: dict[int | None, list[TraceNote]] = defaultdict(list)
    for note in notes:
        notes_of[note.span_id if note.span_id in by_id else None].append(note)
    trace_start = min(span.start_time or 0 for span in spans)
    trace_id = next(iter(by_id.values())).context.trace_id if by_id else 0
    lines = [f"trace {trace_id:032x}"]

    def under(parent: int | None, depth: int) -> None:
        entries: list[tuple[int, ReadableSpan | TraceNote]] = [(s.start_time or 0, s) for s in children[parent]]
        entries += [(note.time_ns, note) for note in notes_of.get(parent, [])]
        for _, entry in sorted(entries, key=lambda item: item[0]):
            if isinstance(entry, ReadableSpan):
                lines.append(span_line(entry, depth, trace_start))
                under(entry.context.span_id if entry.context else None, depth + 1)
            else:
                lines.append("  " * depth + "▸ " + entry.text)

    under(None, 1)
    return "\n".join(lines)


def group_by_trace(spans: Iterable[ReadableSpan]) -> list[list[ReadableSpan]]:
    """Spans grouped per trace, traces in order of their first start."""
    traces: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        if span.context is not None:
            traces[span.context.trace_id].append(span)
    return sorted(traces.values(), key=lambda group: min(s.start_time or 0 for s in group))


def render_metrics(data: MetricsData | None) -> str:
    """One line per data point: ``name{attributes} value``; histograms show count, sum and mean."""
    lines: list[str] = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    labels = ",".join(f"{k}={v!s}" for k, v in sorted((point.attributes or {}).items()))
                    if isinstance(point, HistogramDataPoint):
                        mean = point.sum / point.count if point.count else 0.0
                        value = f"count={point.count} sum={point.sum:.6g} mean={mean:.6g}"
                    elif isinstance(point, NumberDataPoint):
                        value = f"{point.value:.6g}"
                    else:
                        continue
                    lines.append(f"{metric.name}{{{labels}}} {value} {metric.unit or ''}".rstrip())
    return "\n".join(lines)
