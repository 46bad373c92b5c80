"""What both Sentry backends share: settings, checks, the client's lifecycle, errors, propagation, stats.

Importable without sentry-sdk: the modules that need it are imported in
``start()`` (and by the methods that only run after it), so ``check`` can say
that the ``sentry`` extra is missing instead of failing to import.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otel_hakgal.backends.base import Backend, BackendStats, Parts
from otel_hakgal.backends.sentry.settings import (
    SentrySettings,
    both_backends_problem,
    effective_sample_rate,
    profile_problems,
    profile_session_rate,
    sample_rate_problem,
)
from otel_hakgal.delivery import DeliveryLog

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from sentry_sdk.integrations import Integration

    from otel_hakgal.backends.sentry.client import SentryClient
    from otel_hakgal.backends.sentry.errors import ErrorLinker, OpenSpans
    from otel_hakgal.backends.sentry.profiling import SentryProfiler
    from otel_hakgal.backends.sentry.propagator import DscHead
    from otel_hakgal.config import Config


class SentryBackendBase(Backend):
    """One Sentry backend: its own sentry-sdk client, error linking and ``sentry-trace`` propagation.

    Subclasses say which integrations and ``init`` options they add and which
    span processors carry the spans to Sentry.
    """

    Settings = SentrySettings
    remote = True
    # suppress_instrumentation (opentelemetry-instrumentation) keeps Sentry's own sends untraced.
    requires = ("sentry_sdk", "opentelemetry.instrumentation")
    extra = "sentry"

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        if not isinstance(self.settings, SentrySettings):
            self.settings = SentrySettings()
        self.sample_rate = effective_sample_rate(config)
        # Set by start(); the linker stays None once shut down, so the global event processor skips it.
        self.client: SentryClient | None = None
        self.open_spans: OpenSpans | None = None
        self.linker: ErrorLinker | None = None
        # The continuous profiler this backend's client set up (None: profiling off or session not sampled).
        self.profiler: SentryProfiler | None = None
        # What the sends of log records did, for ``selftest`` (each is counted in ``delivery`` too).
        self.log_delivery = DeliveryLog()
        self._running = False

    @classmethod
    def check(cls, config: Config, settings: Any) -> list[str]:
        section = settings if isinstance(settings, SentrySettings) else SentrySettings()
        return [
            *super().check(config, settings),
            *both_backends_problem(config, cls.name),
            *sample_rate_problem(config, section, cls.name),
            *profile_problems(config, section, cls.name),
        ]

    # --- what the subclasses add (called from start(): sentry-sdk is importable) ---

    def integrations(self) -> list[Integration]:
        """sentry-sdk integrations: Flask's (errors and request data), when Flask is installed."""
        if importlib.util.find_spec("flask") is None:
            return []
        from sentry_sdk.integrations.flask import FlaskIntegration

        return [FlaskIntegration(transaction_style="url")]

    def init_options(self) -> dict[str, Any]:
        """Extra ``sentry_sdk.init`` options."""
        return {}

    def create_span_processors(self, client: SentryClient, head: DscHead) -> Sequence[SpanProcessor]:
        """The processors that carry spans to Sentry, sending through ``client``."""
        return ()

    def create_log_processors(self, client: SentryClient) -> Sequence[LogRecordProcessor]:
        """The processors that carry log records to Sentry (called only with ``logs.enabled``)."""
        return ()

    @property
    def logs_enabled(self) -> bool:
        """The logs signal is on (``logs.enabled``): this backend sends log records."""
        return self.config.logs.enabled

    # --- lifecycle ----------------------------------------------------------------

    def create_parts(self) -> Parts:
        from otel_hakgal.backends.sentry import errors
        from otel_hakgal.backends.sentry.client import SentryClient
        from otel_hakgal.backends.sentry.propagator import ClientDscHead, SentryTracePropagator

        integrations = self.integrations()
        self.client = SentryClient.start(
            self.config,
            self.settings,
            integrations,
            self.delivery,
            log_delivery=self.log_delivery,
            **self.init_options(),
        )
        try:
            if profile_session_rate(self.settings) > 0:
                from otel_hakgal.backends.sentry.profiling import SentryProfiler

                self.profiler = SentryProfiler.attach()  # the scheduler this client's init just set up
            head = ClientDscHead(self.client.client, self.sample_rate)
            open_spans = errors.OpenSpans()
            processors = self.create_span_processors(self.client, head)
            log_processors = self.create_log_processors(self.client) if self.logs_enabled else ()
            errors.register_event_processor()
        except BaseException:
            self.shutdown()  # gives sentry-sdk back the client this start replaced
            raise
        self.open_spans = open_spans
        self.linker = errors.ErrorLinker(open_spans, head, self.config.redaction.max_text_length, self.settings.tags)
        self._running = True
        return Parts(
            span_processors=(open_spans, *processors),
            propagators=(SentryTracePropagator(head),),
            log_processors=tuple(log_processors),
        )

    def stats(self) -> BackendStats:
        stats = super().stats()
        transport = self.client.transport_queue() if self.client is not None else None
        if transport is None:
            return stats
        return BackendStats(queues={**stats.queues, "sentry transport": transport}, sends=stats.sends)

    def capture_exception(self, error: BaseException, context: Context | None = None) -> None:
        if self._running:
            from otel_hakgal.backends.sentry import errors

            errors.capture_exception(error, context)

    def capture_message(self, message: str, level: str) -> None:
        if self._running:
            from otel_hakgal.backends.sentry import errors

            errors.capture_message(message, level)

    def force_flush(self, timeout_s: float) -> bool:
        """Flush the client once, for every processor of this backend (theirs only hand over to it).

        Within ``timeout_s`` all told: the profiler's settling and the client's flush share it.
        """
        if self._running and self.client is not None:
            deadline = time.monotonic() + timeout_s
            if self.profiler is not None:
                self.profiler.settle(timeout_s)  # an idle sampler's last chunk reaches the transport first
            self.client.flush(max(0.0, deadline - time.monotonic()))
        return True

    def shutdown(self) -> None:
        """Close the client this backend started (a newer backend's client is left running)."""
        self._running = False
        self.linker = None  # the open spans were cleared by their processor's shutdown
        if self.profiler is not None:
            # This backend's sampler thread, not a newer backend's; its last chunk goes to the client, still open.
            self.profiler.stop()
            self.profiler = None
        if self.client is not None:
            self.client.close(self.config.export.shutdown_timeout)
