import http.client
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import otel_hakgal as hg
from otel_hakgal import context
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


# --- instrument_flask: a request no route matches is named by its method (issue 14, item 4) ---

LIMIT = 256  # redaction.max_attribute_length for these tests: the 60 KB path must come out cut to it
LONG_PATH = "/" + "a" * 60 * 1024


@pytest.fixture
def limited_telemetry() -> Iterator[TelemetryRecorder]:
    recorder = TelemetryRecorder(settings={"redaction.max_attribute_length": LIMIT})
    try:
        yield recorder
    finally:
        recorder.close()


def _flask_app(name: str) -> Any:
    from flask import Flask

    app = Flask(name)

    @app.get("/hello/<who>")
    def hello(who: str) -> dict[str, str]:
        return {"hello": who}

    return app


def _request(port: int, method: str, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _server_spans(recorder: TelemetryRecorder, count: int) -> list[ReadableSpan]:
    deadline = time.monotonic() + 5
    while len(spans := [s for s in recorder.spans() if s.kind is SpanKind.SERVER]) < count:
        assert time.monotonic() < deadline, [s.name for s in recorder.spans()]
        time.sleep(0.01)
    return spans


def _serve_and_request(app: Any, recorder: TelemetryRecorder, requests: list[tuple[str, str]]) -> list[ReadableSpan]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        statuses = [_request(server.server_port, method, path) for method, path in requests]
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == [200, 404, 404, 405, 404], statuses
    return sorted(_server_spans(recorder, len(requests)), key=lambda s: s.start_time or 0)


REQUESTS = [
    ("GET", "/hello/world"),  # routed: "{method} {route}"
    ("GET", LONG_PATH),  # no route: the method alone, whatever the path
    ("GET", "/wp-admin/setup.php"),  # a scan: the same name, so no new span name per path
    ("POST", "/hello/world"),  # a route, but not for this method: no route matched
    ("FROBNICATE", "/x"),  # not an HTTP method the conventions know: "HTTP"
]
EXPECTED_NAMES = ["GET /hello/<who>", "GET", "GET", "POST", "HTTP"]


def test_instrument_flask_names_a_request_without_a_route_by_its_method(
    limited_telemetry: TelemetryRecorder,
) -> None:
    app = hg.instrument_flask(_flask_app("unrouted-names"))
    assert hg.instrument_flask(app) is app  # once: a second call adds nothing
    assert app.before_request_funcs[None].count(context._name_unrouted_request) == 1

    spans = _serve_and_request(app, limited_telemetry, REQUESTS)

    assert [s.name for s in spans] == EXPECTED_NAMES
    long_request = spans[1]
    target = long_request.attributes.get("http.target") or long_request.attributes.get("url.path")
    assert isinstance(target, str) and len(target) == LIMIT and LONG_PATH.startswith(target)
    assert all(len(s.name) <= LIMIT for s in limited_telemetry.spans())
    assert "http.route" not in long_request.attributes


def test_instrument_flask_names_unrouted_requests_also_when_the_launcher_instrumented_first(
    limited_telemetry: TelemetryRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor, _InstrumentedFlask

    monkeypatch.setattr(_InstrumentedFlask, "_request_hook", None)  # no hook left from another test
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()  # what opentelemetry-instrument does: every Flask app is born instrumented
    try:
        app = _flask_app("launcher-instrumented")
    finally:
        instrumentor.uninstrument()
    assert app._is_instrumented_by_opentelemetry
    hg.instrument_flask(app)

    spans = _serve_and_request(app, limited_telemetry, REQUESTS)

    assert [s.name for s in spans] == EXPECTED_NAMES


def test_flask_request_hook_names_unrouted_requests_for_apps_the_launcher_instruments_alone(
    limited_telemetry: TelemetryRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor, _InstrumentedFlask

    # uninstrument() leaves the hook on the class: monkeypatch puts the old value back afterwards.
    monkeypatch.setattr(_InstrumentedFlask, "_request_hook", None)
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument(request_hook=context.flask_request_hook)  # what a distro can pass
    try:
        app = _flask_app("hook-only")  # an app that never calls instrument_flask
    finally:
        instrumentor.uninstrument()

    spans = _serve_and_request(app, limited_telemetry, REQUESTS)

    assert [s.name for s in spans] == EXPECTED_NAMES


def test_http_span_method() -> None:
    assert [context.http_span_method(m) for m in ("GET", "post", "PATCH", "FOO", "")] == [
        "GET",
        "POST",
        "PATCH",
        "HTTP",
        "HTTP",
    ]
