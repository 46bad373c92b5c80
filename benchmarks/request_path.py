"""The layer's cost on the request thread against the same telemetry written by hand with plain OpenTelemetry.

Run: ``.venv/bin/python benchmarks/request_path.py`` (``--quick`` for a short run).

One "ask" trace of 12 spans, as the reference service makes it (``hg.command`` > ``hg.query`` >
cache lookups, retrieval, three LLM calls with usage, extraction, parse, prover with result, KB
update), with its metric records (command, query and prover durations, prover runs, cache
lookups, GenAI durations, token usage and cost), made two ways in one process:

- ``layer``: through the layer's API, ``otel_hakgal.setup(backends=["otlp"])``;
- ``hand``: the same span names, kinds, attributes and metric records written with a plain
  ``TracerProvider`` (``BatchSpanProcessor`` + the OTLP exporter) and ``MeterProvider``.

Both export to one loopback :class:`~otel_hakgal.testing.OtlpReceiver` in a child process (what it keeps
costs this process no memory or garbage collection). What is measured is the
CPU time of the thread that makes the trace (``time.thread_time``): export threads and the
receiver do not count. The variants run interleaved, in alternating order, in rounds of
``--traces`` traces each; the result is the median per trace over ``--rounds`` rounds and the
ratio ``layer / hand`` (the target of issue 19: at most 1.2).

``--backends`` picks the layer's backends (a Sentry receiver runs too), ``--tail`` turns its tail sampling on.
``--only layer|hand --count N`` makes N traces of one variant after a warm-up and does nothing else,
for instruction counts under ``valgrind --tool=callgrind --separate-threads=yes`` (run it with two
values of N and subtract, to leave start-up out).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

import otel_hakgal as hg
from otel_hakgal.conventions import Attr, CacheName, Metric, ProverResult, SpanName, metric_def
from otel_hakgal.testing import OtlpReceiver, SentryReceiver

QUESTION = "Is Rome a city?"
FORMULA = "IstStadt(Rom)."
LLMS = (
    ("deepseek", "deepseek-chat", "chat"),
    ("mistral_ai", "mistral-large-latest", "chat"),
    ("gcp.gemini", "gemini-1.5-pro-latest", "generate_content"),
)
PRICES = {model: (0.27, 1.1) for _, model, _ in LLMS}  # per 1M tokens, as the hand-written code would keep them
PORT = 36841


def layer_trace() -> None:
    with hg.command("ask", text=QUESTION, timeout_s=60) as command, hg.query(QUESTION) as query:
        with hg.cache_lookup(CacheName.PROMPT) as lookup:
            lookup.miss()
        with hg.step(
            SpanName.RAG_RETRIEVE.format(data_source="hakgal.corpus"),
            attributes={
                Attr.GEN_AI_OPERATION_NAME: "retrieval",
                Attr.GEN_AI_DATA_SOURCE_ID: "hakgal.corpus",
                Attr.GEN_AI_RETRIEVAL_TOP_K: 2,
            },
        ) as retrieval:
            retrieval.set_attribute(Attr.RAG_CHUNK_COUNT, 1)
        for index, (provider, model, operation) in enumerate(LLMS):
            with hg.llm_call(
                provider,
                model,
                operation=operation,
                server_address="127.0.0.1",
                server_port=PORT,
                max_tokens=256,
                temperature=0.0,
            ) as call:
                call.record_usage(
                    input_tokens=54,
                    output_tokens=8,
                    finish_reasons=["stop"],
                    response_model=model,
                    response_id=f"chatcmpl-{index}",
                    cache_read_tokens=21,
                )
        with hg.step(SpanName.RAG_EXTRACT) as extract:
            extract.set_attribute(Attr.RAG_FACT_COUNT, 3)
        with hg.step(SpanName.PARSE, attributes={Attr.QUERY_FORMULA: FORMULA}):
            pass
        query.set_formula(FORMULA)
        with hg.cache_lookup(CacheName.PROOF) as lookup:
            lookup.miss()
        with hg.prover("z3", order=1, timeout_s=5) as run:
            run.set_result(ProverResult.PROVED, reason="assumptions and not(goal) are unsat")
        with hg.step(SpanName.KB_UPDATE, attributes={Attr.KB_OPERATION: "add"}) as update:
            update.set_attribute(Attr.KB_FACT_COUNT, 1)
        query.set_answer("yes")
    del command


class HandWritten:
    """The same trace and metric records with a plain OTel SDK tracer and meter."""

    def __init__(self, endpoint: str) -> None:
        resource = Resource.create({"service.name": "hak-gal"})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"), export_interval_millis=60_000
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        self.tracer = self.provider.get_tracer("hand-written")
        meter = self.meter_provider.get_meter("hand-written")

        def histogram(name: str) -> Any:
            definition = metric_def(name)
            return meter.create_histogram(
                name,
                unit=definition.unit,
                description=definition.description,
                explicit_bucket_boundaries_advisory=definition.buckets,
            )

        def counter(name: str) -> Any:
            definition = metric_def(name)
            return meter.create_counter(name, unit=definition.unit, description=definition.description)

        self.command_duration = histogram(Metric.COMMAND_DURATION)
        self.query_duration = histogram(Metric.QUERY_DURATION)
        self.prover_duration = histogram(Metric.PROVER_DURATION)
        self.gen_ai_duration = histogram(Metric.GEN_AI_OPERATION_DURATION)
        self.gen_ai_tokens = histogram(Metric.GEN_AI_TOKEN_USAGE)
        self.prover_runs = counter(Metric.PROVER_RUNS)
        self.cache_lookups = counter(Metric.CACHE_LOOKUPS)
        self.llm_cost = counter(Metric.LLM_COST)

    def shutdown(self) -> None:
        self.provider.shutdown()
        self.meter_provider.shutdown()

    def cache(self, name: str, hit: bool) -> None:
        with self.tracer.start_as_current_span(
            SpanName.CACHE.format(cache=name), attributes={Attr.CACHE_NAME: name}
        ) as span:
            span.set_attribute(Attr.CACHE_HIT, hit)
        self.cache_lookups.add(1, {Attr.CACHE_NAME: name, Attr.CACHE_HIT: hit})

    def llm(self, index: int, provider: str, model: str, operation: str) -> None:
        perf = time.perf_counter
        metric_attributes = {
            Attr.GEN_AI_OPERATION_NAME: operation,
            Attr.GEN_AI_PROVIDER_NAME: provider,
            Attr.GEN_AI_REQUEST_MODEL: model,
            Attr.SERVER_ADDRESS: "127.0.0.1",
            Attr.SERVER_PORT: PORT,
        }
        start = perf()
        with self.tracer.start_as_current_span(
            f"{operation} {model}",
            kind=SpanKind.CLIENT,
            attributes={
                **metric_attributes,
                Attr.GEN_AI_REQUEST_MAX_TOKENS: 256,
                Attr.GEN_AI_REQUEST_TEMPERATURE: 0.0,
            },
        ) as span:
            span.set_attribute(Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 21)
            span.set_attribute(Attr.GEN_AI_USAGE_INPUT_TOKENS, 54)
            span.set_attribute(Attr.GEN_AI_USAGE_OUTPUT_TOKENS, 8)
            span.set_attribute(Attr.GEN_AI_RESPONSE_FINISH_REASONS, ["stop"])
            span.set_attribute(Attr.GEN_AI_RESPONSE_MODEL, model)
            span.set_attribute(Attr.GEN_AI_RESPONSE_ID, f"chatcmpl-{index}")
            metric_attributes[Attr.GEN_AI_RESPONSE_MODEL] = model
            duration = perf() - start
            self.gen_ai_duration.record(duration, metric_attributes)
            self.gen_ai_tokens.record(54, {**metric_attributes, Attr.GEN_AI_TOKEN_TYPE: "input"})
            self.gen_ai_tokens.record(8, {**metric_attributes, Attr.GEN_AI_TOKEN_TYPE: "output"})
            input_price, output_price = PRICES[model]
            cost = (54 * input_price + 8 * output_price) / 1_000_000
            span.set_attribute(Attr.LLM_COST_KNOWN, True)
            span.set_attribute(Attr.LLM_COST_AMOUNT, cost)
            span.set_attribute(Attr.LLM_COST_CURRENCY, "USD")
            self.llm_cost.add(
                cost,
                {Attr.GEN_AI_PROVIDER_NAME: provider, Attr.GEN_AI_REQUEST_MODEL: model, Attr.LLM_COST_CURRENCY: "USD"},
            )

    def trace(self) -> None:
        tracer, perf = self.tracer, time.perf_counter
        command_start = perf()
        with tracer.start_as_current_span(
            SpanName.COMMAND.format(verb="ask"),
            attributes={Attr.COMMAND_NAME: "ask", Attr.COMMAND_TEXT: QUESTION, Attr.COMMAND_TIMEOUT: 60.0},
        ) as command:
            query_start = perf()
            with tracer.start_as_current_span(
                SpanName.QUERY, attributes={Attr.QUERY_TYPE: "ask", Attr.QUERY_TEXT: QUESTION}
            ) as query:
                self.cache(CacheName.PROMPT, False)
                with tracer.start_as_current_span(
                    SpanName.RAG_RETRIEVE.format(data_source="hakgal.corpus"),
                    attributes={
                        Attr.GEN_AI_OPERATION_NAME: "retrieval",
                        Attr.GEN_AI_DATA_SOURCE_ID: "hakgal.corpus",
                        Attr.GEN_AI_RETRIEVAL_TOP_K: 2,
                    },
                ) as retrieval:
                    retrieval.set_attribute(Attr.RAG_CHUNK_COUNT, 1)
                for index, (provider, model, operation) in enumerate(LLMS):
                    self.llm(index, provider, model, operation)
                with tracer.start_as_current_span(SpanName.RAG_EXTRACT) as extract:
                    extract.set_attribute(Attr.RAG_FACT_COUNT, 3)
                with tracer.start_as_current_span(SpanName.PARSE, attributes={Attr.QUERY_FORMULA: FORMULA}):
                    pass
                query.set_attribute(Attr.QUERY_FORMULA, FORMULA)
                self.cache(CacheName.PROOF, False)
                prover_start = perf()
                with tracer.start_as_current_span(
                    SpanName.PROVER.format(prover="z3"),
                    attributes={Attr.PROVER_NAME: "z3", Attr.PROVER_ORDER: 1, Attr.PROVER_TIMEOUT: 5.0},
                ) as prover:
                    prover.set_attribute(Attr.PROVER_REASON, "assumptions and not(goal) are unsat")
                    prover.set_attribute(Attr.PROVER_RESULT, ProverResult.PROVED.value)
                    attributes = {Attr.PROVER_NAME: "z3", Attr.PROVER_RESULT: ProverResult.PROVED.value}
                    self.prover_duration.record(perf() - prover_start, attributes)
                    self.prover_runs.add(1, attributes)
                with tracer.start_as_current_span(SpanName.KB_UPDATE, attributes={Attr.KB_OPERATION: "add"}) as update:
                    update.set_attribute(Attr.KB_FACT_COUNT, 1)
                query.set_attribute(Attr.QUERY_ANSWER, "yes")
                query.set_attribute(Attr.QUERY_OUTCOME, "success")
                self.query_duration.record(
                    perf() - query_start, {Attr.QUERY_TYPE: "ask", Attr.QUERY_OUTCOME: "success"}
                )
            command.set_attribute(Attr.COMMAND_OUTCOME, "success")
            self.command_duration.record(
                perf() - command_start, {Attr.COMMAND_NAME: "ask", Attr.COMMAND_OUTCOME: "success"}
            )


def serve_receivers(connection: Connection) -> None:
    """In the child process: an OTLP and a Sentry receiver, their endpoint and DSN sent back, until told to stop."""
    otlp, sentry = OtlpReceiver().start(), SentryReceiver().start()
    connection.send((otlp.endpoint, sentry.dsn))
    connection.recv()
    otlp.stop()
    sentry.stop()


def per_trace(make: Callable[[], None], traces: int) -> float:
    """Seconds of this thread's CPU per trace."""
    start = time.thread_time()
    for _ in range(traces):
        make()
    return (time.thread_time() - start) / traces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--traces", type=int, default=20, help="traces per variant and round")
    parser.add_argument("--only", choices=("layer", "hand"), help="one variant, --count traces, nothing measured")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--backends", default="otlp", help="the layer's backends, comma-separated")
    parser.add_argument("--tail", action="store_true", help="the layer with tail sampling on (every trace kept)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (30 if args.quick else 200)

    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=serve_receivers, args=(theirs,), daemon=True)
    child.start()
    endpoint, dsn = ours.recv()
    settings: dict[str, object] = {
        "otlp.endpoint": endpoint,
        "sentry.dsn": dsn,
        "sentry-otlp.dsn": dsn,
        "logs.enabled": False,
    }
    if args.tail:
        settings.update({"sampling.tail.enabled": True, "sampling.tail.keep_ratio": 1.0})
    handle = hg.setup(backends=args.backends.split(","), settings=settings)
    hand = HandWritten(endpoint)
    variants = {"layer": layer_trace, "hand": hand.trace}
    try:
        for make in variants.values():  # warm-up: caches, first-use imports
            per_trace(make, 50)
        if args.only:
            per_trace(variants[args.only], args.count)
            return 0
        results: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        for index in range(rounds):
            for name in order if index % 2 == 0 else order[::-1]:
                results[name].append(per_trace(variants[name], args.traces))
            if index % 10 == 9:  # what the export threads queued: handed over between rounds, not during
                handle.force_flush(30)
                hand.provider.force_flush()
        layer, written = (statistics.median(results[name]) for name in ("layer", "hand"))
        print(f"request-thread CPU per 12-span trace, median of {rounds} rounds x {args.traces} traces:")
        label = args.backends + (", tail sampling" if args.tail else "")
        print(f"  layer ({label}): {layer * 1e6:8.1f} us  ({layer * 1e6 / 12:.1f} us per span)")
        print(f"  hand-written OTel:  {written * 1e6:8.1f} us  ({written * 1e6 / 12:.1f} us per span)")
        print(f"  ratio layer / hand: {layer / written:.2f}  (target <= 1.2)")
        handle.force_flush(30)
        hand.provider.force_flush()
    finally:
        handle.shutdown()
        hand.shutdown()
        ours.send("stop")
        child.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
