"""HAK-GAL formulas: normalisation and the Lark grammar that acts as the "logic firewall".

Syntax (as in HAK-GAL): PascalCase predicates and constants, lower-case
variables, ``&``, ``|``, ``->``, prefix ``-`` for "not", ``all x (...)`` and
``exists x (...)``, a trailing ``.``. Anything the grammar rejects never
reaches a prover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from lark import Lark, Token, Transformer, Tree
from lark.exceptions import LarkError

GRAMMAR = r"""
?start: formula "."?
?formula: disjunction
        | disjunction "->" formula          -> implies
?disjunction: conjunction ("|" conjunction)* -> or_
?conjunction: unary ("&" unary)*            -> and_
?unary: "-" unary                            -> not_
      | QUANTIFIER VAR unary                 -> quantified
      | atom
      | "(" formula ")"
atom: NAME "(" term ("," term)* ")"
term: NAME | VAR | NUMBER
QUANTIFIER.2: "all" | "exists"
NAME: /[A-Z][A-Za-z0-9_]*/
VAR: /[a-z][a-z0-9_]*/
NUMBER: /-?\d+(\.\d+)?/
%import common.WS
%ignore WS
"""


# Deeper formulas are refused: the tree transform and every prover recurse once per level.
MAX_DEPTH = 100


class InvalidFormula(ValueError):
    """The logic firewall rejected a formula."""


# --- syntax tree -------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    name: str
    is_variable: bool


@dataclass(frozen=True)
class Atom:
    predicate: str
    args: tuple[Term, ...]

    @property
    def is_ground(self) -> bool:
        return not any(arg.is_variable for arg in self.args)


@dataclass(frozen=True)
class Not:
    operand: Formula


@dataclass(frozen=True)
class And:
    operands: tuple[Formula, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Formula, ...]


@dataclass(frozen=True)
class Implies:
    premise: Formula
    conclusion: Formula


@dataclass(frozen=True)
class Quantified:
    quantifier: str  # "all" or "exists"
    variable: str
    body: Formula


Formula = Atom | Not | And | Or | Implies | Quantified


class _ToTree(Transformer[Token, Formula]):
    def term(self, items: list[Token]) -> Term:
        token = items[0]
        return Term(str(token), token.type == "VAR")

    def atom(self, items: list[object]) -> Atom:
        name, *args = items
        return Atom(str(name), tuple(arg for arg in args if isinstance(arg, Term)))

    def not_(self, items: list[Formula]) -> Not:
        return Not(items[0])

    def and_(self, items: list[Formula]) -> Formula:
        return items[0] if len(items) == 1 else And(tuple(items))

    def or_(self, items: list[Formula]) -> Formula:
        return items[0] if len(items) == 1 else Or(tuple(items))

    def implies(self, items: list[Formula]) -> Implies:
        return Implies(items[0], items[1])

    def quantified(self, items: list[object]) -> Quantified:
        quantifier, variable, body = items
        assert isinstance(body, Atom | Not | And | Or | Implies | Quantified)
        return Quantified(str(quantifier), str(variable), body)


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr")


# --- normalisation -----------------------------------------------------------

# Operator spellings LLMs produce, mapped to HAK-GAL's.
_OPERATOR_SPELLINGS: tuple[tuple[str, str], ...] = (
    ("∧", "&"),
    ("\u2228", "|"),  # logical or
    ("→", "->"),
    ("=>", "->"),
    ("¬", "-"),
    ("~", "-"),
    ("∀", "all "),
    ("∃", "exists "),
)
_WORD_OPERATORS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\band\b"), "&"),
    (re.compile(r"\bor\b"), "|"),
    (re.compile(r"\bnot\s+"), "-"),
    (re.compile(r"\bforall\b"), "all"),
)
# Predicate synonyms: one name per relation, so facts and questions meet.
PREDICATE_SYNONYMS: dict[str, str] = {
    "Capital": "Hauptstadt",
    "CapitalOf": "Hauptstadt",
    "HauptstadtVon": "Hauptstadt",
    "IsCity": "IstStadt",
    "Landmark": "Wahrzeichen",
    "LocatedIn": "LiegtIn",
    "Population": "Einwohner",
}
_PREDICATE_CALL = re.compile(r"\b([A-Z][A-Za-z0-9_]*)\s*\(")
_CODE_FENCE = re.compile(r"```(?:\w+)?")


def normalize(text: str) -> str:
    """Bring a formula to canonical spelling: operators, predicate synonyms, spacing, one final ``.``."""
    formula = _CODE_FENCE.sub("", text).strip().strip("`").strip()
    for spelling, canonical in _OPERATOR_SPELLINGS:
        formula = formula.replace(spelling, canonical)
    for pattern, canonical in _WORD_OPERATORS:
        formula = pattern.sub(canonical, formula)
    formula = _PREDICATE_CALL.sub(lambda m: PREDICATE_SYNONYMS.get(m.group(1), m.group(1)) + "(", formula)
    formula = re.sub(r"\s+", " ", formula).strip()
    formula = re.sub(r"\s*,\s*", ", ", formula)
    formula = formula.rstrip(". ")
    return formula + "."


def parse(text: str) -> Formula:
    """Parse a normalised formula; raises :class:`InvalidFormula` when the firewall rejects it."""
    try:
        tree = _parser().parse(text)
    except LarkError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidFormula(f"rejected by the logic firewall: {first_line}") from None
    if _depth(tree) > MAX_DEPTH:  # e.g. 30,000 negations: the client's mistake, not a RecursionError
        raise InvalidFormula(f"rejected by the logic firewall: nested deeper than {MAX_DEPTH} levels")
    return _ToTree().transform(tree)


def _depth(tree: Tree[Token]) -> int:
    """Nesting depth of a parse tree, without recursion (the LALR parser builds any depth)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))
    return deepest


def parse_fact(text: str) -> tuple[str, Formula]:
    """Normalise and parse; returns the canonical text and its tree."""
    canonical = normalize(text)
    return canonical, parse(canonical)


# --- analysis helpers ----------------------------------------------------------


def predicates(formula: Formula) -> set[str]:
    """Every predicate the formula uses."""
    if isinstance(formula, Atom):
        return {formula.predicate}
    return set().union(*(predicates(child) for child in children(formula)))


def constants(formula: Formula) -> set[str]:
    if isinstance(formula, Atom):
        return {arg.name for arg in formula.args if not arg.is_variable}
    return set().union(*(constants(child) for child in children(formula)))


def children(formula: Formula) -> tuple[Formula, ...]:
    if isinstance(formula, Atom):
        return ()
    if isinstance(formula, Not):
        return (formula.operand,)
    if isinstance(formula, And | Or):
        return formula.operands
    if isinstance(formula, Implies):
        return (formula.premise, formula.conclusion)
    return (formula.body,)


def complexity(formula: Formula) -> int:
    """A rough cost: atoms count 1, connectives 2, quantifiers 5 (they make provers search)."""
    own = 1 if isinstance(formula, Atom) else 5 if isinstance(formula, Quantified) else 2
    return own + sum(complexity(child) for child in children(formula))


def render(formula: Formula) -> str:
    """Canonical text of a tree (without the final ``.``)."""
    if isinstance(formula, Atom):
        return f"{formula.predicate}({', '.join(arg.name for arg in formula.args)})"
    if isinstance(formula, Not):
        return f"-{render(formula.operand)}"
    if isinstance(formula, And | Or):
        joiner = " & " if isinstance(formula, And) else " | "
        return "(" + joiner.join(render(op) for op in formula.operands) + ")"
    if isinstance(formula, Implies):
        return f"({render(formula.premise)} -> {render(formula.conclusion)})"
    return f"{formula.quantifier} {formula.variable} ({render(formula.body)})"
