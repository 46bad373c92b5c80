"""Test kit for HAK-GAL developers: pytest fixtures and a loopback OTLP receiver.

Enable in a ``conftest.py`` with ``pytest_plugins = ["otel_hakgal.testing"]``:

- ``hakgal_telemetry``: telemetry recorded in memory (spans and metrics).
- ``otlp_receiver``: a running :class:`OtlpReceiver` on 127.0.0.1.
- ``sentry_receiver``: a running :class:`SentryReceiver` (Sentry ingest) on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan

from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.pipeline import Handle, setup
from otel_hakgal.testing.receiver import OtlpReceiver, ReceivedLog, ReceivedPoint, ReceivedSpan
from otel_hakgal.testing.sentry_receiver import SentryReceiver

__all__ = [
    "OtlpReceiver",
    "ReceivedLog",
    "ReceivedPoint",
    "ReceivedSpan",
    "SentryReceiver",
    "TelemetryRecorder",
    "hakgal_telemetry",
    "jsonl_lines",
    "jsonl_logs",
    "jsonl_metric_names",
    "jsonl_spans",
    "otlp_receiver",
    "sentry_receiver",
]


def jsonl_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The export requests a ``jsonl`` backend wrote, one dict per line."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def jsonl_spans(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every span (OTLP/JSON) in a ``jsonl`` backend's file."""
    return [
        span
        for line in jsonl_lines(path)
        for resource_spans in line.get("resourceSpans", [])
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    ]


def jsonl_logs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every log record (OTLP/JSON: ``body``, ``severityText``, hex ``traceId``...) in a ``jsonl`` backend's file."""
    return [
        record
        for line in jsonl_lines(path)
        for resource_logs in line.get("resourceLogs", [])
        for scope_logs in resource_logs["scopeLogs"]
        for record in scope_logs["logRecords"]
    ]


def jsonl_metric_names(path: str | os.PathLike[str]) -> set[str]:
    """The names of all metrics in a ``jsonl`` backend's file."""
    return {
        metric["name"]
        for line in jsonl_lines(path)
        for resource_metrics in line.get("resourceMetrics", [])
        for scope_metrics in resource_metrics["scopeMetrics"]
        for metric in scope_metrics["metrics"]
    }


class TelemetryRecorder:
    """Spans and metrics recorded by the ``memory`` backend, with lookups tests need."""

    def __init__(self, **setup_kwargs: Any) -> None:
        self._setup_kwargs = setup_kwargs
        self.handle: Handle = setup(backends=["memory"], **setup_kwargs)

    @property
    def _memory(self) -> MemoryBackend:
        return self.handle.backend(MemoryBackend)

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return self._memory.spans()

    def spans_named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name`` (fails if there are none or several)."""
        found = self.spans_named(name)
        names = sorted({span.name for span in self.spans()})
        assert len(found) == 1, f"expected one span {name!r}, found {len(found)}; span names: {names}"
        return found[0]

    def metric_points(self, name: str) -> list[NumberDataPoint | HistogramDataPoint]:
        data = self._memory.metrics()
        points: list[Any] = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def _matching(self, name: str, attributes: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> list[Any]:
        wanted = {**(attributes or {}), **extra}
        return [p for p in self.metric_points(name) if all((p.attributes or {}).get(k) == v for k, v in wanted.items())]

    def counter_value(self, name: str, attributes: Mapping[str, Any] | None = None, **extra: Any) -> float:
        """Sum of a counter over the points whose attributes include the given ones."""
        return float(sum(p.value for p in self._matching(name, attributes, extra)))

    def histogram_count(self, name: str, attributes: Mapping[str, Any] | None = None, **extra: Any) -> int:
        """Number of recordings of a histogram over the matching points."""
        return sum(p.count for p in self._matching(name, attributes, extra))

    def clear(self) -> None:
        """Forget all spans and metrics recorded so far."""
        self.handle.shutdown()
        self.handle = setup(backends=["memory"], **self._setup_kwargs)

    def close(self) -> None:
        self.handle.shutdown()


@pytest.fixture
def hakgal_telemetry() -> Iterator[TelemetryRecorder]:
    """Telemetry configured with the ``memory`` backend for this test."""
    recorder = TelemetryRecorder()
    try:
        yield recorder
    finally:
        recorder.close()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A running loopback OTLP/HTTP receiver; point the ``otlp`` backend at ``.endpoint``."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def sentry_receiver() -> Iterator[SentryReceiver]:
    """A running loopback Sentry ingest; give the ``sentry`` backends ``.dsn``."""
    with SentryReceiver() as receiver:
        yield receiver
