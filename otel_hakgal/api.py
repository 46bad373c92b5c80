"""The manual API: one context manager (also a decorator) per HAK-GAL operation.

Each operation opens one span and, when it ends, records the matching metrics,
so one ``with`` gives both. An exception inside is recorded on the span
(status ERROR, ``error.type`` = class name) and propagates unchanged. A
failure that arrives as a return value is marked with :meth:`Operation.fail`.

The public factories are the operation classes themselves, so each
operation's signature is written once (its ``__init__``) and ``with`` types
its target::

    command      = CommandOp     # command(verb, *, text=None, timeout_s=None)
    query        = QueryOp       # query(text=None, *, query_type="ask")
    prover       = ProverOp      # prover(name, *, order=None, timeout_s=None)
    llm_call     = LLMCallOp     # llm_call(provider, model, *, operation="chat", ...)
    cache_lookup = CacheOp       # cache_lookup(cache)
    step         = StepOp        # step(name, *, attributes=None)

Constructing an operation only stores its arguments. Everything that depends
on the configuration (redaction, legacy attributes, the tracer, the
instruments) is read from :data:`otel_hakgal.runtime.current` once, when the
operation starts, and kept on the operation until it ends: a decorated
function redacts with the configuration in force at call time, and an
operation that spans a reconfiguration sees one runtime from start to end.

Values of a closed set that are not in it (a cache name not in
:class:`~otel_hakgal.conventions.CacheName`, a prover result not in
:class:`~otel_hakgal.conventions.ProverResult`) are recorded as ``_OTHER``
with one rate-limited warning per kind; the application never gets an
exception from its instrumentation.

Attribute values are not cut here: the pipeline cuts every string attribute
of every span to ``redaction.max_attribute_length``.

User text (command and question text, the formula: see
:mod:`otel_hakgal.user_text`) goes in through one helper that applies
``redaction.text_mode``, whichever method sets it (``set_formula``,
``set_attribute``, a step's ``attributes``). When an operation fails, the user
text of the operation and of the operations around it is masked in the
exception message, stack trace and status description (and a prover's
reason) the same way, so an error that quotes the text does not carry it past
``text_mode``. ``set_answer`` takes a verdict from a closed set, not user
text, and records it as is.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import monotonic, perf_counter
from types import TracebackType
from typing import Any, ClassVar, Final, ParamSpec, Self, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_hakgal import genai, runtime
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
from otel_hakgal.escapes import note_escape
from otel_hakgal.log_limits import INTERVAL_S, WarningBudget
from otel_hakgal.pricing import cost_of
from otel_hakgal.redaction import redact_text
from otel_hakgal.runtime import Runtime
from otel_hakgal.user_text import (
    OMITTED,
    OPEN_OPERATION,
    USER_TEXT_ATTRIBUTES,
    TextMask,
    hidden_texts,
    note_hidden,
    user_text_mask,
)

P = ParamSpec("P")
R = TypeVar("R")

_logger = logging.getLogger(__name__)

_current_op: contextvars.ContextVar[Operation | None] = OPEN_OPERATION


class _UnknownValues:
    """Maps a value of a closed set to its plain string, and any other value to ``_OTHER``.

    An unknown value is logged as one WARNING per ``interval_s`` for this kind
    of value, however often it occurs; the next warning after a quiet interval
    says how many were not reported.
    """

    __slots__ = ("_budget", "_known", "kind")

    def __init__(
        self, kind: str, known: Iterable[str], interval_s: float = INTERVAL_S, clock: Callable[[], float] = monotonic
    ) -> None:
        self.kind = kind
        self._known: dict[str, str] = {str(value): str(value) for value in known}
        self._budget = WarningBudget(interval_s, clock)

    def __call__(self, value: object) -> str:
        known = self._known.get(value) if isinstance(value, str) else None
        return known if known is not None else self._other(value)

    def _other(self, value: object) -> str:
        suppressed = self._budget.take()
        if suppressed is not None:
            _logger.warning(
                "otel_hakgal: unknown %s %r recorded as %s (known: %s)%s",
                self.kind,
                value,
                ErrorType.OTHER,
                ", ".join(self._known),
                f" ({suppressed} similar suppressed)" if suppressed else "",
            )
        return ErrorType.OTHER

    def reset(self) -> None:
        """Report the next unknown value again (for tests)."""
        self._budget.reset()


_cache_names: Final = _UnknownValues("cache name", CacheName)
_prover_results: Final = _UnknownValues("prover result", ProverResult)


class Operation:
    """One instrumented operation: a span plus the metrics recorded when it ends.

    Use it as ``with op as o:`` or as a decorator ``@op`` (sync or ``async
    def``); a decorated function gets a fresh operation per call (reach it
    with :func:`current`). Subclasses store their arguments in ``__init__``
    and start their span in :meth:`_open`.
    """

    scope: ClassVar[ErrorScope] = ErrorScope.STEP
    kind: ClassVar[SpanKind] = SpanKind.INTERNAL

    __slots__ = (
        "_args",
        "_error_type",
        "_hidden",
        "_kwargs",
        "_op_token",
        "_parent",
        "_rt",
        "_start",
        "_token",
        "span",
    )
    span: Span
    """The operation's span (``INVALID_SPAN`` until the operation starts)."""
    _error_type: str | None
    _rt: Runtime
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]
    # User text this operation recorded in another form: typed -> recorded (None until there is some).
    _hidden: dict[str, str] | None
    _parent: Operation | None  # the enclosing operation, whose user text errors are masked for too

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # The constructor's arguments, kept so the decorator can build a fresh operation per call.
        op = super().__new__(cls)
        op._args, op._kwargs = args, kwargs
        op.span = trace.INVALID_SPAN
        op._error_type = None
        op._hidden = None
        op._parent = None
        return op

    # --- context manager ---

    def __enter__(self) -> Self:
        rt = self._rt = runtime.current
        self._hidden = None
        self._parent = _current_op.get()
        span = self.span = self._open(rt)
        self._token = otel_context.attach(self._context(span))
        self._op_token = _current_op.set(self)
        self._start = perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = perf_counter() - self._start
        span = self.span
        try:
            if exc is not None and not isinstance(exc, GeneratorExit):
                mask = self._text_mask(exc)  # only here: no cost unless the operation fails
                _record_exception(span, exc, mask, escaped=True)
                note_escape(exc, span)
                message = f"{type(exc).__name__}: {exc}"
                self._mark_failed(self._error_type_of(exc), message if mask is None else mask(message))
            self._on_end(duration)
        finally:
            span.end()
            _current_op.reset(self._op_token)
            otel_context.detach(self._token)

    def _open(self, rt: Runtime) -> Span:
        """Reset the per-run state and start the span. Subclasses implement it."""
        raise NotImplementedError

    def _context(self, span: Span) -> otel_context.Context:
        """The context the code inside runs in: the current one with ``span`` as the current span."""
        return trace.set_span_in_context(span)

    def _error_type_of(self, error: BaseException) -> str:
        """``error.type`` of an exception that escaped the operation: its class name."""
        return type(error).__qualname__

    # --- decorator ---

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Instrument every call of ``fn`` with a fresh copy of this operation.

        For an ``async def`` the wrapper is a coroutine function too, and the
        span covers the awaited work.
        """
        fresh = self._fresh
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def instrumented_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with fresh():
                    return await fn(*args, **kwargs)

            return cast(Callable[P, R], instrumented_async)

        @functools.wraps(fn)
        def instrumented(*args: P.args, **kwargs: P.kwargs) -> R:
            with fresh():
                return fn(*args, **kwargs)

        return instrumented

    def _fresh(self) -> Self:
        """An unstarted operation with the same arguments."""
        return type(self)(*self._args, **self._kwargs)

    # --- helpers for the code inside ---

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute; user text (:data:`~otel_hakgal.user_text.USER_TEXT_ATTRIBUTES`) per ``text_mode``."""
        if key in USER_TEXT_ATTRIBUTES and isinstance(value, str):
            if self.span is trace.INVALID_SPAN:
                return  # not started: nothing to record, and no runtime to redact with
            shown = self._user_text(value)
            if shown is None:
                return  # text_mode "omit"
            value = shown
        self.span.set_attribute(key, value)

    def fail(self, error_type: str, message: str | None = None) -> None:
        """Mark a failure that is a return value, not an exception (status ERROR, ``error.type``).

        User text of this operation and the ones around it is masked in ``message`` per ``text_mode``.
        """
        self._mark_failed(error_type, self._masked(message))

    @property
    def failed(self) -> bool:
        return self._error_type is not None

    @property
    def error_type(self) -> str | None:
        return self._error_type

    def _mark_failed(self, error_type: str, message: str | None) -> None:
        """Status ERROR and ``error.type``; ``message`` is already masked."""
        self._error_type = error_type
        self.span.set_status(Status(StatusCode.ERROR, message))
        self.span.set_attribute(Attr.ERROR_TYPE, error_type)

    # --- user text (see otel_hakgal.user_text) ---

    def _user_text(self, text: str) -> str | None:
        """``text`` as ``redaction.text_mode`` records it (``None``: omitted): the one way user text gets in.

        A text recorded in another form is remembered, so errors can be masked the same way.
        """
        rt = self._rt
        shown = redact_text(text, rt.config.redaction, rt.scrubber)
        if shown != text:
            hidden = self._hidden
            if hidden is None:
                hidden = self._hidden = {}
            hidden[text] = OMITTED if shown is None else shown
        return shown

    def _with_user_text(self, attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        """``attributes`` with each user-text value as ``text_mode`` records it (omitted ones left out)."""
        recorded: dict[str, AttributeValue] = {}
        for key, value in attributes.items():
            if key in USER_TEXT_ATTRIBUTES and isinstance(value, str):
                shown = self._user_text(value)
                if shown is None:
                    continue
                value = shown
            recorded[key] = value
        return recorded

    def _text_mask(self, error: BaseException | None = None) -> TextMask | None:
        """The mask for this operation's errors: its user text, its ancestors', and what ``error`` carries.

        ``None`` when nothing is recorded in another form (``text_mode`` truncate with short texts).
        The typed texts are noted on ``error``, for whoever reports it later.
        """
        hidden = hidden_texts(error) if error is not None else {}
        op: Operation | None = self
        while op is not None:
            if op._hidden:
                for typed, shown in op._hidden.items():
                    hidden.setdefault(typed, shown)
            op = op._parent
        if not hidden:
            return None
        if error is not None:
            note_hidden(error, hidden)
        mask = TextMask(hidden)
        return mask if mask else None

    def _masked(self, message: str | None) -> str | None:
        if not message:
            return message
        mask = self._text_mask()
        return message if mask is None else mask(message)

    def _on_end(self, duration: float) -> None:
        """Record this operation's metrics. Subclasses extend it."""
        if self._error_type is not None:
            self._rt.instruments.errors.add(1, {Attr.ERROR_TYPE: self._error_type, Attr.ERROR_SCOPE: self.scope.value})


class StepOp(Operation):
    """``step(name, *, attributes=None)``: a pipeline step without metrics of its own.

    ``name`` is one of :class:`~otel_hakgal.conventions.SpanName` (parse,
    retrieval, KB update, ...); ``attributes`` is a mapping, so dotted keys
    work: ``step(SpanName.KB_UPDATE, attributes={Attr.KB_OPERATION: "add"})``.
    """

    __slots__ = ("_attributes", "_name")

    def __init__(self, name: str, *, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        self._name = name
        self._attributes = attributes

    def _open(self, rt: Runtime) -> Span:
        attributes = self._attributes
        if attributes and not USER_TEXT_ATTRIBUTES.isdisjoint(attributes):
            attributes = self._with_user_text(attributes)
        return rt.tracer.start_span(self._name, kind=self.kind, attributes=attributes)


class _OutcomeOp(Operation):
    """An operation that ends in an :class:`Outcome` and records its duration by outcome.

    Subclasses name their attribute keys and histogram; ``_kind`` is the
    low-cardinality attribute (verb, query type) the duration is split by.
    """

    _kind_key: ClassVar[str]
    _outcome_key: ClassVar[str]
    __slots__ = ("_kind",)
    _kind: str

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


class CommandOp(_OutcomeOp):
    """``command(verb, *, text=None, timeout_s=None)``: one API command.

    ``verb`` is lower-cased, ``text`` its arguments (redacted per config).
    Outcome: success, error, or timeout (``fail(ErrorType.TIMEOUT)``).
    """

    scope = ErrorScope.COMMAND
    _kind_key = Attr.COMMAND_NAME
    _outcome_key = Attr.COMMAND_OUTCOME
    __slots__ = ("_text", "_timeout_s")

    def __init__(self, verb: str, *, text: str | None = None, timeout_s: float | None = None) -> None:
        self._kind = verb
        self._text = text
        self._timeout_s = timeout_s

    def _open(self, rt: Runtime) -> Span:
        verb = self._kind
        attributes: dict[str, AttributeValue] = {Attr.COMMAND_NAME: verb}
        if self._text is not None:
            shown = self._user_text(self._text)
            if shown is not None:
                attributes[Attr.COMMAND_TEXT] = shown
        if self._timeout_s is not None:
            attributes[Attr.COMMAND_TIMEOUT] = float(self._timeout_s)
        return rt.tracer.start_span(SpanName.COMMAND.format(verb=verb), kind=self.kind, attributes=attributes)

    def _duration_histogram(self) -> Histogram:
        return self._rt.instruments.command_duration


class QueryOp(_OutcomeOp):
    """``query(text=None, *, query_type="ask")``: a question through the reasoning pipeline.

    ``text`` is the question, redacted per config.
    """

    scope = ErrorScope.QUERY
    _kind_key = Attr.QUERY_TYPE
    _outcome_key = Attr.QUERY_OUTCOME
    __slots__ = ("_text",)

    def __init__(self, text: str | None = None, *, query_type: str = "ask") -> None:
        self._text = text
        self._kind = query_type

    def _open(self, rt: Runtime) -> Span:
        attributes: dict[str, AttributeValue] = {Attr.QUERY_TYPE: self._kind}
        if self._text is not None:
            shown = self._user_text(self._text)
            if shown is not None:
                attributes[Attr.QUERY_TEXT] = shown
        return rt.tracer.start_span(SpanName.QUERY, kind=self.kind, attributes=attributes)

    def set_formula(self, formula: str) -> None:
        """The formula the question became: user text, so recorded per ``text_mode`` like the question."""
        self.set_attribute(Attr.QUERY_FORMULA, formula)

    def set_answer(self, answer: str) -> None:
        """The verdict (``yes``, ``no_or_unknown``): a closed set the layer chooses, not user text, so kept as is.

        Free text (an LLM's reply) belongs in ``record_messages``, behind content capture.
        """
        self.span.set_attribute(Attr.QUERY_ANSWER, answer)

    def _duration_histogram(self) -> Histogram:
        return self._rt.instruments.query_duration


class ProverOp(Operation):
    """``prover(name, *, order=None, timeout_s=None)``: one prover run.

    ``order`` is its position in the portfolio. Set the result with
    :meth:`set_result`; unset means ``unknown``.
    """

    scope = ErrorScope.PROVER
    __slots__ = ("_order", "_prover", "_result", "_timeout_s")
    _result: str | None

    def __init__(self, name: str, *, order: int | None = None, timeout_s: float | None = None) -> None:
        self._prover = name
        self._order = order
        self._timeout_s = timeout_s
        self._result = None

    def _open(self, rt: Runtime) -> Span:
        name = self._prover
        attributes: dict[str, AttributeValue] = {Attr.PROVER_NAME: name}
        if self._order is not None:
            attributes[Attr.PROVER_ORDER] = self._order
        if self._timeout_s is not None:
            attributes[Attr.PROVER_TIMEOUT] = float(self._timeout_s)
        return rt.tracer.start_span(SpanName.PROVER.format(prover=name), kind=self.kind, attributes=attributes)

    def set_result(self, result: ProverResult | str, reason: str | None = None) -> None:
        """Record the prover's verdict (a :class:`ProverResult`; anything else is ``_OTHER``) and its reason.

        The reason may quote the goal, so the question's text is masked in it as in error messages.
        """
        self._result = value = _prover_results(result)
        reason = self._masked(reason)
        if reason is not None:
            self.span.set_attribute(Attr.PROVER_REASON, reason)
        if self._error_type is None:
            if value == ProverResult.TIMEOUT:
                self._mark_failed(ErrorType.TIMEOUT, reason)
            elif value == ProverResult.ERROR:
                self._mark_failed(ErrorType.OTHER, reason)

    @property
    def result(self) -> str:
        """The verdict: a :class:`ProverResult` value, or ``_OTHER``."""
        if self._error_type is not None and self._result is None:
            return (ProverResult.TIMEOUT if self._error_type == ErrorType.TIMEOUT else ProverResult.ERROR).value
        return self._result or ProverResult.UNKNOWN.value

    def _on_end(self, duration: float) -> None:
        result = self.result
        self.span.set_attribute(Attr.PROVER_RESULT, result)
        attributes: dict[str, AttributeValue] = {Attr.PROVER_NAME: self._prover, Attr.PROVER_RESULT: result}
        instruments = self._rt.instruments
        instruments.prover_duration.record(duration, attributes)
        instruments.prover_runs.add(1, attributes)
        super()._on_end(duration)


class CacheOp(Operation):
    """``cache_lookup(cache)``: one cache lookup; call :meth:`hit` or :meth:`miss` (default: miss).

    ``cache`` is one of :class:`~otel_hakgal.conventions.CacheName`; any other
    name is recorded as ``_OTHER``.
    """

    scope = ErrorScope.CACHE
    __slots__ = ("_cache", "_hit")

    def __init__(self, cache: CacheName | str) -> None:
        self._cache = _cache_names(cache)
        self._hit = False

    def _open(self, rt: Runtime) -> Span:
        cache = self._cache
        return rt.tracer.start_span(
            SpanName.CACHE.format(cache=cache), kind=self.kind, attributes={Attr.CACHE_NAME: cache}
        )

    def hit(self) -> None:
        self._hit = True

    def miss(self) -> None:
        self._hit = False

    def set_hit(self, hit: bool) -> None:
        self._hit = bool(hit)

    def _on_end(self, duration: float) -> None:
        self.span.set_attribute(Attr.CACHE_HIT, self._hit)
        self._rt.instruments.cache_lookups.add(1, {Attr.CACHE_NAME: self._cache, Attr.CACHE_HIT: self._hit})
        super()._on_end(duration)


class LLMCallOp(Operation):
    """``llm_call(provider, model, *, operation="chat", server_address=None, ...)``: one LLM call.

    Follows the OTel GenAI conventions: span ``"{operation} {model}"``, kind
    CLIENT. Record tokens with :meth:`record_usage`; the cost is derived when
    the call ends.
    """

    scope = ErrorScope.LLM
    kind = SpanKind.CLIENT
    __slots__ = (
        "_finish_reasons",
        "_input_tokens",
        "_max_tokens",
        "_metric_attributes",
        "_model",
        "_operation",
        "_output_tokens",
        "_provider",
        "_server_address",
        "_server_port",
        "_temperature",
    )
    _input_tokens: int | None
    _output_tokens: int | None
    _finish_reasons: list[str] | None
    _metric_attributes: dict[str, AttributeValue]

    def __init__(
        self,
        provider: str,
        model: str,
        *,
        operation: str = GenAIOperation.CHAT,
        server_address: str | None = None,
        server_port: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        self._provider = provider
        self._model = model
        self._operation = str(operation)
        self._server_address = server_address
        self._server_port = server_port
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._input_tokens = None
        self._output_tokens = None
        self._finish_reasons = None
        metric_attributes: dict[str, AttributeValue] = {
            Attr.GEN_AI_OPERATION_NAME: self._operation,
            Attr.GEN_AI_PROVIDER_NAME: provider,
            Attr.GEN_AI_REQUEST_MODEL: model,
        }
        if server_address is not None:
            metric_attributes[Attr.SERVER_ADDRESS] = server_address
            if server_port is not None:  # the conventions require it wherever server.address is set
                metric_attributes[Attr.SERVER_PORT] = int(server_port)
        self._metric_attributes = metric_attributes

    def _open(self, rt: Runtime) -> Span:
        provider, model, operation = self._provider, self._model, self._operation
        attributes = dict(self._metric_attributes)
        if rt.config.genai.emit_legacy_system:
            attributes[Attr.GEN_AI_SYSTEM] = provider
        if self._server_port is not None:
            attributes[Attr.SERVER_PORT] = int(self._server_port)
        if self._max_tokens is not None:
            attributes[Attr.GEN_AI_REQUEST_MAX_TOKENS] = self._max_tokens
        if self._temperature is not None:
            attributes[Attr.GEN_AI_REQUEST_TEMPERATURE] = float(self._temperature)
        return rt.tracer.start_span(
            SpanName.LLM.format(operation=operation, model=model), kind=self.kind, attributes=attributes
        )

    def record_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        finish_reasons: Sequence[str] | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> None:
        """Record token usage and response details; cost is derived when the call ends.

        ``cache_read_tokens``/``cache_write_tokens``: input tokens the provider's prompt cache served or
        stored (parts of ``input_tokens``, as providers report them).
        """
        if cache_read_tokens is not None:
            self.span.set_attribute(Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, int(cache_read_tokens))
        if cache_write_tokens is not None:
            self.span.set_attribute(Attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, int(cache_write_tokens))
            if self._rt.config.genai.emit_upcoming_names:
                self.span.set_attribute(Attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, int(cache_write_tokens))
        if input_tokens is not None:
            self._input_tokens = int(input_tokens)
            self.span.set_attribute(Attr.GEN_AI_USAGE_INPUT_TOKENS, self._input_tokens)
        if output_tokens is not None:
            self._output_tokens = int(output_tokens)
            self.span.set_attribute(Attr.GEN_AI_USAGE_OUTPUT_TOKENS, self._output_tokens)
        if finish_reasons is not None:
            self._finish_reasons = [str(reason) for reason in finish_reasons]
            self.span.set_attribute(Attr.GEN_AI_RESPONSE_FINISH_REASONS, self._finish_reasons)
        if response_model is not None:
            self.span.set_attribute(Attr.GEN_AI_RESPONSE_MODEL, response_model)
            self._metric_attributes[Attr.GEN_AI_RESPONSE_MODEL] = response_model
        if response_id is not None:
            self.span.set_attribute(Attr.GEN_AI_RESPONSE_ID, response_id)

    def _context(self, span: Span) -> otel_context.Context:
        # Marks the call, so another instrumentation of the same SDK call is dropped as a duplicate.
        return genai.llm_call_context(trace.set_span_in_context(span), span.get_span_context())

    def _error_type_of(self, error: BaseException) -> str:
        """An HTTP error's status code (``"503"``, as the GenAI conventions ask), else the class name."""
        status = http_status_of(error)
        return str(status) if status is not None else type(error).__qualname__

    def fail_http(self, status_code: int, message: str | None = None) -> None:
        """Mark a failed HTTP request to the provider: ``error.type`` is the status code (``"503"``)."""
        self.fail(str(int(status_code)), message)

    def record_messages(
        self,
        input_messages: object,
        output_messages: object | None = None,
        *,
        system_instructions: object | None = None,
        finish_reasons: Sequence[str] | None = None,
    ) -> None:
        """Record prompt and response content, only when content capture is switched on.

        Messages may be OpenAI-style (``{"role", "content"}``) or already in the conventions' shape
        (``{"role", "parts"}``); a reply may also be a plain string. They are recorded per the GenAI
        JSON schemas: system messages (or ``system_instructions``) go to ``gen_ai.system_instructions``,
        the rest to ``gen_ai.input.messages``; output messages get ``finish_reason`` (from
        ``finish_reasons``, else the ones :meth:`record_usage` recorded, else ``stop``). Each
        attribute is cut to ``redaction.max_attribute_length`` by cutting contents, so it stays JSON.
        """
        rt = self._rt
        if not rt.config.genai.capture_message_content or not self.span.is_recording():
            return
        limit = rt.config.redaction.max_attribute_length
        system, chat = genai.input_messages(input_messages)
        if system_instructions is not None:
            system = [*genai.system_instructions(system_instructions), *system]
        if system:
            self.span.set_attribute(Attr.GEN_AI_SYSTEM_INSTRUCTIONS, genai.dumps_within(system, limit))
        self.span.set_attribute(Attr.GEN_AI_INPUT_MESSAGES, genai.dumps_within(chat, limit))
        if output_messages is not None:
            if finish_reasons is None:
                finish_reasons = self._finish_reasons
            out = genai.output_messages(output_messages, finish_reasons)
            self.span.set_attribute(Attr.GEN_AI_OUTPUT_MESSAGES, genai.dumps_within(out, limit))

    def _on_end(self, duration: float) -> None:
        rt = self._rt
        instruments = rt.instruments
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
        if rt.config.genai.emit_upcoming_names:
            instruments.gen_ai_inference_duration.record(duration, duration_attributes)
            if self._input_tokens is not None:
                instruments.gen_ai_inference_input_tokens.record(self._input_tokens, duration_attributes)
            if self._output_tokens is not None:
                instruments.gen_ai_inference_output_tokens.record(self._output_tokens, duration_attributes)
        if self._input_tokens is not None or self._output_tokens is not None:
            cost = cost_of(self._model, self._input_tokens or 0, self._output_tokens or 0, rt.config.pricing)
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


def http_status_of(error: BaseException) -> int | None:
    """The HTTP status code an exception carries (``status_code``: openai, httpx, requests; ``code``:
    urllib's ``HTTPError``), or ``None``."""
    for holder in (error, getattr(error, "response", None)):
        for name in ("status_code", "status", "code"):
            value = getattr(holder, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def _record_exception(
    span: Span,
    error: BaseException,
    mask: TextMask | None,
    *,
    escaped: bool,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """``span.record_exception``, with user text masked in the message and stack trace when ``mask`` is given."""
    if mask is not None and span.is_recording():
        # The SDK's own attributes, overridden: the rest of the event (type, escaped) stays the SDK's.
        masked: dict[str, AttributeValue] = {
            EXCEPTION_MESSAGE: mask(str(error)),
            EXCEPTION_STACKTRACE: mask("".join(traceback.format_exception(error))),
        }
        attributes = {**masked, **attributes} if attributes else masked
    span.record_exception(error, attributes=attributes, escaped=escaped)


# --- public factories: the operation classes themselves (see the module docstring) ---

command = CommandOp
query = QueryOp
prover = ProverOp
llm_call = LLMCallOp
cache_lookup = CacheOp
step = StepOp


def current() -> Operation | None:
    """The innermost open operation in this context, or ``None``."""
    return _current_op.get()


def capture_message(message: str, level: str = "info", **attributes: AttributeValue) -> None:
    """Report a message (the seed's ``capture_message``): a span event, and error backends get it too."""
    rt = runtime.current
    trace.get_current_span().add_event(MESSAGE_EVENT, {Attr.MESSAGE_LEVEL: level, "message": message, **attributes})
    for backend in rt.backends:
        with contextlib.suppress(Exception):  # a reporting backend must never break the caller
            backend.capture_message(message, level)


def capture_exception(error: BaseException, **context: AttributeValue) -> None:
    """Report a handled error: recorded on the current span and counted; error backends get it too.

    The span's status is left alone: the operation decides whether it failed.
    """
    rt = runtime.current
    span = trace.get_current_span()
    op = _current_op.get()
    _record_exception(span, error, user_text_mask(error), attributes=context or None, escaped=False)
    scope = op.scope if op is not None else ErrorScope.STEP
    rt.instruments.errors.add(1, {Attr.ERROR_TYPE: type(error).__qualname__, Attr.ERROR_SCOPE: scope.value})
    for backend in rt.backends:
        with contextlib.suppress(Exception):  # a reporting backend must never break the caller
            backend.capture_exception(error, otel_context.get_current())
