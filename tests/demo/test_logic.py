"""Normalisation and the logic firewall."""

from __future__ import annotations

import pytest

from otel_hakgal.demo.logic import (
    Atom,
    Implies,
    InvalidFormula,
    Not,
    Quantified,
    complexity,
    normalize,
    parse,
    parse_fact,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Hauptstadt(Frankreich, Paris).", "Hauptstadt(Frankreich, Paris)."),
        ("```\nHauptstadt(Frankreich,Paris)\n```", "Hauptstadt(Frankreich, Paris)."),
        ("CapitalOf(Frankreich, Paris)", "Hauptstadt(Frankreich, Paris)."),
        ("IstStadt(Rom) ∧ ¬IstStadt(Kolosseum)", "IstStadt(Rom) & -IstStadt(Kolosseum)."),
        ("forall x (P(x) => Q(x))", "all x (P(x) -> Q(x))."),
    ],
)
def test_normalize_brings_llm_spellings_to_hakgal_syntax(raw: str, canonical: str) -> None:
    assert normalize(raw) == canonical
    parse(canonical)


def test_parse_builds_the_tree() -> None:
    _, formula = parse_fact("all x all y (Hauptstadt(x, y) -> IstHauptstadt(y)).")
    assert isinstance(formula, Quantified) and formula.quantifier == "all"
    assert isinstance(formula.body, Quantified)
    assert isinstance(formula.body.body, Implies)
    _, negated = parse_fact("-IstWissenschaftlichFundiert(HakGalFramework).")
    assert isinstance(negated, Not) and isinstance(negated.operand, Atom)
    assert negated.operand.is_ground


@pytest.mark.parametrize(
    "text",
    [
        "IstFalsch(DieserSatz) <-> -IstFalsch(DieserSatz).",
        "Hauptstadt(Frankreich, Paris",
        "the capital of France is Paris",
        "all (P(x)).",
        "Hauptstadt().",
        "",
    ],
)
def test_the_firewall_rejects_what_is_not_hakgal_logic(text: str) -> None:
    with pytest.raises(InvalidFormula, match="logic firewall"):
        parse_fact(text)


def test_complexity_ranks_quantifiers_above_atoms() -> None:
    atom = complexity(parse_fact("IstStadt(Rom).")[1])
    rule = complexity(parse_fact("all x (IstHauptkomponente(x) -> ArbeitetZusammen(x)).")[1])
    assert atom == 1 and rule > 4
