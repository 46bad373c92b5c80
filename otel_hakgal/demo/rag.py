"""Retrieval over the shipped text corpus, and fact extraction by all providers in parallel."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.util.types import AttributeValue

import otel_hakgal as hg
from otel_hakgal.conventions import RAG_DATA_SOURCE, Attr, GenAIOperation, SpanName
from otel_hakgal.demo.knowledge_base import DATA_DIR
from otel_hakgal.demo.logic import InvalidFormula, parse_fact
from otel_hakgal.demo.prompts import extract_messages
from otel_hakgal.demo.providers import LLMProvider, LLMReply

DEFAULT_CORPUS = DATA_DIR / "corpus.txt"
_STOP_WORDS_TEXT = """
a an the is are was were of in on at to and or not do does did what which who whom how why where when
it its this that these those be been with for from by as has have had i you we they he she
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def content_words(text: str) -> set[str]:
    return {word for word in re.findall(r"[a-z0-9-]+", text.lower()) if word not in _STOP_WORDS}


@dataclass(frozen=True)
class Chunk:
    source: str  # "corpus.txt#2"
    text: str


class Corpus:
    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = list(chunks)

    @classmethod
    def from_file(cls, path: Path = DEFAULT_CORPUS) -> Corpus:
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        return cls([Chunk(f"{path.name}#{i}", text) for i, text in enumerate(paragraphs)])

    def retrieve(self, question: str, top_k: int = 2) -> list[Chunk]:
        """The ``top_k`` chunks sharing the most content words with the question (none without overlap)."""
        # A GenAI retrieval span ("retrieval {data_source}"), so GenAI consumers show it as a retriever.
        attributes: dict[str, AttributeValue] = {
            Attr.GEN_AI_OPERATION_NAME: GenAIOperation.RETRIEVAL.value,
            Attr.GEN_AI_DATA_SOURCE_ID: RAG_DATA_SOURCE,
            Attr.GEN_AI_RETRIEVAL_TOP_K: top_k,
        }
        with hg.step(SpanName.RAG_RETRIEVE.format(data_source=RAG_DATA_SOURCE), attributes=attributes) as step:
            wanted = content_words(question)
            scored = [(len(wanted & content_words(chunk.text)), i) for i, chunk in enumerate(self.chunks)]
            best = [self.chunks[i] for score, i in sorted(scored, key=lambda s: (-s[0], s[1])) if score > 0]
            found = best[:top_k]
            step.set_attribute(Attr.RAG_CHUNK_COUNT, len(found))
            return found


@dataclass(frozen=True)
class Extraction:
    facts: list[str]  # majority-voted, canonical
    votes: dict[str, int]
    failed: list[str]  # providers that did not answer


def _facts_in(reply: LLMReply) -> set[str]:
    facts = set()
    for line in (reply.text or "").splitlines():
        try:
            canonical, _ = parse_fact(line)
        except InvalidFormula:
            continue  # a provider's bad line is simply not a vote
        facts.add(canonical)
    return facts


def extract_facts(providers: Sequence[LLMProvider], chunks: Sequence[Chunk]) -> Extraction:
    """Ask every provider at once; keep the facts a majority of the answering providers agree on."""
    with hg.step(SpanName.RAG_EXTRACT) as step:
        messages = extract_messages([chunk.text for chunk in chunks])
        with hg.ContextThreadPoolExecutor(max_workers=len(providers), thread_name_prefix="rag-extract") as pool:
            replies = list(pool.map(lambda provider: provider.complete(messages), providers))
        answered = [reply for reply in replies if reply.ok]
        votes: Counter[str] = Counter()
        for reply in answered:
            votes.update(_facts_in(reply))
        needed = len(answered) // 2 + 1
        facts = sorted(fact for fact, count in votes.items() if count >= needed)
        step.set_attribute(Attr.RAG_FACT_COUNT, len(facts))
        return Extraction(facts, dict(votes), [reply.provider for reply in replies if not reply.ok])
