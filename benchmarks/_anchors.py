"""The overhead benchmark's fair anchors: HAK-GAL's telemetry written by hand, without the layer.

The reference service calls a small API (``hg.command``, ``hg.query``, ``hg.step``,
``hg.llm_call``, ``hg.cache_lookup``, ``hg.prover``, plus ``hg.start_thread``,
``hg.ContextThreadPoolExecutor``, ``hg.propagation_headers``, ``hg.instrument_flask``
and ``hg.capture_exception``). Each anchor here is an alternative implementation
of that same surface, with the same signatures, as a HAK-GAL engineer would write it
without ``otel_hakgal``:

- :class:`OtelByHand` (``otel-by-hand``): plain OpenTelemetry API and SDK. The same
  span names, kinds and attributes, the same metric records (durations, tokens,
  cost, cache lookups, prover runs, errors) with the same instrument names, units
  and buckets, a ``BatchSpanProcessor`` with the OTLP/HTTP exporter and a
  ``PeriodicExportingMetricReader`` with the OTLP/HTTP metric exporter (the SDK's
  defaults, which are also the layer's), and the OTel Flask instrumentation with
  the stable HTTP conventions (as the layer sets them).
- :class:`SentryNativeTree` (``sentry-native-tree``): native sentry-sdk, as the seed
  guide's user would: ``sentry_sdk.init(traces_sample_rate=1.0)`` with
  ``FlaskIntegration`` (one transaction per request) and ``sentry_sdk.start_span``
  for each command, query, RAG step, LLM call, cache lookup and prover, carrying
  the same attributes as span data. sentry-sdk's ``ThreadingIntegration`` (a default
  integration) carries the scope into threads and thread pools, so plain
  ``threading.Thread`` and ``ThreadPoolExecutor`` keep the tree. Its HTTP-client and subprocess
  spans are off (``auto_enabling_integrations=False``, ``StdlibIntegration`` disabled): the layer
  records none either. sentry-sdk sends the ``gen_ai.*`` spans of a transaction as a v2 ``span``
  item in the transaction's envelope (as the layer's ``sentry`` backend does).

:func:`install` swaps an anchor in for the ``otel_hakgal`` names the demo modules
imported (each module's ``hg`` and the command class ``commands._Command``), in the
process that serves that variant only. Nothing here imports the layer's runtime:
only the names of the conventions (plain strings) and the default price table.

What the layer does that these anchors do not (its features, part of its measured
cost): the secret scrubber over every span, the ``text_mode`` policy (here: user
text cut to 100 characters, the layer's default result), masking user text in
error messages, the ``_OTHER`` mapping of unknown closed-set values, and its own
drop counters.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace, TracebackType
from typing import Any

from otel_hakgal.config import DEFAULT_PRICING
from otel_hakgal.conventions import (
    Attr,
    ErrorScope,
    ErrorType,
    Metric,
    Outcome,
    ProverResult,
    TokenType,
    metric_def,
)

# The demo modules that ``import otel_hakgal as hg``: each gets the anchor as its ``hg``.
DEMO_MODULES = (
    "otel_hakgal.demo.api",
    "otel_hakgal.demo.commands",
    "otel_hakgal.demo.k_assistant",
    "otel_hakgal.demo.caches",
    "otel_hakgal.demo.portfolio",
    "otel_hakgal.demo.provers",
    "otel_hakgal.demo.providers",
    "otel_hakgal.demo.rag",
    "otel_hakgal.demo.peer",
)
TEXT_LIMIT = 100  # user text is cut to this many characters (the layer's default text_mode)
SERVICE_NAME = "hak-gal"


def install(anchor: SimpleNamespace) -> None:
    """Make the demo modules call ``anchor`` where they called ``otel_hakgal`` (this process only)."""
    for name in DEMO_MODULES:
        importlib.import_module(name).hg = anchor  # type: ignore[attr-defined]
    commands = importlib.import_module("otel_hakgal.demo.commands")
    commands._Command = anchor.RejectableCommand  # the demo's subclass of hg.CommandOp


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT]


def _bind(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run in a copy of the caller's context (OTel keeps its current span in a contextvar)."""
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return captured.copy().run(fn, *args, **kwargs)

    return run


class _ContextPool(ThreadPoolExecutor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(_bind(fn), *args, **kwargs)


def _start_thread(
    target: Callable[..., object], *args: Any, name: str | None = None, **kwargs: Any
) -> threading.Thread:
    thread = threading.Thread(target=_bind(target), args=args, kwargs=kwargs, name=name, daemon=True)
    thread.start()
    return thread


def _plain_thread(
    target: Callable[..., object], *args: Any, name: str | None = None, **kwargs: Any
) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, name=name, daemon=True)
    thread.start()
    return thread


def _cost(model: str, input_tokens: int, output_tokens: int) -> tuple[float, str] | None:
    price = DEFAULT_PRICING.get(model)
    if price is None:
        return None
    return (input_tokens * price.input + output_tokens * price.output) / 1_000_000, price.currency


# --- otel-by-hand ---------------------------------------------------------------------------


class OtelByHand:
    """HAK-GAL's spans and metrics written directly against the OpenTelemetry API and SDK.

    ``span_exporter``/``metric_reader`` replace the OTLP ones (the parity test uses in-memory ones).
    """

    def __init__(
        self,
        otlp_endpoint: str = "",
        *,
        span_exporter: Any = None,
        metric_reader: Any = None,
    ) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")  # the stable HTTP names, as the layer
        resource = Resource.create({"service.name": SERVICE_NAME})
        if span_exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor: Any = BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint}/v1/traces"))
        else:
            processor = SimpleSpanProcessor(span_exporter)
        if metric_reader is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            metric_reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{otlp_endpoint}/v1/metrics"))
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(processor)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        tracer = self.tracer_provider.get_tracer("hakgal")
        meter = self.meter_provider.get_meter("hakgal")

        def histogram(name: str) -> Any:
            d = metric_def(name)
            return meter.create_histogram(
                d.name, unit=d.unit, description=d.description, explicit_bucket_boundaries_advisory=d.buckets or None
            )

        def counter(name: str) -> Any:
            d = metric_def(name)
            return meter.create_counter(d.name, unit=d.unit, description=d.description)

        m = SimpleNamespace(
            command=histogram(Metric.COMMAND_DURATION),
            query=histogram(Metric.QUERY_DURATION),
            prover=histogram(Metric.PROVER_DURATION),
            prover_runs=counter(Metric.PROVER_RUNS),
            cache=counter(Metric.CACHE_LOOKUPS),
            cost=counter(Metric.LLM_COST),
            errors=counter(Metric.ERRORS),
            gen_ai_duration=histogram(Metric.GEN_AI_OPERATION_DURATION),
            gen_ai_tokens=histogram(Metric.GEN_AI_TOKEN_USAGE),
        )
        self.namespace = _otel_namespace(tracer, m)

    def flush(self, timeout_s: float = 30) -> None:
        self.tracer_provider.force_flush(int(timeout_s * 1000))
        self.meter_provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _otel_namespace(tracer: Any, m: SimpleNamespace) -> SimpleNamespace:
    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    internal, client = SpanKind.INTERNAL, SpanKind.CLIENT

    class Op:
        scope = ErrorScope.STEP.value
        span: Any

        def _start(self, name: str, attributes: dict[str, Any], kind: SpanKind = internal) -> None:
            self.error_type: str | None = None
            self.span = tracer.start_span(name, kind=kind, attributes=attributes)
            self._token = context.attach(trace.set_span_in_context(self.span))
            self._t0 = time.perf_counter()

        def __exit__(self, exc_type: Any, exc: BaseException | None, tb: TracebackType | None) -> None:
            duration = time.perf_counter() - self._t0
            try:
                if exc is not None:
                    self.span.record_exception(exc, escaped=True)
                    self._failed(type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
                self._end(duration)
                if self.error_type is not None:
                    m.errors.add(1, {Attr.ERROR_TYPE: self.error_type, Attr.ERROR_SCOPE: self.scope})
            finally:
                self.span.end()
                context.detach(self._token)

        def _failed(self, error_type: str, message: str | None) -> None:
            self.error_type = error_type
            self.span.set_status(Status(StatusCode.ERROR, message))
            self.span.set_attribute(Attr.ERROR_TYPE, error_type)

        def fail(self, error_type: str, message: str | None = None) -> None:
            self._failed(str(error_type), message)

        @property
        def failed(self) -> bool:
            return self.error_type is not None

        def set_attribute(self, key: str, value: Any) -> None:
            self.span.set_attribute(key, _cut(value) if isinstance(value, str) else value)

        def _end(self, duration: float) -> None:
            pass

    class Outcomes(Op):
        @property
        def outcome(self) -> Outcome:
            if self.error_type is None:
                return Outcome.SUCCESS
            return Outcome.TIMEOUT if self.error_type == ErrorType.TIMEOUT else Outcome.ERROR

    class Command(Outcomes):
        scope = ErrorScope.COMMAND.value

        def __init__(self, verb: str, *, text: str | None = None, timeout_s: float | None = None) -> None:
            self.verb, self.text, self.timeout_s = verb, text, timeout_s

        def __enter__(self) -> Command:
            attributes: dict[str, Any] = {Attr.COMMAND_NAME: self.verb}
            if self.text is not None:
                attributes[Attr.COMMAND_TEXT] = _cut(self.text)
            if self.timeout_s is not None:
                attributes[Attr.COMMAND_TIMEOUT] = float(self.timeout_s)
            self._start(f"hakgal.command {self.verb}", attributes)
            return self

        def _end(self, duration: float) -> None:
            outcome = self.outcome.value
            self.span.set_attribute(Attr.COMMAND_OUTCOME, outcome)
            attributes = {Attr.COMMAND_NAME: self.verb, Attr.COMMAND_OUTCOME: outcome}
            if self.error_type is not None:
                attributes[Attr.ERROR_TYPE] = self.error_type
            m.command.record(duration, attributes)

    class RejectableCommand(Command):
        def __init__(self, verb: str, *, text: str | None = None, timeout_s: float | None = None) -> None:
            super().__init__(verb, text=text, timeout_s=timeout_s)
            self.rejected = False

        def reject(self) -> None:
            self.rejected = True

        @property
        def outcome(self) -> Outcome:
            if self.rejected and self.error_type is None:
                return Outcome.REJECTED
            return super().outcome

    class Query(Outcomes):
        scope = ErrorScope.QUERY.value

        def __init__(self, text: str | None = None, *, query_type: str = "ask") -> None:
            self.text, self.query_type = text, query_type

        def __enter__(self) -> Query:
            attributes: dict[str, Any] = {Attr.QUERY_TYPE: self.query_type}
            if self.text is not None:
                attributes[Attr.QUERY_TEXT] = _cut(self.text)
            self._start("hakgal.query", attributes)
            return self

        def set_formula(self, formula: str) -> None:
            self.span.set_attribute(Attr.QUERY_FORMULA, _cut(formula))

        def set_answer(self, answer: str) -> None:
            self.span.set_attribute(Attr.QUERY_ANSWER, answer)

        def _end(self, duration: float) -> None:
            outcome = self.outcome.value
            self.span.set_attribute(Attr.QUERY_OUTCOME, outcome)
            attributes = {Attr.QUERY_TYPE: self.query_type, Attr.QUERY_OUTCOME: outcome}
            if self.error_type is not None:
                attributes[Attr.ERROR_TYPE] = self.error_type
            m.query.record(duration, attributes)

    class Step(Op):
        def __init__(self, name: str, *, attributes: Mapping[str, Any] | None = None) -> None:
            self.name, self.attributes = name, attributes

        def __enter__(self) -> Step:
            self._start(self.name, dict(self.attributes) if self.attributes else {})
            return self

    class Cache(Op):
        scope = ErrorScope.CACHE.value

        def __init__(self, cache: str) -> None:
            self.cache, self.hit_ = str(cache), False

        def __enter__(self) -> Cache:
            self._start(f"hakgal.cache {self.cache}", {Attr.CACHE_NAME: self.cache})
            return self

        def hit(self) -> None:
            self.hit_ = True

        def miss(self) -> None:
            self.hit_ = False

        def set_hit(self, hit: bool) -> None:
            self.hit_ = bool(hit)

        def _end(self, duration: float) -> None:
            self.span.set_attribute(Attr.CACHE_HIT, self.hit_)
            m.cache.add(1, {Attr.CACHE_NAME: self.cache, Attr.CACHE_HIT: self.hit_})

    class Prover(Op):
        scope = ErrorScope.PROVER.value

        def __init__(self, name: str, *, order: int | None = None, timeout_s: float | None = None) -> None:
            self.name, self.order, self.timeout_s = name, order, timeout_s
            self.result: str | None = None

        def __enter__(self) -> Prover:
            attributes: dict[str, Any] = {Attr.PROVER_NAME: self.name}
            if self.order is not None:
                attributes[Attr.PROVER_ORDER] = self.order
            if self.timeout_s is not None:
                attributes[Attr.PROVER_TIMEOUT] = float(self.timeout_s)
            self._start(f"hakgal.prover {self.name}", attributes)
            return self

        def set_result(self, result: str, reason: str | None = None) -> None:
            self.result = str(result)
            if reason is not None:
                self.span.set_attribute(Attr.PROVER_REASON, _cut(reason))
            if self.error_type is None and self.result == ProverResult.TIMEOUT:
                self._failed(ErrorType.TIMEOUT, reason)
            elif self.error_type is None and self.result == ProverResult.ERROR:
                self._failed(ErrorType.OTHER, reason)

        def _end(self, duration: float) -> None:
            result = self.result or ProverResult.UNKNOWN.value
            self.span.set_attribute(Attr.PROVER_RESULT, result)
            attributes = {Attr.PROVER_NAME: self.name, Attr.PROVER_RESULT: result}
            m.prover.record(duration, attributes)
            m.prover_runs.add(1, attributes)

    class LLMCall(Op):
        scope = ErrorScope.LLM.value

        def __init__(
            self,
            provider: str,
            model: str,
            *,
            operation: str = "chat",
            server_address: str | None = None,
            server_port: int | None = None,
            max_tokens: int | None = None,
            temperature: float | None = None,
        ) -> None:
            self.provider, self.model, self.operation = provider, model, str(operation)
            self.input_tokens: int | None = None
            self.output_tokens: int | None = None
            self.metric_attributes: dict[str, Any] = {
                Attr.GEN_AI_OPERATION_NAME: self.operation,
                Attr.GEN_AI_PROVIDER_NAME: provider,
                Attr.GEN_AI_REQUEST_MODEL: model,
            }
            if server_address is not None:
                self.metric_attributes[Attr.SERVER_ADDRESS] = server_address
                if server_port is not None:
                    self.metric_attributes[Attr.SERVER_PORT] = int(server_port)
            self.span_attributes = dict(self.metric_attributes)
            if max_tokens is not None:
                self.span_attributes[Attr.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
            if temperature is not None:
                self.span_attributes[Attr.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)

        def __enter__(self) -> LLMCall:
            self._start(f"{self.operation} {self.model}", self.span_attributes, client)
            return self

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
            span = self.span
            if cache_read_tokens is not None:
                span.set_attribute(Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, int(cache_read_tokens))
            if cache_write_tokens is not None:
                span.set_attribute(Attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, int(cache_write_tokens))
            if input_tokens is not None:
                self.input_tokens = int(input_tokens)
                span.set_attribute(Attr.GEN_AI_USAGE_INPUT_TOKENS, self.input_tokens)
            if output_tokens is not None:
                self.output_tokens = int(output_tokens)
                span.set_attribute(Attr.GEN_AI_USAGE_OUTPUT_TOKENS, self.output_tokens)
            if finish_reasons is not None:
                span.set_attribute(Attr.GEN_AI_RESPONSE_FINISH_REASONS, [str(r) for r in finish_reasons])
            if response_model is not None:
                span.set_attribute(Attr.GEN_AI_RESPONSE_MODEL, response_model)
                self.metric_attributes[Attr.GEN_AI_RESPONSE_MODEL] = response_model
            if response_id is not None:
                span.set_attribute(Attr.GEN_AI_RESPONSE_ID, response_id)

        def record_messages(self, *args: Any, **kwargs: Any) -> None:
            """Content capture is off (the default, as in the layer's runs): nothing to record."""

        def fail_http(self, status_code: int, message: str | None = None) -> None:
            self.fail(str(int(status_code)), message)

        def _end(self, duration: float) -> None:
            attributes = self.metric_attributes
            if self.error_type is not None:
                m.gen_ai_duration.record(duration, {**attributes, Attr.ERROR_TYPE: self.error_type})
            else:
                m.gen_ai_duration.record(duration, attributes)
            if self.input_tokens is not None:
                m.gen_ai_tokens.record(self.input_tokens, {**attributes, Attr.GEN_AI_TOKEN_TYPE: TokenType.INPUT.value})
            if self.output_tokens is not None:
                m.gen_ai_tokens.record(
                    self.output_tokens, {**attributes, Attr.GEN_AI_TOKEN_TYPE: TokenType.OUTPUT.value}
                )
            if self.input_tokens is not None or self.output_tokens is not None:
                cost = _cost(self.model, self.input_tokens or 0, self.output_tokens or 0)
                if cost is None:
                    self.span.set_attribute(Attr.LLM_COST_KNOWN, False)
                else:
                    amount, currency = cost
                    self.span.set_attribute(Attr.LLM_COST_KNOWN, True)
                    self.span.set_attribute(Attr.LLM_COST_AMOUNT, amount)
                    self.span.set_attribute(Attr.LLM_COST_CURRENCY, currency)
                    m.cost.add(
                        amount,
                        {
                            Attr.GEN_AI_PROVIDER_NAME: self.provider,
                            Attr.GEN_AI_REQUEST_MODEL: self.model,
                            Attr.LLM_COST_CURRENCY: currency,
                        },
                    )

    def capture_exception(error: BaseException, **attributes: Any) -> None:
        trace.get_current_span().record_exception(error, attributes=attributes or None, escaped=False)
        m.errors.add(1, {Attr.ERROR_TYPE: type(error).__qualname__, Attr.ERROR_SCOPE: ErrorScope.STEP.value})

    def propagation_headers() -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def instrument_flask(app: Any) -> Any:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        if not getattr(app, "_is_instrumented_by_opentelemetry", False):
            FlaskInstrumentor.instrument_app(app)  # type: ignore[no-untyped-call]
        return app

    return SimpleNamespace(
        command=Command,
        CommandOp=Command,
        RejectableCommand=RejectableCommand,
        query=Query,
        step=Step,
        cache_lookup=Cache,
        prover=Prover,
        llm_call=LLMCall,
        capture_exception=capture_exception,
        propagation_headers=propagation_headers,
        instrument_flask=instrument_flask,
        start_thread=_start_thread,
        ContextThreadPoolExecutor=_ContextPool,
        bind_context=_bind,
    )


# --- sentry-native-tree ---------------------------------------------------------------------


class SentryNativeTree:
    """HAK-GAL's span tree with native sentry-sdk: a transaction per request, a span per operation."""

    TRANSPORT_QUEUE = 100_000  # large enough that the transport delivers everything it is given

    def __init__(self, dsn: str) -> None:
        import sentry_sdk
        from sentry_sdk.integrations.flask import FlaskIntegration
        from sentry_sdk.integrations.stdlib import StdlibIntegration

        sentry_sdk.init(
            dsn=dsn,
            integrations=[FlaskIntegration(transaction_style="url")],
            # No HTTP-client or subprocess spans (httpx, http.client, `uname -p`): the same tree as the others.
            auto_enabling_integrations=False,
            disabled_integrations=[StdlibIntegration()],
            traces_sample_rate=1.0,
            enable_backpressure_handling=False,
            transport_queue_size=self.TRANSPORT_QUEUE,
            environment="development",
            release="unknown",
            send_default_pii=False,
        )
        sentry_sdk.set_tag("component", "hak-gal-api")
        sentry_sdk.set_tag("system", "reasoning-engine")
        self.namespace = _sentry_namespace()

    def flush(self, timeout_s: float = 30) -> None:
        import sentry_sdk

        sentry_sdk.flush(timeout=timeout_s)

    def shutdown(self) -> None:
        import sentry_sdk

        client = sentry_sdk.get_client()
        client.close(timeout=10)


def _sentry_namespace() -> SimpleNamespace:
    import sentry_sdk

    start_span = sentry_sdk.start_span

    class Op:
        span: Any

        def _start(self, op: str, name: str, data: Mapping[str, Any]) -> None:
            self.error_type: str | None = None
            self._cm = start_span(op=op, name=name)
            span = self.span = self._cm.__enter__()
            for key, value in data.items():
                span.set_data(key, value)

        def __exit__(self, exc_type: Any, exc: BaseException | None, tb: TracebackType | None) -> None:
            try:
                if exc is not None:
                    self._failed(type(exc).__qualname__)
                self._end()
            finally:
                self._cm.__exit__(exc_type, exc, tb)

        def _failed(self, error_type: str) -> None:
            self.error_type = error_type
            self.span.set_status("internal_error")
            self.span.set_data(Attr.ERROR_TYPE, error_type)

        def fail(self, error_type: str, message: str | None = None) -> None:
            self._failed(str(error_type))

        @property
        def failed(self) -> bool:
            return self.error_type is not None

        def set_attribute(self, key: str, value: Any) -> None:
            self.span.set_data(key, _cut(value) if isinstance(value, str) else value)

        def _end(self) -> None:
            pass

    class Outcomes(Op):
        @property
        def outcome(self) -> Outcome:
            if self.error_type is None:
                return Outcome.SUCCESS
            return Outcome.TIMEOUT if self.error_type == ErrorType.TIMEOUT else Outcome.ERROR

    class Command(Outcomes):
        def __init__(self, verb: str, *, text: str | None = None, timeout_s: float | None = None) -> None:
            self.verb, self.text, self.timeout_s = verb, text, timeout_s

        def __enter__(self) -> Command:
            data: dict[str, Any] = {Attr.COMMAND_NAME: self.verb}
            if self.text is not None:
                data[Attr.COMMAND_TEXT] = _cut(self.text)
            if self.timeout_s is not None:
                data[Attr.COMMAND_TIMEOUT] = float(self.timeout_s)
            self._start("hakgal.command", f"hakgal.command {self.verb}", data)
            sentry_sdk.set_tag(Attr.COMMAND_NAME, self.verb)
            return self

        def _end(self) -> None:
            self.span.set_data(Attr.COMMAND_OUTCOME, self.outcome.value)

    class RejectableCommand(Command):
        def __init__(self, verb: str, *, text: str | None = None, timeout_s: float | None = None) -> None:
            super().__init__(verb, text=text, timeout_s=timeout_s)
            self.rejected = False

        def reject(self) -> None:
            self.rejected = True

        @property
        def outcome(self) -> Outcome:
            if self.rejected and self.error_type is None:
                return Outcome.REJECTED
            return super().outcome

    class Query(Outcomes):
        def __init__(self, text: str | None = None, *, query_type: str = "ask") -> None:
            self.text, self.query_type = text, query_type

        def __enter__(self) -> Query:
            data: dict[str, Any] = {Attr.QUERY_TYPE: self.query_type}
            if self.text is not None:
                data[Attr.QUERY_TEXT] = _cut(self.text)
            self._start("hakgal.query", "hakgal.query", data)
            return self

        def set_formula(self, formula: str) -> None:
            self.span.set_data(Attr.QUERY_FORMULA, _cut(formula))

        def set_answer(self, answer: str) -> None:
            self.span.set_data(Attr.QUERY_ANSWER, answer)

        def _end(self) -> None:
            self.span.set_data(Attr.QUERY_OUTCOME, self.outcome.value)

    class Step(Op):
        def __init__(self, name: str, *, attributes: Mapping[str, Any] | None = None) -> None:
            self.name, self.attributes = name, attributes

        def __enter__(self) -> Step:
            self._start(self.name, self.name, self.attributes or {})
            return self

    class Cache(Op):
        def __init__(self, cache: str) -> None:
            self.cache, self.hit_ = str(cache), False

        def __enter__(self) -> Cache:
            self._start("cache.get", f"hakgal.cache {self.cache}", {Attr.CACHE_NAME: self.cache})
            return self

        def hit(self) -> None:
            self.hit_ = True

        def miss(self) -> None:
            self.hit_ = False

        def set_hit(self, hit: bool) -> None:
            self.hit_ = bool(hit)

        def _end(self) -> None:
            self.span.set_data(Attr.CACHE_HIT, self.hit_)

    class Prover(Op):
        def __init__(self, name: str, *, order: int | None = None, timeout_s: float | None = None) -> None:
            self.name, self.order, self.timeout_s = name, order, timeout_s
            self.result: str | None = None

        def __enter__(self) -> Prover:
            data: dict[str, Any] = {Attr.PROVER_NAME: self.name}
            if self.order is not None:
                data[Attr.PROVER_ORDER] = self.order
            if self.timeout_s is not None:
                data[Attr.PROVER_TIMEOUT] = float(self.timeout_s)
            self._start("hakgal.prover", f"hakgal.prover {self.name}", data)
            return self

        def set_result(self, result: str, reason: str | None = None) -> None:
            self.result = str(result)
            if reason is not None:
                self.span.set_data(Attr.PROVER_REASON, _cut(reason))
            if self.error_type is None and self.result in (ProverResult.TIMEOUT, ProverResult.ERROR):
                self._failed(ErrorType.TIMEOUT if self.result == ProverResult.TIMEOUT else ErrorType.OTHER)

        def _end(self) -> None:
            self.span.set_data(Attr.PROVER_RESULT, self.result or ProverResult.UNKNOWN.value)

    class LLMCall(Op):
        def __init__(
            self,
            provider: str,
            model: str,
            *,
            operation: str = "chat",
            server_address: str | None = None,
            server_port: int | None = None,
            max_tokens: int | None = None,
            temperature: float | None = None,
        ) -> None:
            self.model, self.operation = model, str(operation)
            self.input_tokens: int | None = None
            self.output_tokens: int | None = None
            data: dict[str, Any] = {
                Attr.GEN_AI_OPERATION_NAME: self.operation,
                Attr.GEN_AI_PROVIDER_NAME: provider,
                Attr.GEN_AI_REQUEST_MODEL: model,
            }
            if server_address is not None:
                data[Attr.SERVER_ADDRESS] = server_address
            if server_port is not None:
                data[Attr.SERVER_PORT] = int(server_port)
            if max_tokens is not None:
                data[Attr.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
            if temperature is not None:
                data[Attr.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)
            self.data = data

        def __enter__(self) -> LLMCall:
            # Sentry's AI views key on op gen_ai.<operation> with gen_ai.* data.
            self._start(f"gen_ai.{self.operation}", f"{self.operation} {self.model}", self.data)
            return self

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
            span = self.span
            if cache_read_tokens is not None:
                span.set_data(Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, int(cache_read_tokens))
            if cache_write_tokens is not None:
                span.set_data(Attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, int(cache_write_tokens))
            if input_tokens is not None:
                self.input_tokens = int(input_tokens)
                span.set_data(Attr.GEN_AI_USAGE_INPUT_TOKENS, self.input_tokens)
            if output_tokens is not None:
                self.output_tokens = int(output_tokens)
                span.set_data(Attr.GEN_AI_USAGE_OUTPUT_TOKENS, self.output_tokens)
            if finish_reasons is not None:
                span.set_data(Attr.GEN_AI_RESPONSE_FINISH_REASONS, [str(r) for r in finish_reasons])
            if response_model is not None:
                span.set_data(Attr.GEN_AI_RESPONSE_MODEL, response_model)
            if response_id is not None:
                span.set_data(Attr.GEN_AI_RESPONSE_ID, response_id)

        def record_messages(self, *args: Any, **kwargs: Any) -> None:
            """Content capture is off (the default, as in the layer's runs): nothing to record."""

        def fail_http(self, status_code: int, message: str | None = None) -> None:
            self.fail(str(int(status_code)), message)

        def _end(self) -> None:
            if self.input_tokens is not None or self.output_tokens is not None:
                cost = _cost(self.model, self.input_tokens or 0, self.output_tokens or 0)
                if cost is None:
                    self.span.set_data(Attr.LLM_COST_KNOWN, False)
                else:
                    self.span.set_data(Attr.LLM_COST_KNOWN, True)
                    self.span.set_data(Attr.LLM_COST_AMOUNT, cost[0])
                    self.span.set_data(Attr.LLM_COST_CURRENCY, cost[1])

    def capture_exception(error: BaseException, **attributes: Any) -> None:
        sentry_sdk.capture_exception(error)

    def propagation_headers() -> dict[str, str]:
        return dict(sentry_sdk.get_current_scope().iter_trace_propagation_headers())

    def instrument_flask(app: Any) -> Any:
        return app  # FlaskIntegration patched Flask at init

    return SimpleNamespace(
        command=Command,
        CommandOp=Command,
        RejectableCommand=RejectableCommand,
        query=Query,
        step=Step,
        cache_lookup=Cache,
        prover=Prover,
        llm_call=LLMCall,
        capture_exception=capture_exception,
        propagation_headers=propagation_headers,
        instrument_flask=instrument_flask,
        # sentry-sdk's ThreadingIntegration forks the scope into threads and pool tasks.
        start_thread=_plain_thread,
        ContextThreadPoolExecutor=ThreadPoolExecutor,
        bind_context=lambda fn: fn,
    )
