"""The only code that touches sentry-sdk's process-wide client: init, transport, scrub hooks, flush, close.

sentry-sdk has one global client. A backend's :class:`SentryClient` remembers
the client its ``start()`` made and the one it replaced, so that a backend
retired after a newer one started closes only its own client and leaves the
newer one's registrations alone, and a backend whose setup is abandoned hands
sentry-sdk back the client that was running before.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import sentry_sdk
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.trace import format_span_id, format_trace_id
from sentry_sdk.integrations.dedupe import DedupeIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

from otel_hakgal import runtime
from otel_hakgal.backends.base import QueueStats
from otel_hakgal.backends.batching import DROPS
from otel_hakgal.backends.sentry import _compat
from otel_hakgal.backends.sentry.settings import SentrySettings, profile_session_rate
from otel_hakgal.backends.sentry.worker import DEFAULT_SENDERS
from otel_hakgal.delivery import DeliveryLog
from otel_hakgal.redaction import redact_text
from otel_hakgal.user_text import TextMask, hidden_texts, logged_hidden_texts, user_text_mask

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient
    from sentry_sdk.integrations import Integration

    from otel_hakgal.config import Config, RedactionSettings
    from otel_hakgal.redaction import SecretScrubber

logger = logging.getLogger("otel_hakgal")
delivery_logger = logging.getLogger("otel_hakgal.delivery")  # rate-limited: see otel_hakgal.log_limits

# Envelopes waiting to be sent (Sentry's default, 100, drops a burst of transactions the worker hands over at once).
TRANSPORT_QUEUE_SIZE: Final = 1000
# Room the transaction worker leaves in the transport's queue: for errors, profile chunks and client reports,
# which request threads and the profiler hand over directly, in a flood of transactions too.
TRANSPORT_RESERVE: Final = 100
# Longest the worker waits for that room per transaction: beyond it (a Sentry that stopped answering) it hands
# the transaction over anyway, to be dropped and counted, so its own queue keeps moving.
HANDOVER_WAIT_S: Final = 2.0
_HANDOVER_POLL_S: Final = 0.002
# Event hint key: the scrubber in force when a transaction's root span ended (it is sent later, off-thread).
HINT_SCRUBBER: Final = "otel_hakgal_scrubber"
# The same for a log, whose ``before_send_log`` gets no hint: a key of the log dict itself, removed there
# (sentry-sdk's envelope keeps only the log's known keys anyway).
LOG_SCRUBBER_KEY: Final = "_otel_hakgal_scrubber"
# A Sentry DSN's public key: 32 hex digits.
_PUBLIC_KEY: Final = re.compile(r"[0-9a-f]{32}")


def recording_transport(
    log: DeliveryLog, log_delivery: DeliveryLog | None = None, senders: int = DEFAULT_SENDERS
) -> type[_compat.HookedHttpTransport]:
    """Sentry's HTTP transport, sending up to ``senders`` envelopes at once, logging each send's status for
    ``selftest`` and ``stats()``.

    A send of an envelope with Sentry Logs (a ``log`` item) is counted in ``log_delivery`` too: ``selftest``
    tells from it whether log records arrived. A failed send is also logged as a warning on ``otel_hakgal.delivery``
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
                for outcomes in self._delivery_logs():
                    outcomes.record_error(error)
                delivery_logger.warning("Sentry unreachable (%s); its events are dropped", type(error).__name__)
                raise
            for outcomes in self._delivery_logs():
                outcomes.record_status(response.status)
            if response.status >= 400:
                delivery_logger.warning("Sentry answered HTTP %s; its events are dropped", response.status)
            return response

        def _delivery_logs(self) -> tuple[DeliveryLog, ...]:
            if log_delivery is not None and _compat.LOG_ITEM_TYPE in self.sending_items:
                return (log, log_delivery)
            return (log,)

        def on_dropped_event(self, reason: str) -> None:
            super().on_dropped_event(reason)
            if reason == "full_queue":
                DROPS.noticed()  # counted by the hooked transport; reported with every other drop

    RecordingTransport.senders = senders
    return RecordingTransport


def wait_for_room(
    depth: Callable[[], tuple[int, int] | None], reserve: int, timeout_s: float = HANDOVER_WAIT_S
) -> bool:
    """Wait up to ``timeout_s`` until the queue ``depth()`` measures (queued, capacity) has more than ``reserve``
    free slots (at most half its capacity). True at once if ``depth()`` is None (no such queue); False on timeout.

    The Sentry workers call this before each hand-over: a burst then waits in the worker's own
    (larger, counted) queue instead of overflowing sentry-sdk's, which drops silently.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        measured = depth()
        if measured is None or measured[0] < measured[1] - min(reserve, measured[1] // 2):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_HANDOVER_POLL_S)


def wait_for_transport_room(transport: object, timeout_s: float = HANDOVER_WAIT_S) -> bool:
    """:func:`wait_for_room` in ``transport``'s queue, leaving :data:`TRANSPORT_RESERVE` slots (transactions)."""
    return wait_for_room(lambda: _compat.transport_queue(transport), TRANSPORT_RESERVE, timeout_s)


def scrub_event(event: Any, hint: Any) -> Any:
    """``before_send``/``before_breadcrumb``: the layer's one secret policy, applied to errors too.

    Errors and breadcrumbs are prepared where they are captured, under the runtime in force.
    Stack-frame local variables (``include_local_variables``) may hold user text: they follow
    ``redaction.text_mode`` as command and question text do. The typed texts of the open operations
    and those noted on the exceptions in ``hint`` (raised, or logged as an argument after their
    operation ended) are masked in the exception, the log message and a breadcrumb's message and data.
    """
    current = runtime.current
    scrubber = current.scrubber
    if scrubber is None or not isinstance(event, dict):
        return event
    event = _keeping_dsc(event, scrubber, scrubber.scrub_data)
    redact_local_variables(event, current.config.redaction, scrubber)
    redact_request_body(event, current.config.redaction, scrubber)
    mask = _user_text_mask(hint)
    if mask is not None:
        # The span's exception event and the exported log records had the user text masked per text_mode.
        _mask_event(event, mask)
    return event


def _user_text_mask(hint: Any) -> TextMask | None:
    """The mask for an event or breadcrumb: the open operations' texts and those noted on ``hint``'s exceptions."""
    noted: dict[str, str] = {}
    if isinstance(hint, dict):
        exc_info = hint.get("exc_info")
        if isinstance(exc_info, tuple) and len(exc_info) > 1 and isinstance(exc_info[1], BaseException):
            noted = hidden_texts(exc_info[1])
        record = hint.get("log_record")
        if record is not None:
            for typed, shown in logged_hidden_texts(record).items():
                noted.setdefault(typed, shown)
    mask = user_text_mask()
    if noted:
        mask = TextMask(noted).merged(mask)
    return mask or None


def _mask_event(event: dict[str, Any], mask: TextMask) -> None:
    """Mask the user text in an event's exceptions and log message, or a breadcrumb's message and data, in place."""
    for key in ("exception", "threads", "message", "data"):
        if key in event:
            event[key] = _masked(event[key], mask)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        for key, value in logentry.items():
            logentry[key] = _masked(value, mask)


def _masked(data: Any, mask: TextMask) -> Any:
    """``data`` with the user text masked: strings, dicts and lists in place; other objects by their ``repr``
    (how Sentry's serializer shows a log argument such as an exception) only when that holds a typed text."""
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, dict):
        for key, value in data.items():
            data[key] = _masked(value, mask)
        return data
    if isinstance(data, list):
        for index, value in enumerate(data):
            data[index] = _masked(value, mask)
        return data
    if isinstance(data, tuple):
        return tuple(_masked(value, mask) for value in data)
    if data is None or isinstance(data, bool | int | float):
        return data
    try:
        shown = repr(data)
    except Exception:
        return data
    masked = mask(shown)
    return data if masked is shown else masked


def scrub_transaction(event: Any, hint: Any) -> Any:
    """``before_send_transaction``, with the scrubber in force when the root span ended.

    A transaction is prepared later, on the worker, possibly after ``setup()`` replaced the
    runtime or shut it down: the scrubber travels with it in the hint.
    """
    scrubber: SecretScrubber | None
    scrubber = hint[HINT_SCRUBBER] if hint and HINT_SCRUBBER in hint else runtime.current.scrubber
    if scrubber is None or not isinstance(event, dict):
        return event
    return _keeping_dsc(event, scrubber, scrubber.scrub_transaction)


def scrub_log(log: Any, hint: Any) -> Any:
    """``before_send_log``: the body and every attribute pass the scrubber once more, after sentry-sdk's additions.

    The layer's records were scrubbed, cut and given their ``text_mode`` before the log processor saw them; the
    client then adds its scopes' attributes (anything the app set with ``sentry_sdk.set_attribute``, the user
    with ``send_default_pii``), and the app may log through ``sentry_sdk.logger`` directly: those only pass here.
    Secrets only: ``text_mode`` (a hash, an omission) was applied once, where the record was made.
    """
    if not isinstance(log, dict):
        return log
    scrubber: SecretScrubber | None
    scrubber = log.pop(LOG_SCRUBBER_KEY) if LOG_SCRUBBER_KEY in log else runtime.current.scrubber
    if scrubber is None:
        return log
    body = log.get("body")
    if isinstance(body, str):
        log["body"] = scrubber.scrub(body, remember=False)
    attributes = log.get("attributes")
    if isinstance(attributes, dict):
        scrubbed = scrubber.scrub_attributes(attributes, remember=False)  # log lines never repeat: no cache
        if scrubbed is not None:
            log["attributes"] = dict(scrubbed)
    return log


def _keeping_dsc(event: dict[str, Any], scrubber: SecretScrubber, scrub: Callable[[Any], Any]) -> Any:
    """``scrub(event)``, its dynamic sampling context scrubbed apart, keeping the DSC's public key.

    sentry-sdk moves the DSC (``contexts.trace.dynamic_sampling_context``) to the envelope's ``trace``
    header after these hooks. Sentry routes and samples a trace by its ``public_key``, which is public by
    design (browser SDKs ship it), so a key of Sentry's form (32 hex digits) stays as it is even where the
    scrubber knows it as part of the DSN; every other DSC value, and a key of any other form, is scrubbed.
    """
    trace = _trace_context(event)
    dsc = trace.pop("dynamic_sampling_context", None) if trace is not None else None
    scrubbed = scrub(event)
    trace = _trace_context(scrubbed)
    if not isinstance(dsc, dict) or trace is None:
        return scrubbed
    public_key = dsc.get("public_key")
    dsc = scrubber.scrub_data(dsc)
    if isinstance(public_key, str) and _PUBLIC_KEY.fullmatch(public_key):
        dsc["public_key"] = public_key
    trace["dynamic_sampling_context"] = dsc
    return scrubbed


def _trace_context(event: Any) -> dict[str, Any] | None:
    contexts = event.get("contexts") if isinstance(event, dict) else None
    trace = contexts.get("trace") if isinstance(contexts, dict) else None
    return trace if isinstance(trace, dict) else None


def _frames(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The stack frames of an event's exceptions and threads (``attach_stacktrace``)."""
    for section in ("exception", "threads"):
        container = event.get(section)
        values = container.get("values") if isinstance(container, dict) else None
        for value in values if isinstance(values, list) else ():
            stacktrace = value.get("stacktrace") if isinstance(value, dict) else None
            frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
            yield from (frame for frame in frames or () if isinstance(frame, dict))


def redact_local_variables(event: dict[str, Any], redaction: RedactionSettings, scrubber: SecretScrubber) -> None:
    """Apply ``redaction.text_mode`` to every stack-frame local variable value, in place.

    Which locals hold user text (a question, a path, a KB name) is unknown, so every string value is
    treated as such: scrubbed and cut to ``max_text_length`` (``truncate``), hashed (``hash``), or, with
    ``omit``, the frame's ``vars`` are dropped.
    """
    for frame in _frames(event):
        if "vars" in frame:
            _apply_text_mode(frame, "vars", redaction, scrubber)


def redact_request_body(event: dict[str, Any], redaction: RedactionSettings, scrubber: SecretScrubber) -> None:
    """Apply ``redaction.text_mode`` to the request body the Flask integration attached, in place.

    The body is what the user typed (a command, a question), so its strings follow the policy of command
    text: cut, hashed, or, with ``omit``, the body is left out.
    """
    request = event.get("request")
    if isinstance(request, dict) and "data" in request:
        _apply_text_mode(request, "data", redaction, scrubber)


def _apply_text_mode(
    container: dict[str, Any], key: str, redaction: RedactionSettings, scrubber: SecretScrubber
) -> None:
    """``container[key]`` as user text: left out with ``omit``, else every string in it scrubbed and cut or hashed."""
    if redaction.text_mode == "omit":
        del container[key]
    else:
        container[key] = _redacted_value(container[key], redaction, scrubber)


def _redacted_value(value: Any, redaction: RedactionSettings, scrubber: SecretScrubber) -> Any:
    if isinstance(value, str):
        return redact_text(value, redaction, scrubber) or ""
    if isinstance(value, dict):
        return {key: _redacted_value(item, redaction, scrubber) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted_value(item, redaction, scrubber) for item in value]
    return value


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
        *,
        log_delivery: DeliveryLog | None = None,
        **options: Any,
    ) -> SentryClient:
        """``sentry_sdk.init`` from the config: the new client becomes sentry-sdk's global client.

        sentry-sdk's logging integration keeps making error events of ERROR records (one per exception, linked
        to the span by the layer's event processor) and breadcrumbs of INFO ones, but never Sentry Logs: the
        layer's log pipeline sends those (scrubbed, rate-limited, at ``logs.level``), so each record arrives once.
        Sends of envelopes with Sentry Logs are counted in ``log_delivery`` too.
        """
        if not settings.dsn:
            logger.warning("otel_hakgal: Sentry backend has no dsn (set SENTRY_DSN): nothing is sent to Sentry")
        if not any(isinstance(integration, LoggingIntegration) for integration in integrations):
            integrations = [*integrations, LoggingIntegration(sentry_logs_level=None)]
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
            include_local_variables=settings.include_local_variables,
            attach_stacktrace=settings.attach_stacktrace,
            instrumenter="otel",  # Sentry's own tracing (Flask transactions, stdlib spans) stays off
            # Auto-enabled integrations (httpx, openai, ...) would only shadow what OTel already traces,
            # at a cost on every call; errors and request data come from the integrations passed in.
            auto_enabling_integrations=False,
            transport_queue_size=TRANSPORT_QUEUE_SIZE,
            # The backpressure monitor halves sentry-sdk's own sampling while the transport is unhealthy. Here
            # the OTel sampler decides once for every backend and the layer builds the transactions, so it
            # would only add a thread and, were it ever consulted, drop traces silently that other backends
            # keep. Overload is met by sized queues instead, and what they drop is counted and reported.
            enable_backpressure_handling=False,
            integrations=list(integrations),
            # The layer's event processor files an exception once per trace (errors.reported_before), across
            # threads and whatever came between; sentry-sdk's dedupe, per context and only for the last exception,
            # would also drop an exception instance raised again in another request.
            disabled_integrations=[DedupeIntegration],
            shutdown_timeout=config.export.shutdown_timeout,
            transport=recording_transport(delivery, log_delivery, settings.max_concurrent_requests),
            before_send=scrub_event,
            before_send_transaction=scrub_transaction,
            before_breadcrumb=scrub_event,
            before_send_log=scrub_log,
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
