"""``KAssistant``: HAK-GAL's reasoning service in miniature, one method per API verb.

``ask``: RAG (retrieve, extract with all providers) -> NL->logic through the
provider chain (prompt cache first) -> normalise and the logic firewall ->
proof cache -> prover portfolio -> answer. Telemetry goes only through
``otel_hakgal``'s API.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import otel_hakgal as hg
from otel_hakgal.conventions import Attr, ErrorType, ProverResult, SpanName
from otel_hakgal.demo.caches import PromptCache, ProofCache
from otel_hakgal.demo.knowledge_base import DATA_DIR, KnowledgeBase, read_fact_lines
from otel_hakgal.demo.logic import Formula, InvalidFormula, complexity, constants, parse_fact
from otel_hakgal.demo.portfolio import PortfolioOutcome, ProverPortfolio
from otel_hakgal.demo.prompts import explain_messages, logicalize_messages
from otel_hakgal.demo.providers import Endpoints, ProviderChain, standard_chain
from otel_hakgal.demo.rag import Chunk, Corpus, extract_facts

ANSWER_YES = "yes"
ANSWER_NO_OR_UNKNOWN = "no_or_unknown"
_LOOKS_LIKE_FORMULA = re.compile(r"[A-Z][A-Za-z0-9_]*\s*\(")
MAX_FILE_NAME_BYTES = 255  # NAME_MAX of Linux and macOS file systems


class ClientMistake(Exception):
    """The request is wrong, not the server: answered with ``http_status`` and the message, never filed as an error."""

    http_status: ClassVar[int] = 400


class InvalidArgument(ClientMistake):
    """An argument the verb cannot take (a path where a file name belongs, control characters, ...)."""


class NotFound(ClientMistake):
    """The argument names something that does not exist (a data file)."""

    http_status = 404


@dataclass(frozen=True)
class AssistantSettings:
    z3_timeout_s: float = 2.0
    provider_timeout_s: float = 10.0
    oracle_timeout_s: float = 5.0
    rag_top_k: int = 2


@dataclass
class Reply:
    """What one verb answers; the API adds the knowledge base, status and metrics around it."""

    chat_response: str
    rag_context: str = ""
    data_sources: list[str] = field(default_factory=list)


@dataclass
class _Counters:
    queries: int = 0
    query_seconds: float = 0.0
    parses: int = 0
    parse_failures: int = 0
    proofs: int = 0
    proofs_decided: int = 0


class KAssistant:
    def __init__(
        self,
        kb: KnowledgeBase,
        chain: ProviderChain,
        portfolio: ProverPortfolio,
        corpus: Corpus,
        settings: AssistantSettings | None = None,
    ) -> None:
        self.kb = kb
        self.chain = chain
        self.portfolio = portfolio
        self.corpus = corpus
        self.settings = settings or AssistantSettings()
        self.prompt_cache = PromptCache()
        self.proof_cache = ProofCache()
        self._suggestions: list[str] = []
        self._lock = threading.Lock()
        self._counters = _Counters()

    @classmethod
    def create(cls, endpoints: Endpoints, settings: AssistantSettings | None = None) -> KAssistant:
        """The assistant with the shipped knowledge base and corpus, talking to ``endpoints``."""
        settings = settings or AssistantSettings()
        portfolio = ProverPortfolio.standard(
            z3_timeout_s=settings.z3_timeout_s, oracle_url=endpoints.oracle, oracle_timeout_s=settings.oracle_timeout_s
        )
        chain = standard_chain(endpoints, timeout_s=settings.provider_timeout_s)
        return cls(KnowledgeBase.from_file(), chain, portfolio, Corpus.from_file(), settings)

    # --- questions -------------------------------------------------------------

    def ask(self, question: str, *, query_type: str = "ask") -> Reply:
        """Answer a natural-language question: "Yes" with the proof's reason, or "No/Unknown"."""
        return self._answer(question, query_type=query_type).reply

    def explain(self, question: str) -> Reply:
        answered = self._answer(question, query_type="explain")
        if answered.formula is None:
            return answered.reply
        explanation = self.chain.complete(explain_messages(question, answered.formula, answered.reply.chat_response))
        text = explanation.text if explanation.ok else f"(no explanation: {explanation.error})"
        answered.reply.chat_response += f"\n\nExplanation: {text}"
        return answered.reply

    def _answer(self, question: str, *, query_type: str) -> _Answered:
        if not question.strip():
            return _Answered(Reply("Please ask a question, e.g. 'ask What is the capital of France?'"), None)
        started = time.perf_counter()
        with hg.query(question, query_type=query_type) as query:
            chunks = self._retrieve_and_learn(question)
            context, sources = "\n\n".join(c.text for c in chunks), [c.source for c in chunks]
            llm_text, error = self._logicalize(question)
            if llm_text is None:
                query.fail(ErrorType.PROVIDER_ERROR, error)
                message = f"No LLM provider could translate the question ({error})."
                return _Answered(Reply(message, context, sources), None)
            query.set_formula(llm_text.strip())
            checked = self._firewall(llm_text)
            if isinstance(checked, InvalidFormula):
                query.fail(ErrorType.INVALID_FORMULA, str(checked))
                return _Answered(Reply(f"The logic firewall stopped the question: {checked}", context, sources), None)
            canonical, goal = checked
            query.set_formula(canonical)
            outcome = self._prove(canonical, goal)
            decided_yes = outcome.verdict.result is ProverResult.PROVED
            query.set_answer(ANSWER_YES if decided_yes else ANSWER_NO_OR_UNKNOWN)
        with self._lock:
            self._counters.queries += 1
            self._counters.query_seconds += time.perf_counter() - started
        return _Answered(Reply(_answer_text(canonical, outcome), context, sources), canonical)

    def _retrieve_and_learn(self, question: str) -> list[Chunk]:
        """RAG: relevant chunks; facts the providers agree on and the KB lacks become learning suggestions."""
        chunks = self.corpus.retrieve(question, self.settings.rag_top_k)
        if chunks:
            extraction = extract_facts(self.chain.providers, chunks)
            known = set(self.kb.texts())
            with self._lock:
                for fact in extraction.facts:
                    if fact not in known and fact not in self._suggestions:
                        self._suggestions.append(fact)
        return chunks

    def _logicalize(self, question: str) -> tuple[str | None, str]:
        """NL -> logic: the prompt cache, else the provider chain. Returns (LLM text, error)."""
        cached = self.prompt_cache.lookup(question)
        if cached is not None:
            return cached, ""
        reply = self.chain.complete(
            logicalize_messages(question), accept=lambda text: bool(_LOOKS_LIKE_FORMULA.search(text))
        )
        if not reply.ok or reply.text is None:
            return None, reply.error or "no reply"
        self.prompt_cache.store(question, reply.text)
        return reply.text, ""

    def _firewall(self, text: str) -> tuple[str, Formula] | InvalidFormula:
        """Normalise and parse under a parse span; an invalid formula is returned, not raised."""
        with hg.step(SpanName.PARSE) as step:
            try:
                canonical, formula = parse_fact(text)
            except InvalidFormula as error:
                step.fail(ErrorType.INVALID_FORMULA, str(error))
                with self._lock:
                    self._counters.parses += 1
                    self._counters.parse_failures += 1
                return error
            step.set_attribute(Attr.QUERY_FORMULA, canonical)
            with self._lock:
                self._counters.parses += 1
            return canonical, formula

    def _prove(self, canonical: str, goal: Formula) -> PortfolioOutcome:
        version = self.kb.version
        cached = self.proof_cache.lookup(version, canonical)
        if cached is not None:
            return cached
        outcome = self.portfolio.prove(goal, self.kb.facts())
        self.proof_cache.store(version, canonical, outcome)
        with self._lock:
            self._counters.proofs += 1
            self._counters.proofs_decided += outcome.prover is not None
        return outcome

    # --- knowledge-base changes ------------------------------------------------------

    def add_raw(self, text: str) -> Reply:
        checked = self._firewall(text)
        if isinstance(checked, InvalidFormula):
            return Reply(f"Not added. {checked}")
        canonical, _ = checked
        added = self._update_kb("add", lambda: self.kb.add(canonical))
        return Reply(f"Added: {canonical}" if added else f"Already known: {canonical}")

    def retract(self, text: str) -> Reply:
        checked = self._firewall(text)
        if isinstance(checked, InvalidFormula):
            return Reply(f"Not retracted. {checked}")
        canonical, _ = checked
        removed = self._update_kb("retract", lambda: self.kb.retract(canonical))
        return Reply(f"Retracted: {canonical}" if removed else f"Not in the knowledge base: {canonical}")

    def learn(self, text: str = "") -> Reply:
        """Add the learning suggestions, and the facts the providers agree on in ``text``."""
        with self._lock:
            pending, self._suggestions = self._suggestions, []
        if text.strip():
            extracted = extract_facts(self.chain.providers, [Chunk("learn", text)]).facts
            pending += [fact for fact in extracted if fact not in pending]
        if not pending:
            return Reply("Nothing to learn: no learning suggestions yet (ask questions first).")
        added = self._update_kb("learn", lambda: sum(self.kb.add(fact) for fact in pending))
        return Reply(f"Learned {added} new facts: " + " ".join(pending))

    def build_kb(self, path_text: str) -> Reply:
        """Add facts from a file in the data directory: ``.hkb`` fact lists, or text read by all providers.

        A name that is no plain file name raises :class:`InvalidArgument`, one no file has :class:`NotFound`.
        """
        path = _data_file(path_text or "corpus.txt")
        if path.suffix == ".hkb":
            facts = read_fact_lines(path)
            source = "fact list"
        else:
            corpus = Corpus.from_file(path)
            facts = extract_facts(self.chain.providers, corpus.chunks).facts
            source = f"{len(corpus.chunks)} text chunks"

        def add_all() -> int:
            added = 0
            for fact in facts:
                try:
                    added += self.kb.add(fact)
                except InvalidFormula:
                    continue  # a bad line in a file does not stop the build
            return added

        added = self._update_kb("build", add_all)
        return Reply(f"Built from {path.name} ({source}): {added} new facts, {len(self.kb)} in total.")

    def _update_kb(self, operation: str, change: Any) -> Any:
        with hg.step(SpanName.KB_UPDATE, attributes={Attr.KB_OPERATION: operation}) as step:
            result = change()
            step.set_attribute(Attr.KB_FACT_COUNT, len(self.kb))
        self.proof_cache.clear()  # proofs were made against the old facts
        return result

    def clear_cache(self) -> Reply:
        sizes = len(self.proof_cache), len(self.prompt_cache)
        self.proof_cache.clear()
        self.prompt_cache.clear()
        return Reply(f"Caches cleared ({sizes[0]} proofs, {sizes[1]} prompts).")

    # --- looking things up -------------------------------------------------------------

    def show(self) -> Reply:
        facts = self.kb.texts()
        return Reply(f"{len(facts)} facts:\n" + "\n".join(facts))

    def what_is(self, entity: str) -> Reply:
        name = entity.strip().rstrip("?")
        about = [fact.text for fact in self.kb.facts() if name.lower() in {c.lower() for c in constants(fact.formula)}]
        if not about:
            return Reply(f"Nothing is known about {name!r}.")
        return Reply(f"{name}:\n" + "\n".join(about))

    def search(self, text: str) -> Reply:
        chunks = self.corpus.retrieve(text, self.settings.rag_top_k)
        if not chunks:
            return Reply(f"No text matches {text!r}.")
        context = "\n\n".join(chunk.text for chunk in chunks)
        return Reply(f"{len(chunks)} passages found.", context, [chunk.source for chunk in chunks])

    def parse(self, text: str) -> Reply:
        checked = self._firewall(text)
        if isinstance(checked, InvalidFormula):
            return Reply(f"Invalid formula. {checked}")
        canonical, formula = checked
        return Reply(f"Valid formula: {canonical} (complexity {complexity(formula)})")

    def status(self) -> Reply:
        chain = self.chain.status()
        return Reply(
            f"{len(self.kb)} facts, {len(self.learning_suggestions())} learning suggestions, "
            f"{len(self.proof_cache)} cached proofs, {len(self.prompt_cache)} cached prompts, "
            f"{chain['llm_active']}/{chain['llm_count']} LLM providers online."
        )

    def learning_suggestions(self) -> list[str]:
        with self._lock:
            return list(self._suggestions)

    def performance_metrics(self) -> dict[str, float | int]:
        """The in-app counters HAK-GAL shows in every response."""
        with self._lock:
            c = self._counters
            return {
                "queries": c.queries,
                "avg_query_ms": round(1000 * c.query_seconds / c.queries, 2) if c.queries else 0.0,
                "parser_success_rate": round(1 - c.parse_failures / c.parses, 3) if c.parses else 1.0,
                "prover_success_rate": round(c.proofs_decided / c.proofs, 3) if c.proofs else 0.0,
                "proof_cache_hit_rate": round(self.proof_cache.stats.rate, 3),
                "prompt_cache_hit_rate": round(self.prompt_cache.stats.rate, 3),
                "kb_facts": len(self.kb),
            }


@dataclass
class _Answered:
    reply: Reply
    formula: str | None  # None when the question never reached the provers


def _answer_text(canonical: str, outcome: PortfolioOutcome) -> str:
    verdict, formula = outcome.verdict, canonical.removesuffix(".")
    if verdict.result is ProverResult.PROVED:
        return f"Yes. {formula} is proved by {outcome.prover}: {verdict.reason}."
    if verdict.result is ProverResult.REFUTED:
        return f"No/Unknown. {formula} is refuted by {outcome.prover}: {verdict.reason}."
    return f"No/Unknown. No prover could decide {formula} ({verdict.reason})."


def _data_file(name: str) -> Path:
    """The data file called ``name``: a plain file name, never a path (the API must not read arbitrary files).

    A bad name is the client's mistake (:class:`InvalidArgument`, 400), and so
    is a name no file has (:class:`NotFound`, 404); neither is a server fault.
    """
    shown = _shown(name)
    if not name.isprintable():  # NUL and other control characters, lone surrogates
        raise InvalidArgument(f"build_kb: the file name {shown} contains control characters or invalid text")
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise InvalidArgument(f"build_kb: the file name {shown} is longer than {MAX_FILE_NAME_BYTES} bytes")
    if "/" in name or "\\" in name or name.startswith("."):  # paths, ".", "..", hidden files
        raise InvalidArgument(f"build_kb takes the name of a file in the data directory, not a path: {shown}")
    path = DATA_DIR / name
    # A link that leads out of the data directory is as good as absent.
    if not path.is_file() or not path.resolve().is_relative_to(DATA_DIR.resolve()):
        raise NotFound(f"build_kb: no data file {shown}; the data directory has {', '.join(_data_files())}")
    return path


def _data_files() -> list[str]:
    return sorted(p.name for p in DATA_DIR.iterdir() if p.is_file() and not p.name.startswith("."))


def _shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for an answer, cut: a 60 KB name must not come back 60 KB long in every message."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
