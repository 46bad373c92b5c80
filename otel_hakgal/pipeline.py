"""``setup()``: turn a ``Config`` into a running :class:`Handle` and switch the process to it.

:class:`Plumbing` owns what exists once per process: the TracerProvider, the
fan-out span processor, the sampler and the meter proxy, and for logs the
LoggerProvider, its fan-out processor and the root logger's export handler
(:mod:`otel_hakgal.logs`), all switchable. A
``setup()`` builds and starts the new backends first, then switches the
plumbing and :data:`otel_hakgal.runtime.current` to them in one step, and
only then retires the previous backends. If a backend fails to start, what
was started is shut down and the previous setup keeps running.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar, cast, overload

from opentelemetry import metrics, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.metrics import ObservableCounter
from opentelemetry.metrics._internal import _ProxyMeter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otel_hakgal import genai, log_limits, log_redaction, logs, runtime
from otel_hakgal.backends.base import Backend, BackendStats, Parts
from otel_hakgal.backends.batching import ReadsOnlySpanContext, ScrubsOnExport
from otel_hakgal.backends.registry import backend_class
from otel_hakgal.config import (
    Config,
    ConfigError,
    LimitSettings,
    SamplingSettings,
    TailSamplingSettings,
    check_config,
    load_config,
)
from otel_hakgal.conventions import INSTRUMENTATION_SCOPE, SCHEMA_URL
from otel_hakgal.fork_safety import guard_collection_at_fork
from otel_hakgal.http_conventions import default_to_stable_http
from otel_hakgal.instruments import Instruments
from otel_hakgal.redaction import SecretScrubber
from otel_hakgal.runtime import Runtime
from otel_hakgal.tail_sampling import TailSampler
from otel_hakgal.version import __version__

B = TypeVar("B", bound=Backend)

logger = logging.getLogger("otel_hakgal")


# --- switchable parts of the one TracerProvider ----------------------------


class FanOutSpanProcessor(SpanProcessor):
    """Forwards to the active backends' processors; a failing one never reaches the app.

    Every processor gets each span scrubbed (:class:`~otel_hakgal.redaction.SecretScrubber`), by the
    scrubber of the configuration in force. A processor that scrubs on export with that very scrubber
    (:class:`~otel_hakgal.backends.batching.ScrubsOnExport`: the batch span processors, the Sentry
    transaction processor) gets the span as it is and scrubs it on its own thread, and so does one that
    reads only its ids (:class:`~otel_hakgal.backends.batching.ReadsOnlySpanContext`); for the others
    (memory, console, any other package's) the span is scrubbed here, once, on the thread that ended it.

    With tail sampling on, ended spans first wait in a :class:`TailSampler`, which hands a kept
    trace's spans to the processors whole and a dropped trace's as unsampled copies (released, not
    exported).
    """

    def __init__(self) -> None:
        # Processors, the scrubber and which processors take spans unscrubbed (they scrub on export
        # themselves, or read only span ids) in one tuple, read once per call: a span never meets one
        # configuration's processors with another's scrubber.
        self._route: tuple[tuple[SpanProcessor, ...], SecretScrubber | None, tuple[bool, ...]] = ((), None, ())
        self._starting: tuple[SpanProcessor, ...] = ()  # the processors whose on_start does something
        self._tail: TailSampler | None = None
        self._holding: tuple[SpanProcessor, ...] = ()  # the processors a dropped trace's spans are released to
        self._warned: set[int] = set()
        self._ended = itertools.count()  # next() on a count is atomic under the GIL; += is not
        # Span ids of nested duplicates of a layer LLM call (otel_hakgal.genai): seen by no backend.
        self._duplicates: set[int] = set()

    @property
    def processors(self) -> tuple[SpanProcessor, ...]:
        return self._route[0]

    @property
    def tail(self) -> TailSampler | None:
        """The tail sampler of the current configuration, if it has ``[sampling.tail] enabled``."""
        return self._tail

    def switch(
        self,
        processors: Sequence[SpanProcessor],
        scrubber: SecretScrubber | None,
        tail: TailSamplingSettings | None = None,
    ) -> None:
        """Route to ``processors``; traces the previous tail sampler still holds go to the previous ones."""
        held, self._tail = self._tail, None
        if held is not None:
            held.flush_open()
        self._route = (tuple(processors), scrubber, tuple(_takes_unscrubbed(p, scrubber) for p in processors))
        self._starting = tuple(p for p in processors if type(p).on_start not in _NO_OP_ON_START)
        # Batch and simple processors skip unsampled spans and hold nothing per trace: no copy is made for them.
        self._holding = tuple(p for p in processors if not isinstance(p, BatchSpanProcessor | SimpleSpanProcessor))
        if processors and tail is not None and tail.enabled:
            self._tail = TailSampler(tail, keep=self._deliver, discard=self._release if self._holding else None)

    @property
    def spans_ended(self) -> int:
        """Spans handed to the backends since the process started (the soak's "produced")."""
        return log_limits.count_value(self._ended)

    def _failed(self, processor: object) -> None:
        if id(processor) not in self._warned:  # one warning per processor, not one per span
            self._warned.add(id(processor))
            logger.warning("span processor %s failed; its spans are dropped", type(processor).__name__, exc_info=True)

    # Plain loops with try/except: no per-span closures on the request path.
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        scope = span.instrumentation_scope
        if (
            scope is not None
            and scope.name != INSTRUMENTATION_SCOPE
            and genai.in_llm_call(parent_context)
            and genai.is_duplicate_span(scope.name, span.attributes, parent_context)
        ):
            self._duplicates.add(span.context.span_id)  # set.add/discard are atomic under the GIL
            return
        for processor in self._starting:
            try:
                processor.on_start(span, parent_context)
            except Exception:
                self._failed(processor)
        tail = self._tail
        if tail is not None:
            tail.on_start(span)

    def on_end(self, span: ReadableSpan) -> None:
        if self._duplicates and span.context is not None and span.context.span_id in self._duplicates:
            self._duplicates.discard(span.context.span_id)
            return
        if not self._route[0]:
            return
        next(self._ended)
        tail = self._tail
        if tail is not None:
            try:
                tail.on_end(span)
            except Exception:
                self._failed(tail)
            return
        self._deliver(span)

    def _deliver(self, span: ReadableSpan) -> None:
        """``span`` to every processor: as it is to those that scrub on export, else scrubbed (once, here)."""
        processors, scrubber, scrubs_itself = self._route
        scrubbed = span if scrubber is None else None
        for processor, as_is in zip(processors, scrubs_itself, strict=True):
            try:
                if as_is:
                    processor.on_end(span)
                    continue
                if scrubbed is None:
                    scrubbed = cast(SecretScrubber, scrubber).scrub_span(span)
                processor.on_end(scrubbed)
            except Exception:  # the scrubber's too: the span then reaches no processor that needed it scrubbed
                self._failed(processor)

    def _release(self, span: ReadableSpan) -> None:
        """An unsampled ``span`` of a dropped trace to the processors that hold spans per trace (a Sentry
        transaction being assembled, the console's waterfall): nothing exports it, each lets it go."""
        for processor in self._holding:
            try:
                processor.on_end(span)
            except Exception:
                self._failed(processor)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self.processors)

    def shutdown(self) -> None:
        if self._tail is not None:
            self._tail.flush_open()
        for processor in self.processors:
            processor.shutdown()


# The SDK's processors that do nothing when a span starts: not called then.
_NO_OP_ON_START: Final = (SpanProcessor.on_start, BatchSpanProcessor.on_start, SimpleSpanProcessor.on_start)


def _takes_unscrubbed(processor: SpanProcessor, scrubber: SecretScrubber | None) -> bool:
    """Whether ``processor`` may get ended spans unscrubbed: it scrubs what it sends itself, with ``scrubber``,
    or it reads nothing but their ids."""
    if isinstance(processor, ReadsOnlySpanContext):
        return True
    return scrubber is not None and isinstance(processor, ScrubsOnExport) and processor.export_scrubber is scrubber


class SwitchableSampler(otel_sampling.Sampler):
    """Delegates to the sampler of the current configuration."""

    def __init__(self, delegate: otel_sampling.Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> otel_sampling.SamplingResult:
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return self.delegate.get_description()


class _FollowingInstruments(list[Any]):
    """A proxy meter's instrument list that binds each new instrument to the current real meter."""

    def __init__(self, meter: _SwitchingMeter) -> None:
        super().__init__()
        self._meter = meter

    def append(self, instrument: Any) -> None:
        super().append(instrument)
        instrument.on_meter_set(self._meter.current)


class _OutsideLLMCallHistogram(metrics.Histogram):
    """Another instrumentation's GenAI client histogram: not recorded inside a layer LLM call.

    The layer records that call's ``gen_ai.client.*`` metrics itself; the other instrumentation
    (e.g. the official openai one, wrapping the same SDK call) would count its tokens again.
    """

    def __init__(self, delegate: metrics.Histogram) -> None:
        self._delegate = delegate

    def record(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None:
        if not genai.in_llm_call(context):
            self._delegate.record(amount, attributes, context)


class _OutsideLLMCallCounter(metrics.Counter):
    """Another instrumentation's GenAI client counter: not counted inside a layer LLM call."""

    def __init__(self, delegate: metrics.Counter) -> None:
        self._delegate = delegate

    def add(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None:
        if not genai.in_llm_call(context):
            self._delegate.add(amount, attributes, context)


class _SwitchingMeter(_ProxyMeter):
    """A proxy meter that never hands out real instruments, so they can all be re-pointed.

    Another instrumentation's ``gen_ai.client.*`` instruments skip measurements made inside a layer
    LLM call, which the layer records itself (see :mod:`otel_hakgal.genai`).
    """

    def __init__(self, name: str, version: str | None, schema_url: str | None, real: metrics.MeterProvider) -> None:
        super().__init__(name, version=version, schema_url=schema_url)
        self.current = real.get_meter(name, version, schema_url)
        self._instruments = _FollowingInstruments(self)

    def _foreign_gen_ai(self, name: str) -> bool:
        return self._name != INSTRUMENTATION_SCOPE and name.startswith(genai.GEN_AI_CLIENT_METRIC_PREFIX)

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> metrics.Histogram:
        histogram = super().create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory
        )
        return _OutsideLLMCallHistogram(histogram) if self._foreign_gen_ai(name) else histogram

    def create_counter(self, name: str, unit: str = "", description: str = "") -> metrics.Counter:
        counter = super().create_counter(name, unit, description)
        return _OutsideLLMCallCounter(counter) if self._foreign_gen_ai(name) else counter

    def on_set_meter_provider(self, meter_provider: metrics.MeterProvider) -> None:
        real_meter = meter_provider.get_meter(self._name, self._version, self._schema_url)
        with self._lock:  # _real_meter stays None: the base class would then create real instruments
            self.current = real_meter
            for instrument in self._instruments:
                instrument.on_meter_set(real_meter)


class SwitchableMeterProvider(metrics.MeterProvider):
    """The process's one global MeterProvider: meters and instruments follow each ``setup()``.

    The SDK's MeterProvider cannot change its readers, and the global one can
    be set only once, so a second ``setup()`` would leave the Flask
    instrumentation's meters on a shut-down provider. Proxy meters fix that:
    every meter handed out is re-pointed at the current real provider.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meters: list[_SwitchingMeter] = []
        self._real: metrics.MeterProvider = metrics.NoOpMeterProvider()

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> metrics.Meter:
        with self._lock:
            meter = _SwitchingMeter(name, version, schema_url, self._real)
            self._meters.append(meter)
        return meter

    def switch(self, real: metrics.MeterProvider) -> None:
        with self._lock:
            self._real = real
            for meter in self._meters:
                meter.on_set_meter_provider(real)


def build_sampler(settings: SamplingSettings) -> otel_sampling.Sampler:
    ratio = otel_sampling.TraceIdRatioBased(settings.ratio)
    by_name: dict[str, otel_sampling.Sampler] = {
        "always_on": otel_sampling.ALWAYS_ON,
        "always_off": otel_sampling.ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": otel_sampling.ParentBased(otel_sampling.ALWAYS_ON),
        "parentbased_always_off": otel_sampling.ParentBased(otel_sampling.ALWAYS_OFF),
        "parentbased_traceidratio": otel_sampling.ParentBased(ratio),
    }
    return by_name[settings.sampler]


def build_resource(config: Config) -> Resource:
    attributes: dict[str, Any] = {
        **config.service.attributes,
        "service.name": config.service.name,
        "service.version": config.service.version,
        "deployment.environment.name": config.service.environment,
        "telemetry.distro.name": "otel_hakgal",
        "telemetry.distro.version": __version__,
    }
    return Resource.create(attributes)


class BackendStartError(RuntimeError):
    """A backend (or the pipeline around them) failed to start; the previous setup keeps running."""

    def __init__(self, backend: str | None, error: BaseException) -> None:
        self.backend = backend
        what = f"backend {backend!r}" if backend is not None else "the telemetry pipeline"
        super().__init__(f"{what} failed to start: {type(error).__name__}: {error}")


def _span_limits(config: Config) -> SpanLimits:
    limits = config.limits
    # Every limit given, so the SDK reads none of its environment variables (config validated them).
    # No length limit: strings are cut in one place, by the scrubber, after secrets are replaced.
    return SpanLimits(
        max_span_attributes=limits.attribute_count,
        max_events=limits.event_count,
        max_links=limits.link_count,
        max_event_attributes=limits.event_attribute_count,
        max_link_attributes=limits.link_attribute_count,
        max_attributes=limits.attribute_count,
        max_attribute_length=SpanLimits.UNSET,
        max_span_attribute_length=SpanLimits.UNSET,
    )


class Plumbing:
    """The process's permanent OTel plumbing, switched whole from one handle to the next."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.fan_out = FanOutSpanProcessor()
        self.sampler = SwitchableSampler(otel_sampling.ParentBased(otel_sampling.ALWAYS_ON))
        self.meter_provider = SwitchableMeterProvider()
        self.tracer_provider: TracerProvider | None = None
        self.instruments: Instruments | None = None
        self.handle: Handle | None = None
        self._atexit_registered = False
        self._limits: LimitSettings | None = None  # the span limits the provider was made with
        # Logs: made at the first setup() that exports them (see otel_hakgal.logs).
        self.log_fan_out = logs.FanOutLogProcessor()
        self.logger_provider: LoggerProvider | None = None
        self.log_handler: logs.ExportHandler | None = None
        self.log_drop_counter: ObservableCounter | None = None

    def provider(self, config: Config, resource: Resource) -> TracerProvider:
        """Our TracerProvider, or the SDK one someone already set globally, with the fan-out attached once."""
        if self.tracer_provider is not None:
            if config.limits != self._limits:
                logger.warning("otel_hakgal: [limits] apply from the first setup() on; the new values are ignored")
            return self.tracer_provider
        self._limits = config.limits
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            provider = existing  # e.g. set by the launcher: join it rather than fight it
        else:
            provider = TracerProvider(resource=resource, sampler=self.sampler, span_limits=_span_limits(config))
            trace.set_tracer_provider(provider)
        provider.add_span_processor(self.fan_out)
        self.tracer_provider = provider
        return provider

    def meter_instruments(self) -> Instruments:
        """The layer's instruments, created once on the switchable meter provider."""
        if not isinstance(metrics.get_meter_provider(), MeterProvider | SwitchableMeterProvider):
            metrics.set_meter_provider(self.meter_provider)  # once: later setups only switch
        if self.instruments is None:
            self.instruments = Instruments.create(self.meter_provider)
        if self.log_drop_counter is None:
            self.log_drop_counter = logs.create_drop_counter(self.meter_provider)
        return self.instruments

    def log_provider(self, config: Config, resource: Resource) -> LoggerProvider:
        """The layer's LoggerProvider (with ``resource``, the spans' one) and its handler, made once."""
        if self.logger_provider is None:
            provider = logs.new_logger_provider(config, resource, self.meter_provider)
            provider.add_log_record_processor(self.log_fan_out)
            self.log_handler = logs.ExportHandler(provider, self.log_fan_out)
            self.logger_provider = provider
        return self.logger_provider

    def _switch_logs(self, handle: Handle | None) -> None:
        """Route log records to ``handle``'s log processors, with the handler on the root logger only then."""
        if handle is None or not handle.backends or not handle.config.logs.enabled or not handle.log_processors:
            if self.log_handler is not None:
                self.log_handler.detach()  # first: no record enters a fan-out that has nowhere to go
            self.log_fan_out.switch((), None, self.log_fan_out.bucket.rate)
            return
        settings = handle.config.logs
        self.log_fan_out.switch(handle.log_processors, handle.runtime.scrubber, settings.max_per_second)
        if self.log_handler is not None:
            self.log_handler.attach(settings.level_number)

    def switch(self, handle: Handle | None) -> None:
        """Route spans, metrics, propagation and the API to ``handle`` (``None`` or no backends: nowhere)."""
        propagators: list[TextMapPropagator] = [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
        if handle is None or not handle.backends:
            # Nothing to send to: spans are not even recorded, and no vendor header goes out.
            self.sampler.delegate = otel_sampling.ALWAYS_OFF
            self.meter_provider.switch(metrics.NoOpMeterProvider())
            propagate.set_global_textmap(CompositePropagator(propagators))
            self.fan_out.switch((), None)
            self._switch_logs(None)
            runtime.current = handle.runtime if handle is not None else Runtime.idle(self.instruments)
            self.handle = handle
            return
        config = handle.config
        self.sampler.delegate = build_sampler(config.sampling)
        self.meter_provider.switch(handle.meter_provider or metrics.NoOpMeterProvider())
        propagators += [p for parts in handle.parts for p in parts.propagators]
        propagate.set_global_textmap(CompositePropagator(propagators))
        self.fan_out.switch(handle.span_processors, handle.runtime.scrubber, config.sampling_tail)
        runtime.current = handle.runtime
        self._switch_logs(handle)  # after the runtime: records then see this configuration's service name
        self.handle = handle
        if not self._atexit_registered:
            atexit.register(_at_exit)
            self._atexit_registered = True
        if config.export.flush_on_sigterm:
            _install_sigterm_exit()


_PLUMBING = Plumbing()


# --- the handle ------------------------------------------------------------


class Handle:
    """The result of :func:`setup`: one configuration's runtime and its started backends."""

    def __init__(
        self,
        runtime: Runtime,
        backends: Mapping[str, Backend],
        parts: Sequence[Parts] = (),
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.runtime = runtime
        self.backends = dict(backends)
        self.parts = tuple(parts)
        self.span_processors = tuple(p for part in self.parts for p in part.span_processors)
        # Backends offer log processors only with logs.enabled; the handle runs what they offered.
        self.log_processors: tuple[LogRecordProcessor, ...] = tuple(
            p for part in self.parts for p in part.log_processors
        )
        self.meter_provider = meter_provider
        self._shut_down = False

    @property
    def config(self) -> Config:
        return self.runtime.config

    @overload
    def backend(self, which: str) -> Backend: ...
    @overload
    def backend(self, which: type[B]) -> B: ...
    def backend(self, which: str | type[Backend]) -> Backend:
        """A running backend, by name (``handle.backend("otlp")``) or class (``handle.backend(MemoryBackend)``)."""
        if isinstance(which, str):
            found = self.backends.get(which)
        else:
            found = next((b for b in self.backends.values() if isinstance(b, which)), None)
        if found is None:
            wanted = which if isinstance(which, str) else which.__name__
            active = ", ".join(self.backends) or "none"
            raise KeyError(f"backend {wanted!r} is not active; active: {active}")
        return found

    @property
    def active(self) -> bool:
        return not self._shut_down

    @property
    def spans_ended(self) -> int:
        """Spans this process has finished and handed to the backends, across all configurations."""
        return _PLUMBING.fan_out.spans_ended

    @property
    def log_records_emitted(self) -> int:
        """Log records this process has handed to the backends, across all configurations."""
        return _PLUMBING.log_fan_out.records_emitted

    def stats(self) -> dict[str, BackendStats]:
        """Each backend's queues (depth, capacity, drops) and send outcomes, by backend name."""
        return {name: backend.stats() for name, backend in self.backends.items()}

    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Export everything finished so far. Returns False if a backend did not finish in time."""
        timeout_ms = int((timeout_s or self.config.export.shutdown_timeout) * 1000)
        ok = all(processor.force_flush(timeout_ms) for processor in self.span_processors)
        ok = all([processor.force_flush(timeout_ms) for processor in self.log_processors]) and ok
        if self.meter_provider is not None:
            ok = self.meter_provider.force_flush(timeout_ms) and ok
        for backend in self.backends.values():
            ok = backend.force_flush(timeout_ms / 1000) and ok
        return ok

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and stop every backend, within ``timeout_s`` (default ``export.shutdown_timeout``).

        The API goes back to the idle runtime. Returns False when the backends
        did not finish in time (a backend that is down); the process can exit regardless.
        """
        with _PLUMBING.lock:
            if self._shut_down:
                return True
            self._shut_down = True
            if _PLUMBING.handle is self:
                _PLUMBING.switch(None)
        return _run_bounded(self._stop_all, timeout_s or self.config.export.shutdown_timeout)

    def _stop_all(self) -> None:
        _stop(list(self.backends.values()), self.parts, self.meter_provider)

    def __repr__(self) -> str:
        return f"<otel_hakgal.Handle backends={list(self.backends)} active={self.active}>"


def _stop(backends: Sequence[Backend], parts: Sequence[Parts], meter_provider: MeterProvider | None) -> None:
    """Shut down span and log processors, then metric readers, then the backends themselves."""
    for part in parts:
        for processor in part.span_processors:
            _quietly(processor.shutdown)
    for part in parts:
        for log_processor in part.log_processors:
            _quietly(log_processor.shutdown)
    if meter_provider is not None:
        _quietly(meter_provider.shutdown)
    else:  # readers never handed to a provider (a failed start) are shut down directly
        for part in parts:
            for reader in part.metric_readers:
                _quietly(reader.shutdown)
    for backend in backends:
        _quietly(backend.shutdown)


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:
        logger.warning("error while shutting down telemetry", exc_info=True)


def _run_bounded(work: Callable[[], None], timeout_s: float) -> bool:
    """Run ``work`` in a daemon thread and wait at most ``timeout_s`` for it."""
    thread = threading.Thread(target=work, name="otel_hakgal-shutdown", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        logger.warning("telemetry shutdown did not finish within %.1f s; unsent data is dropped", timeout_s)
        return False
    return True


# --- setup -----------------------------------------------------------------


def _at_exit() -> None:
    handle = _PLUMBING.handle
    if handle is not None:
        handle.shutdown()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM's default action skips atexit, losing queued spans; exiting
    # through SystemExit runs the flush in _at_exit.
    raise SystemExit(128 + signum)


def _install_sigterm_exit() -> None:
    """Turn SIGTERM into a normal exit, unless the app (or its server) handles SIGTERM itself."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def setup(
    config: str | os.PathLike[str] | Config | None = None,
    *,
    backends: Sequence[str] | str | None = None,
    service_name: str | None = None,
    sample_ratio: float | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Handle:
    """Configure telemetry for this process and return a :class:`Handle`.

    ``config`` is a TOML file path (default: ``$OTEL_HAKGAL_CONFIG``) or a
    ready :class:`Config`. Keyword arguments win over the environment, which
    wins over the file. ``settings`` takes any other keys, dotted
    (``{"otlp.endpoint": ...}``) or nested. Raises
    :class:`~otel_hakgal.config.ConfigError` on a bad configuration and
    :class:`BackendStartError` when a backend cannot start; either way the
    previous setup keeps running.

    Calling it again reconfigures in place: the new backends start, then the
    previous ones are flushed and stopped; no provider, processor or span is
    doubled. Calling it with an unchanged configuration, or with no arguments
    at all once something (e.g. the ``opentelemetry-instrument`` launcher)
    configured telemetry, returns the running handle.
    """
    # The stable HTTP conventions, unless the user chose: before any backend (prometheus's process
    # metrics) or the app instruments something, which fixes the choice for the process.
    default_to_stable_http()
    no_arguments = all(arg is None for arg in (config, backends, service_name, sample_ratio, settings))
    if no_arguments and _PLUMBING.handle is not None:
        return _PLUMBING.handle
    if isinstance(config, Config):
        problems = check_config(config)  # what load_config checks, for a Config built by hand
        if problems:
            raise ConfigError(problems)
        resolved = config
    else:
        overrides: dict[str, Any] = dict(settings or {})
        if backends is not None:
            overrides["backends"] = [backends] if isinstance(backends, str) else list(backends)
        if service_name is not None:
            overrides["service.name"] = service_name
        if sample_ratio is not None:
            overrides["sampling.ratio"] = sample_ratio
        resolved = load_config(config, overrides=overrides)

    log_redaction.install()  # once per process: every log record is correlated and passes the running scrubber
    with _PLUMBING.lock:
        previous = _PLUMBING.handle
        if previous is not None and previous.config == resolved:
            return previous
        handle = _start(resolved)
        try:
            _PLUMBING.switch(handle)
        except Exception as error:
            _PLUMBING.switch(previous)
            handle.shutdown()
            raise BackendStartError(None, error) from error
        if previous is not None:
            previous.shutdown()
        return handle


def _start(config: Config) -> Handle:
    """Build and start ``config``'s backends; on a failure stop what started and raise."""
    if config.disabled:
        logger.info("otel_hakgal: telemetry disabled by configuration")
        return Handle(Runtime.idle(_PLUMBING.instruments, config), {})

    # Before any exporter can fail: a receiver that is down must not log once per span.
    log_limits.install()
    resource = build_resource(config)
    # Before the backends start: the Sentry ones scrub their events with it.
    scrubber = SecretScrubber.for_config(config)
    backends: dict[str, Backend] = {}
    parts: list[Parts] = []
    failing: str | None = None
    try:
        for failing in config.backends:
            backend = backends[failing] = backend_class(failing)(config, resource)
            parts.append(backend.start())
        failing = None
        for part in parts:  # before any span reaches them: these scrub on their own threads
            for processor in part.span_processors:
                if isinstance(processor, ScrubsOnExport):
                    processor.scrub_with(scrubber)
        log_limits.install()  # again: last after the filters the vendor SDKs just imported added
        readers: list[MetricReader] = [r for p in parts for r in p.metric_readers]
        meter_provider = None
        if readers:  # shutdown_on_exit off: the handle shuts it down, bounded in time
            meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
            guard_collection_at_fork(meter_provider)
        provider = _PLUMBING.provider(config, resource)
        if config.logs.enabled and any(p.log_processors for p in parts):
            _PLUMBING.log_provider(config, provider.resource)  # the spans' resource, also a joined provider's
        running = Runtime(
            config=config,
            tracer=provider.get_tracer(INSTRUMENTATION_SCOPE, __version__, schema_url=SCHEMA_URL),
            instruments=_PLUMBING.meter_instruments(),
            backends=tuple(backends.values()),
            scrubber=scrubber,
        )
    except Exception as error:
        # A backend that raised in start() released what it took; the ones started before it are stopped.
        _stop(list(backends.values())[: len(parts)], parts, None)
        raise BackendStartError(failing, error) from error
    return Handle(running, backends, parts, meter_provider)


def active_handle() -> Handle | None:
    """The handle of the running configuration, if ``setup()`` was called."""
    return _PLUMBING.handle
