"""The simulated models' "knowledge": deterministic answers to the assistant's three tasks.

A fixed set of English question patterns is translated to HAK-GAL formulas
(``What is the capital of France?`` -> ``Hauptstadt(Frankreich, Paris).``);
facts are extracted from a fixed set of sentence patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from otel_hakgal.demo.prompts import EXPLAIN_SYSTEM, EXTRACT_SYSTEM, LOGICALIZE_SYSTEM

# English names -> the German constants of the knowledge base.
NAMES: dict[str, str] = {
    "france": "Frankreich",
    "germany": "Deutschland",
    "italy": "Italien",
    "spain": "Spanien",
    "austria": "Oesterreich",
    "japan": "Japan",
    "rome": "Rom",
    "vienna": "Wien",
    "tokyo": "Tokio",
    "eiffel tower": "Eiffelturm",
    "colosseum": "Kolosseum",
    "brandenburg gate": "BrandenburgerTor",
    "whale": "Wal",
    "dog": "Hund",
    "dolphin": "Delfin",
}
# What the "model" knows about capitals, whether or not the knowledge base does.
CAPITALS: dict[str, str] = {
    "Frankreich": "Paris",
    "Deutschland": "Berlin",
    "Italien": "Rom",
    "Spanien": "Madrid",
    "Oesterreich": "Wien",
    "Japan": "Tokio",
}
# Outside knowledge the Wolfram-style oracle has.
ORACLE_ANSWERS: dict[str, str] = {
    "Einwohner Tokio": "37400000",
    "Einwohner Berlin": "3645000",
    "Einwohner Paris": "2161000",
    "Einwohner Rom": "2873000",
}


def constant(phrase: str) -> str:
    """A HAK-GAL constant for an English phrase: known names translated, others in PascalCase."""
    cleaned = re.sub(r"^(the|a|an)\s+", "", phrase.strip().strip("?.!").strip(), flags=re.IGNORECASE)
    known = NAMES.get(cleaned.lower())
    if known:
        return known
    return "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", cleaned)) or "Etwas"


def _capital_question(m: re.Match[str]) -> str:
    country = constant(m["country"])
    return f"Hauptstadt({country}, {CAPITALS.get(country, 'Unbekannt')})."


_QUESTIONS: tuple[tuple[str, Callable[[re.Match[str]], str]], ...] = (
    (r"what is the capital of (?P<country>.+)", _capital_question),
    (
        r"is (?P<city>.+) the capital of (?P<country>.+)",
        lambda m: f"Hauptstadt({constant(m['country'])}, {constant(m['city'])}).",
    ),
    (r"is (?P<x>.+) a city", lambda m: f"IstStadt({constant(m['x'])})."),
    (r"is (?P<x>.+) a vertebrate", lambda m: f"IstWirbeltier({constant(m['x'])})."),
    (r"is (?P<x>.+) an ancestor of (?P<y>.+)", lambda m: f"Vorfahr({constant(m['x'])}, {constant(m['y'])})."),
    (r"is (?P<x>.+) a landmark of (?P<city>.+)", lambda m: f"Wahrzeichen({constant(m['city'])}, {constant(m['x'])})."),
    (r"does (?P<x>.+) lie in (?P<y>.+)", lambda m: f"LiegtIn({constant(m['x'])}, {constant(m['y'])})."),
    (
        r"does (?P<city>.+) have (?P<n>[\d,.]+) inhabitants",
        lambda m: f"Einwohner({constant(m['city'])}, {re.sub(r'[,.]', '', m['n'])}).",
    ),
    (r"is the hak-gal framework scientifically founded", lambda m: "IstWissenschaftlichFundiert(HakGalFramework)."),
    (
        r"do all main components work together",
        lambda m: "all x (IstHauptkomponente(x) -> ArbeitetZusammen(x)).",
    ),
    (r"does the logic engine work together.*", lambda m: "ArbeitetZusammen(LogikEngine)."),
    # A paradox: the model answers with a biconditional, which HAK-GAL's grammar does not have.
    (r"is this sentence false", lambda m: "IstFalsch(DieserSatz) <-> -IstFalsch(DieserSatz)."),
)

_SENTENCES: tuple[tuple[str, Callable[[re.Match[str]], str]], ...] = (
    (
        r"(?P<x>[A-Z]\w+) is the capital of (?P<y>[A-Z]\w+)",
        lambda m: f"Hauptstadt({constant(m['y'])}, {constant(m['x'])}).",
    ),
    (
        r"The (?P<x>[A-Z][\w ]+?) is a landmark of (?P<y>[A-Z]\w+)",
        lambda m: f"Wahrzeichen({constant(m['y'])}, {constant(m['x'])}).",
    ),
    (r"(?P<x>[A-Z]\w+) lies in (?P<y>[A-Z]\w+)", lambda m: f"LiegtIn({constant(m['x'])}, {constant(m['y'])})."),
    (r"The (?P<x>\w+) is a mammal", lambda m: f"IstSaeugetier({constant(m['x'])})."),
)


def translate_question(question: str) -> str:
    text = question.strip().rstrip("?.! ").strip()
    for pattern, build in _QUESTIONS:
        match = re.fullmatch(pattern, text, flags=re.IGNORECASE)
        if match:
            return build(match)
    return f"Aussage({constant(' '.join(text.split()[:4]))})."


def extract_facts(text: str) -> list[str]:
    facts: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        for pattern, build in _SENTENCES:
            match = re.search(pattern, sentence)
            if match and build(match) not in facts:
                facts.append(build(match))
    return facts


def explain(user: str) -> str:
    fields = dict(line.split(": ", 1) for line in user.splitlines() if ": " in line)
    formula, result = fields.get("Formula", "the formula"), fields.get("Result", "unknown")
    return (
        f"The question was translated into the formula {formula}. "
        f"Checked against the knowledge base, the provers reached the result: {result}."
    )


def respond(system: str, user: str, model_family: str) -> str:
    """The model's answer to one request. ``model_family`` adds each provider's habits."""
    if system == LOGICALIZE_SYSTEM:
        formula = translate_question(user)
        return f"```\n{formula}\n```" if model_family == "mistral" else formula
    if system == EXTRACT_SYSTEM:
        facts = extract_facts(user)
        if model_family == "mistral" and facts:  # Mistral "hallucinates" one fact; the majority vote drops it
            facts.append("IstBeruehmt(Europa).")
        return "\n".join(facts)
    if system == EXPLAIN_SYSTEM:
        return explain(user)
    return "I can translate questions into logic, extract facts, and explain proofs."


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: about four tokens per three words."""
    return max(1, round(len(text.split()) * 4 / 3))
