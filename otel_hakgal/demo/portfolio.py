"""The prover portfolio: order the provers by a complexity analysis, run them until one decides."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import otel_hakgal as hg
from otel_hakgal.conventions import ProverResult
from otel_hakgal.demo.knowledge_base import Fact
from otel_hakgal.demo.logic import Formula, complexity
from otel_hakgal.demo.provers import (
    FunctionalConstraintProver,
    OracleProver,
    PatternMatcher,
    Prover,
    Verdict,
    needs_oracle,
)
from otel_hakgal.demo.z3_prover import Z3Prover

logger = logging.getLogger(__name__)

# Above this complexity the formula has quantifiers or several connectives: Z3 goes first.
SIMPLE_FORMULA_LIMIT = 4
DECISIVE = (ProverResult.PROVED, ProverResult.REFUTED)


@dataclass(frozen=True)
class PortfolioOutcome:
    verdict: Verdict
    prover: str | None  # the prover that decided, None when none did


class ProverPortfolio:
    def __init__(self, functional: Prover, z3_prover: Z3Prover, pattern: Prover, oracle: Prover | None) -> None:
        self.functional = functional
        self.z3 = z3_prover
        self.pattern = pattern
        self.oracle = oracle

    @classmethod
    def standard(cls, *, z3_timeout_s: float, oracle_url: str | None, oracle_timeout_s: float) -> ProverPortfolio:
        oracle = OracleProver(oracle_url, oracle_timeout_s) if oracle_url else None
        return cls(FunctionalConstraintProver(), Z3Prover(z3_timeout_s), PatternMatcher(), oracle)

    def order_for(self, goal: Formula) -> list[Prover]:
        """Oracle first for outside knowledge; cheap provers before Z3 for simple goals, Z3 first otherwise."""
        order: list[Prover] = []
        if self.oracle is not None and needs_oracle(goal):
            order.append(self.oracle)
        if complexity(goal) <= SIMPLE_FORMULA_LIMIT:
            order += [self.functional, self.z3, self.pattern]
        else:
            order += [self.z3, self.pattern]
        return order

    def prove(self, goal: Formula, facts: Sequence[Fact]) -> PortfolioOutcome:
        last = Verdict(ProverResult.UNKNOWN, "no prover could decide")
        for position, prover in enumerate(self.order_for(goal)):
            timeout_s = prover.timeout_s if isinstance(prover, Z3Prover | OracleProver) else None
            with hg.prover(prover.name, order=position, timeout_s=timeout_s) as run:
                try:
                    verdict = prover.prove(goal, facts)
                except Exception as error:  # one broken prover must not stop the portfolio
                    logger.warning("prover %s failed on %s", prover.name, goal, exc_info=True)
                    hg.capture_exception(error, prover=prover.name)
                    run.fail(type(error).__qualname__, f"{type(error).__name__}: {error}")
                    run.set_result(ProverResult.ERROR, reason=str(error)[:200])
                    continue
                run.set_result(verdict.result, reason=verdict.reason)
            if verdict.result in DECISIVE:
                return PortfolioOutcome(verdict, prover.name)
            last = verdict
        return PortfolioOutcome(Verdict(ProverResult.UNKNOWN, last.reason), None)
