"""OTel spans to Sentry transactions: the mapping, the JSON, and the processor that sends them off-thread.

:class:`SentryTransactionProcessor` keeps the semantics of sentry-sdk's
``SentrySpanProcessor`` with its gaps closed and its cost moved off the
request thread; :func:`map_span` gives each span its Sentry op, description
and status, under the old and the new HTTP conventions alike.
"""

from __future__ import annotations

import contextlib
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import sentry_sdk
from opentelemetry.context import Context, get_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from sentry_sdk.consts import SPANDATA
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.scope import use_isolation_scope, use_scope
from sentry_sdk.tracing import TransactionSource, get_span_status_from_http_code

from otel_hakgal import runtime
from otel_hakgal.backends.base import QueueStats
from otel_hakgal.backends.batching import DROPS, ScrubsOnExport
from otel_hakgal.backends.sentry import _compat
from otel_hakgal.backends.sentry._compat import SENTRY_BAGGAGE_KEY, SPAN_ORIGIN, Baggage, format_timestamp
from otel_hakgal.backends.sentry.client import HINT_SCRUBBER, wait_for_transport_room
from otel_hakgal.backends.sentry.profiling import PROFILER_ID, THREAD_ID, THREAD_NAME, ProfiledRoot, SentryProfiler
from otel_hakgal.backends.sentry.propagator import DscHead, dsc_of_trace
from otel_hakgal.backends.sentry.vocabulary import (
    GEN_AI_NOT_MODEL_CALLS,
    GEN_AI_OPS,
    HAKGAL_OPS,
    HTTP_METHOD,
    HTTP_ROUTE,
    HTTP_STATUS,
    HTTP_TARGET,
    HTTP_URL,
    MAX_TAG_LENGTH,
    MEASUREMENT_UNITS,
    OP_CACHE_GET,
    OP_DB,
    OP_HTTP,
    OP_HTTP_CLIENT,
    OP_HTTP_SERVER,
    PEER,
    TRANSACTION_TAG_ATTRIBUTES,
    Measurement,
    span_name_prefix,
    string_value,
)
from otel_hakgal.backends.sentry.worker import DEFAULT_QUEUE_SIZE, FifoWorker
from otel_hakgal.conventions import Attr, ErrorType, SpanName

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient
    from sentry_sdk.scope import Scope

    from otel_hakgal.redaction import SecretScrubber


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

    method = _first(attributes, HTTP_METHOD)
    if method:
        code = _first(attributes, HTTP_STATUS)
        http_status = int(code) if code is not None else None
        if span.kind is SpanKind.CLIENT:
            url = _first(attributes, HTTP_URL)
            if url:
                parts = urllib.parse.urlsplit(str(url))
                target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
            else:
                target = str(_first(attributes, PEER) or "")
            return Mapped(OP_HTTP_CLIENT, f"{method} {target}".strip(), status, http_status)
        route = _first(attributes, HTTP_ROUTE)
        target = route or _first(attributes, HTTP_TARGET) or ""
        op = OP_HTTP_SERVER if span.kind is SpanKind.SERVER else OP_HTTP
        source = TransactionSource.ROUTE if route else TransactionSource.URL
        return Mapped(op, f"{method} {target}".strip(), status, http_status, source)

    operation = attributes.get(Attr.GEN_AI_OPERATION_NAME)
    if operation and operation not in GEN_AI_NOT_MODEL_CALLS:
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
        return Mapped(OP_DB, str(attributes.get("db.statement") or name), status)
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
        if name == span_name_prefix(SpanName.COMMAND):
            added[Measurement.COMMAND_DURATION] = duration_ms
        elif name == SpanName.QUERY:
            added[Measurement.QUERY_DURATION] = duration_ms
        elif name == span_name_prefix(SpanName.PROVER):
            added[Measurement.PROVER_DURATION] = duration_ms
        elif attributes.get(Attr.GEN_AI_OPERATION_NAME, GEN_AI_NOT_MODEL_CALLS) not in GEN_AI_NOT_MODEL_CALLS:
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
    """A local root span that has not ended yet: its ended descendants, the DSC it came with, its profile."""

    __slots__ = ("dropped", "incoming", "profile", "spans")

    def __init__(self, incoming: Baggage | None, profile: ProfiledRoot | None = None) -> None:
        self.spans: list[ReadableSpan] = []
        self.incoming = incoming
        self.dropped = 0
        self.profile = profile


MAX_SPANS: Final = 1000  # per transaction, as Sentry's own span recorder
MAX_OPEN_TRANSACTIONS: Final = 10_000  # roots that never end are forgotten, oldest first, past this
MAX_OPEN_SPANS: Final = 100_000


class SentryTransactionProcessor(ScrubsOnExport, SpanProcessor):
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

    It sends through ``client`` (the one its backend started), heads the DSC
    of new traces with ``head`` and puts ``tags`` (``sentry.tags``) on every
    transaction, below the transaction's own tags and the scopes' tags. With a
    ``profiler``, each sampled root runs it from start to end and its
    transaction carries ``contexts.profile.profiler_id`` (see :mod:`.profiling`).

    It scrubs on export (:class:`~otel_hakgal.backends.batching.ScrubsOnExport`): once ``setup()``
    gave it its scrubber, the fan-out hands it spans unscrubbed and the root and its spans are scrubbed
    when the transaction is built, on the worker, before any of their data is read.
    """

    def __init__(
        self,
        resource: Resource,
        client: BaseClient,
        *,
        head: DscHead | None = None,
        tags: Mapping[str, str] | None = None,
        profiler: SentryProfiler | None = None,
        inline: bool = False,
        max_queue_size: int = DEFAULT_QUEUE_SIZE,
        max_spans: int = MAX_SPANS,
        max_open_transactions: int = MAX_OPEN_TRANSACTIONS,
        max_open_spans: int = MAX_OPEN_SPANS,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.client = client
        self.head = head
        self.tags = dict(tags or {})
        self.profiler = profiler
        self.inline = inline
        self.shutdown_timeout_s = shutdown_timeout_s
        self.max_spans = max_spans
        self.max_open_transactions = max_open_transactions
        self.max_open_spans = max_open_spans
        self.worker = FifoWorker(max_queue_size)
        # Spans and transactions lost, by cause (counted without a lock: close enough for statistics).
        self.late_spans = 0  # ended after their transaction was sent, or was forgotten (Sentry drops those too)
        self.overflow_spans = 0  # past max_spans in their transaction
        self.forgotten_spans = 0  # open spans forgotten past max_open_spans
        self.forgotten_transactions = 0  # open roots forgotten past max_open_transactions
        self._roots: dict[int, int] = {}  # open span id -> its local root's span id
        self._open: dict[int, _OpenTransaction] = {}  # open root span id -> what it has gathered
        self._resource = {key: _json_value(value) for key, value in resource.attributes.items()}

    @property
    def dropped(self) -> int:
        """Transactions not sent because the worker's queue was full."""
        return self.worker.dropped

    def queue_stats(self) -> dict[str, QueueStats]:
        """The worker's queue (transactions), and the open transactions and spans held until their root ends."""
        return {
            "sentry span worker": self.worker.queue_stats(),
            "sentry open transactions": QueueStats(
                queued=len(self._open), capacity=self.max_open_transactions, dropped=self.forgotten_transactions
            ),
            "sentry open spans": QueueStats(
                queued=len(self._roots),
                capacity=self.max_open_spans,
                dropped=self.late_spans + self.overflow_spans + self.forgotten_spans,
            ),
        }

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span_id = span.context.span_id
        parent = span.parent
        root = self._roots.get(parent.span_id) if parent is not None and not parent.is_remote else None
        if root is None:
            root = span_id
            # The upstream's DSC, only if it is one of this span's trace (else this process heads it).
            incoming = (
                dsc_of_trace(get_value(SENTRY_BAGGAGE_KEY, parent_context), span.context.trace_id)
                if parent is not None
                else None
            )
            profiler = self.profiler
            profile = profiler.root_started() if profiler is not None and span.context.trace_flags.sampled else None
            self._open[span_id] = _OpenTransaction(incoming, profile)
            if len(self._open) > self.max_open_transactions and _forget_oldest_transaction(self._open):
                self.forgotten_transactions += 1
        self._roots[span_id] = root
        if len(self._roots) > self.max_open_spans and _forget_oldest(self._roots):
            self.forgotten_spans += 1

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
                self.overflow_spans += 1
            return
        transaction = self._open.pop(span_id, None)
        if transaction is None:
            return
        if transaction.profile is not None:
            transaction.profile.stop()
        if not span.context.trace_flags.sampled:
            return
        # The secret policy of the runtime the root ended in: by the time the worker sends, setup() may
        # have replaced or shut down that runtime.
        scrubber = runtime.current.scrubber
        if self.inline:
            self._send(span, transaction, scrubber)
            return
        # Sent in the scopes of this thread, as Sentry's own processor would, not the worker's.
        isolation, current = sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()
        if not self.worker.submit(lambda: self._send_in(isolation, current, span, transaction, scrubber)):
            DROPS.noticed()  # the worker counted it; reported with every other drop

    def _send_in(
        self,
        isolation: Scope,
        current: Scope,
        root: ReadableSpan,
        transaction: _OpenTransaction,
        scrubber: SecretScrubber | None,
    ) -> None:
        with use_isolation_scope(_compat.without_live_request_processors(isolation)), use_scope(current):
            self._send(root, transaction, scrubber, wait=True)

    def _send(
        self, root: ReadableSpan, transaction: _OpenTransaction, scrubber: SecretScrubber | None, wait: bool = False
    ) -> None:
        client = self.client
        if client.transport is None:  # no DSN, or closed since
            return
        if wait:  # on the worker: a burst waits in its queue, not overflowing the transport's
            wait_for_transport_room(client.transport)
        span_scrubber = self.export_scrubber
        if span_scrubber is not None:  # the fan-out left the spans to this processor: scrubbed before any is read
            root, *transaction.spans = span_scrubber.scrub_spans([root, *transaction.spans])
        event, spans = self.transaction_event(root, transaction)
        send_transaction(
            client,
            event,
            spans,
            _compat.merged_scope(),
            dropped_spans=transaction.dropped,
            hint={HINT_SCRUBBER: scrubber},
        )

    def transaction_event(
        self, root: ReadableSpan, transaction: _OpenTransaction
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The transaction event of ``root`` (as Sentry's ``Transaction.finish`` builds it) and its spans."""
        trace_id = format_trace_id(root.context.trace_id)
        spans = [span_json(span, trace_id) for span in transaction.spans]
        own_tags, measurements = _totals([*transaction.spans, root])  # the root's own attributes count too
        tags = {**self.tags, **own_tags}
        mapped = map_span(root)
        data: dict[str, Any] = {}
        status = _with_http_status(mapped, tags, data)
        dsc = transaction.incoming
        if dsc is None and self.head is not None:
            dsc = self.head(root.context)
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
            trace_context["dynamic_sampling_context"] = _with_tail_rate(
                dsc.dynamic_sampling_context(), root, headed=transaction.incoming is None
            )
        profile = transaction.profile
        if profile is not None:
            data[THREAD_ID] = profile.thread_id
            data[THREAD_NAME] = profile.thread_name
        if data:
            trace_context["data"] = data
        contexts: dict[str, Any] = {
            "trace": trace_context,
            "otel": {
                "attributes": {key: _json_value(value) for key, value in (root.attributes or {}).items()},
                "resource": self._resource,
            },
        }
        if profile is not None:
            contexts["profile"] = {PROFILER_ID: profile.profiler_id}
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
                key: {"value": total, "unit": MEASUREMENT_UNITS.get(key, "none")} for key, total in measurements.items()
            },
        }
        return event, spans

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Hand every queued transaction to Sentry's transport, within ``timeout_millis``.

        The transport is flushed once, by the backend's ``force_flush`` (after every processor's).
        """
        return self.worker.drain(timeout_millis / 1000)

    def shutdown(self) -> None:
        self.worker.stop(self.shutdown_timeout_s)
        self._roots.clear()
        while self._open:  # roots still open release their profile handles: the profiler must stop
            with contextlib.suppress(KeyError, RuntimeError):
                profile = self._open.popitem()[1].profile
                if profile is not None:
                    profile.stop()


def _with_tail_rate(dsc: dict[str, str], root: ReadableSpan, *, headed: bool) -> dict[str, str]:
    """``dsc`` with the rate the trace was really kept at, when tail sampling kept it, so that Sentry
    extrapolates right (Relay takes the envelope's ``sample_rate`` as the client sample rate).

    Only this transaction's envelope carries it: the DSC that went downstream stays the head's,
    as Sentry freezes a DSC once propagated. A trace this process headed was sampled on the same
    trace-id bits at both stages, so the rate is the smaller one; an upstream's rate is independent.
    """
    tail_rate = (root.attributes or {}).get(Attr.SAMPLING_RATE)
    if not isinstance(tail_rate, float):
        return dsc
    try:
        head_rate = float(dsc.get("sample_rate", "1"))
    except ValueError:
        head_rate = 1.0
    rate = min(head_rate, tail_rate) if headed else head_rate * tail_rate
    return {**dsc, "sample_rate": repr(rate)}


def _forget_oldest_transaction(open_transactions: dict[int, _OpenTransaction]) -> bool:
    """Forget the oldest open root, releasing its profile handle (a root that never ends must not keep
    the profiler running)."""
    with contextlib.suppress(StopIteration, KeyError, RuntimeError):
        profile = open_transactions.pop(next(iter(open_transactions))).profile
        if profile is not None:
            profile.stop()
        return True
    return False


def _forget_oldest(mapping: dict[int, Any]) -> bool:
    # Another thread may change it meanwhile: then this one is skipped, and the next call catches up.
    with contextlib.suppress(StopIteration, KeyError, RuntimeError):
        del mapping[next(iter(mapping))]
        return True
    return False


def send_transaction(
    client: BaseClient,
    event: dict[str, Any],
    spans: list[dict[str, Any]],
    scope: Scope,
    dropped_spans: int = 0,
    hint: dict[str, Any] | None = None,
) -> None:
    """Send a transaction as ``Client.capture_event`` does, without putting ``spans`` through the serializer.

    The event, minus its spans, measurements and ``otel`` context (JSON
    already, and most of its nodes), goes through the client's own preparation: the scope's data
    and event processors, release and environment, Sentry's serializer and
    ``before_send_transaction`` (which gets ``hint``). ``gen_ai.*`` spans go
    in a separate ``span`` item, as sentry-sdk sends them.
    """
    otel_context = event["contexts"].pop("otel", None)
    measurements = event.pop("measurements", None)
    event["event_id"] = uuid.uuid4().hex
    prepared = _compat.prepare_event(client, event, scope, hint or {})
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
    envelope.add_transaction(prepared)  # type: ignore[arg-type]
    if gen_ai:
        items = [_compat.v2_span(span, prepared) for span in gen_ai]
        envelope.add_item(
            Item(
                type=_compat.SPAN_ITEM_TYPE,
                content_type=_compat.SPAN_ITEM_CONTENT_TYPE,
                headers={"item_count": len(items)},
                payload=PayloadRef(json={"version": 2, "items": items}),
            )
        )
    transport.capture_envelope(envelope)
