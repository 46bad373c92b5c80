"""The KAssistant pipeline with the real simulator and real provers."""

from __future__ import annotations

import re

import pytest
from opentelemetry.trace import StatusCode

from otel_hakgal.conventions import Attr, ErrorType, SpanName
from otel_hakgal.demo.k_assistant import InvalidArgument, KAssistant, NotFound
from otel_hakgal.demo.simulator import FaultKind, LLMSimulator
from otel_hakgal.testing import TelemetryRecorder


def children_of(recorder: TelemetryRecorder, name: str) -> list[str]:
    parent = recorder.span(name)
    found = [s for s in recorder.spans() if s.parent and s.parent.span_id == parent.context.span_id]
    return [s.name for s in sorted(found, key=lambda s: s.start_time or 0)]


def test_fallback_a_failed_provider_span_then_a_successful_one(
    assistant: KAssistant, hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator
) -> None:
    simulator.inject("deepseek", FaultKind.SERVER_ERROR, times=None)

    reply = assistant.ask("Is Adam an ancestor of Eva?")  # no RAG passage: only the logicalize calls

    assert "Vorfahr(Adam, Eva)" in reply.chat_response
    llm_spans = [s for s in hakgal_telemetry.spans() if s.name.startswith("chat ")]
    assert [s.name for s in llm_spans] == ["chat deepseek-chat", "chat mistral-large-latest"]
    failed, succeeded = llm_spans
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes[Attr.ERROR_TYPE] == "503"  # GenAI conventions: the HTTP status code
    assert succeeded.status.status_code is not StatusCode.ERROR
    assert succeeded.attributes[Attr.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert failed.parent == succeeded.parent  # both are tries of the same logicalize step
    assert assistant.chain.status()["llm_active"] == 2


def test_an_invalid_formula_stops_the_question_before_the_provers(
    assistant: KAssistant, hakgal_telemetry: TelemetryRecorder
) -> None:
    reply = assistant.ask("Is this sentence false?")

    assert "logic firewall" in reply.chat_response
    parse = hakgal_telemetry.span(SpanName.PARSE)
    assert parse.status.status_code is StatusCode.ERROR
    assert parse.attributes[Attr.ERROR_TYPE] == ErrorType.INVALID_FORMULA
    query = hakgal_telemetry.span(SpanName.QUERY)
    assert query.attributes[Attr.ERROR_TYPE] == ErrorType.INVALID_FORMULA
    assert query.attributes[Attr.QUERY_OUTCOME] == "error"
    assert not [s for s in hakgal_telemetry.spans() if s.name.startswith(("hakgal.prover", "hakgal.cache proof"))]
    assert assistant.performance_metrics()["parser_success_rate"] == 0.0


def test_extraction_calls_all_providers_in_parallel_under_one_parent(
    assistant: KAssistant, hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator
) -> None:
    for name in ("deepseek", "mistral", "gemini"):
        simulator.inject(name, FaultKind.LATENCY, delay_s=0.3)  # the first call of each: the extraction

    assistant.ask("Does Tokyo have 37400000 inhabitants?")

    extract = hakgal_telemetry.span(SpanName.RAG_EXTRACT)
    assert sorted(children_of(hakgal_telemetry, SpanName.RAG_EXTRACT)) == [
        "chat deepseek-chat",
        "chat mistral-large-latest",
        "generate_content gemini-1.5-pro-latest",
    ]
    calls = [s for s in hakgal_telemetry.spans() if s.parent and s.parent.span_id == extract.context.span_id]
    assert len({s.context.trace_id for s in calls}) == 1
    # Three 0.3 s calls in well under 0.9 s: they overlapped.
    assert ((extract.end_time or 0) - (extract.start_time or 0)) / 1e9 < 0.8
    assert max(s.start_time or 0 for s in calls) < min(s.end_time or 0 for s in calls)
    # Majority vote: Mistral's extra "fact" is dropped; new facts become learning suggestions.
    assert extract.attributes[Attr.RAG_FACT_COUNT] == 2
    assert assistant.learning_suggestions() == ["Hauptstadt(Japan, Tokio).", "LiegtIn(Tokio, Japan)."]


def test_the_oracle_runs_first_for_outside_knowledge(
    assistant: KAssistant, hakgal_telemetry: TelemetryRecorder
) -> None:
    reply = assistant.ask("Does Tokyo have 37400000 inhabitants?")
    assert reply.chat_response.startswith("Yes.") and "oracle" in reply.chat_response
    assert hakgal_telemetry.span("hakgal.prover oracle").attributes[Attr.PROVER_ORDER] == 0


def test_changing_facts_clears_the_proof_cache(assistant: KAssistant, hakgal_telemetry: TelemetryRecorder) -> None:
    assert assistant.ask("Is the dolphin a vertebrate?").chat_response.startswith("No/Unknown")
    assert assistant.add_raw("IstSaeugetier(Delfin).").chat_response == "Added: IstSaeugetier(Delfin)."
    assert assistant.ask("Is the dolphin a vertebrate?").chat_response.startswith("Yes.")
    assert len(assistant.proof_cache) == 1
    assert assistant.retract("IstSaeugetier(Delfin).").chat_response.startswith("Retracted")
    assert len(assistant.proof_cache) == 0
    assert assistant.ask("Is the dolphin a vertebrate?").chat_response.startswith("No/Unknown")
    updates = hakgal_telemetry.spans_named(SpanName.KB_UPDATE)
    assert [(u.attributes[Attr.KB_OPERATION], u.attributes[Attr.KB_FACT_COUNT]) for u in updates] == [
        ("add", 33),
        ("retract", 32),
    ]


def test_add_raw_refuses_an_invalid_fact(assistant: KAssistant) -> None:
    assert assistant.add_raw("Hauptstadt(Frankreich").chat_response.startswith("Not added.")
    assert len(assistant.kb) == 32


def test_learn_and_build_kb(assistant: KAssistant) -> None:
    assert assistant.learn().chat_response.startswith("Nothing to learn")
    assistant.ask("Does Tokyo have 37400000 inhabitants?")
    assert "Learned 2 new facts" in assistant.learn().chat_response
    assert "Hauptstadt(Japan, Tokio)." in assistant.kb.texts()
    built = assistant.build_kb("corpus.txt").chat_response
    assert "1 new facts" in built  # LiegtIn(Wien, Oesterreich) was the last one missing
    with pytest.raises(NotFound, match=re.escape("no data file 'nothing.txt'; the data directory has corpus.txt")):
        assistant.build_kb("nothing.txt")


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("../../etc/passwd", "not a path"),
        ("/etc/passwd", "not a path"),
        ("..", "not a path"),
        (".", "not a path"),
        (".hidden", "not a path"),
        ("sub\\file.txt", "not a path"),
        ("corpus.txt\x00.hkb", "control characters"),
        ("\ud800", "control characters or invalid text"),
        ("x" * 60_000, "longer than 255 bytes"),
        ("ü" * 128, "longer than 255 bytes"),  # 256 bytes in UTF-8
    ],
    ids=["traversal", "absolute", "dot-dot", "dot", "hidden", "backslash", "nul", "surrogate", "60kb", "256-bytes"],
)
def test_build_kb_refuses_names_that_are_no_plain_file_name(assistant: KAssistant, name: str, phrase: str) -> None:
    with pytest.raises(InvalidArgument, match=phrase) as refused:
        assistant.build_kb(name)
    assert refused.value.http_status == 400
    assert len(str(refused.value)) < 200, "the name is shown cut, not 60 KB long"


def test_build_kb_reads_a_plain_name_of_the_data_directory(assistant: KAssistant) -> None:
    assert assistant.build_kb("facts.hkb").chat_response.startswith("Built from facts.hkb (fact list)")
    assert NotFound.http_status == 404
    with pytest.raises(UnicodeDecodeError):  # a damaged file on the server is the server's fault
        assistant.build_kb("damaged.hkb")


def test_lookups(assistant: KAssistant) -> None:
    assert "Wahrzeichen(Rom, Kolosseum)." in assistant.what_is("Rom").chat_response
    found = assistant.search("capital of Italy")
    assert found.data_sources[0] == "corpus.txt#2" and "Colosseum" in found.rag_context
    assert assistant.parse("all x (P(x) -> Q(x))").chat_response.startswith("Valid formula")
    assert "32 facts" in assistant.status().chat_response
    assert assistant.show().chat_response.startswith("32 facts:")


def test_learn_from_given_text(assistant: KAssistant) -> None:
    reply = assistant.learn("Oslo is the capital of Norway. Oslo lies in Norway.")
    assert "Learned 2 new facts" in reply.chat_response
    assert {"Hauptstadt(Norway, Oslo).", "LiegtIn(Oslo, Norway)."} <= set(assistant.kb.texts())
