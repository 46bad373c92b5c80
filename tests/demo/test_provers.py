"""Each prover with real inputs (real Z3), and the portfolio's order and failure handling."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from opentelemetry.trace import StatusCode

from otel_hakgal.conventions import Attr, ErrorType, ProverResult
from otel_hakgal.demo.knowledge_base import Fact, KnowledgeBase
from otel_hakgal.demo.logic import Formula, parse_fact
from otel_hakgal.demo.portfolio import ProverPortfolio
from otel_hakgal.demo.provers import FunctionalConstraintProver, OracleProver, PatternMatcher, Verdict
from otel_hakgal.demo.providers import Endpoints
from otel_hakgal.demo.simulator import LLMSimulator
from otel_hakgal.demo.z3_prover import Z3Prover
from otel_hakgal.testing import TelemetryRecorder


@pytest.fixture(scope="module")
def facts() -> list[Fact]:
    return KnowledgeBase.from_file().facts()


def goal(text: str) -> Formula:
    return parse_fact(text)[1]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Hauptstadt(Frankreich, Paris).", ProverResult.PROVED),
        ("Hauptstadt(Frankreich, Lyon).", ProverResult.REFUTED),
        ("Hauptstadt(Japan, Tokio).", ProverResult.UNKNOWN),
        ("IstStadt(Rom).", ProverResult.UNKNOWN),
    ],
)
def test_functional_constraint_prover(facts: list[Fact], question: str, expected: ProverResult) -> None:
    assert FunctionalConstraintProver().prove(goal(question), facts).result is expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("IstStadt(Rom).", ProverResult.PROVED),  # two rules deep
        ("all x (IstHauptkomponente(x) -> ArbeitetZusammen(x)).", ProverResult.PROVED),
        ("IstWissenschaftlichFundiert(HakGalFramework).", ProverResult.REFUTED),
        ("IstStadt(Tokio).", ProverResult.UNKNOWN),
    ],
)
def test_z3_decides_from_the_facts(facts: list[Fact], question: str, expected: ProverResult) -> None:
    assert Z3Prover(timeout_s=2.0).prove(goal(question), facts).result is expected


def test_z3_times_out_on_a_theory_with_only_infinite_models(facts: list[Fact]) -> None:
    started = time.monotonic()
    verdict = Z3Prover(timeout_s=0.2).prove(goal("Vorfahr(Adam, Eva)."), facts)
    assert verdict.result is ProverResult.TIMEOUT
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Wahrzeichen(Rom, Kolosseum).", ProverResult.PROVED),
        ("IstWirbeltier(Wal).", ProverResult.PROVED),  # through one rule
        ("IstWissenschaftlichFundiert(HakGalFramework).", ProverResult.REFUTED),
        ("IstStadt(Rom).", ProverResult.UNKNOWN),
    ],
)
def test_pattern_matcher(facts: list[Fact], question: str, expected: ProverResult) -> None:
    assert PatternMatcher().prove(goal(question), facts).result is expected


def test_oracle_over_loopback_http(hakgal_telemetry: TelemetryRecorder, facts: list[Fact]) -> None:
    with LLMSimulator() as simulator:
        oracle = OracleProver(Endpoints.on(simulator.base_url).oracle)
        assert oracle.prove(goal("Einwohner(Tokio, 37400000)."), facts).result is ProverResult.PROVED
        assert oracle.prove(goal("Einwohner(Tokio, 5)."), facts).result is ProverResult.REFUTED  # cached answer
        assert oracle.prove(goal("Einwohner(Atlantis, 5)."), facts).result is ProverResult.UNKNOWN
        assert oracle.prove(goal("IstStadt(Rom)."), facts).result is ProverResult.UNKNOWN
        assert len(simulator.requests("oracle")) == 2
    assert [s.attributes[Attr.CACHE_HIT] for s in hakgal_telemetry.spans_named("hakgal.cache oracle")] == [
        False,
        True,
        False,
    ]


def portfolio(oracle_url: str | None = None) -> ProverPortfolio:
    return ProverPortfolio.standard(z3_timeout_s=0.3, oracle_url=oracle_url, oracle_timeout_s=1.0)


def test_order_follows_the_complexity_analysis() -> None:
    ensemble = portfolio("http://127.0.0.1:9/wolfram/v1/result")
    names = lambda text: [p.name for p in ensemble.order_for(goal(text))]  # noqa: E731
    assert names("IstStadt(Rom).") == ["functional", "z3", "pattern"]
    assert names("all x (IstHauptkomponente(x) -> ArbeitetZusammen(x)).") == ["z3", "pattern"]
    assert names("Einwohner(Tokio, 37400000).") == ["oracle", "functional", "z3", "pattern"]


def test_unknown_passes_on_and_the_deciding_prover_stops_the_run(
    hakgal_telemetry: TelemetryRecorder, facts: list[Fact]
) -> None:
    outcome = portfolio().prove(goal("IstStadt(Rom)."), facts)
    assert outcome.prover == "z3" and outcome.verdict.result is ProverResult.PROVED
    spans = hakgal_telemetry.spans()
    assert [s.name for s in spans] == ["hakgal.prover functional", "hakgal.prover z3"]
    assert spans[1].attributes[Attr.PROVER_REASON].startswith("assumptions and not(goal) are unsat")


def test_a_prover_timeout_is_an_error_span_and_the_next_prover_runs(
    hakgal_telemetry: TelemetryRecorder, facts: list[Fact]
) -> None:
    outcome = portfolio().prove(goal("Vorfahr(Adam, Eva)."), facts)
    assert outcome.prover is None and outcome.verdict.result is ProverResult.UNKNOWN
    z3_span = hakgal_telemetry.span("hakgal.prover z3")
    assert z3_span.status.status_code is StatusCode.ERROR
    assert z3_span.attributes[Attr.ERROR_TYPE] == ErrorType.TIMEOUT
    assert z3_span.attributes[Attr.PROVER_RESULT] == ProverResult.TIMEOUT
    assert z3_span.attributes[Attr.PROVER_TIMEOUT] == 0.3
    assert hakgal_telemetry.span("hakgal.prover pattern").attributes[Attr.PROVER_ORDER] == 2
    assert hakgal_telemetry.counter_value("hakgal.prover.runs", **{Attr.PROVER_RESULT: "timeout"}) == 1


class ExplodingProver:
    name = "functional"

    def prove(self, goal: Formula, facts: Sequence[Fact]) -> Verdict:
        raise RuntimeError("constraint table corrupt")


def test_a_prover_exception_is_reported_and_the_next_prover_runs(
    hakgal_telemetry: TelemetryRecorder, facts: list[Fact]
) -> None:
    ensemble = ProverPortfolio(ExplodingProver(), Z3Prover(1.0), PatternMatcher(), None)
    outcome = ensemble.prove(goal("IstStadt(Rom)."), facts)
    assert outcome.prover == "z3"
    broken = hakgal_telemetry.span("hakgal.prover functional")
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.attributes[Attr.ERROR_TYPE] == "RuntimeError"
    assert broken.attributes[Attr.PROVER_RESULT] == ProverResult.ERROR
    assert any(event.name == "exception" for event in broken.events)
