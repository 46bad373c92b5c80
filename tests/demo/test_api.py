"""The HTTP API over real HTTP: one ``ask`` traced end to end, bad requests, failures, timeouts."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_hakgal.conventions import RAG_DATA_SOURCE, Attr, CacheName, ErrorType, Outcome, ProverResult, SpanName
from otel_hakgal.demo import api as api_module
from otel_hakgal.demo.api import MAX_BODY_BYTES, create_app
from otel_hakgal.demo.commands import known_verbs
from otel_hakgal.demo.k_assistant import KAssistant
from otel_hakgal.demo.simulator import FaultKind, LLMSimulator
from otel_hakgal.demo.workload import post_command
from otel_hakgal.testing import TelemetryRecorder

from .conftest import serve, wait_for

RESPONSE_KEYS = {
    "chatResponse",
    "permanentKnowledge",
    "learningSuggestions",
    "llmStatus",
    "performanceMetrics",
    "status",
    "ragContext",
    "dataSources",
    "lastCommand",
}


def raw_post(base_url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, object]]:
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    connection.request("POST", "/api/command", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


def test_one_ask_is_one_trace_from_the_server_span_to_the_provers(
    api_url: str, hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator
) -> None:
    status, body = post_command(api_url, "ask Is Rome a city?")

    assert status == 200
    assert set(body) == RESPONSE_KEYS
    assert body["status"] == "success"
    assert str(body["chatResponse"]).startswith("Yes.")
    wait_for(hakgal_telemetry, lambda spans: any(s.kind is SpanKind.SERVER for s in spans))

    spans = hakgal_telemetry.spans()
    assert len({s.context.trace_id for s in spans}) == 1, "everything is one trace"
    by_id = {s.context.span_id: s for s in spans}

    def parent(span_name: str) -> str:
        span = hakgal_telemetry.span(span_name)
        assert span.parent is not None, f"{span_name} has no parent"
        return by_id[span.parent.span_id].name

    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    assert server.parent is None and server.attributes["http.route"] == "/api/command"
    command = hakgal_telemetry.span("hakgal.command ask")
    assert parent("hakgal.command ask") == server.name
    assert command.attributes[Attr.COMMAND_OUTCOME] == "success"
    assert command.attributes[Attr.COMMAND_TEXT] == "Is Rome a city?"

    query = hakgal_telemetry.span(SpanName.QUERY)
    assert parent(SpanName.QUERY) == "hakgal.command ask"
    assert query.attributes[Attr.QUERY_FORMULA] == "IstStadt(Rom)."
    assert query.attributes[Attr.QUERY_ANSWER] == "yes"
    query_children = sorted(
        (s for s in spans if s.parent and s.parent.span_id == query.context.span_id), key=lambda s: s.start_time or 0
    )
    assert [s.name for s in query_children] == [
        SpanName.RAG_RETRIEVE.format(data_source=RAG_DATA_SOURCE),  # a GenAI retrieval span
        SpanName.RAG_EXTRACT,
        "hakgal.cache prompt",
        "chat deepseek-chat",  # logicalize
        SpanName.PARSE,
        "hakgal.cache proof",
        "hakgal.prover functional",
        "hakgal.prover z3",
    ]

    logicalize = query_children[3]
    assert logicalize.kind is SpanKind.CLIENT
    assert logicalize.attributes[Attr.GEN_AI_OPERATION_NAME] == "chat"
    assert logicalize.attributes[Attr.GEN_AI_PROVIDER_NAME] == "deepseek"
    assert logicalize.attributes[Attr.GEN_AI_REQUEST_MODEL] == "deepseek-chat"
    assert logicalize.attributes[Attr.GEN_AI_RESPONSE_MODEL] == "deepseek-chat"
    assert logicalize.attributes[Attr.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert logicalize.attributes[Attr.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert logicalize.attributes[Attr.SERVER_ADDRESS] == "127.0.0.1"
    assert logicalize.status.status_code is not StatusCode.ERROR
    # The simulator saw the LLM span as the caller: trace context crossed the HTTP hop.
    logicalize_request = simulator.requests("deepseek")[-1]
    assert logicalize_request.traceparent is not None
    assert logicalize_request.traceparent.split("-")[1:3] == [
        f"{logicalize.context.trace_id:032x}",
        f"{logicalize.context.span_id:016x}",
    ]

    assert query_children[4].attributes[Attr.QUERY_FORMULA] == "IstStadt(Rom)."
    assert query_children[2].attributes[Attr.CACHE_HIT] is False
    assert query_children[5].attributes[Attr.CACHE_HIT] is False
    provers = query_children[6:]
    assert [p.attributes[Attr.PROVER_ORDER] for p in provers] == [0, 1]
    assert [p.attributes[Attr.PROVER_RESULT] for p in provers] == [ProverResult.UNKNOWN, ProverResult.PROVED]


def test_the_same_question_again_hits_both_caches_and_skips_llm_and_provers(
    api_url: str, hakgal_telemetry: TelemetryRecorder
) -> None:
    post_command(api_url, "ask What is the capital of France?")
    wait_for(hakgal_telemetry, lambda spans: any(s.kind is SpanKind.SERVER for s in spans))
    hakgal_telemetry.clear()

    status, body = post_command(api_url, "ask What is the capital of France?")

    assert status == 200 and str(body["chatResponse"]).startswith("Yes.")
    wait_for(hakgal_telemetry, lambda spans: any(s.kind is SpanKind.SERVER for s in spans))
    assert hakgal_telemetry.span("hakgal.cache prompt").attributes[Attr.CACHE_HIT] is True
    assert hakgal_telemetry.span("hakgal.cache proof").attributes[Attr.CACHE_HIT] is True
    query = hakgal_telemetry.span(SpanName.QUERY)
    direct_llm_calls = [
        s
        for s in hakgal_telemetry.spans()
        if s.parent and s.parent.span_id == query.context.span_id and s.kind is SpanKind.CLIENT
    ]
    assert direct_llm_calls == []
    assert not [s for s in hakgal_telemetry.spans() if s.name.startswith("hakgal.prover")]
    assert (
        hakgal_telemetry.counter_value(
            "hakgal.cache.lookups", {Attr.CACHE_NAME: CacheName.PROOF}, **{Attr.CACHE_HIT: True}
        )
        == 1
    )


@pytest.mark.parametrize(
    ("body", "expected_error"),
    [
        (b"ask Is Rome a city?", "not JSON"),
        (b"{}", 'missing "command"'),
        (b'["ask Is Rome a city?"]', 'missing "command"'),
        (b'{"command": 42}', "must be a string"),
        (b'{"command": null}', "must be a string"),
        (b'{"command": "   "}', "empty"),
        (b'{"command": "ask \xff\xfe"}', "UTF-8"),
        (json.dumps({"command": "ask " + "x" * MAX_BODY_BYTES}).encode(), "larger than"),
    ],
    ids=["not-json", "no-command", "json-array", "number", "null", "blank", "bad-utf8", "over-64kb"],
)
def test_bad_requests_get_400_with_a_json_error(api_url: str, body: bytes, expected_error: str) -> None:
    status, payload = raw_post(api_url, body)

    assert status == 400
    assert payload["status"] == "error"
    assert expected_error in str(payload["error"])


def test_a_body_of_exactly_64_kb_is_accepted(api_url: str) -> None:
    prefix, suffix = b'{"command": "parse ', b'"}'
    body = prefix + b"A" * (MAX_BODY_BYTES - len(prefix) - len(suffix)) + suffix
    status, payload = raw_post(api_url, body)
    assert len(body) == MAX_BODY_BYTES
    assert status == 200, payload


def test_an_unknown_verb_gets_200_and_the_valid_verbs(api_url: str, hakgal_telemetry: TelemetryRecorder) -> None:
    status, body = post_command(api_url, "frobnicate now")

    assert status == 200
    assert body["status"] == "unknown_command" and "'frobnicate'" in str(body["chatResponse"])
    assert body["validCommands"] == known_verbs()
    assert set(known_verbs()) == {
        "ask",
        "explain",
        "add_raw",
        "retract",
        "learn",
        "show",
        "status",
        "parse",
        "what_is",
        "search",
        "clearcache",
        "build_kb",
        "help",
    }
    # A command all the same (issue 14, item 13): the verb set is closed, so the span and metrics say _OTHER.
    command = hakgal_telemetry.span(SpanName.COMMAND.format(verb=ErrorType.OTHER))
    assert command.attributes[Attr.COMMAND_NAME] == ErrorType.OTHER
    assert command.attributes[Attr.COMMAND_OUTCOME] == Outcome.REJECTED
    assert command.attributes[Attr.COMMAND_TEXT] == "frobnicate now"
    assert command.status.status_code is StatusCode.UNSET and not command.events
    assert Attr.ERROR_TYPE not in command.attributes
    rejected = {Attr.COMMAND_NAME: ErrorType.OTHER, Attr.COMMAND_OUTCOME: Outcome.REJECTED}
    assert hakgal_telemetry.histogram_count("hakgal.command.duration", rejected) == 1
    assert not hakgal_telemetry.metric_points("hakgal.errors")


def test_a_server_fault_gets_500_an_error_span_and_the_server_keeps_serving(
    api_url: str, hakgal_telemetry: TelemetryRecorder
) -> None:
    status, body = post_command(api_url, "build_kb damaged.hkb")  # a data file on the server that is not UTF-8

    assert status == 500
    assert body["status"] == "error" and "UnicodeDecodeError" in str(body["error"])
    command = hakgal_telemetry.span("hakgal.command build_kb")
    assert command.status.status_code is StatusCode.ERROR
    assert command.attributes[Attr.ERROR_TYPE] == "UnicodeDecodeError"
    assert command.attributes[Attr.COMMAND_OUTCOME] == "error"
    assert [event.name for event in command.events] == ["exception"]
    assert post_command(api_url, "status")[0] == 200


def test_a_timed_out_command_ends_its_span_as_timeout_while_the_thread_runs_on(
    hakgal_telemetry: TelemetryRecorder, assistant: KAssistant, simulator: LLMSimulator
) -> None:
    base_url, stop = serve(create_app(assistant, timeouts={"ask": 0.3}))
    simulator.inject("deepseek", FaultKind.LATENCY, times=None, delay_s=0.6)
    try:
        started = time.monotonic()
        status, body = post_command(base_url, "ask Is Adam an ancestor of Eva?")
        answered_after = time.monotonic() - started
    finally:
        stop()

    assert status == 504
    assert body["status"] == "timeout" and "timed out" in str(body["error"])
    assert answered_after < 0.6, "the answer does not wait for the worker"
    command = hakgal_telemetry.span("hakgal.command ask")
    assert command.status.status_code is StatusCode.ERROR
    assert command.attributes[Attr.ERROR_TYPE] == ErrorType.TIMEOUT
    assert command.attributes[Attr.COMMAND_OUTCOME] == "timeout"
    assert command.attributes[Attr.COMMAND_TIMEOUT] == 0.3
    # The worker finishes later, still in the command's trace, under the command span.
    wait_for(hakgal_telemetry, lambda spans: any(s.name == SpanName.QUERY for s in spans), timeout_s=5)
    query = hakgal_telemetry.span(SpanName.QUERY)
    assert query.context.trace_id == command.context.trace_id
    assert query.parent is not None and query.parent.span_id == command.context.span_id
    assert (query.end_time or 0) > (command.end_time or 0)
    assert hakgal_telemetry.histogram_count("hakgal.command.duration", **{Attr.COMMAND_OUTCOME: "timeout"}) == 1


def test_api_test_endpoint(api_url: str) -> None:
    url = urlsplit(api_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    connection.request("GET", "/api/test")
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["backend_ready"] is True


def test_the_module_app_starts_the_embedded_simulator_itself(
    hakgal_telemetry: TelemetryRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(api_module.LLM_BASE_URL_ENV, raising=False)
    client = api_module.app.test_client()

    response = client.post("/api/command", json={"command": "ask What is the capital of France?"})

    assert response.status_code == 200, response.json
    assert str(response.json["chatResponse"]).startswith("Yes.")
    assert api_module._EmbeddedSimulator.instance is not None
    assert hakgal_telemetry.span("hakgal.command ask").attributes[Attr.COMMAND_OUTCOME] == "success"


def test_the_provider_url_comes_from_the_environment(
    hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(api_module.LLM_BASE_URL_ENV, simulator.base_url)
    client = create_app().test_client()

    response = client.post("/api/command", json={"command": "ask Is Rome a city?"})

    assert response.status_code == 200
    assert simulator.requests("deepseek"), "the configured simulator got the calls"


def test_a_60kb_path_is_a_404_whose_server_span_is_named_by_the_method_alone(
    api_url: str, hakgal_telemetry: TelemetryRecorder
) -> None:
    # Issue 14, item 4: no matched route, so "{method}" (HTTP conventions), not a 60,007-character name.
    url = urlsplit(api_url)
    paths = ["/" + "p" * 60 * 1024, "/.env", "/wp-login.php"]
    for path in paths:
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        connection.request("GET", path)
        assert connection.getresponse().status == 404
        connection.close()

    wait_for(hakgal_telemetry, lambda spans: sum(s.kind is SpanKind.SERVER for s in spans) == len(paths))
    servers = [s for s in hakgal_telemetry.spans() if s.kind is SpanKind.SERVER]
    assert {s.name for s in servers} == {"GET"}, "one span name for any number of scanned paths"
    longest = max(len(str(s.attributes.get("http.target") or s.attributes.get("url.path"))) for s in servers)
    assert longest == 4096, "the path itself is kept, cut by redaction.max_attribute_length"
