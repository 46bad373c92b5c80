"""Backend ``otlp``: OTLP over HTTP/protobuf to a collector, traces, metrics and log records.

Each signal goes to ``<endpoint>/v1/<signal>`` or its own endpoint, and can be turned off on its own. A
receiver that answers 404 or 405 for a signal does not take it (a traces-only consumer on ``/v1/metrics``):
the backend warns once and stops sending that signal (:class:`~otel_hakgal.delivery.SignalGate`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_hakgal.backends.base import Backend, BackendStats, Parts
from otel_hakgal.backends.batching import (
    CountingBatchLogRecordProcessor,
    CountingBatchSpanProcessor,
    periodic_reader,
)
from otel_hakgal.backends.http_session import RecordingSession
from otel_hakgal.config import EXPORTER_BACKENDS, Config, http_url, one_of, parse_key_values, positive, setting
from otel_hakgal.delivery import SignalDeliveryLog, SignalGate, SignalOff, mute_refused_exports

METRICS_EXPORTER_ENV: Final = "OTEL_METRICS_EXPORTER"
# The loggers of the OTLP exporters: each logs an ERROR per failed export, which a refused signal leaves out.
EXPORTER_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.common.http",
)
# How to stop sending each signal, for the warning when a receiver refuses it.
TURN_OFF: Final = {
    "traces": "set otlp.traces = false, or send them elsewhere with otlp.traces_endpoint"
    " (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)",
    "metrics": f"set otlp.metrics = false ({METRICS_EXPORTER_ENV}=none), or send them elsewhere with"
    " otlp.metrics_endpoint (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) or the prometheus backend",
    "logs": "set otlp.logs = false (logs.enabled = false or OTEL_LOGS_EXPORTER=none: for every backend), or"
    " send them elsewhere with otlp.logs_endpoint (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)",
}
NOUNS: Final = {"traces": "spans", "metrics": "metrics", "logs": "log records"}


def _empty_or_http_url(value: Any) -> str | None:
    return None if value == "" else http_url(value)


def parse_metrics_exporter(raw: str) -> bool:
    """``otlp.metrics`` from ``OTEL_METRICS_EXPORTER``, read as the OTel SDK reads it: exporter names, and
    metrics go to OTLP when one of them is ``otlp``; ``none`` or only other exporters (``prometheus``,
    ``console``: backends of their own here) turn OTLP metrics off."""
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    if not names or not all(re.fullmatch(r"[a-z0-9_.\-]+", name) for name in names):
        raise ValueError(f"exporter names, e.g. 'otlp', 'prometheus' or 'none' ({METRICS_EXPORTER_ENV})")
    return any(EXPORTER_BACKENDS.get(name) == "otlp" for name in names)


@dataclass(frozen=True)
class OtlpSettings:
    endpoint: str = setting(
        "http://localhost:4318",
        "Collector base URL; `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended (for a signal without"
        " an endpoint of its own).",
        env="OTEL_EXPORTER_OTLP_ENDPOINT",
        validate=http_url,
    )
    traces_endpoint: str = setting(
        "",
        "Full URL spans are sent to, used as is (e.g. `http://127.0.0.1:6006/v1/traces`); empty:"
        " `<endpoint>/v1/traces`.",
        env="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        validate=_empty_or_http_url,
    )
    metrics_endpoint: str = setting(
        "",
        "Full URL metrics are sent to, used as is (e.g. `http://metrics:4318/v1/metrics`); empty:"
        " `<endpoint>/v1/metrics`.",
        env="OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        validate=_empty_or_http_url,
    )
    logs_endpoint: str = setting(
        "",
        "Full URL log records are sent to, used as is (e.g. `http://logs:4318/v1/logs`); empty: `<endpoint>/v1/logs`.",
        env="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        validate=_empty_or_http_url,
    )
    headers: dict[str, str] = setting(
        {},
        "Extra request headers (e.g. auth).",
        env="OTEL_EXPORTER_OTLP_HEADERS",
        env_parser=parse_key_values,
        secret=True,
    )
    logs_headers: dict[str, str] = setting(
        {},
        "Extra request headers of log exports only, over `headers` (a header in both: this value).",
        env="OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        env_parser=parse_key_values,
        secret=True,
    )
    timeout: float = setting(10.0, "Seconds to wait for one export request.", validate=positive)
    compression: str = setting("none", "Request body compression.", validate=one_of("none", "gzip"))
    traces: bool = setting(True, "Export spans; false: metrics and log records only.")
    metrics: bool = setting(
        True,
        f"Export metrics; `{METRICS_EXPORTER_ENV}` turns them off unless it names `otlp` (`none`, `prometheus`).",
        env=METRICS_EXPORTER_ENV,
        env_parser=parse_metrics_exporter,
    )
    logs: bool = setting(True, "Export log records (while `logs.enabled`); false: the other backends still get them.")


class GatedSpanExporter(OTLPSpanExporter):
    """The OTLP span exporter, sending only while ``gate`` is open (see :class:`SignalGate`)."""

    def __init__(self, gate: SignalGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.gate.run(len(spans), partial(super().export, spans), SpanExportResult.SUCCESS)


class GatedMetricExporter(OTLPMetricExporter):
    """The OTLP metric exporter, sending only while ``gate`` is open (unsent items: data points)."""

    def __init__(self, gate: SignalGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def export(
        self, metrics_data: MetricsData, timeout_millis: float | None = 10000, **kwargs: Any
    ) -> MetricExportResult:
        points = sum(
            len(metric.data.data_points)
            for resource_metrics in metrics_data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        )
        send = partial(super().export, metrics_data, timeout_millis, **kwargs)
        return self.gate.run(points, send, MetricExportResult.SUCCESS)


class GatedLogExporter(OTLPLogExporter):
    """The OTLP log record exporter, sending only while ``gate`` is open."""

    def __init__(self, gate: SignalGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self.gate.run(len(batch), partial(super().export, batch), LogRecordExportResult.SUCCESS)


class OtlpBackend(Backend):
    name = "otlp"
    Settings = OtlpSettings
    remote = True

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        # What the log exports did (``selftest``); each send is counted in ``delivery`` too.
        self.log_delivery = SignalDeliveryLog(self.delivery)
        # One per signal, fresh with each backend (so each setup() that starts one): open until refused.
        self.gates = {signal: SignalGate(self.name, signal, NOUNS[signal], TURN_OFF[signal]) for signal in NOUNS}

    def url(self, signal: str) -> str:
        """Where ``signal`` ("traces", "metrics", "logs") is sent: its own endpoint, else ``<endpoint>/v1/<signal>``."""
        own: str = getattr(self.settings, f"{signal}_endpoint")
        endpoint: str = self.settings.endpoint
        return own or endpoint.rstrip("/") + f"/v1/{signal}"

    def _compression(self) -> Compression:
        return Compression.Gzip if self.settings.compression == "gzip" else Compression.NoCompression

    def _exporter_arguments(self, signal: str, log: SignalDeliveryLog | None = None) -> dict[str, Any]:
        return {
            "gate": self.gates[signal],
            "endpoint": self.url(signal),
            "headers": dict(self.settings.headers),
            "timeout": self.settings.timeout,
            "compression": self._compression(),
            "session": RecordingSession(log or self.delivery, self.gates[signal]),
        }

    def create_parts(self) -> Parts:
        mute_refused_exports(EXPORTER_LOGGERS)
        span_processors = (self._span_processor(),) if self.settings.traces else ()
        readers = (self._metric_reader(),) if self.settings.metrics else ()
        log_processors = (self._log_processor(),) if self.config.logs.enabled and self.settings.logs else ()
        return Parts(span_processors=span_processors, metric_readers=readers, log_processors=log_processors)

    def _span_processor(self) -> CountingBatchSpanProcessor:
        return CountingBatchSpanProcessor(GatedSpanExporter(**self._exporter_arguments("traces")), self.config)

    def _metric_reader(self) -> MetricReader:
        return periodic_reader(GatedMetricExporter(**self._exporter_arguments("metrics")), self.config)

    def _log_processor(self) -> LogRecordProcessor:
        # Everything given, as for traces: the configuration has read the OTEL_EXPORTER_OTLP_LOGS_* variables
        # (a file or setup() argument may set them instead; the SDK's own merge of the headers changes nothing).
        arguments = self._exporter_arguments("logs", self.log_delivery)
        arguments["headers"] = {**self.settings.headers, **self.settings.logs_headers}
        return CountingBatchLogRecordProcessor(GatedLogExporter(**arguments), self.config)

    def signals_off(self) -> dict[str, SignalOff]:
        """The signals this backend does not send: refused by the receiver, or turned off by the configuration."""
        off: dict[str, SignalOff] = {}
        for signal, gate in self.gates.items():
            refused = gate.state()
            if refused is not None:
                off[signal] = refused
            elif not getattr(self.settings, signal):
                off[signal] = SignalOff(f"otlp.{signal} = false")
        return off

    def stats(self) -> BackendStats:
        stats = super().stats()
        return BackendStats(queues=stats.queues, sends=stats.sends, signals_off=self.signals_off())
