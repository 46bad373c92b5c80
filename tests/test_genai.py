"""GenAI conventions: captured messages per the JSON schemas, cuts and scrubbing that keep them JSON,
``server.port`` and ``error.type`` on the GenAI metrics, the retrieval span, and one record per LLM
call when the official openai instrumentation wraps the same call."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.trace import SpanKind

import otel_hakgal as hg
from otel_hakgal import genai
from otel_hakgal.conventions import (
    GEN_AI_TRUNCATION_MARKER,
    INSTRUMENTATION_SCOPE,
    RAG_DATA_SOURCE,
    Attr,
    GenAIOperation,
    Metric,
)
from otel_hakgal.demo.api import create_app
from otel_hakgal.demo.k_assistant import KAssistant
from otel_hakgal.demo.providers import DeepSeekProvider, Endpoints
from otel_hakgal.demo.rag import Corpus
from otel_hakgal.demo.simulator import FaultKind, LLMSimulator
from otel_hakgal.demo.workload import run_workload
from otel_hakgal.redaction import SecretScrubber
from otel_hakgal.testing import OtlpReceiver, TelemetryRecorder
from tests.demo.conftest import FAST_SETTINGS, serve
from tests.support.processes import VENV_BIN, ServerProcess, clean_env, free_port

SCHEMAS = Path(__file__).parent / "fixtures" / "genai_schemas"
SCHEMA_OF = {
    Attr.GEN_AI_INPUT_MESSAGES: "gen-ai-input-messages.json",
    Attr.GEN_AI_OUTPUT_MESSAGES: "gen-ai-output-messages.json",
    Attr.GEN_AI_SYSTEM_INSTRUCTIONS: "gen-ai-system-instructions.json",
}
SECRET = "sk-" + "a1B2c3D4e5F6g7H8i9J0"


def validate(key: str, text: object) -> Any:
    """The attribute parsed, after checking it against its schema (output messages: ``finish_reason`` too)."""
    assert isinstance(text, str)
    value = json.loads(text)
    schema = json.loads((SCHEMAS / SCHEMA_OF[key]).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(value)
    if key == Attr.GEN_AI_OUTPUT_MESSAGES:
        assert all(isinstance(message.get("finish_reason"), str) for message in value)
    return value


@pytest.fixture
def capturing() -> Iterator[TelemetryRecorder]:
    recorder = TelemetryRecorder(settings={"genai.capture_message_content": True})
    try:
        yield recorder
    finally:
        recorder.close()


# --- item 1: the schemas ---------------------------------------------------------------


def test_a_demo_run_with_content_capture_validates_every_message_attribute(capturing: TelemetryRecorder) -> None:
    with LLMSimulator() as simulator:
        assistant = KAssistant.create(Endpoints.on(simulator.base_url), FAST_SETTINGS)
        base_url, stop = serve(create_app(assistant))
        try:
            run_workload(base_url, simulator)
        finally:
            stop()
    llm_spans = [
        s for s in capturing.spans() if s.kind is SpanKind.CLIENT and Attr.GEN_AI_PROVIDER_NAME in s.attributes
    ]
    assert len(llm_spans) >= 5
    seen = {key: 0 for key in SCHEMA_OF}
    for span in llm_spans:
        for key in SCHEMA_OF:
            if key in span.attributes:
                validate(key, span.attributes[key])
                seen[key] += 1
    assert all(seen.values()), seen  # each attribute was recorded, and every one validated
    providers = {
        s.attributes[Attr.GEN_AI_PROVIDER_NAME] for s in llm_spans if Attr.GEN_AI_SYSTEM_INSTRUCTIONS in s.attributes
    }
    assert "gcp.gemini" in providers  # Gemini sends its system prompt apart: recorded apart too


def test_the_system_prompt_goes_to_system_instructions(capturing: TelemetryRecorder) -> None:
    with hg.llm_call("deepseek", "deepseek-chat") as call:
        call.record_usage(3, 2, finish_reasons=["length"])
        call.record_messages(
            [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hauptstadt?"}], ["Paris"]
        )
    attrs = capturing.span("chat deepseek-chat").attributes
    assert validate(Attr.GEN_AI_SYSTEM_INSTRUCTIONS, attrs[Attr.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be terse."}
    ]
    assert validate(Attr.GEN_AI_INPUT_MESSAGES, attrs[Attr.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Hauptstadt?"}]}
    ]
    assert validate(Attr.GEN_AI_OUTPUT_MESSAGES, attrs[Attr.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris"}], "finish_reason": "length"}
    ]


@pytest.mark.parametrize("limit", [120, 300, 1000, 4096])
def test_long_prompts_are_cut_in_their_contents_and_stay_valid_json(limit: int) -> None:
    recorder = TelemetryRecorder(
        settings={"genai.capture_message_content": True, "redaction.max_attribute_length": limit}
    )
    try:
        long_text = 'Zitat "x" \\ und\nZeilen ' * 400 + "Ende"
        with hg.llm_call("deepseek", "deepseek-chat") as call:
            call.record_messages(
                [{"role": "system", "content": long_text}, {"role": "user", "content": long_text}, "kurz"],
                [long_text],
            )
        attrs = recorder.span("chat deepseek-chat").attributes
        for key in SCHEMA_OF:
            text = attrs[key]
            assert isinstance(text, str) and len(text) <= limit
            validate(key, text)
            assert GEN_AI_TRUNCATION_MARKER in text or text == "[]"
        if limit >= 300:  # room for the structure: the messages are there, only their contents cut
            inputs = json.loads(str(attrs[Attr.GEN_AI_INPUT_MESSAGES]))
            assert [m["role"] for m in inputs] == ["user", "user"]
            assert inputs[1]["parts"][0]["content"] == "kurz"  # the short one is kept whole
    finally:
        recorder.close()


@pytest.mark.parametrize(
    "content",
    [
        f'password="{SECRET}" and more',
        f"my password: {SECRET} and the rest of the line",
        f"Authorization: Bearer {SECRET}",
        f'{{"api_key": "{SECRET}"}}',
        f"key={SECRET}\\",
    ],
)
def test_the_scrubber_keeps_captured_messages_json(content: str) -> None:
    recorder = TelemetryRecorder(
        settings={"genai.capture_message_content": True, "redaction.max_attribute_length": 400}
    )
    try:
        with hg.llm_call("deepseek", "deepseek-chat") as call:
            call.record_messages([{"role": "user", "content": content * 3}], [content])
        attrs = recorder.span("chat deepseek-chat").attributes
        for key in (Attr.GEN_AI_INPUT_MESSAGES, Attr.GEN_AI_OUTPUT_MESSAGES):
            text = str(attrs[key])
            assert SECRET not in text and len(text) <= 400
            validate(key, text)
    finally:
        recorder.close()


def test_the_scrubber_cut_of_a_foreign_json_attribute_keeps_it_json() -> None:
    scrubber = SecretScrubber(max_length=200)
    messages = [{"role": "user", "parts": [{"type": "text", "content": f"token: {SECRET} " + "x" * 500}]}]
    text = json.dumps(messages)  # as another instrumentation sets it: too long, with a secret
    scrubbed = scrubber.scrub_value(Attr.GEN_AI_INPUT_MESSAGES, text)
    assert len(scrubbed) <= 200 and SECRET not in scrubbed
    validate(Attr.GEN_AI_INPUT_MESSAGES, scrubbed)
    assert scrubber.scrub_value(Attr.GEN_AI_INPUT_MESSAGES, "not json " * 50) == ("not json " * 50)[:200]


def test_dumps_within_never_exceeds_the_limit() -> None:
    for limit in range(2, 400, 7):
        value = [{"role": "user", "parts": [genai.text_part("ä\"\n" * n)]} for n in (0, 3, 50, 200)]
        text = genai.dumps_within(value, limit)
        assert len(text) <= limit
        json.loads(text)


# --- items 3 and 4: server.port and error.type on the metrics ------------------------------


def test_a_503_gives_error_type_503_on_span_and_both_metrics(hakgal_telemetry: TelemetryRecorder) -> None:
    with LLMSimulator() as simulator:
        provider = DeepSeekProvider(Endpoints.on(simulator.base_url).deepseek, timeout_s=2.0)
        simulator.inject("deepseek", FaultKind.SERVER_ERROR)
        assert not provider.complete([{"role": "user", "content": "Hauptstadt?"}]).ok
    span = hakgal_telemetry.span("chat deepseek-chat")
    assert span.attributes[Attr.ERROR_TYPE] == "503"
    [point] = hakgal_telemetry.metric_points(Metric.GEN_AI_OPERATION_DURATION)
    assert point.attributes[Attr.ERROR_TYPE] == "503"
    assert point.attributes[Attr.SERVER_ADDRESS] == "127.0.0.1"
    assert point.attributes[Attr.SERVER_PORT] == provider.server_port


def test_token_usage_carries_server_port(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.llm_call("deepseek", "deepseek-chat", server_address="api.deepseek.com", server_port=443) as call:
        call.record_usage(10, 5)
    points = hakgal_telemetry.metric_points(Metric.GEN_AI_TOKEN_USAGE)
    assert len(points) == 2 and all(p.attributes[Attr.SERVER_PORT] == 443 for p in points)


def test_an_http_error_escaping_an_llm_call_is_typed_by_its_status(hakgal_telemetry: TelemetryRecorder) -> None:
    class Overloaded(Exception):
        status_code = 429

    with pytest.raises(Overloaded), hg.llm_call("mistral_ai", "mistral-large-latest"):
        raise Overloaded("slow down")
    with pytest.raises(ConnectionError), hg.llm_call("mistral_ai", "mistral-large-latest"):
        raise ConnectionError("refused")
    first, second = hakgal_telemetry.spans()
    assert first.attributes[Attr.ERROR_TYPE] == "429"
    assert second.attributes[Attr.ERROR_TYPE] == "ConnectionError"


# --- item 5: retrieval ------------------------------------------------------------------------


def test_rag_retrieval_is_a_genai_retrieval_span(hakgal_telemetry: TelemetryRecorder) -> None:
    found = Corpus.from_file().retrieve("What is the capital of France?", top_k=2)
    span = hakgal_telemetry.span(f"retrieval {RAG_DATA_SOURCE}")
    assert span.attributes[Attr.GEN_AI_OPERATION_NAME] == GenAIOperation.RETRIEVAL
    assert span.attributes[Attr.GEN_AI_DATA_SOURCE_ID] == RAG_DATA_SOURCE
    assert span.attributes[Attr.GEN_AI_RETRIEVAL_TOP_K] == 2
    assert span.attributes[Attr.RAG_CHUNK_COUNT] == len(found)
    assert not hakgal_telemetry.metric_points(Metric.GEN_AI_OPERATION_DURATION)  # not an LLM call


# --- item 9: one record per call with the official openai instrumentation -----------------------


@pytest.fixture
def official_openai() -> Iterator[None]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument()
    try:
        yield
    finally:
        instrumentor.uninstrument()


def test_with_the_official_openai_instrumentation_a_call_is_recorded_once(
    hakgal_telemetry: TelemetryRecorder, official_openai: None
) -> None:
    import openai

    with LLMSimulator() as simulator:
        provider = DeepSeekProvider(Endpoints.on(simulator.base_url).deepseek, timeout_s=2.0)
        assert provider.complete([{"role": "user", "content": "Hauptstadt?"}]).ok
        # Outside a layer call the official instrumentation records as usual: it is active.
        client = openai.OpenAI(base_url=provider.base_url, api_key="sk-demo-not-a-real-key", max_retries=0)
        client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hallo?"}])
    spans = [s for s in hakgal_telemetry.spans() if s.name == "chat deepseek-chat"]
    ours = [s for s in spans if s.instrumentation_scope.name == INSTRUMENTATION_SCOPE]
    theirs = [s for s in spans if s.instrumentation_scope.name != INSTRUMENTATION_SCOPE]
    assert len(ours) == 1 and ours[0].attributes[Attr.GEN_AI_PROVIDER_NAME] == "deepseek"
    assert len(theirs) == 1 and theirs[0].parent is None  # only the direct call; none under the layer's span
    tokens = hakgal_telemetry.metric_points(Metric.GEN_AI_TOKEN_USAGE)
    input_points = [p for p in tokens if p.attributes.get(Attr.GEN_AI_TOKEN_TYPE) == "input"]
    by_provider = {p.attributes.get(Attr.GEN_AI_PROVIDER_NAME, p.attributes.get("gen_ai.system")) for p in input_points}
    assert sum(p.count for p in input_points) == 2  # the layer's call once, the direct call once
    assert "deepseek" in by_provider
    durations = hakgal_telemetry.metric_points(Metric.GEN_AI_OPERATION_DURATION)
    assert sum(p.count for p in durations) == 2


@pytest.mark.system
@pytest.mark.slow
def test_under_the_launcher_with_the_official_openai_instrumentation_each_call_is_recorded_once(
    otlp_receiver: OtlpReceiver,
) -> None:
    """``opentelemetry-instrument`` loads the official openai instrumentation (installed in the dev venv)
    beside the layer: the demo's LLM calls still give one span each, and their tokens are counted once."""
    port = free_port()
    with LLMSimulator() as simulator:
        env = clean_env(
            OTEL_HAKGAL_BACKENDS="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
            OTEL_METRIC_EXPORT_INTERVAL="500",
            HAKGAL_LLM_BASE_URL=simulator.base_url,
        )
        argv = [str(VENV_BIN / "opentelemetry-instrument"), sys.executable, "-m", "otel_hakgal.demo.api"]
        server = ServerProcess([*argv, "--port", str(port)], env, port)
        try:
            server.wait_ready()
            assert server.post_command("ask What is the capital of France?")[0] == 200
            time.sleep(1.5)  # at least two metric exports
        finally:
            output = server.stop()
        calls = [r for r in simulator.requests() if r.provider in ("deepseek", "mistral", "gemini")]
    assert calls, output
    spans = otlp_receiver.wait_for_spans(3)
    llm = [s for s in spans if Attr.GEN_AI_PROVIDER_NAME in s.attributes]
    assert len(llm) == len(calls), (sorted(s.name for s in spans), output)
    assert {s.scope for s in llm} == {INSTRUMENTATION_SCOPE}  # the official instrumentation's were dropped
    points = otlp_receiver.wait_for_metric(Metric.GEN_AI_TOKEN_USAGE)
    latest: dict[tuple[tuple[str, Any], ...], int] = {}
    for point in points:  # cumulative: the last export of each series holds the total
        latest[tuple(sorted(point.attributes.items()))] = point.count or 0
    inputs = {k: v for k, v in latest.items() if dict(k).get(Attr.GEN_AI_TOKEN_TYPE) == "input"}
    assert sum(inputs.values()) == len(calls), latest
    assert {dict(k).get(Attr.GEN_AI_PROVIDER_NAME) for k in inputs} <= {"deepseek", "mistral_ai", "gcp.gemini"}


@pytest.mark.parametrize("upcoming", [False, True])
def test_cache_write_tokens_keep_the_current_name_and_get_the_coming_one_with_the_switch(upcoming: bool) -> None:
    from otel_hakgal.conventions import Attr
    from otel_hakgal.testing import TelemetryRecorder

    recorder = TelemetryRecorder(settings={"genai.emit_upcoming_names": upcoming})
    try:
        with hg.llm_call("anthropic", "claude-sonnet") as call:
            call.record_usage(1200, 80, cache_read_tokens=1000, cache_write_tokens=150)
        [span] = recorder.spans()
    finally:
        recorder.close()
    attributes = span.attributes or {}
    assert attributes[Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1000
    assert attributes[Attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 150
    assert attributes.get(Attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS) == (150 if upcoming else None)
