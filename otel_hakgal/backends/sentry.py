"""Backend ``sentry``: OTel spans become Sentry transactions through Sentry's span processor.

``sentry_sdk.init(instrumenter="otel")`` plus :class:`HakgalSentrySpanProcessor`
(a :class:`~sentry_sdk.integrations.opentelemetry.SentrySpanProcessor` that
closes its gaps) on the layer's TracerProvider, and a propagator that speaks
``sentry-trace`` next to W3C. The OTel sampler decides once; Sentry follows.

Sentry-side vocabulary (span ops) lives here; every HAK-GAL name comes from
:mod:`otel_hakgal.conventions`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sentry_sdk
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode, format_span_id
from sentry_sdk.consts import INSTRUMENTER
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.opentelemetry.span_processor import SPAN_ORIGIN, SentrySpanProcessor
from sentry_sdk.scope import Scope, use_isolation_scope, use_scope
from sentry_sdk.tracing import Span as SentrySpan
from sentry_sdk.tracing import Transaction, TransactionSource

from otel_hakgal.backends._sentry_common import (
    OpenSpans,
    SentryBackendBase,
    check_sample_rate,
    flush,
    init_sentry,
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


class _Totals:
    """Per-transaction tags and measurements collected from its spans as they end."""

    __slots__ = ("lock", "measurements", "tags")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tags: dict[str, str] = {}
        self.measurements: dict[str, float] = {}

    def add(self, span: ReadableSpan) -> None:
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
        with self.lock:
            for key, value in added.items():
                self.measurements[key] = self.measurements.get(key, 0.0) + value
            for key in TRANSACTION_TAG_ATTRIBUTES:
                if key in attributes:
                    # Spans end inner first: the outermost span's value, ending last, wins.
                    self.tags[key] = string_value(attributes[key], 200)


_UNITS: Final[Mapping[str, str]] = {
    Measurement.COMMAND_DURATION: "millisecond",
    Measurement.QUERY_DURATION: "millisecond",
    Measurement.PROVER_DURATION: "millisecond",
    Measurement.LLM_DURATION: "millisecond",
}


def _timestamp(ns: int | None) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, UTC) if ns is not None else None


logger = logging.getLogger("otel_hakgal")

DEFAULT_QUEUE_SIZE: Final = 8192  # ended spans waiting for conversion; more are dropped and counted
DEFAULT_DELAY_S: Final = 0.003  # the worker starts this long after new work arrives, then runs all queued


class FifoWorker:
    """One background thread running submitted work in submission order, off the request thread.

    The queue is bounded: when it is full, :meth:`submit` drops the work and
    counts it in :attr:`dropped` instead of blocking the caller. The thread
    starts at the first submit, also again in a forked child (the child starts
    with an empty queue). After :meth:`stop`, work runs inline.
    """

    _instances: weakref.WeakSet[FifoWorker] = weakref.WeakSet()
    _fork_hook_registered = False

    def __init__(
        self,
        max_queue_size: int = DEFAULT_QUEUE_SIZE,
        name: str = "otel_hakgal-sentry",
        delay_s: float = DEFAULT_DELAY_S,
    ) -> None:
        self.max_queue_size = max_queue_size
        self.delay_s = delay_s
        self.name = name
        self.dropped = 0
        self._reset()
        FifoWorker._instances.add(self)
        if not FifoWorker._fork_hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=FifoWorker._after_fork_in_child)
            FifoWorker._fork_hook_registered = True

    def _reset(self) -> None:
        lock = threading.Lock()
        self._condition = threading.Condition(lock)  # the worker waits here for work
        self._idle = threading.Condition(lock)  # drain() waits here for an empty queue
        self._items: deque[Callable[[], None]] = deque()
        self._pending = 0  # queued plus running
        self._flushing = 0  # drains waiting: no delay then
        self._thread: threading.Thread | None = None
        self._stopped = False

    @classmethod
    def _after_fork_in_child(cls) -> None:
        for worker in list(cls._instances):
            stopped = worker._stopped
            worker._reset()  # the parent's thread does not exist here; its queue is the parent's to send
            worker._stopped = stopped

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work``; False (and counted) if the queue is full. Never blocks on the work."""
        with self._condition:
            if not self._stopped:
                if self._pending >= self.max_queue_size:
                    self.dropped += 1
                    return False
                self._items.append(work)
                self._pending += 1
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
                self._condition.notify()
                return True
        _run_quietly(work)  # stopped: nothing left to hand it to
        return True

    def _run(self) -> None:
        condition = self._condition
        while True:
            with condition:
                while not self._items and not self._stopped:
                    condition.wait()
                if not self._items:
                    return
                lazy = not self._stopped and not self._flushing
            if lazy and self.delay_s > 0:
                # Let the thread that queued the work finish its request first: under the GIL,
                # running at once would hold the response back for a switch interval (5 ms).
                time.sleep(self.delay_s)
            while True:
                with condition:
                    if not self._items:
                        break
                    work = self._items.popleft()
                _run_quietly(work)
                with condition:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

    @property
    def pending(self) -> int:
        return self._pending

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far has run; False on timeout."""
        with self._idle:
            self._flushing += 1
            try:
                return self._idle.wait_for(lambda: self._pending == 0, timeout_s)
            finally:
                self._flushing -= 1

    def stop(self, timeout_s: float) -> bool:
        """Drain, then end the thread; later work runs inline."""
        done = self.drain(timeout_s)
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        return done


def _run_quietly(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        logger.debug("otel_hakgal: converting a span for Sentry failed", exc_info=True)


class HakgalSentrySpanProcessor(SentrySpanProcessor):
    """Sentry's span processor, with the sampling, naming, tags and measurements fixed.

    ``on_start`` and the bookkeeping part of ``on_end`` run on the span's
    thread; converting and finishing (which for a root span serialises and
    queues the transaction) goes through :meth:`dispatch` to one background
    :class:`FifoWorker`, so the request does not pay for it. One FIFO queue
    keeps the order of each trace's work: children finish before their
    transaction. A root span's work runs in the Sentry scopes that were current
    when it ended, so request data and tags set with ``sentry_sdk.set_tag``
    reach the transaction as they would inline. ``inline=True`` runs the work
    on the span's thread instead.
    """

    _totals: dict[str, _Totals] = {}  # root span id -> totals

    def __init__(self, *, inline: bool = False, max_queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        # Sentry's own error-linking event processor is not registered: the layer's replaces it.
        self.initialized = True
        self.inline = inline
        self.worker = FifoWorker(max_queue_size)

    @property
    def dropped(self) -> int:
        """Ended spans not converted because the queue was full."""
        return self.worker.dropped

    def dispatch(self, work: Callable[[], None]) -> None:
        """Run the conversion work of one ended span: on the worker, in order, or inline."""
        if self.inline:
            work()
        else:
            self.worker.submit(work)

    def on_start(self, otel_span: Span, parent_context: Context | None = None) -> None:  # type: ignore[override]
        client = sentry_sdk.get_client()
        if not client.parsed_dsn or client.options["instrumenter"] != INSTRUMENTER.OTEL:
            return
        span_context = otel_span.get_span_context()
        if not span_context.is_valid or self._is_sentry_span(otel_span) or self._is_sentry_url(otel_span):
            return
        data = self._get_trace_data(span_context, otel_span.parent, parent_context)
        parent_id = data["parent_span_id"]
        parent = self.otel_span_map.get(parent_id) if parent_id else None
        start = _timestamp(otel_span.start_time)
        sentry_span: SentrySpan
        if parent is not None:
            sentry_span = parent.start_child(
                span_id=data["span_id"],
                name=otel_span.name,
                start_timestamp=start,
                instrumenter=INSTRUMENTER.OTEL,
                origin=SPAN_ORIGIN,
            )
        else:
            # The OTel sampler already decided (only recording spans get here): Sentry must not roll again.
            # For a continued trace it goes in as the parent's decision, so an incoming DSC keeps its sample rate.
            decision = span_context.trace_flags.sampled
            remote = otel_span.parent is not None and otel_span.parent.is_remote
            transaction = Transaction(
                name=otel_span.name,
                span_id=data["span_id"],
                parent_span_id=parent_id,
                trace_id=data["trace_id"],
                baggage=data["baggage"],
                start_timestamp=start,
                origin=SPAN_ORIGIN,
                parent_sampled=decision if remote else None,
            )
            if not remote:
                transaction.sampled = decision
            sentry_span = sentry_sdk.start_transaction(transaction, instrumenter=INSTRUMENTER.OTEL)
            self._totals[data["span_id"]] = _Totals()
        self.otel_span_map[data["span_id"]] = sentry_span
        if otel_span.start_time is not None:
            minute = int(otel_span.start_time / 1e9 / 60)
            self.open_spans.setdefault(minute, set()).add(data["span_id"])
        self._prune_old_spans()

    def on_end(self, otel_span: ReadableSpan) -> None:
        span_context = otel_span.get_span_context()
        if span_context is None or not span_context.is_valid:
            return
        span_id = format_span_id(span_context.span_id)
        sentry_span = self.otel_span_map.pop(span_id, None)
        if sentry_span is None:
            return
        if otel_span.start_time is not None:
            self.open_spans.setdefault(int(otel_span.start_time / 1e9 / 60), set()).discard(span_id)
        if isinstance(sentry_span, Transaction):
            totals = self._totals.pop(span_id, None)
            if self.inline:
                self.dispatch(lambda: self._finish(sentry_span, otel_span, totals, None))
                return
            # The transaction is sent in the scopes of this thread, as inline, not the worker's.
            isolation, current = sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()
            self.dispatch(lambda: self._finish_in(isolation, current, sentry_span, otel_span, totals))
            return
        # Resolved now: the transaction's totals leave the map when the root span ends, maybe before this runs.
        transaction = sentry_span.containing_transaction
        found = self._totals.get(transaction.span_id) if transaction is not None else None
        self.dispatch(lambda: self._finish(sentry_span, otel_span, None, found))

    def _finish_in(
        self,
        isolation: Scope,
        current: Scope,
        sentry_span: SentrySpan,
        otel_span: ReadableSpan,
        totals: _Totals | None,
    ) -> None:
        with use_isolation_scope(isolation), use_scope(current):
            self._finish(sentry_span, otel_span, totals, None)

    def _finish(
        self,
        sentry_span: SentrySpan,
        otel_span: ReadableSpan,
        totals: _Totals | None,
        transaction_totals: _Totals | None,
    ) -> None:
        mapped = map_span(otel_span)
        attributes = dict(otel_span.attributes or {})
        sentry_span.op = mapped.op
        sentry_span.status = mapped.status
        if mapped.http_status is not None:
            sentry_span.set_http_status(mapped.http_status)
        if isinstance(sentry_span, Transaction):
            sentry_span.name = otel_span.name
            if mapped.source is not None:
                sentry_span.source = mapped.source
            sentry_span.set_context("otel", self._get_otel_context(otel_span))
            if totals is not None:
                totals.add(otel_span)  # the root's own attributes and duration count too
                for key, tag in totals.tags.items():
                    sentry_span.set_tag(key, tag)
                for key, total in totals.measurements.items():
                    sentry_span._measurements[key] = {"value": total, "unit": _UNITS.get(key, "none")}
        else:
            sentry_span.description = mapped.description
            sentry_span.set_data("otel.kind", str(otel_span.kind.name))
            for key, value in attributes.items():
                sentry_span.set_data(key, list(value) if isinstance(value, tuple) else value)
            for key, extra in (mapped.data or {}).items():
                sentry_span.set_data(key, extra)
            if transaction_totals is not None:
                transaction_totals.add(otel_span)
        sentry_span.finish(end_timestamp=_timestamp(otel_span.end_time))

    @staticmethod
    def _is_sentry_url(otel_span: Span) -> bool:
        """Sentry's own check knows only the old ``http.url``; calls to Sentry are never traced."""
        url = (otel_span.attributes or {}).get("url.full")
        dsn = sentry_sdk.get_client().parsed_dsn
        return bool(url and dsn and dsn.netloc in str(url))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        drained = self.worker.drain(timeout_millis / 1000)  # queued transactions reach Sentry's transport first
        return flush(timeout_millis) and drained

    def shutdown(self) -> None:
        self.worker.stop(30.0)


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
        self._processor = HakgalSentrySpanProcessor()

    def span_processors(self) -> Sequence[SpanProcessor]:
        return (OpenSpans(), self._processor)

    def force_flush(self, timeout_s: float) -> bool:
        drained = self._processor.worker.drain(timeout_s)
        return super().force_flush(timeout_s) and drained

    def shutdown(self) -> None:
        self._processor.worker.stop(self.config.export.shutdown_timeout)
        HakgalSentrySpanProcessor._totals.clear()
        super().shutdown()


BACKEND = SentryBackend
