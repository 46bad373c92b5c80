import subprocess
import sys

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import otel_hakgal as hg
from otel_hakgal.conventions import Attr, ErrorType, Metric, ProverResult, SpanName
from otel_hakgal.testing import TelemetryRecorder


class ProviderDown(RuntimeError):
    pass


def test_operations_nest_into_one_trace(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.command("ask", text="ask What is the capital of France?", timeout_s=45):
        with hg.query("What is the capital of France?"):
            with hg.cache_lookup("prompt") as cache:
                cache.miss()
            with hg.prover("z3", order=1) as p:
                p.set_result(ProverResult.PROVED, reason="unsat")
    command = hakgal_telemetry.span("hakgal.command ask")
    query = hakgal_telemetry.span(SpanName.QUERY)
    cache_span = hakgal_telemetry.span("hakgal.cache prompt")
    prover = hakgal_telemetry.span("hakgal.prover z3")
    assert {s.context.trace_id for s in (command, query, cache_span, prover)} == {command.context.trace_id}
    assert command.parent is None
    assert query.parent.span_id == command.context.span_id
    assert prover.parent.span_id == query.context.span_id
    assert command.attributes[Attr.COMMAND_NAME] == "ask"
    assert command.attributes[Attr.COMMAND_OUTCOME] == "success"
    assert command.attributes[Attr.COMMAND_TIMEOUT] == 45.0
    assert prover.attributes[Attr.PROVER_RESULT] == "proved"
    assert prover.attributes[Attr.PROVER_ORDER] == 1
    assert cache_span.attributes[Attr.CACHE_HIT] is False


def test_text_is_truncated_to_100_characters_by_default(hakgal_telemetry: TelemetryRecorder) -> None:
    question = "Ist " + "sehr " * 60 + "lang?"
    with hg.query(question):
        pass
    recorded = hakgal_telemetry.span(SpanName.QUERY).attributes[Attr.QUERY_TEXT]
    assert recorded == question[:100]


def test_text_can_be_hashed() -> None:
    recorder = TelemetryRecorder(settings={"redaction.text_mode": "hash"})
    try:
        with hg.command("ask", text="secret question"):
            pass
        recorded = recorder.span("hakgal.command ask").attributes[Attr.COMMAND_TEXT]
        assert recorded.startswith("sha256:") and "secret" not in recorded
    finally:
        recorder.close()


def test_exception_is_recorded_and_propagates_unchanged(hakgal_telemetry: TelemetryRecorder) -> None:
    error = ProviderDown("simulator refused")
    with pytest.raises(ProviderDown) as caught, hg.prover("oracle"):
        raise error
    assert caught.value is error
    span = hakgal_telemetry.span("hakgal.prover oracle")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[Attr.ERROR_TYPE] == "ProviderDown"
    assert span.attributes[Attr.PROVER_RESULT] == "error"
    assert [e.name for e in span.events] == ["exception"]
    assert hakgal_telemetry.counter_value(Metric.ERRORS, {Attr.ERROR_TYPE: "ProviderDown"}) == 1
    assert hakgal_telemetry.counter_value(Metric.PROVER_RUNS, {Attr.PROVER_RESULT: "error"}) == 1


def test_failure_as_return_value(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.command("ask") as cmd:
        cmd.fail(ErrorType.TIMEOUT, "command exceeded 45 s")
    span = hakgal_telemetry.span("hakgal.command ask")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "command exceeded 45 s"
    assert span.attributes[Attr.ERROR_TYPE] == "timeout"
    assert span.attributes[Attr.COMMAND_OUTCOME] == "timeout"
    assert hakgal_telemetry.histogram_count(Metric.COMMAND_DURATION, {Attr.COMMAND_OUTCOME: "timeout"}) == 1


def test_decorator_gives_a_fresh_operation_per_call(hakgal_telemetry: TelemetryRecorder) -> None:
    @hg.prover("pattern")
    def match(fact: str) -> bool:
        op = hg.current()
        assert isinstance(op, hg.ProverOp)
        op.set_result(ProverResult.PROVED if fact.endswith(".") else ProverResult.UNKNOWN)
        return True

    assert match("A(b).") and match("A(b)")
    spans = hakgal_telemetry.spans_named("hakgal.prover pattern")
    assert [s.attributes[Attr.PROVER_RESULT] for s in spans] == ["proved", "unknown"]
    assert match.__name__ == "match"
    assert hg.current() is None


def test_llm_call_follows_genai_conventions(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.llm_call("deepseek", "deepseek-chat", server_address="127.0.0.1", server_port=8080, max_tokens=256) as call:
        call.record_usage(120, 30, finish_reasons=["stop"], response_model="deepseek-chat-v3", response_id="r-1")
    span = hakgal_telemetry.span("chat deepseek-chat")
    assert span.kind is SpanKind.CLIENT
    attrs = span.attributes
    assert attrs[Attr.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[Attr.GEN_AI_PROVIDER_NAME] == "deepseek"
    assert attrs[Attr.GEN_AI_REQUEST_MODEL] == "deepseek-chat"
    assert attrs[Attr.GEN_AI_RESPONSE_MODEL] == "deepseek-chat-v3"
    assert attrs[Attr.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert attrs[Attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    assert attrs[Attr.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[Attr.SERVER_ADDRESS] == "127.0.0.1"
    assert Attr.GEN_AI_SYSTEM not in attrs
    assert Attr.ERROR_TYPE not in attrs
    assert Attr.GEN_AI_INPUT_MESSAGES not in attrs
    # cost from the default pricing table: 0.27 $/1M input, 1.10 $/1M output
    assert attrs[Attr.LLM_COST_AMOUNT] == pytest.approx((120 * 0.27 + 30 * 1.10) / 1e6)
    assert hakgal_telemetry.counter_value(Metric.LLM_COST, {Attr.GEN_AI_PROVIDER_NAME: "deepseek"}) == pytest.approx(
        (120 * 0.27 + 30 * 1.10) / 1e6
    )
    tokens = {
        p.attributes[Attr.GEN_AI_TOKEN_TYPE]: p.sum for p in hakgal_telemetry.metric_points(Metric.GEN_AI_TOKEN_USAGE)
    }
    assert tokens == {"input": 120, "output": 30}
    [duration] = hakgal_telemetry.metric_points(Metric.GEN_AI_OPERATION_DURATION)
    assert duration.explicit_bounds[0] == 0.01 and duration.explicit_bounds[-1] == 81.92


def test_unknown_model_records_no_cost_and_says_so(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.llm_call("ollama", "llama-local") as call:
        call.record_usage(50, 10)
    attrs = hakgal_telemetry.span("chat llama-local").attributes
    assert attrs[Attr.LLM_COST_KNOWN] is False
    assert Attr.LLM_COST_AMOUNT not in attrs
    assert hakgal_telemetry.metric_points(Metric.LLM_COST) == []


def test_provider_error_string_marks_the_llm_span(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.llm_call("mistral_ai", "mistral-large-latest") as call:
        call.fail(ErrorType.PROVIDER_ERROR, "HTTP 503")
    span = hakgal_telemetry.span("chat mistral-large-latest")
    assert span.attributes[Attr.ERROR_TYPE] == "provider_error"
    [point] = hakgal_telemetry.metric_points(Metric.GEN_AI_OPERATION_DURATION)
    assert point.attributes[Attr.ERROR_TYPE] == "provider_error"


def test_legacy_system_and_message_capture_switches() -> None:
    recorder = TelemetryRecorder(settings={"genai.emit_legacy_system": True, "genai.capture_message_content": True})
    try:
        with hg.llm_call("gcp.gemini", "gemini-1.5-pro-latest", operation="generate_content") as call:
            call.record_messages(
                [{"role": "user", "content": "Hauptstadt?"}], [{"role": "assistant", "content": "Paris"}]
            )
        attrs = recorder.span("generate_content gemini-1.5-pro-latest").attributes
        assert attrs[Attr.GEN_AI_SYSTEM] == "gcp.gemini"
        assert "Hauptstadt?" in attrs[Attr.GEN_AI_INPUT_MESSAGES]
        assert "Paris" in attrs[Attr.GEN_AI_OUTPUT_MESSAGES]
    finally:
        recorder.close()


def test_cache_metrics_count_hits_and_misses(hakgal_telemetry: TelemetryRecorder) -> None:
    for hit in (True, False, True):
        with hg.cache_lookup("proof") as lookup:
            lookup.set_hit(hit)
    assert hakgal_telemetry.counter_value(Metric.CACHE_LOOKUPS, {Attr.CACHE_HIT: True}) == 2
    assert hakgal_telemetry.counter_value(Metric.CACHE_LOOKUPS, {Attr.CACHE_HIT: False}) == 1
    with pytest.raises(ValueError):
        hg.cache_lookup("no-such-cache")


def test_capture_exception_reports_a_handled_error(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.command("add_raw"):
        try:
            raise KeyError("fact")
        except KeyError as error:
            hg.capture_exception(error, fact_count=3)
    span = hakgal_telemetry.span("hakgal.command add_raw")
    assert span.events[0].name == "exception"
    assert span.events[0].attributes["fact_count"] == 3
    assert span.status.status_code is StatusCode.UNSET
    assert hakgal_telemetry.counter_value(Metric.ERRORS, {Attr.ERROR_SCOPE: "command"}) == 1


def test_api_without_setup_never_fails() -> None:
    code = """
import otel_hakgal as hg
with hg.command("ask", text="x") as c:
    with hg.llm_call("deepseek", "deepseek-chat") as call:
        call.record_usage(1, 2)
    with hg.prover("z3") as p:
        p.set_result("proved")
    c.fail("timeout")
hg.capture_exception(ValueError("x"))
assert not c.span.is_recording()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
