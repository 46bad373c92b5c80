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

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sentry_sdk.consts import VERSION, EndpointType
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.otlp import OTLPIntegration
from sentry_sdk.utils import Dsn

from otel_hakgal.backends._sentry_common import (
    OpenSpans,
    SentryBackendBase,
    check_sample_rate,
    init_sentry,
)
from otel_hakgal.config import Config
from otel_hakgal.delivery import RecordingSession


def otlp_target(dsn: str) -> tuple[str, dict[str, str]]:
    """Sentry's OTLP traces URL for ``dsn`` and the auth header it wants."""
    auth = Dsn(dsn).to_auth(f"sentry.python/{VERSION}")
    return auth.get_api_url(EndpointType.OTLP_TRACES), {"X-Sentry-Auth": auth.to_header()}


class SentryOtlpBackend(SentryBackendBase):
    name = "sentry-otlp"

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        check_sample_rate(config, self.settings, self.name)
        # No traces_sample_rate: Sentry's own tracing must stay off, the OTel sampler decides.
        init_sentry(
            config,
            self.settings,
            [
                FlaskIntegration(transaction_style="url"),
                OTLPIntegration(setup_otlp_traces_exporter=False, setup_propagator=False, capture_exceptions=False),
            ],
            self.delivery,
        )

    def span_processors(self) -> Sequence[SpanProcessor]:
        if not self.settings.dsn:
            return (OpenSpans(),)
        endpoint, headers = otlp_target(self.settings.dsn)
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, session=RecordingSession(self.delivery))
        return (OpenSpans(), BatchSpanProcessor(exporter))


BACKEND = SentryOtlpBackend
