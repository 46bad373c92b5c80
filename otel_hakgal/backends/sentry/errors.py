"""Errors to Sentry, linked to the OTel span where they happened, with the command's context and tags.

sentry-sdk's event processors are process-wide, so the one processor this
module registers (once per process) asks the runtime for the running Sentry
backend's :class:`ErrorLinker` on every event, and leaves the event alone
when no Sentry backend of this layer runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

import sentry_sdk
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import format_span_id, format_trace_id

from otel_hakgal import runtime
from otel_hakgal.backends.batching import ReadsOnlySpanContext
from otel_hakgal.backends.sentry._compat import event_from_exception
from otel_hakgal.backends.sentry.common import SentryBackendBase
from otel_hakgal.backends.sentry.propagator import DscHead, dynamic_sampling_context
from otel_hakgal.backends.sentry.vocabulary import (
    ERROR_CONTEXT_ATTRIBUTES,
    MAX_TAG_LENGTH,
    TRANSACTION_TAG_ATTRIBUTES,
    string_value,
)
from otel_hakgal.escapes import escaped_spans

logger = logging.getLogger("otel_hakgal")

HINT_SPAN: Final = "otel_hakgal_span"  # event hint key: the span a handled error was captured in
MECHANISM: Final = "otel_hakgal"
# Noted on an exception: the trace ids of the error events that carried it (a repeat in one of them is dropped).
_REPORTED: Final = "_otel_hakgal_sentry_reported"
_MAX_REPORTED_TRACES: Final = 16


# --- open spans, to walk from where an error happened up to the root ---------


class OpenSpans(ReadsOnlySpanContext, SpanProcessor):
    """The spans open now, by span id. Cheap: one dict store and one pop per span (by the ended span's id
    alone, so the fan-out need not scrub it for this processor)."""

    def __init__(self) -> None:
        self.spans: dict[int, Span] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.spans[span.get_span_context().span_id] = span

    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is not None:
            self.spans.pop(context.span_id, None)

    def shutdown(self) -> None:
        self.spans.clear()

    def chain(self, first: Sequence[ReadableSpan | trace.Span]) -> list[Any]:
        """``first`` (innermost first) followed by the open ancestors of its last span."""
        chain: list[Any] = list(first)
        seen = {id(s) for s in chain}
        parent = getattr(chain[-1], "parent", None) if chain else None
        while parent is not None:
            span = self.spans.get(parent.span_id)
            if span is None or id(span) in seen:
                break
            chain.append(span)
            seen.add(id(span))
            parent = span.parent
        return chain


def _this_raise(escaped: Sequence[Any], reported: trace.SpanContext) -> list[Any]:
    """The spans of ``escaped`` (innermost first) in the trace the error is reported in.

    An exception instance raised again (an app's pre-built one) keeps the spans it escaped before, in other
    traces: those are not where this report's error happened. Reported outside any span: the last raise's trace.
    """
    if not escaped:
        return []
    trace_id = reported.trace_id if reported.is_valid else escaped[-1].get_span_context().trace_id
    return [span for span in escaped if span.get_span_context().trace_id == trace_id]


def chain_tags(chain: Sequence[Any]) -> dict[str, str]:
    """Transaction tags from a span chain; the outermost span with a value wins."""
    tags: dict[str, str] = {}
    for span in reversed(chain):
        attributes = getattr(span, "attributes", None) or {}
        for key in TRANSACTION_TAG_ATTRIBUTES:
            if key in attributes and key not in tags:
                tags[key] = string_value(attributes[key], MAX_TAG_LENGTH)
    return tags


# --- decorating error events -------------------------------------------------


class ErrorLinker:
    """What one running Sentry backend adds to error events: span link, DSC, ``hakgal`` context, tags."""

    def __init__(
        self, open_spans: OpenSpans, head: DscHead | None, max_text_length: int, tags: Mapping[str, str]
    ) -> None:
        self.open_spans = open_spans
        self.head = head
        self.max_text_length = max_text_length
        self.tags = dict(tags)

    def decorate(self, event: dict[str, Any], hint: dict[str, Any]) -> None:
        """Link an error to its OTel span and add the command context and tags.

        The span is, in this order: the span a handled error was captured in; the
        innermost operation span the exception was raised through (even if it has
        ended since); the current span. Works for sampled and unsampled traces.
        """
        self._link(event, hint)
        tags = event.setdefault("tags", {})
        for key, value in self.tags.items():  # the configured tags (sentry.tags) on every event
            tags.setdefault(key, value)

    def _link(self, event: dict[str, Any], hint: dict[str, Any]) -> None:
        exc_info = hint.get("exc_info")
        error = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
        hinted = hint.get(HINT_SPAN)
        reported = hinted if hinted is not None else trace.get_current_span()
        escaped = escaped_spans(error) if isinstance(error, BaseException) else []
        escaped = _this_raise(escaped, reported.get_span_context())
        # Where it was raised beats where it was reported.
        chain = self.open_spans.chain(escaped or [reported])
        span = chain[0]
        context = span.get_span_context()
        if not context.is_valid:
            return

        span_id = format_span_id(context.span_id)
        trace_context: dict[str, Any] = {"trace_id": format_trace_id(context.trace_id), "span_id": span_id}
        parent = getattr(span, "parent", None)
        if parent is not None:
            trace_context["parent_span_id"] = format_span_id(parent.span_id)
        dsc = dynamic_sampling_context(context, self.head)
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
                    details[key] = string_value(value, self.max_text_length) if isinstance(value, str) else value
        if details:
            contexts["hakgal"] = details
            if "hakgal.command.name" in details:
                tags.setdefault("hakgal.command.name", str(details["hakgal.command.name"]))


def active_linker() -> ErrorLinker | None:
    """The error linker of the Sentry backend in the runtime in force, if one runs."""
    for backend in runtime.current.backends:
        if isinstance(backend, SentryBackendBase) and backend.linker is not None:
            return backend.linker
    return None


def reported_before(event: dict[str, Any], hint: Any) -> bool:
    """Whether the exception of an error event was in an earlier error event of the same trace; notes it if not.

    One exception, one error event: ``logger.exception(...)`` (sentry-sdk's logging integration), then the same
    exception escaping to ``hg.capture_exception``, Flask's integration or a thread's. sentry-sdk's own
    ``DedupeIntegration`` drops a repeat only while no other exception came between, in the same context
    (not across threads or tasks); the trace ids noted on the exception object hold everywhere. Per trace, so
    an exception instance an app raises again in another request (a pre-built one) is filed there too. The
    first event, filed where the exception was logged or caught, stays. Call after :meth:`ErrorLinker.decorate`.
    """
    exc_info = hint.get("exc_info") if isinstance(hint, dict) else None
    error = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
    state = getattr(error, "__dict__", None) if isinstance(error, BaseException) else None
    if not isinstance(state, dict):  # an exception type without attributes: sentry-sdk's dedupe only
        return False
    trace_context = (event.get("contexts") or {}).get("trace") or {}
    trace_id = trace_context.get("trace_id") if isinstance(trace_context, dict) else None
    traces = state.setdefault(_REPORTED, [])
    if trace_id in traces:
        return True
    if len(traces) >= _MAX_REPORTED_TRACES:
        del traces[0]
    traces.append(trace_id)
    return False


def _decorate_error(event: Any, hint: Any) -> Any:
    """Global event processor: errors and messages get the running Sentry backend's decoration.

    A repeat of an exception already filed in the same trace is dropped (see :func:`reported_before`).
    """
    if event.get("type") == "transaction":
        return event  # the transaction processor builds those whole
    linker = active_linker()
    if linker is None:
        return event
    try:
        linker.decorate(event, hint or {})
    except Exception:  # never lose the error event over its decoration
        logger.debug("otel_hakgal: could not link a Sentry event to its span", exc_info=True)
    if reported_before(event, hint):
        logger.debug("otel_hakgal: dropped a second Sentry error event for the same exception")
        return None
    return event


class _Registration:
    lock = threading.Lock()
    done = False


def register_event_processor() -> None:
    """Add the layer's event processor to sentry-sdk's process-wide list, once per process."""
    with _Registration.lock:
        if not _Registration.done:
            sentry_sdk.scope.add_global_event_processor(_decorate_error)
            _Registration.done = True


# --- capturing -----------------------------------------------------------------


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


def capture_message(message: str, level: str) -> None:
    sentry_sdk.capture_message(message, level=level)  # type: ignore[arg-type]
