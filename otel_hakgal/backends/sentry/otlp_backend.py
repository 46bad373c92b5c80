"""Backend ``sentry-otlp``: plain OTel spans to Sentry's OTLP endpoint, errors through the Sentry SDK.

Sentry's ``OTLPIntegration`` links errors to the current OTel trace; its own
exporter and propagator are switched off (``setup_otlp_traces_exporter=False``,
``setup_propagator=False``) because they would replace the layer's provider
wiring and the global propagator. The layer exports to the OTLP URL derived
from the DSN and propagates with its own ``sentry-trace``-aware propagator.
Ops, tags and measurements are derived by Sentry on ingest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from otel_hakgal.backends.sentry.common import SentryBackendBase

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor
    from sentry_sdk.integrations import Integration

    from otel_hakgal.backends.sentry.client import SentryClient
    from otel_hakgal.backends.sentry.propagator import DscHead


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
        from otel_hakgal.backends.http_session import RecordingSession
        from otel_hakgal.backends.sentry._compat import otlp_traces_target

        endpoint, headers = otlp_traces_target(self.settings.dsn)
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, session=RecordingSession(self.delivery))
        return (*profiling, CountingBatchSpanProcessor(exporter, self.config))
