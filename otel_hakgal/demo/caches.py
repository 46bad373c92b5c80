"""The prompt cache (question -> LLM formula) and the proof cache (KB version + formula -> verdict)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import otel_hakgal as hg
from otel_hakgal.conventions import CacheName
from otel_hakgal.demo.portfolio import DECISIVE, PortfolioOutcome


@dataclass
class HitRate:
    lookups: int = 0
    hits: int = 0

    @property
    def rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class PromptCache:
    """LLM translations by question, so a repeated question costs no tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, str] = {}
        self.stats = HitRate()

    @staticmethod
    def key(question: str) -> str:
        return " ".join(question.lower().split())

    def lookup(self, question: str) -> str | None:
        with hg.cache_lookup(CacheName.PROMPT) as lookup, self._lock:
            found = self._entries.get(self.key(question))
            lookup.set_hit(found is not None)
            self.stats.lookups += 1
            self.stats.hits += found is not None
            return found

    def store(self, question: str, reply: str) -> None:
        with self._lock:
            self._entries[self.key(question)] = reply

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class ProofCache:
    """Decided proofs only (proved or refuted), keyed by knowledge-base version and formula."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], PortfolioOutcome] = {}
        self.stats = HitRate()

    def lookup(self, kb_version: int, formula: str) -> PortfolioOutcome | None:
        with hg.cache_lookup(CacheName.PROOF) as lookup, self._lock:
            found = self._entries.get((kb_version, formula))
            lookup.set_hit(found is not None)
            self.stats.lookups += 1
            self.stats.hits += found is not None
            return found

    def store(self, kb_version: int, formula: str, outcome: PortfolioOutcome) -> None:
        if outcome.verdict.result not in DECISIVE:
            return  # an unknown or timed-out proof may succeed next time
        with self._lock:
            self._entries[(kb_version, formula)] = outcome

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
