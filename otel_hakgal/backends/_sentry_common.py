"""What the two Sentry backends share: settings, ``sentry_sdk.init``, propagation and error linking.

Sentry is process-global (one client, one list of global event processors),
so this module keeps the process-wide pieces: the event processor that links
errors to OTel spans is registered once, and ``ACTIVE`` says whether a Sentry
backend of this layer is running.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sentry_sdk
from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, get_current, get_value, set_value
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, format_span_id, format_trace_id
from sentry_sdk._span_batcher import SpanBatcher
from sentry_sdk.client import _serialized_v1_span_to_serialized_v2_span
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.opentelemetry.consts import SENTRY_BAGGAGE_KEY, SENTRY_TRACE_KEY
from sentry_sdk.scope import Scope, register_external_propagation_context, remove_external_propagation_context
from sentry_sdk.tracing_utils import Baggage, extract_sentrytrace_data
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import event_from_exception, format_timestamp

from otel_hakgal._state import state
from otel_hakgal.api import escaped_spans
from otel_hakgal.backends import Backend
from otel_hakgal.config import Config, ConfigError, number_range, setting
from otel_hakgal.conventions import ERROR_CONTEXT_ATTRIBUTES, TRANSACTION_TAG_ATTRIBUTES
from otel_hakgal.delivery import DeliveryLog

logger = logging.getLogger("otel_hakgal")
delivery_logger = logging.getLogger("otel_hakgal.delivery")  # rate-limited: see otel_hakgal.log_limits

SENTRY_TRACE_HEADER: Final = "sentry-trace"
BAGGAGE_HEADER: Final = "baggage"
TRACEPARENT_HEADER: Final = "traceparent"
HINT_SPAN: Final = "otel_hakgal_span"  # event hint key: the span a handled error was captured in
MECHANISM: Final = "otel_hakgal"
MAX_TAG_LENGTH: Final = 200  # Sentry's limit for tag values
# Envelopes waiting to be sent (Sentry's default, 100, drops a burst of transactions the worker hands over at once).
TRANSPORT_QUEUE_SIZE: Final = 1000


# --- settings ----------------------------------------------------------------


def _dsn(value: Any) -> str | None:
    if value == "":
        return None
    parsed = urllib.parse.urlsplit(value)
    ok = parsed.scheme in ("http", "https") and bool(parsed.hostname) and bool(parsed.username)
    ok = ok and parsed.path.strip("/").rsplit("/", 1)[-1].isdigit()
    return None if ok else "a Sentry DSN 'https://<public-key>@<host>/<project-id>', or '' for none"


def _rate(value: Any) -> str | None:
    return None if value is None or 0.0 <= value <= 1.0 else "a number from 0.0 to 1.0"


@dataclass(frozen=True)
class SentrySettings:
    dsn: str = setting(
        "", "Sentry DSN; empty sends nothing (the backend warns).", env="SENTRY_DSN", validate=_dsn, secret=True
    )
    environment: str = setting("", "Sentry environment; empty means `service.environment`.")
    release: str = setting("", "Sentry release; empty means `service.version`.")
    traces_sample_rate: float | None = setting(
        None,
        "Must equal the OTel sampler's rate if set: the OTel sampler decides once and Sentry follows it.",
        validate=_rate,
    )
    profiles_sample_rate: float = setting(0.0, "Share of sampled transactions that are profiled.", validate=_rate)
    send_default_pii: bool = setting(False, "Let Sentry attach IP addresses, cookies and user data.")
    attach_stacktrace: bool = setting(True, "Attach stack traces to messages too.")
    tags: dict[str, str] = setting(
        {"component": "hak-gal-api", "system": "reasoning-engine"}, "Tags on every event and transaction."
    )
    compression_level: int = setting(
        1,
        "gzip level of envelopes, 0 (none) to 9 (Sentry's default: here ~3x the CPU of level 1 for"
        " ~13% smaller bodies).",
        validate=number_range(0, 9),
    )


def effective_sample_rate(config: Config) -> float:
    """The share of new traces the configured OTel sampler keeps (what Sentry reports as sample rate)."""
    sampler = config.sampling.sampler
    if sampler.endswith("always_on"):
        return 1.0
    if sampler.endswith("always_off"):
        return 0.0
    return config.sampling.ratio


def check_sample_rate(config: Config, settings: SentrySettings, section: str) -> float:
    """Refuse what would make Sentry decide differently from the OTel sampler; return the shared rate."""
    if {"sentry", "sentry-otlp"} <= set(config.backends):
        raise ConfigError(["key 'backends': 'sentry' and 'sentry-otlp' both drive the one Sentry SDK; choose one"])
    rate = effective_sample_rate(config)
    wanted = settings.traces_sample_rate
    if wanted is not None and abs(wanted - rate) > 1e-9:
        raise ConfigError(
            [
                f"key '{section}.traces_sample_rate': {wanted!r} disagrees with the OTel sampler "
                f"({config.sampling.sampler}, rate {rate!r}); sampling is decided once, by the OTel sampler: "
                f"set sampling.ratio = {wanted!r} and drop {section}.traces_sample_rate"
            ]
        )
    return rate


# --- process-wide state --------------------------------------------------------


class _Global:
    lock = threading.Lock()
    active = False
    processor_registered = False
    default_tags: tuple[str, ...] = ()
    sample_rate = 1.0
    max_text_length = 100


def recording_transport(log: DeliveryLog) -> type[HttpTransport]:
    """Sentry's HTTP transport, logging each send's status for ``selftest``.

    A failed send is also logged as a warning on ``otel_hakgal.delivery``
    (rate-limited by :mod:`otel_hakgal.log_limits`): Sentry's own transport
    drops failed envelopes silently unless ``debug`` is on.
    """

    class RecordingTransport(HttpTransport):
        def _request(self, method: str, endpoint_type: Any, body: Any, headers: Any) -> Any:
            try:
                # Like OTel's own exporters: sending telemetry must not make telemetry (the launcher's
                # urllib3 instrumentation would trace every envelope, and those spans go nowhere).
                with suppress_instrumentation(), suppress_http_instrumentation():
                    response = super()._request(method, endpoint_type, body, headers)
            except Exception as error:
                log.record_error(error)
                delivery_logger.warning("Sentry unreachable (%s); its events are dropped", type(error).__name__)
                raise
            log.record_status(response.status)
            if response.status >= 400:
                delivery_logger.warning("Sentry answered HTTP %s; its events are dropped", response.status)
            return response

    return RecordingTransport


def init_sentry(
    config: Config,
    settings: SentrySettings,
    integrations: Sequence[Integration],
    delivery: DeliveryLog,
    **options: Any,
) -> None:
    """``sentry_sdk.init`` from the config; safe to call again (the latest call wins)."""
    if not settings.dsn:
        logger.warning("otel_hakgal: Sentry backend has no dsn (set SENTRY_DSN): nothing is sent to Sentry")
    sentry_sdk.init(
        dsn=settings.dsn or None,
        environment=settings.environment or config.service.environment,
        release=settings.release or config.service.version,
        profiles_sample_rate=settings.profiles_sample_rate or None,
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
        _experiments={"transport_compression_level": settings.compression_level},
        before_send=scrub_event,
        before_send_transaction=scrub_transaction,
        before_breadcrumb=scrub_event,
        **options,
    )
    global_scope = sentry_sdk.get_global_scope()
    with _Global.lock:
        for key in _Global.default_tags:
            global_scope.remove_tag(key)
        for key, value in settings.tags.items():
            global_scope.set_tag(key, value)
        _Global.default_tags = tuple(settings.tags)
        _Global.max_text_length = config.redaction.max_text_length
        _Global.sample_rate = effective_sample_rate(config)
        # Errors outside our event processor's reach still get the OTel trace id, and Sentry's
        # stdlib integration leaves outgoing headers to our propagator.
        register_external_propagation_context(_otel_propagation_context)
        if not _Global.processor_registered:
            sentry_sdk.scope.add_global_event_processor(_link_error_to_span)
            _Global.processor_registered = True
        _Global.active = True


def scrub_event(event: Any, hint: Any) -> Any:
    """Sentry's ``before_send``/``before_breadcrumb``: the layer's one secret policy, applied to errors too."""
    scrubber = state.scrubber
    return event if scrubber is None else scrubber.scrub_data(event)


def scrub_transaction(event: Any, hint: Any) -> Any:
    scrubber = state.scrubber
    return event if scrubber is None else scrubber.scrub_transaction(event)


def shutdown_sentry(timeout_s: float) -> None:
    with _Global.lock:
        _Global.active = False
        remove_external_propagation_context()
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=timeout_s)
    OpenSpans.spans.clear()


def send_transaction(
    client: Any,
    event: dict[str, Any],
    spans: list[dict[str, Any]],
    scope: Scope,
    dropped_spans: int = 0,
) -> None:
    """Send a transaction as ``Client.capture_event`` does, without putting ``spans`` through the serializer.

    The event, minus its spans, measurements and ``otel`` context (JSON
    already, and most of its nodes), goes through the client's own preparation: the scope's data
    and event processors, release and environment, Sentry's serializer and
    ``before_send_transaction``. ``gen_ai.*`` spans go in a separate ``span``
    item, as sentry-sdk sends them.
    """
    otel_context = event["contexts"].pop("otel", None)
    measurements = event.pop("measurements", None)
    event["event_id"] = uuid.uuid4().hex
    prepared = client._prepare_event(event, {}, scope)
    transport = client.transport
    if prepared is None or transport is None:
        return  # dropped by a processor or before_send_transaction (the client records it)
    if dropped_spans:
        transport.record_lost_event("buffer_overflow", data_category="span", quantity=dropped_spans)
    contexts = prepared.setdefault("contexts", {})
    if otel_context is not None:
        contexts["otel"] = otel_context
    if measurements:
        prepared["measurements"] = measurements
    headers: dict[str, Any] = {"event_id": prepared["event_id"], "sent_at": format_timestamp(datetime.now(UTC))}
    dsc = (contexts.get("trace") or {}).pop("dynamic_sampling_context", None)
    if dsc:
        headers["trace"] = dsc
    gen_ai = [span for span in spans if span["op"].startswith("gen_ai.")]
    if gen_ai and client.options.get("stream_gen_ai_spans", True):
        spans = [span for span in spans if not span["op"].startswith("gen_ai.")]
    else:
        gen_ai = []
    prepared["spans"] = spans
    envelope = Envelope(headers=headers)
    envelope.add_transaction(prepared)
    if gen_ai:
        items = [_serialized_v1_span_to_serialized_v2_span(span, prepared) for span in gen_ai]
        envelope.add_item(
            Item(
                type=SpanBatcher.TYPE,
                content_type=SpanBatcher.CONTENT_TYPE,
                headers={"item_count": len(items)},
                payload=PayloadRef(json={"version": 2, "items": items}),
            )
        )
    transport.capture_envelope(envelope)


def capture_message(message: str, level: str) -> None:
    if _Global.active:
        sentry_sdk.capture_message(message, level=level)  # type: ignore[arg-type]


def flush(timeout_millis: int) -> bool:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout_millis / 1000)
    return True


def _otel_propagation_context() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)


# --- open spans, to walk from where an error happened up to the root ---------


class OpenSpans(SpanProcessor):
    """Tracks the spans that are open, by span id. Cheap: one dict store and one pop per span."""

    spans: dict[int, Span] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.spans[span.get_span_context().span_id] = span

    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is not None:
            self.spans.pop(context.span_id, None)


def span_chain(first: Sequence[ReadableSpan | trace.Span]) -> list[Any]:
    """``first`` (innermost first) followed by the open ancestors of its last span."""
    chain: list[Any] = list(first)
    seen = {id(s) for s in chain}
    parent = getattr(chain[-1], "parent", None) if chain else None
    while parent is not None:
        span = OpenSpans.spans.get(parent.span_id)
        if span is None or id(span) in seen:
            break
        chain.append(span)
        seen.add(id(span))
        parent = span.parent
    return chain


def string_value(value: Any, limit: int) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return text[:limit]


def chain_tags(chain: Sequence[Any]) -> dict[str, str]:
    """Transaction tags from a span chain; the outermost span with a value wins."""
    tags: dict[str, str] = {}
    for span in reversed(chain):
        attributes = getattr(span, "attributes", None) or {}
        for key in TRANSACTION_TAG_ATTRIBUTES:
            if key in attributes and key not in tags:
                tags[key] = string_value(attributes[key], MAX_TAG_LENGTH)
    return tags


# --- errors ------------------------------------------------------------------


def capture_exception(error: BaseException, context: Context | None) -> None:
    """Report a handled error, linked to the span current in ``context``."""
    client = sentry_sdk.get_client()
    if not client.is_active():
        return
    event, hint = event_from_exception(
        error, client_options=client.options, mechanism={"type": MECHANISM, "handled": True}
    )
    hint[HINT_SPAN] = trace.get_current_span(context)
    sentry_sdk.capture_event(event, hint=hint)


def _link_error_to_span(event: Any, hint: Any) -> Any:
    """Global event processor: link an error to its OTel span and add the command context and tags.

    The span is, in this order: the span a handled error was captured in; the
    innermost operation span the exception was raised through (even if it has
    ended since); the current span. Works for sampled and unsampled traces.
    """
    if not _Global.active or event.get("type") == "transaction":
        return event
    try:
        _link(event, hint or {})
    except Exception:  # never lose the error event over its decoration
        logger.debug("otel_hakgal: could not link a Sentry event to its span", exc_info=True)
    return event


def _link(event: dict[str, Any], hint: dict[str, Any]) -> None:
    exc_info = hint.get("exc_info")
    error = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
    escaped = escaped_spans(error) if isinstance(error, BaseException) else []
    hinted = hint.get(HINT_SPAN)
    if escaped:  # where it was raised beats where it was reported
        chain = span_chain(escaped)
    elif hinted is not None:
        chain = span_chain([hinted])
    else:
        chain = span_chain([trace.get_current_span()])
    span = chain[0]
    context = span.get_span_context()
    if not context.is_valid:
        return

    span_id = format_span_id(context.span_id)
    trace_context: dict[str, Any] = {"trace_id": format_trace_id(context.trace_id), "span_id": span_id}
    parent = getattr(span, "parent", None)
    if parent is not None:
        trace_context["parent_span_id"] = format_span_id(parent.span_id)
    dsc = dynamic_sampling_context(context)
    if dsc is not None:  # the envelope's trace header: the same DSC the trace propagates
        trace_context["dynamic_sampling_context"] = dsc.dynamic_sampling_context()
    contexts = event.setdefault("contexts", {})
    contexts["trace"] = trace_context

    tags = event.setdefault("tags", {})
    for key, value in chain_tags(chain).items():
        tags.setdefault(key, value)
    details: dict[str, Any] = {}
    for chained in reversed(chain):  # inner spans override outer ones
        attributes = getattr(chained, "attributes", None) or {}
        for key in ERROR_CONTEXT_ATTRIBUTES:
            if key in attributes:
                value = attributes[key]
                details[key] = string_value(value, _Global.max_text_length) if isinstance(value, str) else value
    if details:
        contexts["hakgal"] = details
        if "hakgal.command.name" in details:
            tags.setdefault("hakgal.command.name", str(details["hakgal.command.name"]))


# --- propagation -------------------------------------------------------------


class SentryTracePropagator(TextMapPropagator):
    """Sentry's ``sentry-trace`` and ``baggage`` next to W3C, without Sentry's propagator's gaps.

    Placed after W3C tracecontext and baggage in the composite, it

    - continues a trace from ``sentry-trace`` alone (honouring its sampled flag:
      ``-0`` is not sampled, ``-1`` and a deferred decision are), and leaves a
      trace from ``traceparent`` alone when both are present;
    - writes ``sentry-trace`` for every valid span, sampled or not;
    - writes one ``baggage`` header with the ``sentry-*`` entries and the user's
      own entries, where Sentry's propagator would drop the user's.
    """

    def __init__(self, head_dsc: bool = True) -> None:
        self._head_dsc = head_dsc
        self._w3c_baggage = W3CBaggagePropagator()

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        context = get_current() if context is None else context
        incoming_baggage = getter.get(carrier, BAGGAGE_HEADER)
        baggage = Baggage.from_incoming_header(",".join(incoming_baggage)) if incoming_baggage else None
        existing = trace.get_current_span(context).get_span_context()
        from_traceparent = bool(getter.get(carrier, TRACEPARENT_HEADER)) and existing.is_valid and existing.is_remote
        raw = getter.get(carrier, SENTRY_TRACE_HEADER)
        data = extract_sentrytrace_data(raw[0]) if raw else None

        if from_traceparent:  # W3C wins; keep Sentry's DSC only when it belongs to the same trace
            trace_id = format_trace_id(existing.trace_id)
            if baggage is not None and baggage.sentry_items.get("trace_id") == trace_id:
                baggage.freeze()
                context = set_value(SENTRY_BAGGAGE_KEY, baggage, context)
            if data and data.get("trace_id") == trace_id:
                context = set_value(SENTRY_TRACE_KEY, data, context)
            return context
        if not data or not data.get("trace_id") or not data.get("parent_span_id"):
            return context

        context = set_value(SENTRY_TRACE_KEY, data, context)
        if baggage is None:
            baggage = Baggage(sentry_items={})
        baggage.freeze()
        context = set_value(SENTRY_BAGGAGE_KEY, baggage, context)
        sampled = data.get("parent_sampled") is not False
        span_context = SpanContext(
            trace_id=int(str(data["trace_id"]), 16),
            span_id=int(str(data["parent_span_id"]), 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )
        return trace.set_span_in_context(NonRecordingSpan(span_context), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        context = get_current() if context is None else context
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return
        sampled = "1" if span_context.trace_flags.sampled else "0"
        sentry_trace = f"{format_trace_id(span_context.trace_id)}-{format_span_id(span_context.span_id)}-{sampled}"
        dsc = dynamic_sampling_context(span_context, context) if self._head_dsc else incoming_dsc(context)
        setter.set(carrier, SENTRY_TRACE_HEADER, sentry_trace)

        parts = [dsc.serialize()] if dsc is not None else []
        user = {k: v for k, v in otel_baggage.get_all(context).items() if not k.startswith(Baggage.SENTRY_PREFIX)}
        if user:
            user_context = Context()
            for key, value in user.items():
                user_context = otel_baggage.set_baggage(key, value, user_context)
            encoded: dict[str, str] = {}
            self._w3c_baggage.inject(encoded, user_context)
            parts.append(encoded.get(BAGGAGE_HEADER, ""))
        header = ",".join(p for p in parts if p)
        if header:
            setter.set(carrier, BAGGAGE_HEADER, header)

    @property
    def fields(self) -> set[str]:
        return {SENTRY_TRACE_HEADER, BAGGAGE_HEADER}


def incoming_dsc(context: Context | None = None) -> Baggage | None:
    """The upstream's dynamic sampling context, if the trace came in with Sentry baggage."""
    incoming = get_value(SENTRY_BAGGAGE_KEY, context)
    return incoming if isinstance(incoming, Baggage) and incoming.sentry_items else None


def dynamic_sampling_context(span_context: SpanContext, context: Context | None = None) -> Baggage | None:
    """The trace's DSC: the upstream's if it sent one (it is frozen), else this process heads it."""
    return incoming_dsc(context) or head_dsc(span_context)


def head_dsc(span_context: SpanContext) -> Baggage | None:
    """A dynamic sampling context for a trace this process started, from the client's options."""
    client = sentry_sdk.get_client()
    if not client.is_active() or client.parsed_dsn is None:
        return None
    items = {
        "trace_id": format_trace_id(span_context.trace_id),
        "public_key": client.parsed_dsn.public_key,
        "sample_rate": str(_Global.sample_rate),
        "sampled": "true" if span_context.trace_flags.sampled else "false",
    }
    for key in ("environment", "release"):
        if client.options.get(key):
            items[key] = str(client.options[key])
    return Baggage(sentry_items=items, mutable=False)


class SentryBackendBase(Backend):
    """What both Sentry backends do the same way: settings, propagation, errors, flush, shutdown."""

    Settings = SentrySettings
    remote = True

    def propagators(self) -> Sequence[TextMapPropagator]:
        return (SentryTracePropagator(),)

    def capture_exception(self, error: BaseException, context: Context | None = None) -> None:
        capture_exception(error, context)

    def capture_message(self, message: str, level: str) -> None:
        capture_message(message, level)

    def force_flush(self, timeout_s: float) -> bool:
        return flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        shutdown_sentry(self.config.export.shutdown_timeout)
