"""The only code that touches sentry-sdk's process-wide client: init, transport, scrub hooks, flush, close.

sentry-sdk has one global client. A backend's :class:`SentryClient` remembers
the client its ``start()`` made and the one it replaced, so that a backend
retired after a newer one started closes only its own client and leaves the
newer one's registrations alone, and a backend whose setup is abandoned hands
sentry-sdk back the client that was running before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import sentry_sdk
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.trace import format_span_id, format_trace_id

from otel_hakgal import runtime
from otel_hakgal.backends.base import QueueStats
from otel_hakgal.backends.sentry import _compat
from otel_hakgal.backends.sentry.settings import SentrySettings, profile_session_rate
from otel_hakgal.delivery import DeliveryLog

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient
    from sentry_sdk.integrations import Integration

    from otel_hakgal.config import Config
    from otel_hakgal.redaction import SecretScrubber

logger = logging.getLogger("otel_hakgal")
delivery_logger = logging.getLogger("otel_hakgal.delivery")  # rate-limited: see otel_hakgal.log_limits

# Envelopes waiting to be sent (Sentry's default, 100, drops a burst of transactions the worker hands over at once).
TRANSPORT_QUEUE_SIZE: Final = 1000
# Event hint key: the scrubber in force when a transaction's root span ended (it is sent later, off-thread).
HINT_SCRUBBER: Final = "otel_hakgal_scrubber"


def recording_transport(log: DeliveryLog) -> type[_compat.HookedHttpTransport]:
    """Sentry's HTTP transport, logging each send's status for ``selftest`` and ``stats()``.

    A failed send is also logged as a warning on ``otel_hakgal.delivery``
    (rate-limited by :mod:`otel_hakgal.log_limits`): Sentry's own transport
    drops failed envelopes silently unless ``debug`` is on.
    """

    class RecordingTransport(_compat.HookedHttpTransport):
        def around_request(self, send: Any) -> Any:
            try:
                # Like OTel's own exporters: sending telemetry must not make telemetry (the launcher's
                # urllib3 instrumentation would trace every envelope, and those spans go nowhere).
                with suppress_instrumentation(), suppress_http_instrumentation():
                    response = send()
            except Exception as error:
                log.record_error(error)
                delivery_logger.warning("Sentry unreachable (%s); its events are dropped", type(error).__name__)
                raise
            log.record_status(response.status)
            if response.status >= 400:
                delivery_logger.warning("Sentry answered HTTP %s; its events are dropped", response.status)
            return response

    return RecordingTransport


def scrub_event(event: Any, hint: Any) -> Any:
    """``before_send``/``before_breadcrumb``: the layer's one secret policy, applied to errors too.

    Errors and breadcrumbs are prepared where they are captured, under the runtime in force.
    """
    scrubber = runtime.current.scrubber
    return event if scrubber is None else scrubber.scrub_data(event)


def scrub_transaction(event: Any, hint: Any) -> Any:
    """``before_send_transaction``, with the scrubber in force when the root span ended.

    A transaction is prepared later, on the worker, possibly after ``setup()`` replaced the
    runtime or shut it down: the scrubber travels with it in the hint.
    """
    scrubber: SecretScrubber | None
    scrubber = hint[HINT_SCRUBBER] if hint and HINT_SCRUBBER in hint else runtime.current.scrubber
    return event if scrubber is None else scrubber.scrub_transaction(event)


def _otel_propagation_context() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)


def _global_client() -> BaseClient:
    return sentry_sdk.get_global_scope().client


class SentryClient:
    """The sentry-sdk client one backend started, and the global client it replaced."""

    def __init__(self, client: BaseClient, previous: BaseClient) -> None:
        self.client = client
        self._previous = previous

    @classmethod
    def start(
        cls,
        config: Config,
        settings: SentrySettings,
        integrations: Sequence[Integration],
        delivery: DeliveryLog,
        **options: Any,
    ) -> SentryClient:
        """``sentry_sdk.init`` from the config: the new client becomes sentry-sdk's global client."""
        if not settings.dsn:
            logger.warning("otel_hakgal: Sentry backend has no dsn (set SENTRY_DSN): nothing is sent to Sentry")
        previous = _global_client()
        sentry_sdk.init(
            dsn=settings.dsn or None,
            environment=settings.environment or config.service.environment,
            release=settings.release or config.service.version,
            # Never profiles_sample_rate: the transaction profiler needs a Sentry transaction on the request
            # thread. The continuous profiler runs while sampled OTel roots are open (see .profiling).
            profile_session_sample_rate=profile_session_rate(settings) or None,
            profile_lifecycle="trace",
            send_default_pii=settings.send_default_pii,
            attach_stacktrace=settings.attach_stacktrace,
            instrumenter="otel",  # Sentry's own tracing (Flask transactions, stdlib spans) stays off
            # Auto-enabled integrations (httpx, openai, ...) would only shadow what OTel already traces,
            # at a cost on every call; errors and request data come from the integrations passed in.
            auto_enabling_integrations=False,
            transport_queue_size=TRANSPORT_QUEUE_SIZE,
            integrations=list(integrations),
            shutdown_timeout=config.export.shutdown_timeout,
            transport=recording_transport(delivery),
            before_send=scrub_event,
            before_send_transaction=scrub_transaction,
            before_breadcrumb=scrub_event,
            **_compat.compression_options(settings.compression_level),
            **options,
        )
        # Errors outside the layer's event processor's reach still get the OTel trace id, and Sentry's
        # stdlib integration leaves outgoing headers to the layer's propagator.
        _compat.register_external_propagation_context(_otel_propagation_context)
        return cls(_global_client(), previous)

    @property
    def is_global(self) -> bool:
        """Still sentry-sdk's global client: no newer backend started since."""
        return _global_client() is self.client

    def flush(self, timeout_s: float) -> None:
        self.client.flush(timeout=timeout_s)

    def close(self, timeout_s: float) -> None:
        """Send what is queued and close this client; undo the global registrations only if still global."""
        if self.is_global:
            # The client replaced is back if it still runs (this setup was abandoned before it
            # retired the previous one); a client already closed is not: sentry-sdk is then uninitialised.
            previous = self._previous if self._previous.transport is not None else None
            sentry_sdk.get_global_scope().set_client(previous)
            if previous is None:
                _compat.remove_external_propagation_context()
        self.client.close(timeout=timeout_s)

    def transport_queue(self) -> QueueStats | None:
        """Sentry's transport queue: envelopes waiting, its capacity, envelopes dropped when it was full."""
        transport = self.client.transport
        depth = _compat.transport_queue(transport)
        if depth is None:
            return None
        dropped = transport.queue_overflows if isinstance(transport, _compat.HookedHttpTransport) else 0
        return QueueStats(queued=depth[0], capacity=depth[1], dropped=dropped)
