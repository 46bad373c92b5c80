"""Backend ``sentry``: OTel spans become Sentry transactions, as Sentry's span processor makes them.

``sentry_sdk.init(instrumenter="otel")`` plus :class:`SentryTransactionProcessor`
(the semantics of :class:`~sentry_sdk.integrations.opentelemetry.SentrySpanProcessor`,
with its gaps closed and its cost moved off the request thread) on the layer's
TracerProvider, and a propagator that speaks ``sentry-trace`` next to W3C. The
OTel sampler decides once; Sentry follows.

Sentry-side vocabulary (span ops) lives here; every HAK-GAL name comes from
:mod:`otel_hakgal.conventions`.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sentry_sdk
from opentelemetry.context import Context, get_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from sentry_sdk.consts import SPANDATA
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.opentelemetry.consts import SENTRY_BAGGAGE_KEY
from sentry_sdk.integrations.opentelemetry.span_processor import SPAN_ORIGIN
from sentry_sdk.scope import Scope, use_isolation_scope, use_scope
from sentry_sdk.tracing import TransactionSource, get_span_status_from_http_code
from sentry_sdk.tracing_utils import Baggage
from sentry_sdk.utils import format_timestamp

from otel_hakgal.backends._fifo_worker import DEFAULT_QUEUE_SIZE, FifoWorker
from otel_hakgal.backends._sentry_common import (
    MAX_TAG_LENGTH,
    OpenSpans,
    SentryBackendBase,
    check_sample_rate,
    flush,
    head_dsc,
    init_sentry,
    send_transaction,
    string_value,
)
from otel_hakgal.config import Config
from otel_hakgal.conventions import (
    TRANSACTION_TAG_ATTRIBUTES,
    Attr,
    ErrorType,
    GenAIOperation,
    Measurement,
    SpanName,
)

# --- Sentry's vocabulary: span ops -----------------------------------------------

OP_HTTP_SERVER: Final = "http.server"
OP_HTTP_CLIENT: Final = "http.client"
OP_CACHE_GET: Final = "cache.get"
GEN_AI_OPS: Final[Mapping[str, str]] = {
    GenAIOperation.CHAT: "gen_ai.chat",
    GenAIOperation.TEXT_COMPLETION: "gen_ai.text_completion",
    GenAIOperation.GENERATE_CONTENT: "gen_ai.chat",
    GenAIOperation.EMBEDDINGS: "gen_ai.embeddings",
}


def _prefix(template: str) -> str:
    return template.split(" {", 1)[0]


# Span-name prefix -> op for HAK-GAL's own spans (the name's variable part goes to the description).
HAKGAL_OPS: Final[Mapping[str, str]] = {
    _prefix(SpanName.COMMAND): "hakgal.command",
    _prefix(SpanName.QUERY): "hakgal.query",
    _prefix(SpanName.PROVER): "hakgal.prover",
    _prefix(SpanName.PARSE): "hakgal.parse",
    _prefix(SpanName.RAG_RETRIEVE): "hakgal.rag.retrieve",
    _prefix(SpanName.RAG_EXTRACT): "hakgal.rag.extract",
    _prefix(SpanName.KB_UPDATE): "hakgal.kb.update",
}

# Old and new (OTEL_SEMCONV_STABILITY_OPT_IN=http) HTTP attribute names, new first.
_HTTP_METHOD = ("http.request.method", "http.method")
_HTTP_STATUS = ("http.response.status_code", "http.status_code")
_HTTP_ROUTE = ("http.route",)
_HTTP_TARGET = ("url.path", "http.target")
_HTTP_URL = ("url.full", "http.url")
_PEER = ("server.address", "net.peer.name")


def _first(attributes: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value not in (None, ""):
            return value
    return None


@dataclass
class Mapped:
    """How one OTel span looks in Sentry."""

    op: str
    description: str
    status: str | None = None
    http_status: int | None = None
    source: str | None = None  # transaction name source
    data: dict[str, Any] | None = None  # extra span data beyond the attributes


def map_span(span: ReadableSpan) -> Mapped:
    """Sentry op, description and status of an OTel span, for old and new HTTP conventions alike."""
    attributes: Mapping[str, Any] = span.attributes or {}
    name = span.name
    if span.status.status_code is StatusCode.ERROR:
        status = "deadline_exceeded" if attributes.get(Attr.ERROR_TYPE) == ErrorType.TIMEOUT else "internal_error"
    else:
        status = "ok"

    method = _first(attributes, _HTTP_METHOD)
    if method:
        code = _first(attributes, _HTTP_STATUS)
        http_status = int(code) if code is not None else None
        if span.kind is SpanKind.CLIENT:
            url = _first(attributes, _HTTP_URL)
            if url:
                parts = urllib.parse.urlsplit(str(url))
                target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
            else:
                target = str(_first(attributes, _PEER) or "")
            return Mapped(OP_HTTP_CLIENT, f"{method} {target}".strip(), status, http_status)
        route = _first(attributes, _HTTP_ROUTE)
        target = route or _first(attributes, _HTTP_TARGET) or ""
        op = OP_HTTP_SERVER if span.kind is SpanKind.SERVER else "http"
        source = TransactionSource.ROUTE if route else TransactionSource.URL
        return Mapped(op, f"{method} {target}".strip(), status, http_status, source)

    operation = attributes.get(Attr.GEN_AI_OPERATION_NAME)
    if operation:
        op = GEN_AI_OPS.get(str(operation), f"gen_ai.{operation}")
        data: dict[str, Any] = {}
        provider = attributes.get(Attr.GEN_AI_PROVIDER_NAME)
        if provider and Attr.GEN_AI_SYSTEM not in attributes:
            data[Attr.GEN_AI_SYSTEM] = provider  # Sentry's AI views still key on the legacy name
        tokens = [attributes.get(k) for k in (Attr.GEN_AI_USAGE_INPUT_TOKENS, Attr.GEN_AI_USAGE_OUTPUT_TOKENS)]
        if any(isinstance(t, int) for t in tokens):
            data["gen_ai.usage.total_tokens"] = sum(t for t in tokens if isinstance(t, int))
        return Mapped(op, name, status, data=data)

    if Attr.CACHE_NAME in attributes:
        return Mapped(OP_CACHE_GET, name, status, data={"cache.hit": bool(attributes.get(Attr.CACHE_HIT))})

    hakgal_op = HAKGAL_OPS.get(name.split(" ", 1)[0])
    if hakgal_op is not None:
        return Mapped(hakgal_op, name, status)
    if attributes.get("db.system"):
        return Mapped("db", str(attributes.get("db.statement") or name), status)
    return Mapped(name, name, status)


def _totals(spans: Sequence[ReadableSpan]) -> tuple[dict[str, str], dict[str, float]]:
    """A transaction's tags and summed measurements from its spans, in the order they ended."""
    tags: dict[str, str] = {}
    measurements: dict[str, float] = {}
    for span in spans:
        attributes: Mapping[str, Any] = span.attributes or {}
        duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        name = span.name.split(" ", 1)[0]
        added: dict[str, float] = {}
        if name == _prefix(SpanName.COMMAND):
            added[Measurement.COMMAND_DURATION] = duration_ms
        elif name == SpanName.QUERY:
            added[Measurement.QUERY_DURATION] = duration_ms
        elif name == _prefix(SpanName.PROVER):
            added[Measurement.PROVER_DURATION] = duration_ms
        elif Attr.GEN_AI_OPERATION_NAME in attributes:
            added[Measurement.LLM_DURATION] = duration_ms
            tokens_in = attributes.get(Attr.GEN_AI_USAGE_INPUT_TOKENS)
            tokens_out = attributes.get(Attr.GEN_AI_USAGE_OUTPUT_TOKENS)
            if isinstance(tokens_in, int):
                added[Measurement.INPUT_TOKENS] = tokens_in
            if isinstance(tokens_out, int):
                added[Measurement.OUTPUT_TOKENS] = tokens_out
            if isinstance(tokens_in, int) or isinstance(tokens_out, int):
                added[Measurement.TOTAL_TOKENS] = (tokens_in or 0) + (tokens_out or 0)
            cost = attributes.get(Attr.LLM_COST_AMOUNT)
            if isinstance(cost, int | float):
                added[Measurement.LLM_COST] = float(cost)
        for key, value in added.items():
            measurements[key] = measurements.get(key, 0.0) + value
        for key in TRANSACTION_TAG_ATTRIBUTES:
            if key in attributes:
                # Spans end inner first: the outermost span's value, ending last, wins.
                tags[key] = string_value(attributes[key], MAX_TAG_LENGTH)
    return tags, measurements


_UNITS: Final[Mapping[str, str]] = {
    Measurement.COMMAND_DURATION: "millisecond",
    Measurement.QUERY_DURATION: "millisecond",
    Measurement.PROVER_DURATION: "millisecond",
    Measurement.LLM_DURATION: "millisecond",
}


def _timestamp(ns: int | None) -> str | None:
    return format_timestamp(datetime.fromtimestamp(ns / 1e9, UTC)) if ns is not None else None


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _with_http_status(mapped: Mapped, tags: dict[str, str], data: dict[str, Any]) -> str | None:
    """The span status, overridden by the HTTP status as Sentry's ``set_http_status`` does."""
    if mapped.http_status is None:
        return mapped.status
    tags["http.status_code"] = str(mapped.http_status)
    data[SPANDATA.HTTP_STATUS_CODE] = mapped.http_status
    return get_span_status_from_http_code(mapped.http_status)


def span_json(span: ReadableSpan, trace_id: str) -> dict[str, Any]:
    """One descendant span as Sentry's ``Span.to_json`` writes it."""
    mapped = map_span(span)
    data: dict[str, Any] = {"otel.kind": span.kind.name}
    for key, value in (span.attributes or {}).items():
        data[key] = _json_value(value)
    if mapped.data:
        data.update(mapped.data)
    tags: dict[str, str] = {}
    status = _with_http_status(mapped, tags, data)
    json: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": format_span_id(span.context.span_id),
        "parent_span_id": format_span_id(span.parent.span_id) if span.parent is not None else None,
        "same_process_as_parent": True,
        "op": mapped.op,
        "description": mapped.description,
        "start_timestamp": _timestamp(span.start_time),
        "timestamp": _timestamp(span.end_time),
        "origin": SPAN_ORIGIN,
        "data": data,
    }
    if status:
        json["status"] = status
        tags["status"] = status
    if tags:
        json["tags"] = tags
    return json


class _OpenTransaction:
    """A local root span that has not ended yet: its ended descendants, and the DSC it came with."""

    __slots__ = ("dropped", "incoming", "spans")

    def __init__(self, incoming: Baggage | None) -> None:
        self.spans: list[ReadableSpan] = []
        self.incoming = incoming
        self.dropped = 0


MAX_SPANS: Final = 1000  # per transaction, as Sentry's own span recorder
MAX_OPEN_TRANSACTIONS: Final = 10_000  # roots that never end are forgotten, oldest first, past this
MAX_OPEN_SPANS: Final = 100_000


class SentryTransactionProcessor(SpanProcessor):
    """Turns each local root span and its descendants into one Sentry transaction, off the request thread.

    It keeps the semantics of Sentry's ``SentrySpanProcessor``: a span with no
    local parent (or whose local parent is unknown) becomes a transaction, its
    descendants that end before it become its spans, ops and statuses come
    from :func:`map_span`. The request thread only files ended spans under
    their root (a dict lookup and a list append). When a root ends, its
    transaction is built, given the Sentry scopes that were current then (tags
    from ``sentry_sdk.set_tag``, the Flask integration's request data), and
    sent by one background :class:`FifoWorker`. The spans are written as JSON
    directly instead of through Sentry's recursive serializer, which costs
    several microseconds per node. ``inline=True`` sends on the span's thread.
    """

    def __init__(
        self,
        resource: Resource,
        *,
        inline: bool = False,
        max_queue_size: int = DEFAULT_QUEUE_SIZE,
        max_spans: int = MAX_SPANS,
        max_open_transactions: int = MAX_OPEN_TRANSACTIONS,
        max_open_spans: int = MAX_OPEN_SPANS,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.inline = inline
        self.shutdown_timeout_s = shutdown_timeout_s
        self.max_spans = max_spans
        self.max_open_transactions = max_open_transactions
        self.max_open_spans = max_open_spans
        self.worker = FifoWorker(max_queue_size)
        self.late_spans = 0  # ended after their transaction was sent (Sentry drops those too)
        self._roots: dict[int, int] = {}  # open span id -> its local root's span id
        self._open: dict[int, _OpenTransaction] = {}  # open root span id -> what it has gathered
        self._resource = {key: _json_value(value) for key, value in resource.attributes.items()}

    @property
    def dropped(self) -> int:
        """Transactions not sent because the worker's queue was full."""
        return self.worker.dropped

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span_id = span.context.span_id
        parent = span.parent
        root = self._roots.get(parent.span_id) if parent is not None and not parent.is_remote else None
        if root is None:
            root = span_id
            incoming = get_value(SENTRY_BAGGAGE_KEY, parent_context) if parent is not None else None
            self._open[span_id] = _OpenTransaction(incoming if isinstance(incoming, Baggage) else None)
            if len(self._open) > self.max_open_transactions:
                _forget_oldest(self._open)
        self._roots[span_id] = root
        if len(self._roots) > self.max_open_spans:
            _forget_oldest(self._roots)

    def on_end(self, span: ReadableSpan) -> None:
        span_id = span.context.span_id
        root = self._roots.pop(span_id, None)
        if root is None:
            return
        if root != span_id:
            transaction = self._open.get(root)
            if transaction is None:
                self.late_spans += 1
            elif len(transaction.spans) < self.max_spans:
                transaction.spans.append(span)
            else:
                transaction.dropped += 1
            return
        transaction = self._open.pop(span_id, None)
        if transaction is None or not span.context.trace_flags.sampled:
            return
        if self.inline:
            self._send(span, transaction)
            return
        # Sent in the scopes of this thread, as Sentry's own processor would, not the worker's.
        isolation, current = sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()
        self.worker.submit(lambda: self._send_in(isolation, current, span, transaction))

    def _send_in(self, isolation: Scope, current: Scope, root: ReadableSpan, transaction: _OpenTransaction) -> None:
        with use_isolation_scope(isolation), use_scope(current):
            self._send(root, transaction)

    def _send(self, root: ReadableSpan, transaction: _OpenTransaction) -> None:
        client = sentry_sdk.get_client()
        if not client.is_active():
            return
        event, spans = self.transaction_event(root, transaction)
        scope = sentry_sdk.get_current_scope()._merge_scopes()
        send_transaction(client, event, spans, scope, dropped_spans=transaction.dropped)

    def transaction_event(
        self, root: ReadableSpan, transaction: _OpenTransaction
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The transaction event of ``root`` (as Sentry's ``Transaction.finish`` builds it) and its spans."""
        trace_id = format_trace_id(root.context.trace_id)
        spans = [span_json(span, trace_id) for span in transaction.spans]
        tags, measurements = _totals([*transaction.spans, root])  # the root's own attributes count too
        mapped = map_span(root)
        data: dict[str, Any] = {}
        status = _with_http_status(mapped, tags, data)
        dsc = transaction.incoming or head_dsc(root.context)
        trace_context: dict[str, Any] = {
            "trace_id": trace_id,
            "span_id": format_span_id(root.context.span_id),
            "parent_span_id": format_span_id(root.parent.span_id) if root.parent is not None else None,
            "op": mapped.op,
            "description": None,
            "origin": SPAN_ORIGIN,
        }
        if status:
            trace_context["status"] = status
        if dsc is not None:
            trace_context["dynamic_sampling_context"] = dsc.dynamic_sampling_context()
        if data:
            trace_context["data"] = data
        contexts: dict[str, Any] = {
            "trace": trace_context,
            "otel": {
                "attributes": {key: _json_value(value) for key, value in (root.attributes or {}).items()},
                "resource": self._resource,
            },
        }
        if mapped.http_status is not None:
            contexts["response"] = {"status_code": mapped.http_status}
        event: dict[str, Any] = {
            "type": "transaction",
            "transaction": root.name,
            "transaction_info": {"source": mapped.source or TransactionSource.CUSTOM},
            "contexts": contexts,
            "tags": tags,
            "timestamp": _timestamp(root.end_time),
            "start_timestamp": _timestamp(root.start_time),
            "measurements": {
                key: {"value": total, "unit": _UNITS.get(key, "none")} for key, total in measurements.items()
            },
        }
        return event, spans

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        drained = self.worker.drain(timeout_millis / 1000)  # queued transactions reach Sentry's transport first
        return flush(timeout_millis) and drained

    def shutdown(self) -> None:
        self.worker.stop(self.shutdown_timeout_s)
        self._roots.clear()
        self._open.clear()


def _forget_oldest(mapping: dict[int, Any]) -> None:
    # Another thread may change it meanwhile: then this one is skipped, and the next call catches up.
    with contextlib.suppress(StopIteration, KeyError, RuntimeError):
        del mapping[next(iter(mapping))]


class SentryBackend(SentryBackendBase):
    name = "sentry"

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        rate = check_sample_rate(config, self.settings, self.name)
        init_sentry(
            config,
            self.settings,
            [FlaskIntegration(transaction_style="url")],
            self.delivery,
            traces_sample_rate=rate,
        )
        # The handle flushes and shuts down processors before backends: the processor drains its worker itself.
        self._processor = SentryTransactionProcessor(resource, shutdown_timeout_s=config.export.shutdown_timeout)

    def span_processors(self) -> Sequence[SpanProcessor]:
        return (OpenSpans(), self._processor)


BACKEND = SentryBackend
