import asyncio
import dataclasses
import inspect
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE
from opentelemetry.trace import SpanKind, StatusCode

import otel_hakgal as hg
from otel_hakgal import api, runtime
from otel_hakgal.config import RedactionSettings, load_config
from otel_hakgal.conventions import Attr, ErrorType, Metric, ProverResult, SpanName
from otel_hakgal.instruments import Instruments
from otel_hakgal.redaction import redact_text
from otel_hakgal.testing import TelemetryRecorder
from otel_hakgal.user_text import OMITTED, TextMask


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


def test_unknown_values_become_other_with_one_warning_per_kind(
    hakgal_telemetry: TelemetryRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    api._cache_names.reset()
    api._prover_results.reset()
    caplog.set_level(logging.WARNING, logger="otel_hakgal.api")
    for cache in ("redis", "redis", "redis", "memcached"):
        with hg.cache_lookup(cache) as lookup:
            lookup.hit()
    for _ in range(2):
        with hg.prover("z3") as prover:
            prover.set_result("maybe", reason="?")
    caches = hakgal_telemetry.spans_named("hakgal.cache _OTHER")
    assert [s.attributes[Attr.CACHE_NAME] for s in caches] == ["_OTHER"] * 4
    assert hakgal_telemetry.counter_value(Metric.CACHE_LOOKUPS, {Attr.CACHE_NAME: "_OTHER"}) == 4
    provers = hakgal_telemetry.spans_named("hakgal.prover z3")
    assert [s.attributes[Attr.PROVER_RESULT] for s in provers] == ["_OTHER"] * 2
    assert all(s.status.status_code is StatusCode.UNSET for s in provers)
    assert hakgal_telemetry.counter_value(Metric.PROVER_RUNS, {Attr.PROVER_RESULT: "_OTHER"}) == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "otel_hakgal.api"]
    assert len(warnings) == 2, warnings
    assert "unknown cache name 'redis' recorded as _OTHER (known: proof, prompt, oracle)" in warnings[0]
    assert "unknown prover result 'maybe' recorded as _OTHER" in warnings[1]


def test_unknown_value_warnings_are_rate_limited(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    caplog.set_level(logging.WARNING, logger="otel_hakgal.api")
    colours = api._UnknownValues("colour", ["red"], interval_s=60, clock=lambda: now[0])
    assert colours("red") == "red"
    assert [colours(c) for c in ("blue", "green", "blue")] == ["_OTHER"] * 3
    now[0] += 59
    assert colours("pink") == "_OTHER"
    now[0] += 2
    assert colours("teal") == "_OTHER"
    assert colours(42) == "_OTHER"  # not even a string: still no exception
    warnings = [r.getMessage() for r in caplog.records if r.name == "otel_hakgal.api"]
    assert len(warnings) == 2, warnings
    assert "'blue'" in warnings[0] and "suppressed" not in warnings[0]
    assert "'teal'" in warnings[1] and warnings[1].endswith("(3 similar suppressed)")


def test_step_takes_attributes_with_dotted_keys(hakgal_telemetry: TelemetryRecorder) -> None:
    with hg.step(SpanName.RAG_RETRIEVE, attributes={Attr.RAG_CHUNK_COUNT: 3, "hakgal.rag.source": "corpus"}):
        pass
    span = hakgal_telemetry.span(SpanName.RAG_RETRIEVE)
    assert span.attributes[Attr.RAG_CHUNK_COUNT] == 3
    assert span.attributes["hakgal.rag.source"] == "corpus"


def test_optional_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        hg.prover("z3", 1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        hg.llm_call("deepseek", "deepseek-chat", "chat")  # type: ignore[misc]
    with pytest.raises(TypeError):
        hg.step(SpanName.PARSE, rows=3)  # type: ignore[call-arg]


def test_decorator_reads_the_configuration_at_call_time() -> None:
    @hg.command("ask", text="secret question")
    def ask() -> None:
        pass

    recorder = TelemetryRecorder(settings={"redaction.text_mode": "hash"})
    try:
        ask()
        recorded = recorder.span("hakgal.command ask").attributes[Attr.COMMAND_TEXT]
        assert recorded.startswith("sha256:") and "secret" not in recorded
    finally:
        recorder.close()


def test_an_operation_keeps_the_runtime_it_started_with(
    hakgal_telemetry: TelemetryRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    started_with = runtime.current
    other = dataclasses.replace(
        started_with,
        instruments=Instruments.create(NoOpMeterProvider()),
        config=load_config(overrides={"genai.capture_message_content": True}, environ={}),
    )
    with hg.llm_call("deepseek", "deepseek-chat") as call:
        monkeypatch.setattr(runtime, "current", other)  # a setup() elsewhere, while the call is open
        call.record_messages([{"role": "user", "content": "Hauptstadt?"}])
        call.record_usage(10, 2)
    monkeypatch.setattr(runtime, "current", started_with)
    attrs = hakgal_telemetry.span("chat deepseek-chat").attributes
    assert Attr.GEN_AI_INPUT_MESSAGES not in attrs  # the config it started with does not capture content
    assert hakgal_telemetry.histogram_count(Metric.GEN_AI_OPERATION_DURATION) == 1  # its instruments


def test_long_values_are_cut_by_the_pipeline() -> None:
    recorder = TelemetryRecorder(settings={"redaction.max_attribute_length": 40, "genai.capture_message_content": True})
    try:
        formula = "Hauptstadt(" + ", ".join(f"x{i}" for i in range(100)) + ")."
        with hg.query("q") as q:
            q.set_formula(formula)
        with hg.llm_call("deepseek", "deepseek-chat") as call:
            call.record_messages([{"role": "user", "content": "lang " * 100}], [{"content": "kurz " * 100}])
        assert recorder.span(SpanName.QUERY).attributes[Attr.QUERY_FORMULA] == formula[:40]
        attrs = recorder.span("chat deepseek-chat").attributes
        # Captured messages stay JSON: contents are cut; 40 characters hold no message at all.
        assert attrs[Attr.GEN_AI_INPUT_MESSAGES] == "[]"
        assert attrs[Attr.GEN_AI_OUTPUT_MESSAGES] == "[]"
    finally:
        recorder.close()


def test_decorated_coroutine_is_covered_by_its_span(hakgal_telemetry: TelemetryRecorder) -> None:
    @hg.step("hakgal.async_step")
    async def slow(x: int) -> int:
        op = hg.current()
        assert isinstance(op, hg.StepOp)
        await asyncio.sleep(0.05)
        assert hg.current() is op
        return x * 2

    async def main() -> list[int]:
        with hg.command("ask"):
            return list(await asyncio.gather(slow(1), slow(2)))

    assert inspect.iscoroutinefunction(slow)
    assert slow.__name__ == "slow"
    assert asyncio.run(main()) == [2, 4]
    command = hakgal_telemetry.span("hakgal.command ask")
    steps = hakgal_telemetry.spans_named("hakgal.async_step")
    assert len({s.context.span_id for s in steps}) == 2
    for span in steps:
        assert span.end_time is not None and span.start_time is not None
        assert (span.end_time - span.start_time) / 1e9 >= 0.05
        assert span.parent is not None and span.parent.span_id == command.context.span_id
    assert hg.current() is None


def test_decorated_coroutine_records_its_exception(hakgal_telemetry: TelemetryRecorder) -> None:
    @hg.prover("oracle")
    async def ask_oracle() -> bool:
        await asyncio.sleep(0.02)
        raise ProviderDown("oracle down")

    with pytest.raises(ProviderDown, match="oracle down"):
        asyncio.run(ask_oracle())
    span = hakgal_telemetry.span("hakgal.prover oracle")
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.02
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[Attr.ERROR_TYPE] == "ProviderDown"
    assert span.attributes[Attr.PROVER_RESULT] == "error"
    assert [e.name for e in span.events] == ["exception"]
    assert hakgal_telemetry.counter_value(Metric.ERRORS, {Attr.ERROR_TYPE: "ProviderDown"}) == 1


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


def test_an_operation_never_raises_before_it_starts() -> None:
    """Helpers called on an operation that was made but not entered are no-ops, never exceptions."""
    prover = hg.prover("z3")
    assert (prover.failed, prover.error_type, prover.result) == (False, None, "unknown")
    prover.set_attribute("hakgal.prover.reason", "not started")
    call = hg.llm_call("deepseek", "deepseek-chat")
    call.record_usage(10, 2, response_model="deepseek-chat")
    hg.cache_lookup("proof").hit()


# --- text_mode covers every value derived from user text (issue 14, item 6) ---

CUT = 20  # redaction.max_text_length in the "truncate" runs: every text below is longer
TEXT_MODES = ("truncate", "hash", "omit")


@pytest.fixture(params=TEXT_MODES)
def text_mode(request: pytest.FixtureRequest) -> Iterator[tuple[str, TelemetryRecorder]]:
    """One recorder per ``redaction.text_mode``, with a 20-character cut for ``truncate``."""
    mode: str = request.param
    recorder = TelemetryRecorder(settings={"redaction.text_mode": mode, "redaction.max_text_length": CUT})
    try:
        yield mode, recorder
    finally:
        recorder.close()


def recorded(mode: str, text: str) -> str | None:
    """The attribute value ``text`` gets in ``mode`` (``None``: not set)."""
    return redact_text(text, RedactionSettings(text_mode=mode, max_text_length=CUT))


def in_errors(mode: str, text: str) -> str:
    """What replaces ``text`` in exception messages, stack traces and status descriptions."""
    return recorded(mode, text) or OMITTED


def error_texts(span: ReadableSpan) -> list[str]:
    """Everything about a span's failure that leaves: exception messages, stack traces, status."""
    texts = [str(span.status.description or "")]
    for event in span.events:
        attributes = event.attributes or {}
        texts += [str(attributes.get(EXCEPTION_MESSAGE, "")), str(attributes.get(EXCEPTION_STACKTRACE, ""))]
    return texts


def test_formula_follows_text_mode_however_it_is_set(text_mode: tuple[str, TelemetryRecorder]) -> None:
    mode, recorder = text_mode
    question = "Is Paris the capital of France, and since when exactly?"
    formula = "CapitalOf(Paris, France) & Since(Paris, Year_" + "9" * 30 + ")."
    with hg.query(question) as query:
        query.set_formula(formula)  # what the LLM made of the question
    with hg.step(SpanName.PARSE) as parse:  # the add_raw/parse argument, as the demo's firewall records it
        parse.set_attribute(Attr.QUERY_FORMULA, formula)
    with hg.step(SpanName.PARSE, attributes={Attr.QUERY_FORMULA: formula, Attr.KB_OPERATION: "add"}):
        pass
    spans = [recorder.span(SpanName.QUERY), *recorder.spans_named(SpanName.PARSE)]
    assert len(spans) == 3
    for span in spans:
        assert (span.attributes or {}).get(Attr.QUERY_FORMULA) == recorded(mode, formula)
    assert (spans[0].attributes or {}).get(Attr.QUERY_TEXT) == recorded(mode, question)
    assert (spans[2].attributes or {})[Attr.KB_OPERATION] == "add"  # other attributes stay
    if mode == "truncate":
        assert (spans[0].attributes or {})[Attr.QUERY_FORMULA] == formula[:CUT]
    if mode == "hash":
        assert str((spans[0].attributes or {})[Attr.QUERY_FORMULA]).startswith("sha256:")


def test_formula_is_scrubbed_before_it_is_cut() -> None:
    recorder = TelemetryRecorder(settings={"redaction.max_text_length": CUT})
    try:
        key = "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2"
        with hg.query("q") as query:
            query.set_formula(f"Key({key}), Owner(alice).")
        formula = recorder.span(SpanName.QUERY).attributes[Attr.QUERY_FORMULA]
        assert formula == "Key([REDACTED]), Own"
        assert "sk-" not in formula
    finally:
        recorder.close()


def test_answer_is_a_verdict_and_kept_as_is(text_mode: tuple[str, TelemetryRecorder]) -> None:
    _, recorder = text_mode
    with hg.query("Is the answer forty-two or not quite?") as query:
        query.set_answer("no_or_unknown")
    assert recorder.span(SpanName.QUERY).attributes[Attr.QUERY_ANSWER] == "no_or_unknown"


def build_kb(name: str) -> None:
    """The demo's ``build_kb <name>``: a command whose step raises with the name in the message."""
    with hg.command("build_kb", text=name), hg.step(SpanName.KB_UPDATE):
        raise FileNotFoundError(f"no such data file: {name!r}")


def test_exception_does_not_carry_user_text_past_text_mode(text_mode: tuple[str, TelemetryRecorder]) -> None:
    mode, recorder = text_mode
    name = "quarterly-board-minutes-" + "confidential-" * 5 + ".txt"
    with pytest.raises(FileNotFoundError) as caught:
        build_kb(name)
    assert name in str(caught.value)  # the application's exception is untouched
    command, step = recorder.span("hakgal.command build_kb"), recorder.span(SpanName.KB_UPDATE)
    shown = in_errors(mode, name)
    for span in (step, command):  # the step has no text of its own: the command's is masked there too
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == f"FileNotFoundError: no such data file: {shown!r}"
        [event] = span.events
        assert event.attributes[EXCEPTION_MESSAGE] == f"no such data file: {shown!r}"
        stacktrace = str(event.attributes[EXCEPTION_STACKTRACE])
        assert stacktrace.rstrip().endswith(f"FileNotFoundError: no such data file: {shown!r}")
        assert "raise FileNotFoundError" in stacktrace  # still a stack trace
        assert event.attributes["exception.type"] == "FileNotFoundError"
        for text in error_texts(span):
            assert name not in text
            assert "confidential-confidential" not in text
    assert (command.attributes or {}).get(Attr.COMMAND_TEXT) == recorded(mode, name)


def test_quoted_text_with_control_characters_is_masked_too(text_mode: tuple[str, TelemetryRecorder]) -> None:
    mode, recorder = text_mode
    name = "../../etc/passwd" + "\x00" * 30 + "\n\tend"  # repr() shows these escaped: \x00, \n
    with pytest.raises(FileNotFoundError):
        build_kb(name)
    escaped = repr(name)[1:-1]
    assert escaped != name
    for span in (recorder.span("hakgal.command build_kb"), recorder.span(SpanName.KB_UPDATE)):
        for text in error_texts(span):
            assert escaped not in text and name not in text
            assert "\\x00" * 5 not in text  # the 20-character cut keeps 4
        assert span.status.description == f"FileNotFoundError: no such data file: {in_errors(mode, name)!r}"


def test_failure_messages_and_later_reports_are_masked(text_mode: tuple[str, TelemetryRecorder]) -> None:
    mode, recorder = text_mode
    fact = "Loves(" + "Romeo, " * 8 + "Juliet"  # unbalanced: the parser quotes it back
    with hg.command("add_raw", text=fact), hg.step(SpanName.PARSE) as parse:
        parse.fail(ErrorType.INVALID_FORMULA, f"unbalanced parentheses in {fact}")
    shown = in_errors(mode, fact)
    assert recorder.span(SpanName.PARSE).status.description == f"unbalanced parentheses in {shown}"

    # Reported after the command ended, on the server span (the demo's capture_exception): still masked.
    name = "Geheimprojekt-Nordwind-" + "x" * 40
    with trace.get_tracer("tests").start_as_current_span("POST /api/command"):
        try:
            build_kb(name)
        except FileNotFoundError as error:
            hg.capture_exception(error, attempt=1)
    [event] = recorder.span("POST /api/command").events
    assert event.attributes[EXCEPTION_MESSAGE] == f"no such data file: {in_errors(mode, name)!r}"
    assert name not in str(event.attributes[EXCEPTION_STACKTRACE])
    assert event.attributes["attempt"] == 1

    # And inside an operation of its own, with that operation's text too.
    with hg.query("Nordwind und Sonne, wer ist stärker?") as query:
        try:
            build_kb(name)
        except FileNotFoundError as error:
            hg.capture_exception(error)
    [event] = [e for e in recorder.span(SpanName.QUERY).events if e.name == "exception"]
    assert name not in str(event.attributes[EXCEPTION_MESSAGE])
    assert query.span.status.status_code is StatusCode.UNSET


def test_short_text_in_truncate_mode_leaves_errors_as_the_sdk_records_them(
    hakgal_telemetry: TelemetryRecorder,
) -> None:
    with pytest.raises(FileNotFoundError):
        build_kb("corpus.txt")
    span = hakgal_telemetry.span("hakgal.command build_kb")
    assert span.status.description == "FileNotFoundError: no such data file: 'corpus.txt'"
    assert span.events[0].attributes[EXCEPTION_MESSAGE] == "no such data file: 'corpus.txt'"
    assert span.attributes[Attr.COMMAND_TEXT] == "corpus.txt"


def test_text_mask_matches_whole_texts_once() -> None:
    assert TextMask({"ab": OMITTED})("ab cd ab") == "ab cd ab"  # too short to mask without wrecking the text
    assert TextMask({"plan": OMITTED})("plan; planet plan_b (plan)") == "[TEXT]; planet plan_b ([TEXT])"
    assert TextMask({"secret plan": OMITTED, "TEXT": "y"})("the secret plan") == "the [TEXT]"  # never re-searched
    assert TextMask({"report": "A", "quarterly-report": "B"})("quarterly-report, report") == "B, A"
    assert TextMask({"a\x00bcdefgh": OMITTED})(repr("a\x00bcdefgh")) == "'[TEXT]'"
    assert not TextMask({"same": "same", "xy": OMITTED})
    unchanged = "nothing to see here"
    assert TextMask({"secret plan": OMITTED})(unchanged) is unchanged


def test_an_error_that_wraps_a_masked_one_is_masked_when_reported(text_mode: tuple[str, TelemetryRecorder]) -> None:
    mode, recorder = text_mode
    name = "Geheimprojekt-Nordwind-" + "y" * 40
    with trace.get_tracer("tests").start_as_current_span("POST /api/command"):
        try:
            try:
                build_kb(name)
            except FileNotFoundError as error:
                raise RuntimeError("import failed") from error
        except RuntimeError as wrapper:
            hg.capture_exception(wrapper)
    [event] = recorder.span("POST /api/command").events
    stacktrace = str(event.attributes[EXCEPTION_STACKTRACE])
    assert "RuntimeError: import failed" in stacktrace
    assert name not in stacktrace
    assert f"no such data file: {in_errors(mode, name)!r}" in stacktrace


def test_a_prover_reason_that_quotes_the_goal_is_masked(text_mode: tuple[str, TelemetryRecorder]) -> None:
    mode, recorder = text_mode
    formula = "Nachbar(Frankreich, Deutschland_" + "z" * 30 + ")."
    with hg.query("Sind Frankreich und Deutschland Nachbarn?") as query:
        query.set_formula(formula)
        with hg.prover("oracle") as run:
            run.set_result(ProverResult.ERROR, reason=f"oracle rejected goal {formula}")
    span = recorder.span("hakgal.prover oracle")
    expected = f"oracle rejected goal {in_errors(mode, formula)}"
    assert span.attributes[Attr.PROVER_REASON] == expected
    assert span.status.description == expected
