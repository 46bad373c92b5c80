"""The layer's metric instruments, created from the conventions in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    ObservableCounter,
    Observation,
    get_meter_provider,
)

from otel_hakgal.conventions import INSTRUMENTATION_SCOPE, SCHEMA_URL, Attr, Metric, MetricDef, metric_def
from otel_hakgal.tail_sampling import observe_decisions, observe_losses
from otel_hakgal.version import __version__


def _histogram(meter: Meter, definition: MetricDef) -> Histogram:
    return meter.create_histogram(
        definition.name,
        unit=definition.unit,
        description=definition.description,
        explicit_bucket_boundaries_advisory=definition.buckets,
    )


_Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _counter(meter: Meter, definition: MetricDef) -> Counter:
    return meter.create_counter(definition.name, unit=definition.unit, description=definition.description)


def _observable_counter(meter: Meter, definition: MetricDef, callback: _Callback) -> ObservableCounter:
    return meter.create_observable_counter(
        definition.name, callbacks=[callback], unit=definition.unit, description=definition.description
    )


def observe_export_drops(options: CallbackOptions) -> Iterable[Observation]:
    """``otel_hakgal.export.dropped``: what the backends dropped since the process started."""
    from otel_hakgal.backends.batching import DROPS  # imports the backends' base: not at package import

    for (backend, reason), count in DROPS.totals().items():
        yield Observation(count, {Attr.EXPORT_BACKEND: backend, Attr.ERROR_TYPE: reason})


@dataclass(frozen=True)
class Instruments:
    command_duration: Histogram
    query_duration: Histogram
    prover_duration: Histogram
    prover_runs: Counter
    cache_lookups: Counter
    llm_cost: Counter
    errors: Counter
    gen_ai_duration: Histogram
    gen_ai_tokens: Histogram
    gen_ai_inference_duration: Histogram  # the coming names (genai.emit_upcoming_names)
    gen_ai_inference_input_tokens: Histogram
    gen_ai_inference_output_tokens: Histogram
    export_dropped: ObservableCounter
    sampling_traces: ObservableCounter
    sampling_incomplete: ObservableCounter

    @classmethod
    def create(cls, provider: MeterProvider | None = None) -> Instruments:
        meter = (provider or get_meter_provider()).get_meter(INSTRUMENTATION_SCOPE, __version__, schema_url=SCHEMA_URL)
        return cls(
            command_duration=_histogram(meter, metric_def(Metric.COMMAND_DURATION)),
            query_duration=_histogram(meter, metric_def(Metric.QUERY_DURATION)),
            prover_duration=_histogram(meter, metric_def(Metric.PROVER_DURATION)),
            prover_runs=_counter(meter, metric_def(Metric.PROVER_RUNS)),
            cache_lookups=_counter(meter, metric_def(Metric.CACHE_LOOKUPS)),
            llm_cost=_counter(meter, metric_def(Metric.LLM_COST)),
            errors=_counter(meter, metric_def(Metric.ERRORS)),
            gen_ai_duration=_histogram(meter, metric_def(Metric.GEN_AI_OPERATION_DURATION)),
            gen_ai_tokens=_histogram(meter, metric_def(Metric.GEN_AI_TOKEN_USAGE)),
            gen_ai_inference_duration=_histogram(meter, metric_def(Metric.GEN_AI_INFERENCE_DURATION)),
            gen_ai_inference_input_tokens=_histogram(meter, metric_def(Metric.GEN_AI_INFERENCE_INPUT_TOKENS)),
            gen_ai_inference_output_tokens=_histogram(meter, metric_def(Metric.GEN_AI_INFERENCE_OUTPUT_TOKENS)),
            export_dropped=_observable_counter(meter, metric_def(Metric.EXPORT_DROPPED), observe_export_drops),
            sampling_traces=_observable_counter(meter, metric_def(Metric.SAMPLING_TRACES), observe_decisions),
            sampling_incomplete=_observable_counter(meter, metric_def(Metric.SAMPLING_INCOMPLETE), observe_losses),
        )
