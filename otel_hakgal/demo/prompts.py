"""Prompts the assistant sends to LLM providers. The simulator recognises the task by the system prompt."""

from __future__ import annotations

from typing import Final

LOGICALIZE_SYSTEM: Final = (
    "You translate questions into HAK-GAL logic. Answer with exactly one formula ending in '.', "
    "PascalCase predicates and constants, lower-case variables, & | -> and prefix - for not."
)
EXTRACT_SYSTEM: Final = "You extract facts in HAK-GAL logic from text. Answer with one fact per line, nothing else."
EXPLAIN_SYSTEM: Final = "You explain the result of a logical proof in two plain English sentences."


def logicalize_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": LOGICALIZE_SYSTEM}, {"role": "user", "content": question}]


def extract_messages(chunks: list[str]) -> list[dict[str, str]]:
    return [{"role": "system", "content": EXTRACT_SYSTEM}, {"role": "user", "content": "Text:\n" + "\n\n".join(chunks)}]


def explain_messages(question: str, formula: str, answer: str) -> list[dict[str, str]]:
    user = f"Question: {question}\nFormula: {formula}\nResult: {answer}"
    return [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": user}]
