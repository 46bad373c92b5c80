"""Backend ``otlp``: OTLP over HTTP/protobuf to a collector, traces, metrics and log records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource

from otel_hakgal.backends.base import Backend, Parts
from otel_hakgal.backends.batching import (
    CountingBatchLogRecordProcessor,
    CountingBatchSpanProcessor,
    periodic_reader,
)
from otel_hakgal.backends.http_session import RecordingSession
from otel_hakgal.config import Config, http_url, one_of, parse_key_values, positive, setting
from otel_hakgal.delivery import SignalDeliveryLog


def _empty_or_http_url(value: Any) -> str | None:
    return None if value == "" else http_url(value)


@dataclass(frozen=True)
class OtlpSettings:
    endpoint: str = setting(
        "http://localhost:4318",
        "Collector base URL; `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended.",
        env="OTEL_EXPORTER_OTLP_ENDPOINT",
        validate=http_url,
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
    metrics: bool = setting(True, "Also export metrics.")


class OtlpBackend(Backend):
    name = "otlp"
    Settings = OtlpSettings
    remote = True

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        # What the log exports did (``selftest``); each send is counted in ``delivery`` too.
        self.log_delivery = SignalDeliveryLog(self.delivery)

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
        log_processors = (self._log_processor(),) if self.config.logs.enabled else ()
        return Parts(
            span_processors=(CountingBatchSpanProcessor(exporter, self.config),),
            metric_readers=readers,
            log_processors=log_processors,
        )

    def _metric_reader(self) -> MetricReader:
        exporter = OTLPMetricExporter(
            endpoint=self._url("metrics"),
            headers=dict(self.settings.headers),
            timeout=self.settings.timeout,
            compression=self._compression(),
            session=RecordingSession(self.delivery),
        )
        return periodic_reader(exporter, self.config)

    def _log_processor(self) -> LogRecordProcessor:
        # Everything given, as for traces: the configuration has read the OTEL_EXPORTER_OTLP_LOGS_* variables
        # (a file or setup() argument may set them instead; the SDK's own merge of the headers changes nothing).
        exporter = OTLPLogExporter(
            endpoint=self.settings.logs_endpoint or self._url("logs"),
            headers={**self.settings.headers, **self.settings.logs_headers},
            timeout=self.settings.timeout,
            compression=self._compression(),
            session=RecordingSession(self.log_delivery),
        )
        return CountingBatchLogRecordProcessor(exporter, self.config)
