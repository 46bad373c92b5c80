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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from otel_hakgal.backends.sentry.common import SentryBackendBase

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk.trace import SpanProcessor
    from sentry_sdk.integrations import Integration

    from otel_hakgal.backends.sentry.client import SentryClient
    from otel_hakgal.backends.sentry.propagator import DscHead
    from otel_hakgal.delivery import DeliveryLog

EXPORT_TIMEOUT_S: Final = 10.0  # per request, the OTLP exporter's default
_Exporter = TypeVar("_Exporter", "OTLPSpanExporter", "OTLPLogExporter")


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
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from otel_hakgal.backends.batching import CountingBatchSpanProcessor
        from otel_hakgal.backends.sentry._compat import otlp_traces_target

        exporter = sentry_otlp_exporter(OTLPSpanExporter, otlp_traces_target, self.settings.dsn, self.delivery)
        return (*profiling, CountingBatchSpanProcessor(exporter, self.config))

    def create_log_processors(self, client: SentryClient) -> Sequence[LogRecordProcessor]:
        if not self.settings.dsn:
            return ()
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        from otel_hakgal.backends.batching import CountingBatchLogRecordProcessor
        from otel_hakgal.backends.sentry._compat import otlp_logs_target
        from otel_hakgal.delivery import SignalDeliveryLog

        # Log exports counted apart (``selftest``) and with every other send (``delivery``).
        self.log_delivery = SignalDeliveryLog(self.delivery)
        exporter = sentry_otlp_exporter(OTLPLogExporter, otlp_logs_target, self.settings.dsn, self.log_delivery)
        return (CountingBatchLogRecordProcessor(exporter, self.config),)


def sentry_otlp_exporter(
    exporter_class: type[_Exporter],
    target: Callable[[str], tuple[str, dict[str, str]]],
    dsn: str,
    delivery: DeliveryLog,
) -> _Exporter:
    """An OTLP exporter (``OTLPSpanExporter`` or ``OTLPLogExporter``) to Sentry's endpoint for ``dsn`` that
    ``target`` gives (``otlp_traces_target`` or ``otlp_logs_target``), reading none of the
    ``OTEL_EXPORTER_OTLP_[TRACES_|LOGS_]*`` variables: those configure the ``otlp`` backend's collector,
    and its credentials must not reach Sentry.

    Endpoint, timeout and compression are given (the exporter reads the environment only for what is not);
    headers and TLS files, which it merges from the environment regardless, are kept out by the session.
    """
    from opentelemetry.exporter.otlp.proto.http import Compression

    from otel_hakgal.backends.sentry.otlp_session import OwnHeadersSession

    endpoint, headers = target(dsn)
    return exporter_class(
        endpoint=endpoint,
        headers=headers,
        timeout=EXPORT_TIMEOUT_S,
        compression=Compression.NoCompression,
        session=OwnHeadersSession(delivery, headers),
    )
