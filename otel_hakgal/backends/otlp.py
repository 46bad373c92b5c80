"""Backend ``otlp``: OTLP over HTTP/protobuf to a collector, traces and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricReader

from otel_hakgal.backends.base import Backend, Parts
from otel_hakgal.backends.batching import CountingBatchSpanProcessor, periodic_reader
from otel_hakgal.backends.http_session import RecordingSession
from otel_hakgal.config import http_url, one_of, parse_key_values, positive, setting


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

    def create_parts(self) -> Parts:
        exporter = OTLPSpanExporter(
            endpoint=self._url("traces"),
            headers=dict(self.settings.headers),
            timeout=self.settings.timeout,
            compression=self._compression(),
            session=RecordingSession(self.delivery),
        )
        readers = (self._metric_reader(),) if self.settings.metrics else ()
        return Parts(span_processors=(CountingBatchSpanProcessor(exporter, self.config),), metric_readers=readers)

    def _metric_reader(self) -> MetricReader:
        exporter = OTLPMetricExporter(
            endpoint=self._url("metrics"),
            headers=dict(self.settings.headers),
            timeout=self.settings.timeout,
            compression=self._compression(),
            session=RecordingSession(self.delivery),
        )
        return periodic_reader(exporter, self.config)
