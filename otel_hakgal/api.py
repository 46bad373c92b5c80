"""The manual API: one context manager (also a decorator) per HAK-GAL operation.

Each operation opens one span and, when it ends, records the matching metrics,
so one ``with`` gives both. An exception inside is recorded on the span
(status ERROR, ``error.type`` = class name) and propagates unchanged. A
failure that arrives as a return value is marked with :meth:`Operation.fail`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_hakgal._state import state
from otel_hakgal.conventions import (
    MESSAGE_EVENT,
    Attr,
    CacheName,
    ErrorScope,
    ErrorType,
    GenAIOperation,
    Outcome,
    ProverResult,
    SpanName,
    TokenType,
)
from otel_hakgal.pricing import cost_of
from otel_hakgal.redaction import redact_text

P = ParamSpec("P")
R = TypeVar("R")

_current_op: contextvars.ContextVar[Operation | None] = contextvars.ContextVar("otel_hakgal_op", default=None)


class Operation:
    """One instrumented operation: a span plus the metrics recorded when it ends.

    Use it as ``with op as o:`` or as a decorator ``@op``; a decorated
    function gets a fresh operation per call (reach it with :func:`current`).
    """

    scope: ClassVar[ErrorScope] = ErrorScope.STEP
    kind: ClassVar[SpanKind] = SpanKind.INTERNAL

    __slots__ = ("_args", "_attributes", "_error_type", "_name", "_op_token", "_start", "_token", "span")

    def __init__(self, name: str, attributes: dict[str, AttributeValue], args: tuple[Any, ...] = ()) -> None:
        self._name = name
        self._attributes = attributes
        self._args = args  # constructor arguments, to make a fresh copy per decorated call
        self._error_type: str | None = None
        self.span: Span = trace.INVALID_SPAN

    # --- context manager ---

    def __enter__(self) -> Any:
        self.span = state.tracer.start_span(self._name, kind=self.kind, attributes=self._attributes)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        self._op_token = _current_op.set(self)
        self._start = perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = perf_counter() - self._start
        try:
            if exc is not None and not isinstance(exc, GeneratorExit):
                self.span.record_exception(exc, escaped=True)
                _note_escape(exc, self.span)
                self._mark_failed(type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
            self._on_end(duration)
        finally:
            self.span.end()
            _current_op.reset(self._op_token)
            otel_context.detach(self._token)

    # --- decorator ---

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        cls, args = type(self), self._args

        @functools.wraps(fn)
        def instrumented(*a: P.args, **kw: P.kwargs) -> R:
            with cls(*args):
                return fn(*a, **kw)

        return instrumented

    # --- helpers for the code inside ---

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.span.set_attribute(key, value)

    def fail(self, error_type: str, message: str | None = None) -> None:
        """Mark a failure that is a return value, not an exception (status ERROR, ``error.type``)."""
        self._mark_failed(error_type, message)

    @property
    def failed(self) -> bool:
        return self._error_type is not None

    @property
    def error_type(self) -> str | None:
        return self._error_type

    def _mark_failed(self, error_type: str, message: str | None) -> None:
        self._error_type = error_type
        self.span.set_status(Status(StatusCode.ERROR, message))
        self.span.set_attribute(Attr.ERROR_TYPE, error_type)

    def _on_end(self, duration: float) -> None:
        """Record this operation's metrics. Subclasses extend it."""
        if self._error_type is not None:
            state.instruments.errors.add(1, {Attr.ERROR_TYPE: self._error_type, Attr.ERROR_SCOPE: self.scope.value})


class _OutcomeOp(Operation):
    """An operation that ends in an :class:`Outcome` and records its duration by outcome.

    Subclasses name their attribute keys and histogram; ``_kind`` is the
    low-cardinality attribute (verb, query type) the duration is split by.
    """

    _kind_key: ClassVar[str]
    _outcome_key: ClassVar[str]
    _kind: str
    __slots__ = ("_kind",)

    def _duration_histogram(self) -> Histogram:
        raise NotImplementedError

    @property
    def outcome(self) -> Outcome:
        if self._error_type is None:
            return Outcome.SUCCESS
        return Outcome.TIMEOUT if self._error_type == ErrorType.TIMEOUT else Outcome.ERROR

    def _on_end(self, duration: float) -> None:
        outcome = self.outcome.value
        self.span.set_attribute(self._outcome_key, outcome)
        attributes: dict[str, AttributeValue] = {self._kind_key: self._kind, self._outcome_key: outcome}
        if self._error_type is not None:
            attributes[Attr.ERROR_TYPE] = self._error_type
        self._duration_histogram().record(duration, attributes)
        super()._on_end(duration)


class StepOp(Operation):
    """A pipeline step without metrics of its own (parse, retrieval, KB update)."""

    __slots__ = ()


class CommandOp(_OutcomeOp):
    """One API command. Outcome: success, error, or timeout (``fail(ErrorType.TIMEOUT)``)."""

    scope = ErrorScope.COMMAND
    _kind_key = Attr.COMMAND_NAME
    _outcome_key = Attr.COMMAND_OUTCOME
    __slots__ = ()

    def __init__(self, verb: str, text: str | None = None, timeout_s: float | None = None) -> None:
        attributes: dict[str, AttributeValue] = {Attr.COMMAND_NAME: verb}
        if text is not None:
            redacted = redact_text(text, state.config.redaction, state.scrubber)
            if redacted is not None:
                attributes[Attr.COMMAND_TEXT] = redacted
        if timeout_s is not None:
            attributes[Attr.COMMAND_TIMEOUT] = float(timeout_s)
        super().__init__(SpanName.COMMAND.format(verb=verb), attributes, (verb, text, timeout_s))
        self._kind = verb

    def _duration_histogram(self) -> Histogram:
        return state.instruments.command_duration


class QueryOp(_OutcomeOp):
    """A question through the reasoning pipeline."""

    scope = ErrorScope.QUERY
    _kind_key = Attr.QUERY_TYPE
    _outcome_key = Attr.QUERY_OUTCOME
    __slots__ = ()

    def __init__(self, text: str | None = None, query_type: str = "ask") -> None:
        attributes: dict[str, AttributeValue] = {Attr.QUERY_TYPE: query_type}
        if text is not None:
            redacted = redact_text(text, state.config.redaction, state.scrubber)
            if redacted is not None:
                attributes[Attr.QUERY_TEXT] = redacted
        super().__init__(SpanName.QUERY, attributes, (text, query_type))
        self._kind = query_type

    def set_formula(self, formula: str) -> None:
        self.span.set_attribute(Attr.QUERY_FORMULA, formula[: state.config.redaction.max_attribute_length])

    def set_answer(self, answer: str) -> None:
        self.span.set_attribute(Attr.QUERY_ANSWER, answer)

    def _duration_histogram(self) -> Histogram:
        return state.instruments.query_duration


class ProverOp(Operation):
    """One prover run. Set the result with :meth:`set_result`; unset means ``unknown``."""

    scope = ErrorScope.PROVER
    __slots__ = ("_prover", "_result")

    def __init__(self, name: str, order: int | None = None, timeout_s: float | None = None) -> None:
        attributes: dict[str, AttributeValue] = {Attr.PROVER_NAME: name}
        if order is not None:
            attributes[Attr.PROVER_ORDER] = order
        if timeout_s is not None:
            attributes[Attr.PROVER_TIMEOUT] = float(timeout_s)
        super().__init__(SpanName.PROVER.format(prover=name), attributes, (name, order, timeout_s))
        self._prover = name
        self._result: ProverResult | None = None

    def set_result(self, result: ProverResult | str, reason: str | None = None) -> None:
        """Record the prover's verdict (a :class:`ProverResult`) and its short reason."""
        self._result = ProverResult(result)
        if reason is not None:
            self.span.set_attribute(Attr.PROVER_REASON, reason)
        if self._result in (ProverResult.TIMEOUT, ProverResult.ERROR) and self._error_type is None:
            self._mark_failed(ErrorType.TIMEOUT if self._result is ProverResult.TIMEOUT else ErrorType.OTHER, reason)

    @property
    def result(self) -> ProverResult:
        if self._error_type is not None and self._result is None:
            return ProverResult.TIMEOUT if self._error_type == ErrorType.TIMEOUT else ProverResult.ERROR
        return self._result or ProverResult.UNKNOWN

    def _on_end(self, duration: float) -> None:
        result = self.result.value
        self.span.set_attribute(Attr.PROVER_RESULT, result)
        attributes: dict[str, AttributeValue] = {Attr.PROVER_NAME: self._prover, Attr.PROVER_RESULT: result}
        state.instruments.prover_duration.record(duration, attributes)
        state.instruments.prover_runs.add(1, attributes)
        super()._on_end(duration)


class CacheOp(Operation):
    """One cache lookup: call :meth:`hit` or :meth:`miss` (default: miss)."""

    scope = ErrorScope.CACHE
    __slots__ = ("_cache", "_hit")

    def __init__(self, cache: str) -> None:
        cache_name = CacheName(cache).value
        super().__init__(SpanName.CACHE.format(cache=cache_name), {Attr.CACHE_NAME: cache_name}, (cache,))
        self._cache = cache_name
        self._hit = False

    def hit(self) -> None:
        self._hit = True

    def miss(self) -> None:
        self._hit = False

    def set_hit(self, hit: bool) -> None:
        self._hit = bool(hit)

    def _on_end(self, duration: float) -> None:
        self.span.set_attribute(Attr.CACHE_HIT, self._hit)
        state.instruments.cache_lookups.add(1, {Attr.CACHE_NAME: self._cache, Attr.CACHE_HIT: self._hit})
        super()._on_end(duration)


class LLMCallOp(Operation):
    """One call to an LLM provider, following the OTel GenAI conventions."""

    scope = ErrorScope.LLM
    kind = SpanKind.CLIENT
    __slots__ = ("_input_tokens", "_metric_attributes", "_model", "_output_tokens", "_provider")

    def __init__(
        self,
        provider: str,
        model: str,
        operation: str = GenAIOperation.CHAT,
        server_address: str | None = None,
        server_port: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        operation = str(operation)
        metric_attributes: dict[str, AttributeValue] = {
            Attr.GEN_AI_OPERATION_NAME: operation,
            Attr.GEN_AI_PROVIDER_NAME: provider,
            Attr.GEN_AI_REQUEST_MODEL: model,
        }
        if server_address is not None:
            metric_attributes[Attr.SERVER_ADDRESS] = server_address
        attributes = dict(metric_attributes)
        if state.config.genai.emit_legacy_system:
            attributes[Attr.GEN_AI_SYSTEM] = provider
        if server_port is not None:
            attributes[Attr.SERVER_PORT] = server_port
        if max_tokens is not None:
            attributes[Attr.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if temperature is not None:
            attributes[Attr.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)
        super().__init__(
            SpanName.LLM.format(operation=operation, model=model),
            attributes,
            (provider, model, operation, server_address, server_port, max_tokens, temperature),
        )
        self._provider = provider
        self._model = model
        self._metric_attributes = metric_attributes
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None

    def record_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        finish_reasons: Sequence[str] | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
    ) -> None:
        """Record token usage and response details; cost is derived when the call ends."""
        if input_tokens is not None:
            self._input_tokens = int(input_tokens)
            self.span.set_attribute(Attr.GEN_AI_USAGE_INPUT_TOKENS, self._input_tokens)
        if output_tokens is not None:
            self._output_tokens = int(output_tokens)
            self.span.set_attribute(Attr.GEN_AI_USAGE_OUTPUT_TOKENS, self._output_tokens)
        if finish_reasons is not None:
            self.span.set_attribute(Attr.GEN_AI_RESPONSE_FINISH_REASONS, list(finish_reasons))
        if response_model is not None:
            self.span.set_attribute(Attr.GEN_AI_RESPONSE_MODEL, response_model)
            self._metric_attributes[Attr.GEN_AI_RESPONSE_MODEL] = response_model
        if response_id is not None:
            self.span.set_attribute(Attr.GEN_AI_RESPONSE_ID, response_id)

    def record_messages(self, input_messages: object, output_messages: object | None = None) -> None:
        """Record prompt and response content, only when content capture is switched on."""
        if not state.config.genai.capture_message_content:
            return
        limit = state.config.redaction.max_attribute_length
        self.span.set_attribute(Attr.GEN_AI_INPUT_MESSAGES, json.dumps(input_messages, default=str)[:limit])
        if output_messages is not None:
            self.span.set_attribute(Attr.GEN_AI_OUTPUT_MESSAGES, json.dumps(output_messages, default=str)[:limit])

    def _on_end(self, duration: float) -> None:
        instruments = state.instruments
        attributes = self._metric_attributes
        duration_attributes = (
            attributes if self._error_type is None else {**attributes, Attr.ERROR_TYPE: self._error_type}
        )
        instruments.gen_ai_duration.record(duration, duration_attributes)
        if self._input_tokens is not None:
            instruments.gen_ai_tokens.record(
                self._input_tokens, {**attributes, Attr.GEN_AI_TOKEN_TYPE: TokenType.INPUT.value}
            )
        if self._output_tokens is not None:
            instruments.gen_ai_tokens.record(
                self._output_tokens, {**attributes, Attr.GEN_AI_TOKEN_TYPE: TokenType.OUTPUT.value}
            )
        if self._input_tokens is not None or self._output_tokens is not None:
            cost = cost_of(self._model, self._input_tokens or 0, self._output_tokens or 0, state.config.pricing)
            if cost is None:
                self.span.set_attribute(Attr.LLM_COST_KNOWN, False)
            else:
                self.span.set_attribute(Attr.LLM_COST_KNOWN, True)
                self.span.set_attribute(Attr.LLM_COST_AMOUNT, cost.amount)
                self.span.set_attribute(Attr.LLM_COST_CURRENCY, cost.currency)
                instruments.llm_cost.add(
                    cost.amount,
                    {
                        Attr.GEN_AI_PROVIDER_NAME: self._provider,
                        Attr.GEN_AI_REQUEST_MODEL: self._model,
                        Attr.LLM_COST_CURRENCY: cost.currency,
                    },
                )
        super()._on_end(duration)


# --- public factories -------------------------------------------------------


def command(verb: str, *, text: str | None = None, timeout_s: float | None = None) -> CommandOp:
    """Instrument one API command (``verb`` lower-cased, ``text`` its arguments, redacted per config)."""
    return CommandOp(verb, text, timeout_s)


def query(text: str | None = None, *, query_type: str = "ask") -> QueryOp:
    """Instrument one reasoning query; ``text`` is the question, redacted per config."""
    return QueryOp(text, query_type)


def prover(name: str, *, order: int | None = None, timeout_s: float | None = None) -> ProverOp:
    """Instrument one prover run; ``order`` is its position in the portfolio."""
    return ProverOp(name, order, timeout_s)


def llm_call(
    provider: str,
    model: str,
    *,
    operation: str = GenAIOperation.CHAT,
    server_address: str | None = None,
    server_port: int | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> LLMCallOp:
    """Instrument one LLM call (span ``"{operation} {model}"``, kind CLIENT)."""
    return LLMCallOp(provider, model, operation, server_address, server_port, max_tokens, temperature)


def cache_lookup(cache: str) -> CacheOp:
    """Instrument one cache lookup; ``cache`` is one of :class:`~otel_hakgal.conventions.CacheName`."""
    return CacheOp(cache)


class _Step(StepOp):
    __slots__ = ()

    def __init__(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        super().__init__(name, dict(attributes or {}), (name, attributes))


def step(name: str, **attributes: AttributeValue) -> StepOp:
    """Instrument a pipeline step named by :class:`~otel_hakgal.conventions.SpanName` (parse, retrieval, ...)."""
    return _Step(name, attributes)


_ESCAPED_SPANS = "_otel_hakgal_escaped_spans"


def _note_escape(error: BaseException, span: Span) -> None:
    """Remember on ``error`` each span it escaped from, innermost first (error backends link to it)."""
    with contextlib.suppress(Exception):  # an exception type that refuses attributes just isn't linked
        spans = error.__dict__.setdefault(_ESCAPED_SPANS, [])
        spans.append(span)


def escaped_spans(error: BaseException) -> list[Span]:
    """The operation spans ``error`` was raised through, innermost first (empty if none).

    Error backends use it to link an error to the span where it happened even
    after that span has ended.
    """
    spans = getattr(error, "__dict__", {}).get(_ESCAPED_SPANS)
    return list(spans) if isinstance(spans, list) else []


def current() -> Operation | None:
    """The innermost open operation in this context, or ``None``."""
    return _current_op.get()


def capture_message(message: str, level: str = "info", **attributes: AttributeValue) -> None:
    """Report a message (the seed's ``capture_message``): a span event, and error backends get it too."""
    trace.get_current_span().add_event(MESSAGE_EVENT, {Attr.MESSAGE_LEVEL: level, "message": message, **attributes})
    for backend in state.backends:
        with contextlib.suppress(Exception):  # a reporting backend must never break the caller
            backend.capture_message(message, level)


def capture_exception(error: BaseException, **context: AttributeValue) -> None:
    """Report a handled error: recorded on the current span and counted; error backends get it too.

    The span's status is left alone: the operation decides whether it failed.
    """
    span = trace.get_current_span()
    span.record_exception(error, attributes=context or None, escaped=False)
    op = _current_op.get()
    scope = op.scope if op is not None else ErrorScope.STEP
    state.instruments.errors.add(1, {Attr.ERROR_TYPE: type(error).__qualname__, Attr.ERROR_SCOPE: scope.value})
    for backend in state.backends:
        with contextlib.suppress(Exception):  # a reporting backend must never break the caller
            backend.capture_exception(error, otel_context.get_current())
