import threading

from opentelemetry import trace

import otel_hakgal as hg
from otel_hakgal.conventions import SpanName
from otel_hakgal.testing import TelemetryRecorder


def test_trace_continues_in_a_worker_thread(hakgal_telemetry: TelemetryRecorder) -> None:
    done = threading.Event()

    def work() -> None:
        with hg.query("in the worker"):
            pass
        done.set()

    with hg.command("ask"):
        hg.start_thread(work, name="command-worker")
        assert done.wait(5)
    command = hakgal_telemetry.span("hakgal.command ask")
    query = hakgal_telemetry.span(SpanName.QUERY)
    assert query.context.trace_id == command.context.trace_id
    assert query.parent.span_id == command.context.span_id


def test_parallel_threads_share_one_parent(hakgal_telemetry: TelemetryRecorder) -> None:
    barrier = threading.Barrier(3, timeout=5)  # proves the three calls really overlap

    def extract(provider: str) -> str:
        with hg.llm_call(provider, f"{provider}-model"):
            barrier.wait()
        return provider

    with hg.step(SpanName.RAG_EXTRACT), hg.ContextThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(extract, ["deepseek", "mistral_ai", "gcp.gemini"]))
    assert results == ["deepseek", "mistral_ai", "gcp.gemini"]
    parent = hakgal_telemetry.span(SpanName.RAG_EXTRACT)
    calls = [s for s in hakgal_telemetry.spans() if s.name.startswith("chat ")]
    assert len(calls) == 3
    assert {c.parent.span_id for c in calls} == {parent.context.span_id}
    assert {c.context.trace_id for c in calls} == {parent.context.trace_id}


def test_bound_function_can_run_in_two_threads_at_once(hakgal_telemetry: TelemetryRecorder) -> None:
    barrier = threading.Barrier(2, timeout=5)

    def step() -> None:
        with hg.step(SpanName.PARSE):
            barrier.wait()

    with hg.command("parse"):
        bound = hg.bind_context(step)
    threads = [threading.Thread(target=bound) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    command = hakgal_telemetry.span("hakgal.command parse")
    parses = hakgal_telemetry.spans_named(SpanName.PARSE)
    assert len(parses) == 2 and all(p.parent.span_id == command.context.span_id for p in parses)


def test_propagation_headers_carry_the_current_trace(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.llm_call("deepseek", "deepseek-chat") as call:
        headers = hg.propagation_headers()
        span_context = call.span.get_span_context()
    trace_id, span_id = f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
    version, sent_trace_id, sent_span_id, flags = headers["traceparent"].split("-")
    assert (version, sent_trace_id, sent_span_id) == ("00", trace_id, span_id)
    assert int(flags, 16) & 0x01  # sampled
    assert not trace.get_current_span().is_recording()
    assert hg.propagation_headers() == {}  # no span, no baggage: nothing to send


def test_trace_started_in_a_flask_request_continues_in_threads(hakgal_telemetry: TelemetryRecorder) -> None:
    import json
    import urllib.request

    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask("context-test")
    hg.instrument_flask(app)

    def answer() -> None:
        with hg.query("q"):
            pass

    def ask_provider(provider: str) -> None:
        with hg.llm_call(provider, "m"):
            pass

    @app.post("/api/command")
    def run_command() -> dict[str, str]:
        with hg.command("ask"):
            hg.start_thread(answer).join(5)
            with hg.ContextThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(ask_provider, ["a", "b"]))
        return {"status": "success"}

    server = make_server("127.0.0.1", 0, app, threaded=True)
    hg.start_thread(server.serve_forever)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_port}/api/command",
            data=json.dumps({"command": "ask x"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        server.shutdown()
    spans = hakgal_telemetry.spans()
    server_span = next(s for s in spans if s.kind.name == "SERVER")
    command = hakgal_telemetry.span("hakgal.command ask")
    assert command.parent.span_id == server_span.context.span_id
    children = [s for s in spans if s.name in (SpanName.QUERY, "chat m")]
    assert len(children) == 3
    assert {s.context.trace_id for s in children} == {server_span.context.trace_id}
    assert {s.parent.span_id for s in children} == {command.context.span_id}
