"""The cheap provers of the portfolio: functional constraints, pattern matching, the oracle.

Each prover answers proved, refuted or unknown with a short reason; unknown
hands the goal to the next prover. Z3 lives in :mod:`otel_hakgal.demo.z3_prover`.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import otel_hakgal as hg
from otel_hakgal.conventions import CacheName, ProverResult
from otel_hakgal.demo.knowledge_base import Fact
from otel_hakgal.demo.logic import Atom, Formula, Implies, Not, Quantified, Term

# Relations where the first argument determines the rest: a capital, a population.
FUNCTIONAL_PREDICATES: frozenset[str] = frozenset({"Hauptstadt", "Einwohner", "LiegtIn"})
# Relations the knowledge base cannot know by itself; the oracle looks them up.
ORACLE_PREDICATES: frozenset[str] = frozenset({"Einwohner", "Hoehe", "Flaeche"})


@dataclass(frozen=True)
class Verdict:
    result: ProverResult
    reason: str


class Prover(Protocol):
    name: str

    def prove(self, goal: Formula, facts: Sequence[Fact]) -> Verdict: ...


def unknown(reason: str) -> Verdict:
    return Verdict(ProverResult.UNKNOWN, reason)


def _ground_atoms(facts: Sequence[Fact]) -> list[Atom]:
    return [fact.formula for fact in facts if isinstance(fact.formula, Atom) and fact.formula.is_ground]


class FunctionalConstraintProver:
    """Decides a ground atom of a functional relation from the one value the KB holds for its key."""

    name = "functional"

    def prove(self, goal: Formula, facts: Sequence[Fact]) -> Verdict:
        if not isinstance(goal, Atom) or not goal.is_ground or goal.predicate not in FUNCTIONAL_PREDICATES:
            return unknown("not a ground atom of a functional relation")
        key = goal.args[0]
        for atom in _ground_atoms(facts):
            if atom.predicate == goal.predicate and atom.args[:1] == (key,) and len(atom.args) == len(goal.args):
                if atom.args == goal.args:
                    return Verdict(ProverResult.PROVED, f"{goal.predicate}({key.name}) is stored as given")
                value = ", ".join(arg.name for arg in atom.args[1:])
                return Verdict(ProverResult.REFUTED, f"{goal.predicate}({key.name}) is {value}")
        return unknown(f"no value of {goal.predicate} for {key.name}")


class PatternMatcher:
    """Matches the goal against stored facts, directly or through one ``all x (P(x) -> Q(x))`` rule."""

    name = "pattern"

    def prove(self, goal: Formula, facts: Sequence[Fact]) -> Verdict:
        stored = [fact.formula for fact in facts]
        if goal in stored:
            return Verdict(ProverResult.PROVED, "goal is a stored fact")
        negated = goal.operand if isinstance(goal, Not) else Not(goal)
        if negated in stored:
            return Verdict(ProverResult.REFUTED, "the negation of the goal is a stored fact")
        if isinstance(goal, Atom) and goal.is_ground and len(goal.args) == 1:
            for premise in self._unary_premises_for(goal.predicate, stored):
                if Atom(premise, goal.args) in stored:
                    return Verdict(ProverResult.PROVED, f"follows from {premise}({goal.args[0].name}) by a rule")
        return unknown("no stored fact or rule matches")

    @staticmethod
    def _unary_premises_for(predicate: str, stored: Sequence[Formula]) -> list[str]:
        premises = []
        for formula in stored:
            if isinstance(formula, Quantified) and formula.quantifier == "all" and isinstance(formula.body, Implies):
                premise, conclusion = formula.body.premise, formula.body.conclusion
                variable = Term(formula.variable, True)
                if (
                    isinstance(premise, Atom)
                    and isinstance(conclusion, Atom)
                    and conclusion.predicate == predicate
                    and premise.args == conclusion.args == (variable,)
                ):
                    premises.append(premise.predicate)
        return premises


def needs_oracle(goal: Formula) -> bool:
    """True for a ground atom of a relation only outside knowledge can settle."""
    return isinstance(goal, Atom) and goal.is_ground and goal.predicate in ORACLE_PREDICATES


class OracleProver:
    """A Wolfram|Alpha-style short-answer oracle over HTTP: ``GET {url}?i=<query>`` -> plain text."""

    name = "oracle"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._answers: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def prove(self, goal: Formula, facts: Sequence[Fact]) -> Verdict:
        if not isinstance(goal, Atom) or not needs_oracle(goal) or len(goal.args) < 2:
            return unknown("the oracle only answers ground facts that need outside knowledge")
        question = " ".join([goal.predicate, *(arg.name for arg in goal.args[:-1])])
        answer = self._answer(question)
        if answer is None:
            return unknown(f"the oracle has no answer for {question!r}")
        expected = goal.args[-1].name
        if answer == expected:
            return Verdict(ProverResult.PROVED, f"oracle: {question} = {answer}")
        return Verdict(ProverResult.REFUTED, f"oracle: {question} = {answer}, not {expected}")

    def _answer(self, question: str) -> str | None:
        with hg.cache_lookup(CacheName.ORACLE) as lookup:
            with self._lock:
                cached = question in self._answers
                answer = self._answers.get(question)
            lookup.set_hit(cached)
        if cached:
            return answer
        request = urllib.request.Request(
            f"{self.url}?{urllib.parse.urlencode({'i': question})}", headers=hg.propagation_headers()
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = response.read().decode("utf-8").strip()
        except urllib.error.HTTPError as error:
            if error.code != 501:  # 501 is the oracle's "no short answer"; anything else is a failure
                raise
            answer = None
        with self._lock:
            self._answers[question] = answer
        return answer
