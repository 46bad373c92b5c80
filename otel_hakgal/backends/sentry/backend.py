"""Backend ``sentry``: OTel spans become Sentry transactions, as Sentry's span processor makes them.

``sentry_sdk.init(instrumenter="otel")`` plus the layer's
:class:`~otel_hakgal.backends.sentry.transactions.SentryTransactionProcessor` on
its TracerProvider, and a propagator that speaks ``sentry-trace`` next to W3C.
The OTel sampler decides once; Sentry follows. Log records become Sentry Logs
(``enable_logs``) in the same trace, through
:class:`~otel_hakgal.backends.sentry.logs.SentryLogProcessor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otel_hakgal.backends.base import BackendStats
from otel_hakgal.backends.sentry.common import SentryBackendBase

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor

    from otel_hakgal.backends.sentry.client import SentryClient
    from otel_hakgal.backends.sentry.logs import SentryLogProcessor
    from otel_hakgal.backends.sentry.propagator import DscHead
    from otel_hakgal.backends.sentry.transactions import SentryTransactionProcessor
    from otel_hakgal.config import Config


class SentryBackend(SentryBackendBase):
    name = "sentry"

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        self.processor: SentryTransactionProcessor | None = None
        self.log_processor: SentryLogProcessor | None = None

    def init_options(self) -> dict[str, Any]:
        return {"traces_sample_rate": self.sample_rate, "enable_logs": self.logs_enabled}

    def create_span_processors(self, client: SentryClient, head: DscHead) -> Sequence[SpanProcessor]:
        from otel_hakgal.backends.sentry.transactions import SentryTransactionProcessor

        # The handle flushes and shuts down processors before backends: the processor drains its worker itself.
        self.processor = SentryTransactionProcessor(
            self.resource,
            client.client,
            head=head,
            tags=self.settings.tags,
            profiler=self.profiler,
            max_queue_size=self.settings.max_queue_size,
            shutdown_timeout_s=self.config.export.shutdown_timeout,
        )
        return (self.processor,)

    def create_log_processors(self, client: SentryClient) -> Sequence[LogRecordProcessor]:
        if not self.settings.dsn:
            return ()
        from otel_hakgal.backends.sentry.logs import SentryLogProcessor

        # Flushed and shut down before the backend, like the span processors: it drains its worker itself.
        self.log_processor = SentryLogProcessor(client.client, shutdown_timeout_s=self.config.export.shutdown_timeout)
        return (self.log_processor,)

    def stats(self) -> BackendStats:
        stats = super().stats()
        queues = dict(stats.queues)
        for processor in (self.processor, self.log_processor):
            if processor is not None:
                queues.update(processor.queue_stats())
        return BackendStats(queues=queues, sends=stats.sends)
