"""Metric values after a known workload over HTTP, and the summary computed from them."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind

from otel_hakgal.conventions import Attr
from otel_hakgal.demo.summary import commands_by_outcome, render_summary, snapshot
from otel_hakgal.demo.workload import post_command
from otel_hakgal.report import indicator_values
from otel_hakgal.testing import TelemetryRecorder

from .conftest import wait_for

KNOWN_WORKLOAD = [
    ("ask What is the capital of France?", 200),  # RAG (3 calls), logicalize, functional proves
    ("ask What is the capital of France?", 200),  # RAG (3 calls), prompt and proof cache hits
    ("ask Is Adam an ancestor of Eva?", 200),  # no passage; logicalize; functional, z3 timeout, pattern
    ("build_kb damaged.hkb", 500),  # fails inside: the file is not UTF-8
]
PRICES = {"deepseek": (0.27, 1.10), "mistral_ai": (2.0, 6.0), "gcp.gemini": (1.25, 5.0)}  # the default table


@pytest.fixture
def after_workload(api_url: str, hakgal_telemetry: TelemetryRecorder) -> TelemetryRecorder:
    for command, expected_status in KNOWN_WORKLOAD:
        assert post_command(api_url, command)[0] == expected_status
    wait_for(hakgal_telemetry, lambda spans: sum(s.kind is SpanKind.SERVER for s in spans) == len(KNOWN_WORKLOAD))
    return hakgal_telemetry


def test_command_prover_and_cache_metrics(after_workload: TelemetryRecorder) -> None:
    count = after_workload.histogram_count
    value = after_workload.counter_value
    assert count("hakgal.command.duration", **{Attr.COMMAND_NAME: "ask", Attr.COMMAND_OUTCOME: "success"}) == 3
    assert count("hakgal.command.duration", **{Attr.COMMAND_NAME: "build_kb", Attr.COMMAND_OUTCOME: "error"}) == 1
    assert count("hakgal.query.duration") == 3

    runs = {
        (p.attributes[Attr.PROVER_NAME], p.attributes[Attr.PROVER_RESULT]): p.value
        for p in after_workload.metric_points("hakgal.prover.runs")
    }
    assert runs == {
        ("functional", "proved"): 1,
        ("functional", "unknown"): 1,
        ("z3", "timeout"): 1,
        ("pattern", "unknown"): 1,
    }

    for cache in ("prompt", "proof"):
        assert value("hakgal.cache.lookups", **{Attr.CACHE_NAME: cache, Attr.CACHE_HIT: True}) == 1
        assert value("hakgal.cache.lookups", **{Attr.CACHE_NAME: cache, Attr.CACHE_HIT: False}) == 2
    assert value("hakgal.errors", **{Attr.ERROR_TYPE: "timeout", Attr.ERROR_SCOPE: "prover"}) == 1
    assert value("hakgal.errors", **{Attr.ERROR_TYPE: "UnicodeDecodeError", Attr.ERROR_SCOPE: "command"}) == 1


def test_llm_calls_tokens_and_cost_match_the_spans(after_workload: TelemetryRecorder) -> None:
    llm_spans = [s for s in after_workload.spans() if s.kind is SpanKind.CLIENT]
    calls: dict[str, int] = {}
    for span in llm_spans:
        provider = str(span.attributes[Attr.GEN_AI_PROVIDER_NAME])
        calls[provider] = calls.get(provider, 0) + 1
    assert calls == {"deepseek": 4, "mistral_ai": 2, "gcp.gemini": 2}

    for provider, (input_price, output_price) in PRICES.items():
        spans = [s for s in llm_spans if s.attributes[Attr.GEN_AI_PROVIDER_NAME] == provider]
        tokens_in = sum(int(s.attributes[Attr.GEN_AI_USAGE_INPUT_TOKENS]) for s in spans)
        tokens_out = sum(int(s.attributes[Attr.GEN_AI_USAGE_OUTPUT_TOKENS]) for s in spans)
        usage = {
            p.attributes[Attr.GEN_AI_TOKEN_TYPE]: p.sum
            for p in after_workload.metric_points("gen_ai.client.token.usage")
            if p.attributes[Attr.GEN_AI_PROVIDER_NAME] == provider
        }
        assert usage == {"input": tokens_in, "output": tokens_out}
        expected_cost = (tokens_in * input_price + tokens_out * output_price) / 1e6
        cost = after_workload.counter_value("hakgal.llm.cost", **{Attr.GEN_AI_PROVIDER_NAME: provider})
        assert cost == pytest.approx(expected_cost)


def test_the_summary_and_its_alert_indicators(after_workload: TelemetryRecorder) -> None:
    data = after_workload._memory.metrics()

    assert commands_by_outcome(data) == {"success": 3, "error": 1}
    values = {(indicator.key, key): value for indicator, key, value in indicator_values(snapshot(data))}
    assert values[("api_error_rate", None)] == pytest.approx(0.25)  # 1 of 4 commands failed: above 5 %
    assert values[("average_response_time", None)] < 10
    assert values[("llm_failure_rate", "deepseek")] == 0
    assert values[("prover_error_rate", "z3")] == 0  # a timeout is not a prover error
    text = render_summary(data)
    assert "Commands by outcome: error 1, success 3 (total 4)" in text
    assert "API error rate" in text and "25.0 %" in text and "ALERT" in text
