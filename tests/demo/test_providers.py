"""Providers against the simulator: GenAI spans, failures as return values, fallback, trace propagation."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_hakgal.conventions import Attr, ErrorType, Metric
from otel_hakgal.demo.prompts import logicalize_messages
from otel_hakgal.demo.providers import (
    DeepSeekProvider,
    Endpoints,
    GeminiProvider,
    LLMProvider,
    MistralProvider,
    ProviderChain,
    standard_chain,
)
from otel_hakgal.demo.simulator import FaultKind, LLMSimulator
from otel_hakgal.testing import TelemetryRecorder

QUESTION = logicalize_messages("What is the capital of France?")


def make(provider: type[LLMProvider], simulator: LLMSimulator) -> LLMProvider:
    endpoints = Endpoints.on(simulator.base_url)
    url = {DeepSeekProvider: endpoints.deepseek, MistralProvider: endpoints.mistral, GeminiProvider: endpoints.gemini}
    return provider(url[provider], timeout_s=0.5)


@pytest.mark.parametrize(
    ("provider", "span_name", "system"),
    [
        (DeepSeekProvider, "chat deepseek-chat", "deepseek"),
        (MistralProvider, "chat mistral-large-latest", "mistral_ai"),
        (GeminiProvider, "generate_content gemini-1.5-pro-latest", "gcp.gemini"),
    ],
)
def test_a_successful_call_is_a_genai_client_span(
    hakgal_telemetry: TelemetryRecorder,
    simulator: LLMSimulator,
    provider: type[LLMProvider],
    span_name: str,
    system: str,
) -> None:
    reply = make(provider, simulator).complete(QUESTION)

    assert reply.ok and "Hauptstadt(Frankreich, Paris)." in (reply.text or "")
    span = hakgal_telemetry.span(span_name)
    assert span.kind is SpanKind.CLIENT
    attributes = span.attributes or {}
    assert attributes[Attr.GEN_AI_PROVIDER_NAME] == system
    assert attributes[Attr.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert attributes[Attr.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert attributes[Attr.GEN_AI_RESPONSE_ID]
    assert attributes[Attr.SERVER_PORT] == int(simulator.base_url.rsplit(":", 1)[1])
    assert attributes[Attr.LLM_COST_KNOWN] is True and attributes[Attr.LLM_COST_AMOUNT] > 0
    traceparent = simulator.requests()[-1].traceparent or ""
    assert traceparent.split("-")[2] == f"{span.context.span_id:016x}"


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (FaultKind.SERVER_ERROR, "503"),  # GenAI conventions: the HTTP status code
        (FaultKind.AUTH, "401"),
        (FaultKind.TIMEOUT, ErrorType.TIMEOUT),
        (FaultKind.MALFORMED, ErrorType.MALFORMED_RESPONSE),
    ],
)
@pytest.mark.parametrize("provider", [DeepSeekProvider, GeminiProvider])
def test_a_failed_call_returns_an_error_value_and_marks_its_span(
    hakgal_telemetry: TelemetryRecorder,
    simulator: LLMSimulator,
    provider: type[LLMProvider],
    fault: FaultKind,
    error_type: str,
) -> None:
    client = make(provider, simulator)
    simulator.inject(client.name, fault, delay_s=2.0)

    reply = client.complete(QUESTION)  # does not raise

    assert not reply.ok and reply.error
    assert client.status.startswith("error")
    (span,) = hakgal_telemetry.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[Attr.ERROR_TYPE] == error_type
    assert hakgal_telemetry.counter_value("hakgal.errors", **{Attr.ERROR_TYPE: error_type}) == 1
    [point] = hakgal_telemetry.metric_points(Metric.GEN_AI_OPERATION_DURATION)
    assert point.attributes[Attr.ERROR_TYPE] == error_type
    assert point.attributes[Attr.SERVER_PORT] == client.server_port  # required wherever server.address is


def test_a_reply_that_is_not_logic_counts_as_malformed(
    hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator
) -> None:
    simulator.inject("deepseek", FaultKind.GARBAGE)
    reply = make(DeepSeekProvider, simulator).complete(QUESTION, accept=lambda text: "(" in text)
    assert not reply.ok
    span = hakgal_telemetry.span("chat deepseek-chat")
    assert span.attributes[Attr.ERROR_TYPE] == ErrorType.MALFORMED_RESPONSE
    assert span.attributes[Attr.GEN_AI_USAGE_OUTPUT_TOKENS] > 0  # the tokens were still spent


def test_the_chain_falls_back_to_the_next_provider(
    hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator
) -> None:
    chain = standard_chain(Endpoints.on(simulator.base_url), timeout_s=0.5)
    simulator.inject("deepseek", FaultKind.SERVER_ERROR)

    reply = chain.complete(QUESTION)

    assert reply.ok and reply.provider == "mistral"
    failed, succeeded = hakgal_telemetry.spans()
    assert failed.name == "chat deepseek-chat" and failed.attributes[Attr.ERROR_TYPE] == "503"
    assert succeeded.name == "chat mistral-large-latest" and Attr.ERROR_TYPE not in (succeeded.attributes or {})
    status = chain.status()
    assert status["llm_count"] == 3 and status["llm_active"] == 2


def test_when_every_provider_fails_the_chain_returns_an_error(
    hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator
) -> None:
    chain = standard_chain(Endpoints.on(simulator.base_url), timeout_s=0.5)
    for name in ("deepseek", "mistral", "gemini"):
        simulator.inject(name, FaultKind.SERVER_ERROR)
    reply = chain.complete(QUESTION)
    assert not reply.ok and "all providers failed" in (reply.error or "")
    assert len(hakgal_telemetry.spans()) == 3


def test_a_chain_needs_providers() -> None:
    with pytest.raises(ValueError):
        ProviderChain([])


@pytest.mark.parametrize("provider", [DeepSeekProvider, GeminiProvider])
@pytest.mark.parametrize("upcoming", [False, True])
def test_prompt_cache_tokens_and_the_coming_genai_names(
    simulator: LLMSimulator, provider: type[LLMProvider], upcoming: bool
) -> None:
    recorder = TelemetryRecorder(settings={"genai.emit_upcoming_names": upcoming})
    try:
        client = make(provider, simulator)
        client.complete(QUESTION)
        client.complete(QUESTION)  # the same system prompt again: served from the provider's prompt cache
        first, second = [span.attributes or {} for span in recorder.spans() if span.kind is SpanKind.CLIENT]
        duration = recorder.metric_points(Metric.GEN_AI_OPERATION_DURATION)
        tokens = recorder.metric_points(Metric.GEN_AI_TOKEN_USAGE)
        inference = recorder.metric_points(Metric.GEN_AI_INFERENCE_DURATION)
        inputs = recorder.metric_points(Metric.GEN_AI_INFERENCE_INPUT_TOKENS)
        outputs = recorder.metric_points(Metric.GEN_AI_INFERENCE_OUTPUT_TOKENS)
    finally:
        recorder.close()

    assert first[Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 0
    assert 0 < second[Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] < second[Attr.GEN_AI_USAGE_INPUT_TOKENS]
    if not upcoming:
        assert inference == inputs == outputs == []
        return
    # The coming names carry the same data as the current ones, split per direction.
    assert [(p.count, p.sum) for p in inference] == [(p.count, p.sum) for p in duration]
    by_type = {str((p.attributes or {})[Attr.GEN_AI_TOKEN_TYPE]): p for p in tokens}
    assert [(p.count, p.sum) for p in inputs] == [(by_type["input"].count, by_type["input"].sum)]
    assert [(p.count, p.sum) for p in outputs] == [(by_type["output"].count, by_type["output"].sum)]
    assert Attr.GEN_AI_TOKEN_TYPE not in (inputs[0].attributes or {})
    assert (inputs[0].attributes or {})[Attr.SERVER_PORT] == int(simulator.base_url.rsplit(":", 1)[1])
