"""``sentry-trace`` and Sentry ``baggage`` next to W3C, and the trace's dynamic sampling context (DSC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, get_current, get_value, set_value
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, format_span_id, format_trace_id

from otel_hakgal.backends.sentry._compat import SENTRY_BAGGAGE_KEY, SENTRY_TRACE_KEY, Baggage, extract_sentrytrace_data

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient

SENTRY_TRACE_HEADER: Final = "sentry-trace"
BAGGAGE_HEADER: Final = "baggage"
TRACEPARENT_HEADER: Final = "traceparent"

# Heads a DSC for a trace this process started (None when it cannot, e.g. without a DSN).
DscHead = Callable[[SpanContext], Baggage | None]


class ClientDscHead:
    """A dynamic sampling context for traces this process starts, from one client's DSN and options."""

    def __init__(self, client: BaseClient, sample_rate: float) -> None:
        self._client = client
        self._sample_rate = str(sample_rate)

    def __call__(self, span_context: SpanContext) -> Baggage | None:
        parsed_dsn = self._client.parsed_dsn  # None without a DSN, and once the client is closed
        if parsed_dsn is None:
            return None
        items = {
            "trace_id": format_trace_id(span_context.trace_id),
            "public_key": parsed_dsn.public_key,
            "sample_rate": self._sample_rate,
            "sampled": "true" if span_context.trace_flags.sampled else "false",
        }
        options = self._client.options
        for key in ("environment", "release"):
            if options.get(key):
                items[key] = str(options[key])
        return Baggage(sentry_items=items, mutable=False)


def dsc_of_trace(baggage: object, trace_id: int) -> Baggage | None:
    """``baggage`` if it is a Sentry DSC of trace ``trace_id``, else None.

    A DSC names its trace: one that came with another trace (a stale ``sentry-trace_id`` next to an
    all-zero ``sentry-trace``) or with none (``sentry-trace`` without Sentry baggage) does not
    describe this one, so it is not passed on and this process heads the trace's DSC instead.
    """
    if not isinstance(baggage, Baggage) or not baggage.sentry_items:
        return None
    return baggage if baggage.sentry_items.get("trace_id") == format_trace_id(trace_id) else None


def incoming_dsc(trace_id: int, context: Context | None = None) -> Baggage | None:
    """The upstream's dynamic sampling context of trace ``trace_id``, if the trace came in with one."""
    return dsc_of_trace(get_value(SENTRY_BAGGAGE_KEY, context), trace_id)


def dynamic_sampling_context(
    span_context: SpanContext, head: DscHead | None, context: Context | None = None
) -> Baggage | None:
    """The trace's DSC: the upstream's if it sent one for this trace (it is frozen), else this process heads it."""
    incoming = incoming_dsc(span_context.trace_id, context)
    if incoming is not None or head is None:
        return incoming
    return head(span_context)


class SentryTracePropagator(TextMapPropagator):
    """Sentry's ``sentry-trace`` and ``baggage`` next to W3C, without Sentry's propagator's gaps.

    Placed after W3C tracecontext and baggage in the composite, it

    - continues a trace from ``sentry-trace`` alone (honouring its sampled flag:
      ``-0`` is not sampled, ``-1`` and a deferred decision are), and leaves a
      trace from ``traceparent`` alone when both are present; an all-zero id
      starts a new trace;
    - keeps an incoming Sentry DSC (``sentry-*`` baggage) only when its
      ``trace_id`` is the continued trace's, so a new trace, or one continued
      from ``sentry-trace`` without baggage, gets this process's DSC, in the
      transaction and in every downstream call alike;
    - writes ``sentry-trace`` for every valid span, sampled or not;
    - writes one ``baggage`` header with the ``sentry-*`` entries and the user's
      own entries, where Sentry's propagator would drop the user's.

    ``head`` makes the DSC of traces this process starts; without it only an
    upstream's DSC is passed on.
    """

    def __init__(self, head: DscHead | None = None) -> None:
        self._head = head
        self._w3c_baggage = W3CBaggagePropagator()

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        # The W3C baggage propagator (before this one) took the sentry-* entries as baggage too: they are
        # the DSC, carried below only when it belongs to the trace, so W3C must not pass them on unchecked.
        context = _without_sentry_entries(get_current() if context is None else context)
        incoming_baggage = getter.get(carrier, BAGGAGE_HEADER)
        baggage = Baggage.from_incoming_header(",".join(incoming_baggage)) if incoming_baggage else None
        existing = trace.get_current_span(context).get_span_context()
        from_traceparent = bool(getter.get(carrier, TRACEPARENT_HEADER)) and existing.is_valid and existing.is_remote
        raw = getter.get(carrier, SENTRY_TRACE_HEADER)
        data = extract_sentrytrace_data(raw[0]) if raw else None

        if from_traceparent:  # W3C wins; keep Sentry's data only when it belongs to the same trace
            if data and data.get("trace_id") == format_trace_id(existing.trace_id):
                context = set_value(SENTRY_TRACE_KEY, data, context)
            return _with_dsc(context, baggage, existing.trace_id)
        span_context = _continued(data)
        if span_context is None:  # none, malformed or all-zero ids: a new trace starts, and heads its own DSC
            return context
        context = set_value(SENTRY_TRACE_KEY, data, context)
        context = _with_dsc(context, baggage, span_context.trace_id)
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
        dsc = dynamic_sampling_context(span_context, self._head, context)
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


def _without_sentry_entries(context: Context) -> Context:
    for key in otel_baggage.get_all(context):
        if key.startswith(Baggage.SENTRY_PREFIX):
            context = otel_baggage.remove_baggage(key, context)
    return context


def _continued(data: dict[str, str | bool | None] | None) -> SpanContext | None:
    """The remote parent a ``sentry-trace`` names; None unless both its ids are there and not all zero."""
    if not data or not data.get("trace_id") or not data.get("parent_span_id"):
        return None
    sampled = data.get("parent_sampled") is not False
    span_context = SpanContext(
        trace_id=int(str(data["trace_id"]), 16),
        span_id=int(str(data["parent_span_id"]), 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    return span_context if span_context.is_valid else None


def _with_dsc(context: Context, baggage: Baggage | None, trace_id: int) -> Context:
    """``context`` carrying the incoming Sentry DSC, frozen, if it is one of trace ``trace_id``."""
    dsc = dsc_of_trace(baggage, trace_id)
    if dsc is None:
        return context
    dsc.freeze()
    return set_value(SENTRY_BAGGAGE_KEY, dsc, context)
