"""The Z3 SMT prover: predicates become uninterpreted functions over one sort of entities.

The goal is proved when the assumptions plus ``not goal`` are unsatisfiable,
refuted when the assumptions plus ``goal`` are. Only facts that share
predicates with the goal (directly or through rules) are handed to Z3, so an
unrelated hard corner of the knowledge base does not slow every question down.
"""

from __future__ import annotations

from collections.abc import Sequence

import z3

from otel_hakgal.conventions import ProverResult
from otel_hakgal.demo.knowledge_base import Fact
from otel_hakgal.demo.logic import And, Atom, Formula, Implies, Not, Or, Quantified, predicates
from otel_hakgal.demo.provers import Verdict


class Z3Prover:
    name = "z3"

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s

    def prove(self, goal: Formula, facts: Sequence[Fact]) -> Verdict:
        # One Z3 context per call: Z3's default context is not safe to share between threads
        # (concurrent requests under gunicorn's threads crashed the worker).
        translator = _Translator(z3.Context())
        relevant = relevant_facts(goal, facts)
        assumptions = [translator.formula(fact.formula, {}) for fact in relevant]
        goal_expr = translator.formula(goal, {})
        if len(translator.constants) > 1:  # unique names: different constants are different entities
            assumptions.append(z3.Distinct(*translator.constants.values()))

        negated, reason = self._check(translator.context, [*assumptions, z3.Not(goal_expr)])
        if negated == z3.unsat:
            return Verdict(ProverResult.PROVED, f"assumptions and not(goal) are unsat ({len(relevant)} facts)")
        if negated == z3.unknown:
            return self._undecided(reason)
        affirmed, reason = self._check(translator.context, [*assumptions, goal_expr])
        if affirmed == z3.unsat:
            return Verdict(ProverResult.REFUTED, f"assumptions and goal are unsat ({len(relevant)} facts)")
        if affirmed == z3.unknown:
            return self._undecided(reason)
        return Verdict(ProverResult.UNKNOWN, "goal is independent of the facts")

    def _check(self, context: z3.Context, assertions: list[z3.BoolRef]) -> tuple[z3.CheckSatResult, str]:
        """The solver's answer, and why it gave up when the answer is unknown."""
        solver = z3.Solver(ctx=context)
        solver.set("timeout", max(1, int(self.timeout_s * 1000)))
        solver.add(*assertions)
        result = solver.check()
        return result, (solver.reason_unknown() if result == z3.unknown else "")

    def _undecided(self, reason: str) -> Verdict:
        if "timeout" in reason or "canceled" in reason:
            return Verdict(ProverResult.TIMEOUT, f"no answer within {self.timeout_s:g} s")
        return Verdict(ProverResult.UNKNOWN, f"z3 gave up: {reason}")


def relevant_facts(goal: Formula, facts: Sequence[Fact]) -> list[Fact]:
    """Facts connected to the goal's predicates, following rules until nothing new joins."""
    wanted = predicates(goal)
    chosen: list[Fact] = []
    remaining = list(facts)
    changed = True
    while changed:
        changed = False
        for fact in list(remaining):
            used = predicates(fact.formula)
            if used & wanted:
                chosen.append(fact)
                remaining.remove(fact)
                wanted |= used
                changed = True
    return chosen


class _Translator:
    """Builds Z3 terms, declaring each predicate and constant once."""

    def __init__(self, context: z3.Context) -> None:
        self.context = context
        self.sort = z3.DeclareSort("Entity", context)
        self.functions: dict[tuple[str, int], z3.FuncDeclRef] = {}
        self.constants: dict[str, z3.ExprRef] = {}

    def formula(self, formula: Formula, bound: dict[str, z3.ExprRef]) -> z3.BoolRef:
        if isinstance(formula, Atom):
            return self._atom(formula, bound)
        if isinstance(formula, Not):
            return z3.Not(self.formula(formula.operand, bound))
        if isinstance(formula, And):
            return z3.And(*(self.formula(op, bound) for op in formula.operands))
        if isinstance(formula, Or):
            return z3.Or(*(self.formula(op, bound) for op in formula.operands))
        if isinstance(formula, Implies):
            return z3.Implies(self.formula(formula.premise, bound), self.formula(formula.conclusion, bound))
        return self._quantified(formula, bound)

    def _quantified(self, formula: Quantified, bound: dict[str, z3.ExprRef]) -> z3.BoolRef:
        variable = z3.Const(formula.variable, self.sort)
        body = self.formula(formula.body, {**bound, formula.variable: variable})
        return z3.ForAll([variable], body) if formula.quantifier == "all" else z3.Exists([variable], body)

    def _atom(self, atom: Atom, bound: dict[str, z3.ExprRef]) -> z3.BoolRef:
        key = (atom.predicate, len(atom.args))
        if key not in self.functions:
            self.functions[key] = z3.Function(
                atom.predicate, *([self.sort] * len(atom.args)), z3.BoolSort(self.context)
            )
        args = []
        for arg in atom.args:
            if arg.is_variable:
                # A free variable stands for one arbitrary entity.
                args.append(bound[arg.name] if arg.name in bound else z3.Const(arg.name, self.sort))
            else:
                args.append(self._constant(arg.name))
        result = self.functions[key](*args)
        assert isinstance(result, z3.BoolRef)
        return result

    def _constant(self, name: str) -> z3.ExprRef:
        if name not in self.constants:
            self.constants[name] = z3.Const(f"c_{name}", self.sort)
        return self.constants[name]
