"""Overhead of each telemetry variant on HAK-GAL's ``POST /api/command``, side by side.

Run: ``.venv/bin/python benchmarks/overhead.py`` (``--quick`` for a short smoke run).

Processes:

- one *infra* process hosts the LLM simulator (zero latency) and one loopback
  receiver per variant (OTLP/HTTP and Sentry envelopes), so receiving costs
  nobody's measured CPU;
- one *server* process per variant serves the reference app through werkzeug's
  threaded WSGI server on loopback, and on command runs in-process measurements
  (CPU per request through the Flask test client, span cost, export throughput);
- this process is the client: sequential requests (never saturating), variants
  interleaved round-robin in shuffled order every round.

Every request is ``POST /api/command {"command": "ask Is Rome a city?"}``, which
Z3 proves; after the first request the prompt and proof caches are warm (the same
for every variant).

Profiling: ``sentry-profiled`` is ``sentry`` with ``profiles_sample_rate = 1.0``
(sentry-sdk's continuous profiler, a sampler thread at 101 Hz while sampled
roots are open). With both ``sentry`` and ``sentry-profiled`` in the run, the
CPU per request of each is split into the request thread's own CPU
(``time.thread_time`` on the thread serving the request) and the whole
process's (``time.process_time``: sampler thread, span worker, transport),
with the client's think time between requests so that the sampler stops and
restarts as in service; both are printed side by side.

Prints a table and the target ratios (met / NOT met) and writes
``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _line_protocol import Child, reply

VARIANTS: tuple[str, ...] = (
    "bare",
    "otel-flask",
    "none",
    "otlp",
    "sentry",
    "sentry-profiled",
    "sentry-otlp",
    "sentry+otlp",
    "sentry-sdk-flask",
)
LAYER_BACKENDS: Mapping[str, tuple[str, ...]] = {
    "none": ("none",),
    "otlp": ("otlp",),
    "sentry": ("sentry",),
    "sentry-profiled": ("sentry",),
    "sentry-otlp": ("sentry-otlp",),
    "sentry+otlp": ("sentry", "otlp"),
}
EXPORTING = ("otlp", "sentry", "sentry-otlp", "sentry+otlp")  # backends whose export throughput is measured
COMMAND = "ask Is Rome a city?"
BODY = json.dumps({"command": COMMAND}).encode()
RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
CHILDREN_PER_TRACE = 9  # throughput traces: one root and nine children
THINK_S = 0.015  # client pause after each request
BURST = 1000  # throughput: spans per burst, each burst flushed before the next


def _receivers_for(variant: str) -> tuple[str, ...]:
    """Which receivers a variant sends to: 'otlp' and/or 'sentry'."""
    if variant in ("otlp",):
        return ("otlp",)
    if variant in ("sentry", "sentry-profiled", "sentry-otlp", "sentry-sdk-flask"):
        return ("sentry",)
    if variant == "sentry+otlp":
        return ("sentry", "otlp")
    return ()


# --- line protocol between processes ------------------------------------------------


def _spawn(*args: str) -> Child:
    """A subprocess of this script (with ``args``)."""
    return Child(__file__, *args, exit_timeout_s=15)


def _commands() -> Any:
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


# --- infra process: simulator and receivers -------------------------------------------


def serve_infra(variants: list[str]) -> None:
    from otel_hakgal.demo.simulator import LLMSimulator
    from otel_hakgal.testing import OtlpReceiver, SentryReceiver

    sim = LLMSimulator().start()
    otlp: dict[str, OtlpReceiver] = {}
    sentry: dict[str, SentryReceiver] = {}
    for variant in variants:
        wanted = _receivers_for(variant)
        if "otlp" in wanted:
            otlp[variant] = OtlpReceiver().start()
        if "sentry" in wanted:
            sentry[variant] = SentryReceiver().start()
    reply(
        {
            "llm": sim.base_url,
            "otlp": {v: r.endpoint for v, r in otlp.items()},
            "sentry": {v: r.dsn for v, r in sentry.items()},
        }
    )
    for message in _commands():
        if message["command"] == "counts":
            counts: dict[str, dict[str, int]] = {}
            for variant, receiver in otlp.items():
                counts.setdefault(variant, {})["otlp_spans"] = len(receiver.spans())
            for variant, sentry_receiver in sentry.items():
                transactions = sentry_receiver.transactions()
                entry = counts.setdefault(variant, {})
                entry["transactions"] = len(transactions)
                entry["transaction_spans"] = sum(1 + len(t.get("spans") or []) for t in transactions)
                entry["sentry_otlp_spans"] = len(sentry_receiver.otlp_spans())
            reply(counts)
        elif message["command"] == "exit":
            reply("bye")
            break
    for receiver in [*otlp.values(), *sentry.values()]:
        receiver.stop()
    sim.stop()


# --- server process: one variant ----------------------------------------------------------


class Variant:
    """The reference app wired as one variant, plus what it needs to flush."""

    def __init__(self, name: str, llm: str, otlp_endpoint: str, sentry_dsn: str) -> None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        from otel_hakgal.demo.api import create_app
        from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
        from otel_hakgal.demo.providers import Endpoints

        self.name = name
        self.null_exporter: Any = None
        self.handle: Any = None
        self.provider: Any = None
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
            self.provider = TracerProvider()
            self.provider.add_span_processor(BatchSpanProcessor(NullExporter()))
            trace.set_tracer_provider(self.provider)
            self._flush = lambda: self.provider.force_flush()
        elif name == "sentry-sdk-flask":
            import sentry_sdk
            from sentry_sdk.integrations.flask import FlaskIntegration

            # As the seed's guide configures it (profiling left off: this compares tracing).
            sentry_sdk.init(
                dsn=sentry_dsn,
                integrations=[FlaskIntegration(transaction_style="endpoint")],
                auto_enabling_integrations=False,
                traces_sample_rate=1.0,
                environment="development",
                release="unknown",
                attach_stacktrace=True,
                send_default_pii=False,
            )
            sentry_sdk.set_tag("component", "hak-gal-api")
            sentry_sdk.set_tag("system", "reasoning-engine")
            self._flush = lambda: sentry_sdk.flush(timeout=30)
        elif name in LAYER_BACKENDS:
            import otel_hakgal as hg

            settings: dict[str, Any] = {}
            if otlp_endpoint:
                settings["otlp.endpoint"] = otlp_endpoint
            if sentry_dsn:
                section = "sentry-otlp" if "sentry-otlp" in LAYER_BACKENDS[name] else "sentry"
                settings[f"{section}.dsn"] = sentry_dsn
            settings["sentry.profiles_sample_rate"] = 1.0 if name == "sentry-profiled" else 0.0
            self.handle = hg.setup(backends=list(LAYER_BACKENDS[name]), settings=settings)
            self._flush = lambda: self.handle.force_flush(30)
        elif name != "bare":
            raise ValueError(f"unknown variant {name!r}")

        assistant = KAssistant.create(Endpoints.on(llm), AssistantSettings())
        self.app = create_app(assistant)
        if name in ("bare", "sentry-sdk-flask"):
            FlaskInstrumentor.uninstrument_app(self.app)  # type: ignore[no-untyped-call]
        self.client = self.app.test_client()

    def request(self) -> None:
        response = self.client.post("/api/command", data=BODY, content_type="application/json")
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status_code}")

    def flush(self) -> None:
        self._flush()

    def dropped(self) -> int:
        """Items this process's own queues dropped (the Sentry span worker, open spans, transport queue)."""
        if self.handle is None or "sentry" not in self.handle.backends:
            return 0
        return self.handle.backend("sentry").stats().dropped

    # --- in-process measurements ---

    def cpu_per_request(self, requests: int) -> float:
        self.flush()
        start = time.process_time()
        for _ in range(requests):
            self.request()
        self.flush()  # the export work the requests caused counts too
        return (time.process_time() - start) / requests

    def cpu_split(self, requests: int) -> dict[str, float]:
        """CPU seconds per request: the request thread's own, and the whole process's (all threads).

        The test client serves each request on this thread, so ``thread_time`` is what the request
        thread paid. A pause of the client's think time between requests lets a sampler thread stop
        and restart as in service (sleeping costs no CPU).
        """
        self.flush()
        total, thread = time.process_time(), time.thread_time()
        for _ in range(requests):
            self.request()
            time.sleep(THINK_S)
        request_thread = time.thread_time() - thread
        self.flush()  # chunks and transactions the requests caused, sent by other threads, count too
        return {"request_thread_s": request_thread / requests, "total_s": (time.process_time() - total) / requests}

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

    def throughput(self, spans: int) -> dict[str, float]:
        """Export ``spans`` spans as fast as possible, in bursts of ``BURST`` spans, each flushed.

        Traces of one root and nine children. A burst stays under the default
        queue sizes (the batch processor's 2048), so a drop is a real loss, not
        a burst overflowing a queue by design.
        """
        import otel_hakgal as hg

        self.flush()
        # Only this phase's losses: the request phases before it count late spans (a portfolio's
        # losing provers end after their transaction was sent, which Sentry drops too).
        dropped_before = self.dropped()
        per_burst = BURST // (CHILDREN_PER_TRACE + 1)
        bursts = max(1, spans // BURST)
        produced = 0.0
        start = time.perf_counter()
        for _ in range(bursts):
            burst_start = time.perf_counter()
            for _ in range(per_burst):
                with hg.command("bench"):
                    for _ in range(CHILDREN_PER_TRACE):
                        with hg.step("bench"):
                            pass
            produced += time.perf_counter() - burst_start
            self.flush()
        elapsed = time.perf_counter() - start
        traces = bursts * per_burst
        return {
            "spans": traces * (CHILDREN_PER_TRACE + 1),
            "traces": traces,
            "produce_s": produced,
            "elapsed_s": elapsed,
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
            reply(variant.cpu_per_request(message["requests"]))
        elif command == "cpu_split":
            reply(variant.cpu_split(message["requests"]))
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


def received_spans(counts: Mapping[str, Mapping[str, int]], variant: str) -> int:
    entry = counts.get(variant, {})
    return entry.get("otlp_spans", 0) + entry.get("transaction_spans", 0) + entry.get("sentry_otlp_spans", 0)


class Bench:
    def __init__(self, variants: list[str]) -> None:
        self.variants = variants
        self.infra = _spawn("--infra", *variants)
        info = self.infra.ready
        self.servers: dict[str, Child] = {}
        for variant in variants:
            endpoint = info["otlp"].get(variant, "")
            dsn = info["sentry"].get(variant, "")
            args = ["--serve", variant, "--llm", info["llm"], "--otlp-endpoint", endpoint, "--sentry-dsn", dsn]
            self.servers[variant] = _spawn(*args)

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.infra.close()

    def counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = self.infra.ask("counts")
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

    def cpu(self, rounds: int, requests: int) -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {v: [] for v in self.variants}
        order = list(self.variants)
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                samples[variant].append(self.servers[variant].ask("cpu", requests=requests))
        return samples

    def cpu_split(self, variants: list[str], rounds: int, requests: int) -> dict[str, dict[str, float]]:
        """Median request-thread and total CPU per request of ``variants``, interleaved round-robin."""
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        order = list(variants)
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                samples[variant].append(self.servers[variant].ask("cpu_split", requests=requests))
        return {
            v: {key: statistics.median(s[key] for s in runs) for key in ("request_thread_s", "total_s")}
            for v, runs in samples.items()
        }

    def flush_all(self) -> dict[str, int]:
        return {v: s.ask("flush")["dropped_in_process"] for v, s in self.servers.items()}


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.0f}"


def run(quick: bool, variants: list[str], output: Path) -> dict[str, Any]:
    started = time.perf_counter()
    if quick:
        rounds, per_round, warmup, cpu_rounds, cpu_requests = 2, 3, 2, 1, 5
        span_n, span_rounds, throughput_spans = 500, 2, 500
    else:
        rounds, per_round, warmup, cpu_rounds, cpu_requests = 120, 1, 10, 3, 60
        span_n, span_rounds, throughput_spans = 1500, 12, 10000  # span_n under the BSP queue (2048)
    bench = Bench(variants)
    try:
        latency = bench.latency(rounds, per_round, warmup)
        cpu = bench.cpu(cpu_rounds, cpu_requests)
        profiling: dict[str, dict[str, float]] = {}
        if {"sentry", "sentry-profiled"} <= set(bench.servers):
            profiling = bench.cpu_split(["sentry", "sentry-profiled"], cpu_rounds + 2, cpu_requests)
        dropped_by_variant = bench.flush_all()
        time.sleep(0.5)
        delivered = bench.counts()

        span_costs: dict[str, dict[str, float]] = {}
        for variant in ("otlp", "sentry"):
            if variant in bench.servers:
                span_costs[variant] = bench.servers[variant].ask("span_cost", spans=span_n, rounds=span_rounds)
        time.sleep(0.5)

        throughput: dict[str, dict[str, Any]] = {}
        for variant in EXPORTING:
            if variant not in bench.servers:
                continue
            before = received_spans(bench.counts(), variant)
            result = bench.servers[variant].ask("throughput", spans=throughput_spans)
            deadline = time.monotonic() + 10
            received = received_spans(bench.counts(), variant) - before
            expected = result["spans"] * len(_receivers_for(variant))  # sentry+otlp sends every span twice
            while received < expected and time.monotonic() < deadline:
                time.sleep(0.05)
                received = received_spans(bench.counts(), variant) - before
            result["received"] = received
            result["expected"] = expected
            result["dropped"] = expected - received
            result["spans_per_s"] = result["spans"] / result["elapsed_s"]
            throughput[variant] = result
    finally:
        bench.close()

    bare_p50 = statistics.median(latency["bare"]) if "bare" in latency else 0.0
    bare_p99 = percentile(latency["bare"], 0.99) if "bare" in latency else 0.0
    bare_cpu = statistics.median(cpu["bare"]) if "bare" in cpu else 0.0
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        p50 = statistics.median(latency[variant])
        p99 = percentile(latency[variant], 0.99)
        cpu_s = statistics.median(cpu[variant])
        rows[variant] = {
            "p50_s": p50,
            "p99_s": p99,
            "added_p50_s": p50 - bare_p50,
            "added_p99_s": p99 - bare_p99,
            "cpu_per_request_s": cpu_s,
            "added_cpu_per_request_s": cpu_s - bare_cpu,
            "requests_timed": len(latency[variant]),
            "received": delivered.get(variant, {}),
            "dropped_in_process": dropped_by_variant.get(variant, 0),
            "throughput": throughput.get(variant),
        }

    targets = _targets(rows, span_costs, throughput)
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
        },
        "variants": rows,
        "span_cost": span_costs,
        "profiling": profiling,
        "targets": targets,
        "wall_s": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    return report


def _targets(
    rows: Mapping[str, Mapping[str, Any]],
    span_costs: Mapping[str, Mapping[str, float]],
    throughput: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, compare: str = "<=") -> None:
        met = value is not None and (value <= limit if compare == "<=" else value >= limit)
        targets.append({"target": name, "value": value, "limit": limit, "compare": compare, "met": met})

    if "otlp" in span_costs:
        cost = span_costs["otlp"]
        add("manual API span / raw span (otlp)", cost["manual_s"] / cost["raw_s"], 1.15)
    if "sentry" in span_costs:
        cost = span_costs["sentry"]
        add("manual API span / raw span (sentry)", cost["manual_s"] / cost["raw_s"], 1.15)

    def ratio(a: str, b: str, key: str) -> float | None:
        if a not in rows or b not in rows:
            return None
        denominator = rows[b][key]
        return rows[a][key] / denominator if denominator > 0 else None

    add("sentry added p50 / sentry-sdk-flask added p50", ratio("sentry", "sentry-sdk-flask", "added_p50_s"), 0.5)
    add("sentry added p50 / otlp added p50", ratio("sentry", "otlp", "added_p50_s"), 1.3)
    cpu_ratio = ratio("sentry", "sentry-sdk-flask", "cpu_per_request_s")
    add("sentry CPU/request / sentry-sdk-flask CPU/request", cpu_ratio, 1.0)
    for variant, result in throughput.items():
        rate = result["spans_per_s"] if result["dropped"] == 0 and result["dropped_in_process"] == 0 else 0.0
        add(f"{variant} export spans/s, zero drops", rate, 10_000, ">=")
    return targets


def print_report(report: Mapping[str, Any]) -> None:
    rows = report["variants"]
    header = (
        f"{'variant':<17}{'p50 us':>9}{'p99 us':>9}{'+p50 us':>9}{'+p99 us':>9}"
        f"{'CPU/req us':>12}{'+CPU us':>9}{'export spans/s':>16}{'drops':>7}"
    )
    print(f"POST /api/command {report['command']!r}; {rows[next(iter(rows))]['requests_timed']} timed requests each")
    print(header)
    print("-" * len(header))
    for variant, row in rows.items():
        tp = row["throughput"]
        rate = f"{tp['spans_per_s']:,.0f}" if tp else "-"
        drops = str(tp["dropped"] + tp["dropped_in_process"]) if tp else "-"
        print(
            f"{variant:<17}{_us(row['p50_s']):>9}{_us(row['p99_s']):>9}{_us(row['added_p50_s']):>9}"
            f"{_us(row['added_p99_s']):>9}{_us(row['cpu_per_request_s']):>12}{_us(row['added_cpu_per_request_s']):>9}"
            f"{rate:>16}{drops:>7}"
        )
    for variant, cost in report["span_cost"].items():
        print(f"span cost ({variant}): manual API {_us(cost['manual_s'])} us, raw tracer {_us(cost['raw_s'])} us")
    profiling = report.get("profiling") or {}
    if profiling:
        off, on = profiling["sentry"], profiling["sentry-profiled"]
        print("profiling (sentry, profiles_sample_rate 0 vs 1), CPU us per request:")
        print(f"  {'':<16}{'profile off':>12}{'profile on':>12}{'added':>9}")
        for key, label in (("request_thread_s", "request thread"), ("total_s", "all threads")):
            print(f"  {label:<16}{_us(off[key]):>12}{_us(on[key]):>12}{_us(on[key] - off[key]):>9}")
    print("targets:")
    for target in report["targets"]:
        value = target["value"]
        shown = "n/a" if value is None else (f"{value:,.0f}" if target["compare"] == ">=" else f"{value:.2f}")
        mark = "met" if target["met"] else "NOT met"
        print(f"  {target['target']:<52} {shown:>9} {target['compare']} {target['limit']:<7g} {mark}")
    print(f"wall time {report['wall_s']:.0f} s; JSON: {RESULTS if not report['quick'] else 'see --output'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few requests per variant (a smoke test)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset (bare is the baseline)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON result file (default {RESULTS})")
    parser.add_argument("--infra", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
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
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    report = run(args.quick, variants, args.output)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
