"""Backend ``sentry-otlp``: plain OTel spans to Sentry's OTLP endpoint, errors through the Sentry SDK.

Sentry's ``OTLPIntegration`` links errors to the current OTel trace; its own
exporter and propagator are switched off (``setup_otlp_traces_exporter=False``,
``setup_propagator=False``) because they would replace the layer's provider
wiring and the global propagator. The layer exports to the OTLP URL derived
from the DSN and propagates with its own ``sentry-trace``-aware propagator.
Ops, tags and measurements are derived by Sentry on ingest. Log records go,
with ``logs.enabled``, to Sentry's OTLP logs endpoint through the OTel
``OTLPLogExporter`` and a batch processor; they keep their trace and span id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from otel_hakgal.backends.sentry.common import SentryBackendBase

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from sentry_sdk.integrations import Integration

    from otel_hakgal.backends.sentry.client import SentryClient
    from otel_hakgal.backends.sentry.propagator import DscHead
    from otel_hakgal.delivery import DeliveryLog

EXPORT_TIMEOUT_S: Final = 10.0  # per request, the OTLP exporter's default


class SentryOtlpBackend(SentryBackendBase):
    name = "sentry-otlp"

    # No traces_sample_rate (init_options): Sentry's own tracing must stay off, the OTel sampler decides.

    def integrations(self) -> list[Integration]:
        from sentry_sdk.integrations.otlp import OTLPIntegration

        otlp = OTLPIntegration(setup_otlp_traces_exporter=False, setup_propagator=False, capture_exceptions=False)
        return [*super().integrations(), otlp]

    def create_span_processors(self, client: SentryClient, head: DscHead) -> Sequence[SpanProcessor]:
        if not self.settings.dsn:
            return ()
        profiling: tuple[SpanProcessor, ...] = ()
        if self.profiler is not None:
            from otel_hakgal.backends.sentry.profiling import ProfilingSpanProcessor

            # Before the exporter's processor: root spans get sentry.profiler_id while still writable.
            profiling = (ProfilingSpanProcessor(self.profiler),)
        from otel_hakgal.backends.batching import CountingBatchSpanProcessor

        exporter = sentry_otlp_exporter(self.settings.dsn, self.delivery)
        return (*profiling, CountingBatchSpanProcessor(exporter, self.config))

    def create_log_processors(self, client: SentryClient) -> Sequence[LogRecordProcessor]:
        if not self.settings.dsn:
            return ()
        from otel_hakgal.backends.batching import CountingBatchLogRecordProcessor
        from otel_hakgal.delivery import SignalDeliveryLog

        # Log exports counted apart (``selftest``) and with every other send (``delivery``).
        self.log_delivery = SignalDeliveryLog(self.delivery)
        exporter = sentry_otlp_log_exporter(self.settings.dsn, self.log_delivery)
        return (CountingBatchLogRecordProcessor(exporter, self.config),)


def sentry_otlp_exporter(dsn: str, delivery: DeliveryLog) -> SpanExporter:
    """An OTLP span exporter to Sentry's endpoint for ``dsn`` that reads none of the ``OTEL_EXPORTER_OTLP_*``
    variables: those configure the ``otlp`` backend's collector, and its credentials must not reach Sentry.

    Endpoint, timeout and compression are given (the exporter reads the environment only for what is not);
    headers and TLS files, which it merges from the environment regardless, are kept out by the session.
    """
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from otel_hakgal.backends.sentry._compat import otlp_traces_target
    from otel_hakgal.backends.sentry.otlp_session import OwnHeadersSession

    endpoint, headers = otlp_traces_target(dsn)
    return OTLPSpanExporter(
        endpoint=endpoint,
        headers=headers,
        timeout=EXPORT_TIMEOUT_S,
        compression=Compression.NoCompression,
        session=OwnHeadersSession(delivery, headers),
    )


def sentry_otlp_log_exporter(dsn: str, delivery: DeliveryLog) -> LogRecordExporter:
    """An OTLP log exporter to Sentry's logs endpoint for ``dsn``, as :func:`sentry_otlp_exporter` for spans:
    none of the ``OTEL_EXPORTER_OTLP_[LOGS_]*`` headers or TLS files, which configure another collector."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    from otel_hakgal.backends.sentry._compat import otlp_logs_target
    from otel_hakgal.backends.sentry.otlp_session import OwnHeadersSession

    endpoint, headers = otlp_logs_target(dsn)
    return OTLPLogExporter(
        endpoint=endpoint,
        headers=headers,
        timeout=EXPORT_TIMEOUT_S,
        compression=Compression.NoCompression,
        session=OwnHeadersSession(delivery, headers),
    )
