"""Backend ``otlp``: OTLP over HTTP/protobuf to a collector, traces and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_hakgal.backends import Backend
from otel_hakgal.config import http_url, one_of, parse_key_values, positive, setting
from otel_hakgal.delivery import RecordingSession


@dataclass(frozen=True)
class OtlpSettings:
    endpoint: str = setting(
        "http://localhost:4318",
        "Collector base URL; `/v1/traces` and `/v1/metrics` are appended.",
        env="OTEL_EXPORTER_OTLP_ENDPOINT",
        validate=http_url,
    )
    headers: dict[str, str] = setting(
        {},
        "Extra request headers (e.g. auth).",
        env="OTEL_EXPORTER_OTLP_HEADERS",
        env_parser=parse_key_values,
        secret=True,
    )
    timeout: float = setting(10.0, "Seconds to wait for one export request.", validate=positive)
    compression: str = setting("none", "Request body compression.", validate=one_of("none", "gzip"))
    metrics: bool = setting(True, "Also export metrics.")


class OtlpBackend(Backend):
    name = "otlp"
    Settings = OtlpSettings
    remote = True

    def _url(self, signal: str) -> str:
        endpoint: str = self.settings.endpoint
        return endpoint.rstrip("/") + f"/v1/{signal}"

    def _compression(self) -> Compression:
        return Compression.Gzip if self.settings.compression == "gzip" else Compression.NoCompression

    def span_processors(self) -> Sequence[SpanProcessor]:
        exporter = OTLPSpanExporter(
            endpoint=self._url("traces"),
            headers=dict(self.settings.headers),
            timeout=self.settings.timeout,
            compression=self._compression(),
            session=RecordingSession(self.delivery),
        )
        return (BatchSpanProcessor(exporter),)

    def metric_readers(self) -> Sequence[MetricReader]:
        if not self.settings.metrics:
            return ()
        exporter = OTLPMetricExporter(
            endpoint=self._url("metrics"),
            headers=dict(self.settings.headers),
            timeout=self.settings.timeout,
            compression=self._compression(),
            session=RecordingSession(self.delivery),
        )
        interval_ms = self.config.export.metric_interval * 1000
        return (PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms),)


BACKEND = OtlpBackend
