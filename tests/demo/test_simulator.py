"""The LLM simulator over real HTTP: answers, token usage, fault injection, the request log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from otel_hakgal.demo.prompts import LOGICALIZE_SYSTEM, logicalize_messages
from otel_hakgal.demo.responder import translate_question
from otel_hakgal.demo.simulator import LLMSimulator


def call(url: str, body: dict[str, Any] | None = None, method: str = "POST", timeout: float = 5) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize(
    ("question", "formula"),
    [
        ("What is the capital of France?", "Hauptstadt(Frankreich, Paris)."),
        ("Is Lyon the capital of France?", "Hauptstadt(Frankreich, Lyon)."),
        ("Is the Colosseum a landmark of Rome?", "Wahrzeichen(Rom, Kolosseum)."),
        ("Do all main components work together?", "all x (IstHauptkomponente(x) -> ArbeitetZusammen(x))."),
        ("Does Tokyo have 37,400,000 inhabitants?", "Einwohner(Tokio, 37400000)."),
    ],
)
def test_fixed_question_patterns_translate_deterministically(question: str, formula: str) -> None:
    assert translate_question(question) == formula


def test_chat_completion_with_usage(simulator: LLMSimulator) -> None:
    status, raw = call(
        f"{simulator.base_url}/deepseek/v1/chat/completions",
        {"model": "deepseek-chat", "messages": logicalize_messages("What is the capital of France?")},
    )
    body = json.loads(raw)
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Hauptstadt(Frankreich, Paris)."
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert simulator.requests("deepseek")[0].traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def test_generate_content_in_geminis_shape(simulator: LLMSimulator) -> None:
    status, raw = call(
        f"{simulator.base_url}/gemini/v1beta/models/gemini-1.5-pro-latest:generateContent",
        {
            "systemInstruction": {"parts": [{"text": LOGICALIZE_SYSTEM}]},
            "contents": [{"role": "user", "parts": [{"text": "Is Rome a city?"}]}],
        },
    )
    body = json.loads(raw)
    assert status == 200
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "IstStadt(Rom)."
    assert body["usageMetadata"]["promptTokenCount"] > 0


def test_faults_through_the_control_endpoint_hit_only_their_provider(simulator: LLMSimulator) -> None:
    chat = {"model": "m", "messages": logicalize_messages("Is Rome a city?")}
    assert call(f"{simulator.base_url}/_control/faults", {"provider": "mistral", "kind": "5xx", "times": 1})[0] == 200

    assert call(f"{simulator.base_url}/deepseek/v1/chat/completions", chat)[0] == 200
    assert call(f"{simulator.base_url}/mistral/v1/chat/completions", chat)[0] == 503
    assert call(f"{simulator.base_url}/mistral/v1/chat/completions", chat)[0] == 200  # only once
    log = json.loads(call(f"{simulator.base_url}/_control/requests", method="GET")[1])["requests"]
    assert [(r["provider"], r["fault"]) for r in log] == [("deepseek", None), ("mistral", "5xx"), ("mistral", None)]


def test_latency_malformed_and_timeout_faults(simulator: LLMSimulator) -> None:
    chat_url = f"{simulator.base_url}/deepseek/v1/chat/completions"
    chat = {"model": "m", "messages": logicalize_messages("Is Rome a city?")}
    simulator.inject("deepseek", "latency", delay_s=0.2)
    started = time.monotonic()
    assert call(chat_url, chat)[0] == 200
    assert time.monotonic() - started >= 0.2

    simulator.inject("deepseek", "malformed")
    status, raw = call(chat_url, chat)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)

    simulator.inject("deepseek", "timeout", delay_s=2)
    with pytest.raises(TimeoutError):
        call(chat_url, chat, timeout=0.2)


def test_bad_fault_requests_are_rejected(simulator: LLMSimulator) -> None:
    assert call(f"{simulator.base_url}/_control/faults", {"provider": "openai", "kind": "5xx"})[0] == 400
    assert call(f"{simulator.base_url}/_control/faults", {"provider": "mistral", "kind": "fire"})[0] == 400
    with pytest.raises(ValueError):
        simulator.inject("nobody", "5xx")


def test_oracle_short_answers(simulator: LLMSimulator) -> None:
    assert call(f"{simulator.base_url}/wolfram/v1/result?i=Einwohner+Tokio", method="GET") == (200, b"37400000")
    assert call(f"{simulator.base_url}/wolfram/v1/result?i=Einwohner+Atlantis", method="GET")[0] == 501


def test_a_lasting_fault_from_the_environment_with_a_rate(simulator: LLMSimulator) -> None:
    simulator.apply_env_faults({"HAKGAL_SIM_FAULT": "error", "HAKGAL_SIM_FAULT_RATE": "0.5"})
    chat = {"model": "m", "messages": logicalize_messages("Is Rome a city?")}
    statuses = [call(f"{simulator.base_url}/gemini/v1beta/models/g:generateContent", chat)[0] for _ in range(20)]
    assert set(statuses) == {200, 503}
    assert 4 <= statuses.count(503) <= 16
    simulator.apply_env_faults({"HAKGAL_SIM_FAULT": "error"})  # rate 1.0: every call
    simulator.clear_faults("gemini")
    assert call(f"{simulator.base_url}/gemini/v1beta/models/g:generateContent", chat)[0] == 200
    assert call(f"{simulator.base_url}/deepseek/v1/chat/completions", chat)[0] == 503


def test_mixed_fault_kinds_share_one_rate(simulator: LLMSimulator) -> None:
    simulator.apply_env_faults({"HAKGAL_SIM_FAULT": "5xx,malformed,garbage", "HAKGAL_SIM_FAULT_RATE": "0.3"})
    chat = {"model": "m", "messages": logicalize_messages("Is Rome a city?")}
    outcomes: dict[str, int] = {}
    for _ in range(300):
        status, body = call(f"{simulator.base_url}/mistral/v1/chat/completions", chat)
        try:
            text = json.loads(body)["choices"][0]["message"]["content"] if status == 200 else str(status)
        except ValueError:
            text = "malformed"
        outcome = text if text in ("503", "malformed") else "garbage" if "language model" in text else "ok"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert set(outcomes) == {"ok", "503", "malformed", "garbage"}
    assert 60 <= 300 - outcomes["ok"] <= 120  # about 30% together, never one call hit twice
    assert [seen.fault for seen in simulator.requests("mistral")].count(None) == outcomes["ok"]
