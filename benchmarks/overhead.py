"""Overhead of each telemetry variant on HAK-GAL's ``POST /api/command``, against fair anchors, side by side.

Run: ``.venv/bin/python benchmarks/overhead.py`` (``--quick`` for a short smoke run).

Variants (each in its own server process, serving the same reference app):

- ``bare``: no telemetry; ``otel-flask``: only the OTel Flask instrumentation to a null exporter;
- the anchors (``_anchors.py``), the same span tree written by hand without the layer:
  ``otel-by-hand`` (plain OTel API and SDK: the same spans, attributes and metric records, batch
  processor, OTLP exporter) and ``sentry-native-tree`` (native sentry-sdk: a transaction per request
  from ``FlaskIntegration``, ``sentry_sdk.start_span`` per operation with the same data). They are
  swapped in for the ``otel_hakgal`` names the demo modules imported, in their server process only;
  ``--parity VARIANT`` prints what one variant records for a few requests, so a test can check that
  both anchors do the layer's work (same spans, attribute keys, metric records);
- the layer's backends: ``none``, ``otlp``, ``sentry``, ``sentry-profiled`` (``sentry`` with
  ``profiles_sample_rate = 1.0``), ``sentry-otlp``, ``sentry+otlp``.

Processes: one *infra* process hosts the LLM simulator (zero latency) and the loopback receivers
(OTLP/HTTP and Sentry ingest, counting what arrives), so receiving costs nobody's measured CPU; one
*server* process per variant serves the app through werkzeug on loopback and, on command, runs
in-process measurements through the Flask test client; this process is the client: variants
interleaved round-robin in shuffled order every round.

Measurements:

- latency: sequential HTTP requests (never saturating), p50 / p99;
- CPU per request, split (every round interleaves all variants; ratios are taken per round and
  reported as median and min-max): *request path*, the CPU of the threads that serve the request
  (the request thread, the command's worker thread, the RAG pool), that is the whole process's CPU
  minus that of the long-lived background threads (batch processors, Sentry's transport and span
  worker, metric readers, profiler), read per thread (``pthread_getcpuclockid``); and *total*, the
  whole process including the export the requests caused (flushed at the end). ``added`` is the
  variant's figure minus ``bare``'s in the same round: the instrumentation's own cost;
- span cost: the layer's manual API span against a raw tracer span, same provider;
- export throughput: traces of one root and nine children in flushed bursts; spans per second (wall)
  and delivered spans per CPU-second (the whole process, producing and exporting);
- saturation (real gunicorn, ``-w 2 --threads 4``, each variant): a closed loop finds the saturation
  throughput, then an open loop runs at it and at 1.5x it; traces answered against traces received
  (root spans, transactions) after a bounded wait, plus what the workers' own queues counted as
  dropped (``Handle.stats()``, written when each worker exits);
- round trip: receivers that answer after 100 ms (hosted Sentry's round trip), gunicorn with each of
  ``sentry``, ``sentry-otlp``, ``otlp`` and ``sentry-native-tree`` at 50 requests/s for 14 s, and
  ``sentry`` at the saturation rate; delivered against produced after a bounded flush.

Prints a table and the target ratios (met / NOT met) and writes ``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _line_protocol import Child, reply

VARIANTS: tuple[str, ...] = (
    "bare",
    "otel-flask",
    "otel-by-hand",
    "sentry-native-tree",
    "none",
    "otlp",
    "sentry",
    "sentry-profiled",
    "sentry-otlp",
    "sentry+otlp",
)
ANCHORS = ("otel-by-hand", "sentry-native-tree")
LAYER_BACKENDS: Mapping[str, tuple[str, ...]] = {
    "none": ("none",),
    "otlp": ("otlp",),
    "sentry": ("sentry",),
    "sentry-profiled": ("sentry",),
    "sentry-otlp": ("sentry-otlp",),
    "sentry+otlp": ("sentry", "otlp"),
}
LAYER_TARGETED = ("none", "otlp", "sentry", "sentry-otlp", "sentry+otlp")  # "the layer, any backend"
# Backends whose export throughput is measured (the anchors for comparison).
EXPORTING = ("otlp", "sentry", "sentry-otlp", "sentry+otlp", "otel-by-hand", "sentry-native-tree")
SATURATION_VARIANTS = ("otlp", "sentry", "sentry-otlp", "sentry+otlp", "otel-by-hand", "sentry-native-tree")
ROUND_TRIP_VARIANTS = ("sentry", "sentry-otlp", "otlp", "sentry-native-tree")
ROUND_TRIP_S = 0.1  # a realistic round trip to hosted Sentry
ROUND_TRIP_RATE = 50.0  # requests (traces) per second
COMMAND = "ask Is Rome a city?"
BODY = json.dumps({"command": COMMAND}).encode()
RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CHILDREN_PER_TRACE = 9  # throughput traces: one root and nine children
THINK_S = 0.015  # client pause after each request
BURST = 1000  # throughput: spans per burst, each burst flushed before the next
GUNICORN_WORKERS, GUNICORN_THREADS = 2, 4


def _receivers_for(variant: str) -> tuple[str, ...]:
    """Which receivers a variant sends to: 'otlp' and/or 'sentry'."""
    if variant in ("otlp", "otel-by-hand"):
        return ("otlp",)
    if variant in ("sentry", "sentry-profiled", "sentry-otlp", "sentry-native-tree"):
        return ("sentry",)
    if variant == "sentry+otlp":
        return ("sentry", "otlp")
    return ()


# --- line protocol between processes ------------------------------------------------


def _spawn(*args: str, env: Mapping[str, str] | None = None) -> Child:
    """A subprocess of this script (with ``args``)."""
    return Child(__file__, *args, env=env, exit_timeout_s=15)


def _commands() -> Any:
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


# --- infra process: simulator and counting receivers ---------------------------------


def _counting_receivers() -> tuple[type, type]:
    """Receivers that count what arrives (spans, root spans, transactions, client reports) and keep nothing."""
    from otel_hakgal.testing import OtlpReceiver, SentryReceiver

    class CountingOtlp(OtlpReceiver):
        def __init__(self) -> None:
            super().__init__()
            self.counted = {"otlp_spans": 0, "otlp_roots": 0}

        def _record(self, path: str, body: bytes) -> tuple[int, bytes]:
            answer = super()._record(path, body)
            with self._lock:
                self.counted["otlp_spans"] += len(self._spans)
                self.counted["otlp_roots"] += sum(1 for s in self._spans if not s.parent_span_id)
                self._spans.clear()
                self._points.clear()
                self._logs.clear()
            return answer

    class CountingSentry(SentryReceiver):
        def __init__(self) -> None:
            super().__init__()
            self.counted = {"transactions": 0, "transaction_spans": 0, "sentry_otlp_spans": 0, "sentry_otlp_roots": 0}
            self.discarded: dict[str, int] = {}

        def _record(self, path: str, body: bytes, headers: dict[str, str]) -> int:
            answer = super()._record(path, body, headers)
            with self._lock:
                for envelope in self._envelopes:
                    for item in envelope.items:
                        if item.type == "transaction":
                            self.counted["transactions"] += 1
                            self.counted["transaction_spans"] += 1 + len(item.json.get("spans") or [])
                        elif item.type == "span":  # gen_ai.* spans of a transaction, sent apart as v2 span items
                            self.counted["transaction_spans"] += len((item.json or {}).get("items") or [])
                        elif item.type == "client_report":  # what the SDK dropped, and why
                            for lost in item.json.get("discarded_events") or []:
                                reason = f"{lost.get('reason')}/{lost.get('category')}"
                                self.discarded[reason] = self.discarded.get(reason, 0) + int(lost.get("quantity", 0))
                self.counted["sentry_otlp_spans"] += len(self._otlp_spans)
                self.counted["sentry_otlp_roots"] += sum(1 for s in self._otlp_spans if not s.parent_span_id)
                self._envelopes.clear()
                self._otlp_spans.clear()
                self._otlp_logs.clear()
            return answer

    return CountingOtlp, CountingSentry


def serve_infra(variants: list[str]) -> None:
    from otel_hakgal.demo.simulator import LLMSimulator

    counting_otlp, counting_sentry = _counting_receivers()
    sim = LLMSimulator().start()
    otlp: dict[str, Any] = {}
    sentry: dict[str, Any] = {}

    def add(name: str, variant: str, delay_s: float = 0.0) -> dict[str, str]:
        wanted = _receivers_for(variant)
        if "otlp" in wanted:
            otlp[name] = counting_otlp().start()
        if "sentry" in wanted:
            sentry[name] = counting_sentry().start()
        for receiver in (otlp.get(name), sentry.get(name)):
            if receiver is not None and delay_s:
                receiver.fail(delay_s=delay_s)  # every request answered after the round trip
        return {
            "otlp": otlp[name].endpoint if name in otlp else "",
            "sentry": sentry[name].dsn if name in sentry else "",
        }

    endpoints = {variant: add(variant, variant) for variant in variants}
    reply({"llm": sim.base_url, "endpoints": endpoints})
    for message in _commands():
        if message["command"] == "counts":
            counts: dict[str, dict[str, Any]] = {}
            for name, receiver in otlp.items():
                with receiver._lock:
                    counts.setdefault(name, {}).update(receiver.counted)
            for name, sentry_receiver in sentry.items():
                with sentry_receiver._lock:
                    entry = counts.setdefault(name, {})
                    entry.update(sentry_receiver.counted)
                    entry["client_reports"] = dict(sentry_receiver.discarded)
            reply(counts)
        elif message["command"] == "add":
            reply(add(message["name"], message["variant"], message.get("delay_s", 0.0)))
        elif message["command"] == "exit":
            reply("bye")
            break
    for receiver in [*otlp.values(), *sentry.values()]:
        receiver.stop()
    sim.stop()


def received_spans(counts: Mapping[str, Mapping[str, Any]], name: str) -> int:
    entry = counts.get(name, {})
    return int(entry.get("otlp_spans", 0) + entry.get("transaction_spans", 0) + entry.get("sentry_otlp_spans", 0))


def received_traces(counts: Mapping[str, Mapping[str, Any]], name: str, variant: str) -> int:
    """Traces that arrived whole at every receiver of ``variant`` (the fewest over its receivers)."""
    entry = counts.get(name, {})
    per_receiver = []
    for kind in _receivers_for(variant):
        if kind == "otlp":
            per_receiver.append(int(entry.get("otlp_roots", 0)))
        elif variant == "sentry-otlp":
            per_receiver.append(int(entry.get("sentry_otlp_roots", 0)))
        else:
            per_receiver.append(int(entry.get("transactions", 0)))
    return min(per_receiver) if per_receiver else 0


# --- server process: one variant ----------------------------------------------------------


def _thread_clocks(exclude: int) -> dict[tuple[int, int | None], float]:
    """CPU seconds of every other live thread of this process, by (ident, native id)."""
    clocks: dict[tuple[int, int | None], float] = {}
    for thread in threading.enumerate():
        if thread.ident is None or thread.ident == exclude:
            continue
        try:
            clocks[(thread.ident, thread.native_id)] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):  # it just ended
            continue
    return clocks


class Variant:
    """The reference app wired as one variant, plus what it needs to flush.

    ``memory``: record in memory instead of exporting (the parity check): the layer's ``memory``
    backend, ``otel-by-hand`` with in-memory exporter and reader.
    """

    def __init__(self, name: str, llm: str, otlp_endpoint: str, sentry_dsn: str, *, memory: bool = False) -> None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        from otel_hakgal.demo.api import create_app
        from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
        from otel_hakgal.demo.providers import Endpoints

        self.name = name
        self.null_exporter: Any = None
        self.handle: Any = None
        self.anchor: Any = None
        self.memory: dict[str, Any] = {}
        self.api: Any = None  # what the app's code calls: otel_hakgal, or an anchor's namespace
        self._flush: Callable[[], None] = lambda: None
        if name == "otel-flask":
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

            class NullExporter(SpanExporter):
                exported = 0

                def export(self, spans: Any) -> SpanExportResult:
                    NullExporter.exported += len(spans)
                    return SpanExportResult.SUCCESS

            self.null_exporter = NullExporter
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(NullExporter()))
            trace.set_tracer_provider(provider)
            self._flush = lambda: provider.force_flush()
        elif name in ANCHORS:
            from _anchors import OtelByHand, SentryNativeTree, install

            if name == "sentry-native-tree":
                self.anchor = SentryNativeTree(sentry_dsn)
            elif memory:
                from opentelemetry.sdk.metrics.export import InMemoryMetricReader
                from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

                self.memory = {"spans": InMemorySpanExporter(), "metrics": InMemoryMetricReader()}
                self.anchor = OtelByHand(span_exporter=self.memory["spans"], metric_reader=self.memory["metrics"])
            else:
                self.anchor = OtelByHand(otlp_endpoint)
            install(self.anchor.namespace)  # this process only: the demo now calls the anchor
            self.api = self.anchor.namespace
            self._flush = lambda: self.anchor.flush(30)
        elif name in LAYER_BACKENDS or name == "memory":
            from _served import layer_settings

            import otel_hakgal as hg

            settings = layer_settings(name, otlp_endpoint, sentry_dsn)
            settings["sentry.profiles_sample_rate"] = 1.0 if name == "sentry-profiled" else 0.0
            backends = ["memory"] if name == "memory" else list(LAYER_BACKENDS[name])
            self.handle = hg.setup(backends=backends, settings=settings)
            self.api = hg
            self._flush = lambda: self.handle.force_flush(30)
        elif name != "bare":
            raise ValueError(f"unknown variant {name!r}")

        assistant = KAssistant.create(Endpoints.on(llm), AssistantSettings())
        self.app = create_app(assistant)
        if name == "bare":
            FlaskInstrumentor.uninstrument_app(self.app)  # type: ignore[no-untyped-call]
        self.client = self.app.test_client()

    def request(self) -> None:
        response = self.client.post("/api/command", data=BODY, content_type="application/json")
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status_code}")

    def flush(self) -> None:
        self._flush()

    def dropped(self) -> int:
        """Items this process's own queues dropped (every backend of the layer)."""
        if self.handle is None:
            return 0
        return sum(stats.dropped for stats in self.handle.stats().values())

    # --- in-process measurements ---

    def cpu(self, requests: int) -> dict[str, float]:
        """CPU seconds per request: the request path's (see the module doc) and the whole process's.

        The test client serves each request on this thread; the command's worker thread and the RAG
        pool's threads end with the request. Threads alive after the requests are the background
        ones: their CPU is taken out of the process's. A pause of the client's think time between
        requests lets background work (a profiler's sampler) run as in service.
        """
        self.flush()
        me = threading.get_ident()
        before = _thread_clocks(me)
        total = time.process_time()
        for _ in range(requests):
            self.request()
            time.sleep(THINK_S)
        time.sleep(0.02)  # the last command's threads have exited
        after = _thread_clocks(me)
        process = time.process_time() - total
        background = sum(cpu - before.get(key, 0.0) for key, cpu in after.items())
        self.flush()  # the export the requests caused, by other threads, counts in the total
        return {
            "request_path_s": (process - background) / requests,
            "total_s": (time.process_time() - total) / requests,
        }

    def span_cost(self, spans: int, rounds: int) -> dict[str, float]:
        """Seconds per span: the layer's manual API (``hg.step``) against the raw tracer, same provider.

        The spans are children of one open root, as inside a request: what a
        span costs the thread that makes it, not the export its root's end
        sets off (that is measured by the throughput).
        """
        import otel_hakgal as hg
        from otel_hakgal import runtime

        tracer = runtime.current.tracer
        manual: list[float] = []
        raw: list[float] = []
        perf = time.perf_counter

        def timed(open_span: Callable[[], Any], per_span: list[float]) -> Callable[[], None]:
            def run() -> None:
                with tracer.start_as_current_span("bench.request"):
                    start = perf()
                    for _ in range(spans):
                        with open_span():
                            pass
                    per_span.append((perf() - start) / spans)

            return run

        run_raw = timed(lambda: tracer.start_as_current_span("bench.step"), raw)
        run_manual = timed(lambda: hg.step("bench"), manual)

        for index in range(rounds):  # alternating which goes first
            for run in (run_raw, run_manual) if index % 2 == 0 else (run_manual, run_raw):
                run()
                self.flush()
        return {"manual_s": statistics.median(manual), "raw_s": statistics.median(raw)}

    def _producer(self) -> Callable[[], None]:
        """One throughput trace: a root and ``CHILDREN_PER_TRACE`` children, as this variant writes them."""
        if self.name == "sentry-native-tree":
            import sentry_sdk

            def native() -> None:
                with sentry_sdk.start_transaction(op="hakgal.command", name="hakgal.command bench"):
                    for _ in range(CHILDREN_PER_TRACE):
                        with sentry_sdk.start_span(op="bench", name="bench"):
                            pass

            return native
        api = self.api

        def through_api() -> None:
            with api.command("bench"):
                for _ in range(CHILDREN_PER_TRACE):
                    with api.step("bench"):
                        pass

        return through_api

    def throughput(self, spans: int) -> dict[str, float]:
        """Export ``spans`` spans as fast as possible, in bursts of ``BURST`` spans, each flushed.

        Traces of one root and nine children. A burst stays under the default
        queue sizes (the batch processor's 2048), so a drop is a real loss, not
        a burst overflowing a queue by design.
        """
        self.flush()
        # Only this phase's losses: the request phases before it count late spans (a portfolio's
        # losing provers end after their transaction was sent, which Sentry drops too).
        dropped_before = self.dropped()
        produce = self._producer()
        per_burst = BURST // (CHILDREN_PER_TRACE + 1)
        bursts = max(1, spans // BURST)
        produced = 0.0
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(bursts):
            burst_start = time.perf_counter()
            for _ in range(per_burst):
                produce()
            produced += time.perf_counter() - burst_start
            self.flush()
        elapsed = time.perf_counter() - start
        traces = bursts * per_burst
        return {
            "spans": traces * (CHILDREN_PER_TRACE + 1),
            "traces": traces,
            "produce_s": produced,
            "elapsed_s": elapsed,
            "cpu_s": time.process_time() - cpu,
            "dropped_in_process": self.dropped() - dropped_before,
        }


def serve_variant(name: str, llm: str, otlp_endpoint: str, sentry_dsn: str) -> None:
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on stderr
    variant = Variant(name, llm, otlp_endpoint, sentry_dsn)
    server = make_server("127.0.0.1", 0, variant.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reply({"port": server.server_port, "pid": os.getpid()})
    for message in _commands():
        command = message["command"]
        if command == "cpu":
            reply(variant.cpu(message["requests"]))
        elif command == "span_cost":
            reply(variant.span_cost(message["spans"], message["rounds"]))
        elif command == "throughput":
            reply(variant.throughput(message["spans"]))
        elif command == "flush":
            variant.flush()
            exported = variant.null_exporter.exported if variant.name == "otel-flask" else None
            reply({"dropped_in_process": variant.dropped(), "null_exported": exported})
        elif command == "exit":
            server.shutdown()
            variant.flush()
            if variant.handle is not None:
                variant.handle.shutdown()
            reply("bye")
            break


# --- parity: the anchors record what the layer records ------------------------------------

SENTRY_OWN_DATA = ("thread.", "sentry.")  # span data sentry-sdk adds by itself


def _otel_summary(spans: Sequence[Any], metrics_data: Any) -> dict[str, Any]:
    traces: dict[int, list[Any]] = {}
    for span in spans:
        traces.setdefault(span.context.trace_id, []).append(span)
    ordered = sorted(traces.values(), key=lambda group: min(s.start_time for s in group))
    summary_traces = [sorted([s.name, sorted(s.attributes or {})] for s in group) for group in ordered]
    points: dict[str, int] = {}
    records: dict[str, int] = {}
    for resource_metrics in metrics_data.resource_metrics if metrics_data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name.startswith("otel_hakgal."):  # the layer's own health metrics
                    continue
                data_points = list(metric.data.data_points)
                points[metric.name] = points.get(metric.name, 0) + len(data_points)
                if data_points and hasattr(data_points[0], "bucket_counts"):
                    records[metric.name] = records.get(metric.name, 0) + sum(int(p.count) for p in data_points)
    return {"traces": summary_traces, "metric_points": points, "histogram_records": records}


def parity(name: str, requests: int) -> dict[str, Any]:
    """What ``name`` records for ``requests`` requests: per trace, span names and attribute keys; metrics.

    ``memory`` is the layer (its memory backend); ``otel-by-hand`` records in memory too;
    ``sentry-native-tree`` sends to a loopback Sentry receiver (per transaction: its children's
    descriptions and data keys, without the keys sentry-sdk adds itself).
    """
    from otel_hakgal.demo.simulator import LLMSimulator
    from otel_hakgal.testing import SentryReceiver

    with LLMSimulator() as simulator, SentryReceiver() as receiver:
        variant = Variant(name, simulator.base_url, "", receiver.dsn, memory=True)
        for _ in range(requests):
            variant.request()
        variant.flush()
        if name == "memory":
            from otel_hakgal.backends.memory import MemoryBackend

            backend = variant.handle.backend(MemoryBackend)
            return _otel_summary(backend.spans(), backend.metrics())
        if name == "otel-by-hand":
            return _otel_summary(
                variant.memory["spans"].get_finished_spans(), variant.memory["metrics"].get_metrics_data()
            )
        receiver.wait_for("transaction", requests, timeout_s=20)
        traces = []
        for envelope in receiver.envelopes():
            transactions = [item.json for item in envelope.items if item.type == "transaction"]
            if not transactions:
                continue
            transaction = transactions[0]
            spans = transaction.get("spans") or []
            children = [[span.get("description") or "", _own(span.get("data"))] for span in spans]
            for item in envelope.items:  # the transaction's gen_ai.* spans, sent apart (v2 span items)
                if item.type == "span":
                    children += [[span.get("name") or "", _own(span.get("attributes"))] for span in item.json["items"]]
            traces.append(
                {
                    "start": transaction.get("start_timestamp"),
                    "transaction": transaction.get("transaction"),
                    "children": sorted(children),
                }
            )
        return {"transactions": sorted(traces, key=lambda t: str(t["start"]))}


def _own(data: Mapping[str, Any] | None) -> list[str]:
    """The keys of a Sentry span's data (or v2 attributes) without those sentry-sdk adds by itself."""
    return sorted(key for key in data or {} if not key.startswith(SENTRY_OWN_DATA))


def compare_parity(layer: Mapping[str, Any], by_hand: Mapping[str, Any], native: Mapping[str, Any]) -> dict[str, Any]:
    """Do the anchors do the layer's work? Same traces (span names, attribute keys), same metric records.

    ``otel-by-hand`` must match exactly. ``sentry-native-tree``: per trace, the same span names below
    the root (the transaction), each with at least the layer's attribute keys as data.
    """
    problems: list[str] = []
    if layer["traces"] != by_hand["traces"]:
        problems.append("otel-by-hand: traces differ from the layer's (span names or attribute keys)")
    if layer["metric_points"] != by_hand["metric_points"]:
        problems.append(f"otel-by-hand: metric points {by_hand['metric_points']} != layer {layer['metric_points']}")
    if layer["histogram_records"] != by_hand["histogram_records"]:
        problems.append("otel-by-hand: histogram records differ")
    layer_traces = layer["traces"]
    native_traces = native["transactions"]
    if len(native_traces) != len(layer_traces):
        problems.append(f"sentry-native-tree: {len(native_traces)} transactions for {len(layer_traces)} traces")
    for index, (ours, theirs) in enumerate(zip(layer_traces, native_traces, strict=False)):
        roots = [span for span in ours if span[0].startswith("POST ")]
        children = [span for span in ours if span not in roots]
        names = sorted(name for name, _ in children)
        native_names = sorted(name for name, _ in theirs["children"])
        if names != native_names:
            problems.append(f"sentry-native-tree trace {index}: spans {native_names} != layer {names}")
            continue
        native_keys: dict[str, list[set[str]]] = {}
        for name, keys in theirs["children"]:
            native_keys.setdefault(name, []).append(set(keys))
        for name, keys in children:
            if not any(set(keys) <= candidate for candidate in native_keys[name]):
                problems.append(f"sentry-native-tree trace {index}: {name} lacks some of {keys}")
    spans_per_trace = [len(trace) for trace in layer_traces]
    return {
        "ok": not problems,
        "problems": problems,
        "traces": len(layer_traces),
        "spans_per_trace": spans_per_trace,
        "metric_points": layer["metric_points"],
    }


PARITY_VARIANTS = ("memory", "otel-by-hand", "sentry-native-tree")  # "memory": the layer


def run_parity(requests: int) -> dict[str, Any]:
    """Each of the layer, ``otel-by-hand`` and ``sentry-native-tree`` in a fresh process; their comparison."""
    summaries = {}
    for name in PARITY_VARIANTS:
        child = _spawn("--parity", name, "--parity-requests", str(requests))
        summaries[name] = child.ready
        child.close()
    return compare_parity(*(summaries[name] for name in PARITY_VARIANTS))


# --- the client ------------------------------------------------------------------------


def timed_request(port: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    connection.request("POST", "/api/command", body=BODY, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status} from port {port}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Bench:
    def __init__(self, variants: list[str]) -> None:
        self.variants = variants
        self.infra = _spawn("--infra", *variants)
        info = self.infra.ready
        self.llm: str = info["llm"]
        self.servers: dict[str, Child] = {}
        for variant in variants:
            endpoints = info["endpoints"][variant]
            args = ["--serve", variant, "--llm", self.llm, "--otlp-endpoint", endpoints["otlp"]]
            self.servers[variant] = _spawn(*args, "--sentry-dsn", endpoints["sentry"])

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.infra.close()

    def counts(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = self.infra.ask("counts")
        return result

    def latency(self, rounds: int, per_round: int, warmup: int) -> dict[str, list[float]]:
        ports = {v: s.ready["port"] for v, s in self.servers.items()}
        for variant in self.variants:
            for _ in range(warmup):
                timed_request(ports[variant])
        samples: dict[str, list[float]] = {v: [] for v in self.variants}
        order = list(self.variants)
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                for _ in range(per_round):
                    samples[variant].append(timed_request(ports[variant]))
                    time.sleep(THINK_S)  # the client does not saturate: background work gets its turn
        return samples

    def cpu(self, rounds: int, requests: int) -> list[dict[str, dict[str, float]]]:
        """Per round (every variant once, in shuffled order): request-path and total CPU per request."""
        result: list[dict[str, dict[str, float]]] = []
        order = list(self.variants)
        for _ in range(rounds):
            random.shuffle(order)
            result.append({variant: self.servers[variant].ask("cpu", requests=requests) for variant in order})
        return result

    def flush_all(self) -> dict[str, int]:
        return {v: s.ask("flush")["dropped_in_process"] for v, s in self.servers.items()}

    def throughput(self, variant: str, spans: int) -> dict[str, Any]:
        before = received_spans(self.counts(), variant)
        result: dict[str, Any] = self.servers[variant].ask("throughput", spans=spans)
        expected = result["spans"] * len(_receivers_for(variant))  # sentry+otlp sends every span twice
        deadline = time.monotonic() + 10
        received = received_spans(self.counts(), variant) - before
        while received < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            received = received_spans(self.counts(), variant) - before
        result["received"] = received
        result["expected"] = expected
        result["dropped"] = expected - received
        result["spans_per_s"] = result["spans"] / result["elapsed_s"]
        result["delivered_spans_per_cpu_s"] = received / len(_receivers_for(variant)) / result["cpu_s"]
        return result


# --- real gunicorn: saturation and the round trip ------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(port: int) -> int:
    """One command; its HTTP status, or 0 when it got no answer."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/api/command", body=BODY, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        connection.close()
        return int(response.status)
    except OSError:
        return 0


class Gunicorn:
    """The reference app under ``gunicorn -w 2 --threads 4`` as one variant (see ``_served.py``)."""

    def __init__(self, variant: str, endpoints: Mapping[str, str], llm: str, directory: str, quick: bool) -> None:
        from _served import GUNICORN_CONFIG

        self.directory = directory
        self.port = _free_port()
        config = Path(directory, "gunicorn.conf.py")
        config.write_text(GUNICORN_CONFIG)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_", "HAKGAL_"))}
        env.update(
            {
                "PYTHONPATH": str(HERE),
                "HAKGAL_BENCH_VARIANT": variant,
                "HAKGAL_BENCH_OTLP": endpoints.get("otlp", ""),
                "HAKGAL_BENCH_DSN": endpoints.get("sentry", ""),
                "HAKGAL_BENCH_DIR": directory,
                "HAKGAL_LLM_BASE_URL": llm,
            }
        )
        if quick:  # short phases: export sooner than every 5 s (the layer and the SDK read it alike)
            env["OTEL_BSP_SCHEDULE_DELAY"] = "500"
        argv = [
            str(BIN / "gunicorn"),
            *("-c", str(config)),
            *("-w", str(GUNICORN_WORKERS), "-k", "gthread", "--threads", str(GUNICORN_THREADS)),
            *("-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "40"),
            "_served:wsgi_app()",
        ]
        self.log = Path(directory, "gunicorn.log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, env=env, cwd=str(HERE), stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text(errors='replace')[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"gunicorn not listening: {self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM (each worker flushes, bounded, and writes its stats); the workers' stats."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return [json.loads(path.read_text()) for path in Path(self.directory).glob("stats-*.json")]


def closed_loop(port: int, concurrency: int, duration_s: float) -> dict[str, float]:
    """``concurrency`` clients, each sending the next request when the last is answered: the saturation rate."""
    stop = time.monotonic() + duration_s
    answered = [0] * concurrency

    def client(index: int) -> None:
        while time.monotonic() < stop:
            answered[index] += _post(port) != 0

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    return {"answered": sum(answered), "rate": sum(answered) / elapsed}


def open_loop(port: int, rate: float, duration_s: float) -> dict[str, Any]:
    """Requests at ``rate`` per second for ``duration_s`` (arrivals do not wait for answers)."""
    count = max(1, round(rate * duration_s))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one() -> None:
        start = time.perf_counter()
        status = _post(port)
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(time.perf_counter() - start)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=96) as pool:
        for index in range(count):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one)
        sent_s = time.monotonic() - start
    elapsed = time.monotonic() - start
    answered = sum(n for status, n in statuses.items() if status)
    return {
        "offered_rate": rate,
        "sent": count,
        "answered": answered,
        "statuses": {str(k): v for k, v in statuses.items()},
        "send_s": sent_s,
        "achieved_rate": answered / elapsed,
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
    }


def _warm(port: int, requests: int) -> int:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return sum(status != 0 for status in pool.map(lambda _: _post(port), range(requests)))


class Served:
    """A gunicorn case: its receivers in the infra process, produced and received traces so far."""

    def __init__(self, infra: Child, llm: str, name: str, variant: str, quick: bool, delay_s: float = 0.0) -> None:
        self.infra, self.name, self.variant = infra, name, variant
        endpoints = infra.ask("add", name=name, variant=variant, delay_s=delay_s)
        self._directory = tempfile.TemporaryDirectory()
        self.gunicorn = Gunicorn(variant, endpoints, llm, self._directory.name, quick)
        self.produced = 0

    def received(self) -> int:
        return received_traces(self.infra.ask("counts"), self.name, self.variant)

    def client_reports(self) -> dict[str, int]:
        reports: dict[str, int] = self.infra.ask("counts").get(self.name, {}).get("client_reports", {})
        return reports

    def settle(self, timeout_s: float) -> int:
        """Wait (bounded) until every answered request's trace arrived; the traces received."""
        deadline = time.monotonic() + timeout_s
        received = self.received()
        while received < self.produced and time.monotonic() < deadline:
            time.sleep(0.25)
            received = self.received()
        return received

    def finish(self) -> dict[str, Any]:
        try:
            workers = self.gunicorn.stop()
            time.sleep(0.5)
            return {
                "received_after_exit": self.received(),
                "dropped_in_process": sum(sum((w.get("dropped") or {}).values()) for w in workers),
                "spans_ended": sum(w.get("spans_ended", 0) for w in workers) if workers else None,
                "workers_reporting": len(workers),
                "client_reports": self.client_reports(),
            }
        finally:
            self._directory.cleanup()


def saturation_case(infra: Child, llm: str, variant: str, quick: bool) -> dict[str, Any]:
    phase_s = 2.0 if quick else 10.0
    settle_s = 4.0 if quick else 12.0
    served = Served(infra, llm, f"saturation:{variant}", variant, quick)
    result: dict[str, Any] = {"variant": variant}
    try:
        served.gunicorn.wait_ready()
        served.produced += _warm(served.gunicorn.port, 16)
        found = closed_loop(served.gunicorn.port, 3 * GUNICORN_WORKERS * GUNICORN_THREADS // 2, phase_s)
        served.produced += int(found["answered"])
        result["saturation_rate"] = found["rate"]
        deficit = served.produced - served.settle(settle_s)
        result["lost_before"] = deficit
        for label, factor in (("at_saturation", 1.0), ("at_1.5x", 1.5)):
            load = open_loop(served.gunicorn.port, found["rate"] * factor, phase_s)
            served.produced += load["answered"]
            lost = served.produced - served.settle(settle_s)
            load["lost_traces"] = lost - deficit
            deficit = lost
            result[label] = load
    finally:
        result.update(served.finish())
    result["produced_traces"] = served.produced
    result["lost_after_exit"] = served.produced - result["received_after_exit"]
    return result


def round_trip_case(infra: Child, llm: str, variant: str, rate: float, quick: bool) -> dict[str, Any]:
    """Receivers answering after ``ROUND_TRIP_S``; requests at ``rate`` for ~14 s; delivered after a bounded flush."""
    duration_s = 3.0 if quick else 14.0
    flush_s = 3.0 if quick else 10.0
    served = Served(infra, llm, f"round-trip:{variant}:{rate:.0f}", variant, quick, delay_s=ROUND_TRIP_S)
    result: dict[str, Any] = {"variant": variant, "rate": rate, "duration_s": duration_s, "flush_s": flush_s}
    try:
        served.gunicorn.wait_ready()
        served.produced += _warm(served.gunicorn.port, 8)
        load = open_loop(served.gunicorn.port, rate, duration_s)
        served.produced += load["answered"]
        result["load"] = load
        result["delivered_at_end_of_load"] = served.received()
        result["delivered"] = served.settle(flush_s)
    finally:
        result.update(served.finish())
    result["produced"] = served.produced
    return result


# --- the run ----------------------------------------------------------------------------


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.0f}"


CPU_KEYS = ("request_path_s", "total_s")


def _cpu_rows(rounds: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Median CPU per request of each variant, and added over ``bare`` (per round, then the median)."""
    rows: dict[str, dict[str, float]] = {}
    for variant in rounds[0]:
        row: dict[str, float] = {}
        for key in CPU_KEYS:
            row[key] = statistics.median(r[variant][key] for r in rounds)
            if "bare" in rounds[0]:
                row[f"added_{key}"] = statistics.median(r[variant][key] - r["bare"][key] for r in rounds)
        rows[variant] = row
    return rows


def _round_ratios(
    rounds: Sequence[Mapping[str, Mapping[str, float]]], a: str, b: str, key: str
) -> dict[str, Any] | None:
    """a's added ``key`` over b's (each minus bare's in the same round): the ratio of the medians over rounds,
    and the spread of the per-round ratios (quartiles, min, max)."""
    if not rounds or a not in rounds[0] or b not in rounds[0] or "bare" not in rounds[0]:
        return None
    added_a = [r[a][key] - r["bare"][key] for r in rounds]
    added_b = [r[b][key] - r["bare"][key] for r in rounds]
    denominator = statistics.median(added_b)
    if denominator <= 0:
        return None
    per_round = sorted(x / y for x, y in zip(added_a, added_b, strict=True) if y > 0)
    if not per_round:
        return None
    return {
        "value": statistics.median(added_a) / denominator,
        "quartiles": [percentile(per_round, 0.25), percentile(per_round, 0.75)],
        "min_max": [per_round[0], per_round[-1]],
        "rounds": len(per_round),
    }


def run(quick: bool, variants: list[str], output: Path, served: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    if quick:
        rounds, per_round, warmup, cpu_rounds, cpu_requests = 2, 3, 2, 3, 10
        span_n, span_rounds, throughput_spans, parity_requests = 500, 2, 1000, 3
    else:
        rounds, per_round, warmup, cpu_rounds, cpu_requests = 100, 1, 10, 15, 30
        span_n, span_rounds, throughput_spans, parity_requests = 1500, 12, 10000, 4  # span_n under the BSP queue
    parity_result = run_parity(parity_requests)
    bench = Bench(variants)
    saturation: dict[str, dict[str, Any]] = {}
    round_trip: list[dict[str, Any]] = []
    try:
        latency = bench.latency(rounds, per_round, warmup)
        cpu_rounds_data = bench.cpu(cpu_rounds, cpu_requests)
        dropped_by_variant = bench.flush_all()
        time.sleep(0.5)
        delivered = bench.counts()

        span_costs: dict[str, dict[str, float]] = {}
        for variant in ("otlp", "sentry"):
            if variant in bench.servers:
                span_costs[variant] = bench.servers[variant].ask("span_cost", spans=span_n, rounds=span_rounds)
        time.sleep(0.5)

        throughput = {v: bench.throughput(v, throughput_spans) for v in EXPORTING if v in bench.servers}
        if served:
            for variant in SATURATION_VARIANTS:
                if variant in variants:
                    saturation[variant] = saturation_case(bench.infra, bench.llm, variant, quick)
            for variant in ROUND_TRIP_VARIANTS:
                if variant in variants:
                    round_trip.append(round_trip_case(bench.infra, bench.llm, variant, ROUND_TRIP_RATE, quick))
            if "sentry" in saturation:
                rate = saturation["sentry"]["saturation_rate"]
                round_trip.append(round_trip_case(bench.infra, bench.llm, "sentry", rate, quick))
    finally:
        bench.close()

    bare_p50 = statistics.median(latency["bare"]) if "bare" in latency else 0.0
    bare_p99 = percentile(latency["bare"], 0.99) if "bare" in latency else 0.0
    cpu_rows = _cpu_rows(cpu_rounds_data)
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        p50 = statistics.median(latency[variant])
        p99 = percentile(latency[variant], 0.99)
        rows[variant] = {
            "p50_s": p50,
            "p99_s": p99,
            "added_p50_s": p50 - bare_p50,
            "added_p99_s": p99 - bare_p99,
            **cpu_rows[variant],
            "requests_timed": len(latency[variant]),
            "received": delivered.get(variant, {}),
            "dropped_in_process": dropped_by_variant.get(variant, 0),
            "throughput": throughput.get(variant),
        }

    targets = _targets(cpu_rounds_data, span_costs, throughput, saturation, round_trip)
    report = {
        "command": COMMAND,
        "quick": quick,
        "settings": {
            "latency_rounds": rounds,
            "requests_per_round": per_round,
            "cpu_rounds": cpu_rounds,
            "cpu_requests": cpu_requests,
            "span_cost_spans": span_n,
            "throughput_spans": throughput_spans,
            "gunicorn": f"-w {GUNICORN_WORKERS} -k gthread --threads {GUNICORN_THREADS}",
            "round_trip_s": ROUND_TRIP_S,
        },
        "parity": parity_result,
        "variants": rows,
        "cpu_rounds": cpu_rounds_data,
        "span_cost": span_costs,
        "saturation": saturation,
        "round_trip": round_trip,
        "targets": targets,
        "wall_s": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    return report


def _targets(
    cpu_rounds: Sequence[Mapping[str, Mapping[str, float]]],
    span_costs: Mapping[str, Mapping[str, float]],
    throughput: Mapping[str, Mapping[str, Any]],
    saturation: Mapping[str, Mapping[str, Any]],
    round_trip: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, compare: str = "<=", spread: Any = None) -> None:
        met = value is not None and (value <= limit if compare == "<=" else value >= limit)
        targets.append(
            {"target": name, "value": value, "limit": limit, "compare": compare, "met": met, "spread": spread}
        )

    def add_ratio(name: str, a: str, b: str, key: str, limit: float) -> None:
        found = _round_ratios(cpu_rounds, a, b, key)
        add(name, found["value"] if found else None, limit, spread=found)

    # 1-4: added CPU per request (over bare, per round), against the anchors.
    for backend in LAYER_TARGETED:
        add_ratio(f"1. {backend}: request-path CPU / otel-by-hand", backend, "otel-by-hand", "request_path_s", 1.2)
    add_ratio("2. sentry: request-path CPU / sentry-native-tree", "sentry", "sentry-native-tree", "request_path_s", 0.6)
    add_ratio("3. sentry: total CPU / sentry-native-tree", "sentry", "sentry-native-tree", "total_s", 1.0)
    add_ratio("4. sentry-otlp: total CPU / otel-by-hand", "sentry-otlp", "otel-by-hand", "total_s", 1.1)
    # 5: gunicorn at its saturation rate: nothing lost; beyond it, nothing lost silently.
    for variant in LAYER_TARGETED:
        if variant == "none":
            continue
        case = saturation.get(variant)
        lost = None if case is None else case["at_saturation"]["lost_traces"]
        add(f"5. {variant}: traces lost at saturation (gunicorn)", lost, 0)
        silent = None
        if case is not None:
            silent = case["lost_after_exit"] if case["lost_after_exit"] > 0 and case["dropped_in_process"] == 0 else 0
        add(f"5. {variant}: traces lost uncounted (1.5x saturation)", silent, 0)
    # 6: the manual API against a raw span.
    for backend in ("otlp", "sentry"):
        cost = span_costs.get(backend)
        add(f"6. {backend}: manual API span / raw span", cost["manual_s"] / cost["raw_s"] if cost else None, 1.15)
    # 7: export throughput.
    for backend in ("otlp", "sentry-otlp"):
        result = throughput.get(backend)
        rate = None
        if result is not None:
            rate = result["spans_per_s"] if result["dropped"] == 0 and result["dropped_in_process"] == 0 else 0.0
        add(f"7. {backend}: export spans/s, zero drops", rate, 15_000, ">=")
    ours, theirs = throughput.get("sentry"), throughput.get("sentry-native-tree")
    efficiency = None
    if ours and theirs and theirs["delivered_spans_per_cpu_s"] > 0:
        efficiency = ours["delivered_spans_per_cpu_s"] / theirs["delivered_spans_per_cpu_s"]
    add("7. sentry: delivered spans per CPU-s / sentry-native-tree", efficiency, 1.0, ">=")
    # 8: a 100 ms round trip, sentry at the saturation rate.
    at_saturation = [case for case in round_trip if case["variant"] == "sentry" and case["rate"] != ROUND_TRIP_RATE]
    share = None
    if at_saturation and at_saturation[0]["produced"]:
        share = at_saturation[0]["delivered"] / at_saturation[0]["produced"]
    add("8. sentry: delivered share, 100 ms round trip, saturation rate", share, 1.0, ">=")
    return targets


def print_report(report: Mapping[str, Any]) -> None:
    rows = report["variants"]
    parity = report["parity"]
    print(
        f"parity (layer vs anchors, {parity['traces']} requests, spans per trace {parity['spans_per_trace']}): "
        + ("same spans, attribute keys and metric records" if parity["ok"] else "; ".join(parity["problems"]))
    )
    print(f"POST /api/command {report['command']!r}; {rows[next(iter(rows))]['requests_timed']} timed requests each")
    print("CPU us per request (medians over interleaved rounds; + = minus bare in the same round)")
    header = (
        f"{'variant':<19}{'p50 us':>8}{'+p50':>7}{'req-path':>10}{'+req':>7}{'total':>8}{'+total':>8}"
        f"{'spans/s':>9}{'spans/CPU-s':>12}{'drops':>6}"
    )
    print(header)
    print("-" * len(header))
    for variant, row in rows.items():
        tp = row["throughput"]
        rate = f"{tp['spans_per_s']:,.0f}" if tp else "-"
        efficiency = f"{tp['delivered_spans_per_cpu_s']:,.0f}" if tp else "-"
        drops = str(tp["dropped"] + tp["dropped_in_process"]) if tp else "-"
        print(
            f"{variant:<19}{_us(row['p50_s']):>8}{_us(row['added_p50_s']):>7}"
            f"{_us(row['request_path_s']):>10}{_us(row.get('added_request_path_s')):>7}"
            f"{_us(row['total_s']):>8}{_us(row.get('added_total_s')):>8}{rate:>9}{efficiency:>12}{drops:>6}"
        )
    for variant, cost in report["span_cost"].items():
        print(f"span cost ({variant}): manual API {_us(cost['manual_s'])} us, raw tracer {_us(cost['raw_s'])} us")
    saturation = report.get("saturation") or {}
    if saturation:
        print(f"saturation (gunicorn {report['settings']['gunicorn']}): traces answered vs received")
        print(
            f"  {'variant':<19}{'sat req/s':>10}{'at: req/s':>10}{'lost':>6}{'1.5x: req/s':>12}{'lost':>6}"
            f"{'lost at exit':>13}{'counted drops':>14}  client reports"
        )
        for variant, case in saturation.items():
            at, over = case["at_saturation"], case["at_1.5x"]
            print(
                f"  {variant:<19}{case['saturation_rate']:>10.0f}{at['achieved_rate']:>10.0f}{at['lost_traces']:>6}"
                f"{over['achieved_rate']:>12.0f}{over['lost_traces']:>6}{case['lost_after_exit']:>13}"
                f"{case['dropped_in_process']:>14}  {case['client_reports'] or '-'}"
            )
    round_trip = report.get("round_trip") or []
    if round_trip:
        print(f"round trip {report['settings']['round_trip_s'] * 1000:.0f} ms (gunicorn): traces delivered / produced")
        print(
            f"  {'variant':<19}{'req/s':>7}{'produced':>9}{'end of load':>12}{'after flush':>12}{'after exit':>11}"
            f"{'counted drops':>14}  client reports"
        )
        for case in round_trip:
            print(
                f"  {case['variant']:<19}{case['rate']:>7.0f}{case['produced']:>9}"
                f"{case['delivered_at_end_of_load']:>12}{case['delivered']:>12}{case['received_after_exit']:>11}{case['dropped_in_process']:>14}"
                f"  {case['client_reports'] or '-'}"
            )
    print("targets (CPU: ratio of the medians of added CPU over rounds [quartiles of the per-round ratios]):")
    for target in report["targets"]:
        value = target["value"]
        shown = "n/a" if value is None else (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}")
        spread = target.get("spread")
        shown_spread = "[{:.2f}-{:.2f}]".format(*spread["quartiles"]) if spread else ""
        mark = "met" if target["met"] else "NOT met"
        print(
            f"  {target['target']:<62} {shown:>8} {shown_spread:<12} {target['compare']} {target['limit']:<7g} {mark}"
        )
    print(f"wall time {report['wall_s']:.0f} s; JSON: {RESULTS if not report['quick'] else 'see --output'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few requests per variant (a smoke test)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset (bare is the baseline)")
    parser.add_argument("--no-gunicorn", action="store_true", help="leave out the saturation and round-trip cases")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON result file (default {RESULTS})")
    parser.add_argument("--infra", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--parity", help=argparse.SUPPRESS)
    parser.add_argument("--parity-requests", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--llm", help=argparse.SUPPRESS)
    parser.add_argument("--otlp-endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--sentry-dsn", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.infra is not None:
        serve_infra(args.infra)
        return 0
    if args.serve:
        serve_variant(args.serve, args.llm, args.otlp_endpoint, args.sentry_dsn)
        return 0
    if args.parity:
        reply(parity(args.parity, args.parity_requests))
        for message in _commands():
            if message["command"] == "exit":
                reply("bye")
                break
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    report = run(args.quick, variants, args.output, served=not args.no_gunicorn)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
