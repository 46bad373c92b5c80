"""The knowledge base: HAK-GAL facts, each checked by the logic firewall before it is stored."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from otel_hakgal.demo.logic import Formula, parse_fact

DATA_DIR = Path(str(resources.files("otel_hakgal.demo") / "data"))
DEFAULT_FACTS_FILE = DATA_DIR / "facts.hkb"


@dataclass(frozen=True)
class Fact:
    text: str  # canonical spelling, ends in "."
    formula: Formula


def read_fact_lines(path: Path) -> list[str]:
    """Fact lines of a ``.hkb`` file: one per line, ``#`` starts a comment."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


class KnowledgeBase:
    """Facts in insertion order. ``version`` changes with every change, so caches can key on it."""

    def __init__(self, facts: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._facts: dict[str, Fact] = {}
        self.version = 0
        for text in facts:
            self.add(text)

    @classmethod
    def from_file(cls, path: Path = DEFAULT_FACTS_FILE) -> KnowledgeBase:
        return cls(read_fact_lines(path))

    def add(self, text: str) -> bool:
        """Add a fact (raises ``InvalidFormula``); returns False when it was already there."""
        canonical, formula = parse_fact(text)
        with self._lock:
            if canonical in self._facts:
                return False
            self._facts[canonical] = Fact(canonical, formula)
            self.version += 1
            return True

    def retract(self, text: str) -> bool:
        """Remove a fact (raises ``InvalidFormula``); returns False when it was not there."""
        canonical, _ = parse_fact(text)
        with self._lock:
            if self._facts.pop(canonical, None) is None:
                return False
            self.version += 1
            return True

    def facts(self) -> list[Fact]:
        with self._lock:
            return list(self._facts.values())

    def texts(self) -> list[str]:
        return [fact.text for fact in self.facts()]

    def __contains__(self, text: str) -> bool:
        canonical, _ = parse_fact(text)
        with self._lock:
            return canonical in self._facts

    def __len__(self) -> int:
        with self._lock:
            return len(self._facts)
