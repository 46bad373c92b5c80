"""HAK-GAL semantic conventions: the single source of every telemetry name.

Every span name, attribute key, metric name, unit and bucket boundary that
``otel_hakgal`` emits is defined here once, with its type and meaning: the
constants (``Attr.COMMAND_NAME``, ...) are plain strings returned by the
definitions, and ``instrumentation.md``'s tables are generated from the same
definitions (a test keeps them in step).

HAK-GAL's own names are domain-first and low-cardinality (``hakgal.<domain>.*``).
LLM calls follow the OpenTelemetry GenAI conventions; cost, which has no
standard yet, lives under ``hakgal.llm.cost.*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

INSTRUMENTATION_SCOPE: Final = "otel_hakgal"
# The OpenTelemetry semantic conventions release the layer's own scope follows (its schema URL, on its
# tracer and meter): `error.type`, `server.*` and the GenAI names. `gen_ai.provider.name` and the message
# attributes came in 1.37.0; the GenAI conventions have since moved to their own repository
# (semantic-conventions-genai), which has no release yet.
SEMCONV_VERSION: Final = "1.37.0"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
# OpenTelemetry's switch between the old and the stable HTTP conventions of the HTTP instrumentations
# (Flask, WSGI), read once per process. The layer defaults it to ``http`` unless the user set it.
SEMCONV_STABILITY_OPT_IN_ENV: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
HTTP_STABLE_OPT_IN: Final = "http"  # the stable names only: the layer's default
HTTP_DUP_OPT_IN: Final = "http/dup"  # old and stable names at once, while dashboards migrate
# Span event added by ``capture_message`` (attributes: ``message`` and ``hakgal.message.level``).
MESSAGE_EVENT: Final = "hakgal.message"
# The currency of prices that name none, and the unit of the cost metric.
DEFAULT_COST_CURRENCY: Final = "USD"


# --- Definitions: each name is defined once, with its meaning; instrumentation.md's tables come from these. ---


class Convention(StrEnum):
    """Which conventions a name follows: the ``convention`` column of instrumentation.md's tables."""

    SEMCONV = f"OTel semconv v{SEMCONV_VERSION}"  # error.type, server.*, http.*, url.*
    GEN_AI = f"OTel GenAI conventions (semconv v{SEMCONV_VERSION}, semantic-conventions-genai)"  # gen_ai.*
    HAKGAL = "hakgal"  # HAK-GAL's own domain names (hakgal.*)
    LAYER = "otel_hakgal"  # the layer's own health and sampling (otel_hakgal.*)


def convention_of(name: str) -> Convention:
    """The convention a span, attribute or metric name belongs to, by its namespace."""
    if name.startswith("hakgal."):
        return Convention.HAKGAL
    if name.startswith("otel_hakgal."):
        return Convention.LAYER
    if name.startswith("gen_ai."):
        return Convention.GEN_AI
    return Convention.SEMCONV


@dataclass(frozen=True)
class AttributeDef:
    key: str
    type: str
    description: str
    values: tuple[str, ...] = ()

    @property
    def convention(self) -> Convention:
        return convention_of(self.key)


@dataclass(frozen=True)
class SpanDef:
    name: str
    kind: str
    description: str
    attributes: tuple[str, ...]

    @property
    def convention(self) -> Convention:
        """By the name's namespace; a name without one (the GenAI span ``{operation} {model}``)
        follows the convention of its first attribute."""
        if self.name.startswith(("hakgal.", "otel_hakgal.")) or not self.attributes:
            return convention_of(self.name)
        return convention_of(self.attributes[0])


@dataclass(frozen=True)
class MetricDef:
    name: str
    instrument: str
    unit: str
    description: str
    attributes: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def convention(self) -> Convention:
        return convention_of(self.name)


_Def = TypeVar("_Def")
_ATTRIBUTES: dict[str, AttributeDef] = {}
_SPANS: dict[str, SpanDef] = {}
_METRICS: dict[str, MetricDef] = {}


def _define(registry: dict[str, _Def], name: str, definition: _Def) -> str:
    if name in registry:
        raise ValueError(f"{name!r} is defined twice")
    registry[name] = definition
    return name


def _attribute(key: str, value_type: str, brief: str, values: tuple[str, ...] = ()) -> str:
    """Define an attribute; returns the key as a plain ``str`` (attribute dicts are built on the hot path)."""
    return _define(_ATTRIBUTES, key, AttributeDef(key, value_type, brief, values))


def _span(name: str, kind: str, brief: str, attributes: tuple[str, ...]) -> str:
    return _define(_SPANS, name, SpanDef(name, kind, brief, attributes))


def _metric(
    name: str, instrument: str, unit: str, brief: str, attributes: tuple[str, ...], buckets: tuple[float, ...] = ()
) -> str:
    return _define(_METRICS, name, MetricDef(name, instrument, unit, brief, attributes, buckets))


# --- Closed sets of attribute values ---


class ProverResult(StrEnum):
    """The closed set of prover outcomes."""

    PROVED = "proved"
    REFUTED = "refuted"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    ERROR = "error"


class Outcome(StrEnum):
    """How a command or query ended."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    # The client's mistake (unknown verb, invalid or missing argument): answered 4xx, not counted as an error.
    REJECTED = "rejected"

    @property
    def failed(self) -> bool:
        """Whether error rates count it: an error or a timeout, never a rejection."""
        return self in (Outcome.ERROR, Outcome.TIMEOUT)


# The outcomes error rates count, and the same as a PromQL regex (alerts, dashboards, reports).
FAILED_OUTCOMES: Final = frozenset(o.value for o in Outcome if o.failed)
FAILED_OUTCOMES_REGEX: Final = "|".join(sorted(FAILED_OUTCOMES))


class CacheName(StrEnum):
    PROOF = "proof"
    PROMPT = "prompt"
    ORACLE = "oracle"


class ErrorScope(StrEnum):
    """Which kind of operation an error was counted in."""

    COMMAND = "command"
    QUERY = "query"
    PROVER = "prover"
    LLM = "llm"
    CACHE = "cache"
    STEP = "step"


class ErrorType:
    """Fixed ``error.type`` codes for failures that are not exceptions."""

    TIMEOUT: Final = "timeout"
    PROVIDER_ERROR: Final = "provider_error"  # a failure of a provider that is neither HTTP nor an exception
    MALFORMED_RESPONSE: Final = "malformed_response"
    INVALID_FORMULA: Final = "invalid_formula"
    OTHER: Final = "_OTHER"  # the OTel fallback value


class SamplingDecision(StrEnum):
    """``otel_hakgal.sampling.decision``: what tail sampling did with a trace."""

    KEPT = "kept"
    DROPPED = "dropped"


class SamplingReason(StrEnum):
    """``otel_hakgal.sampling.reason``: why tail sampling kept a trace (dropped ones: ``ratio``), first match wins."""

    ERROR = "error"  # a span with status ERROR
    SLOW = "slow"  # the local root took longer than sampling.tail.keep_slower_than_s
    RULE = "rule"  # a [[sampling.tail.rules]] entry matched (and its keep_ratio kept it)
    RATIO = "ratio"  # sampling.tail.keep_ratio, by trace id


class TailSamplingLoss(StrEnum):
    """``error.type`` of ``otel_hakgal.sampling.incomplete``: why a trace left tail sampling incomplete."""

    TRACE_FULL = "trace_full"  # spans past sampling.tail.max_spans_per_trace were dropped
    TOO_OLD = "too_old"  # its local root stayed open past sampling.tail.max_trace_age_s: decided early
    TOO_MANY_TRACES = "too_many_traces"  # past sampling.tail.max_open_traces: the oldest decided early
    SHUTDOWN = "shutdown"  # still open at shutdown (or when tail sampling was switched off): decided early


class TokenType(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class GenAIOperation(StrEnum):
    CHAT = "chat"
    TEXT_COMPLETION = "text_completion"
    GENERATE_CONTENT = "generate_content"
    EMBEDDINGS = "embeddings"
    RETRIEVAL = "retrieval"


# The JSON attributes of captured content follow the GenAI conventions' JSON schemas
# (gen-ai-input-messages.json, gen-ai-output-messages.json, gen-ai-system-instructions.json).
GEN_AI_MESSAGE_ROLES: Final = ("system", "user", "assistant", "tool")
GEN_AI_TEXT_PART: Final = "text"
# Marks message content the layer cut to fit `redaction.max_attribute_length`.
GEN_AI_TRUNCATION_MARKER: Final = "…[truncated]"
# The data source of the RAG retrieval span (`gen_ai.data_source.id`).
RAG_DATA_SOURCE: Final = "hakgal.corpus"


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


# --- Names ---


class Attr:
    """Attribute keys, in the order of the attributes table."""

    # Commands (one span per API command)
    COMMAND_NAME: Final = _attribute(
        "hakgal.command.name", "string", "Command verb, lower-cased (`ask`, `add_raw`, ...)."
    )
    COMMAND_TEXT: Final = _attribute(
        "hakgal.command.text", "string", "Command arguments, truncated or hashed per `redaction.text_mode`."
    )
    COMMAND_OUTCOME: Final = _attribute("hakgal.command.outcome", "string", "How the command ended.", _values(Outcome))
    COMMAND_TIMEOUT: Final = _attribute("hakgal.command.timeout", "double", "The command's timeout in seconds.")
    # Queries (natural-language question -> formula -> answer)
    QUERY_TYPE: Final = _attribute(
        "hakgal.query.type", "string", "Kind of query: the verb that started it (`ask`, `explain`)."
    )
    QUERY_TEXT: Final = _attribute(
        "hakgal.query.text", "string", "The question, truncated or hashed per `redaction.text_mode`."
    )
    QUERY_FORMULA: Final = _attribute(
        "hakgal.query.formula", "string", "The formula the question was translated to, per `redaction.text_mode`."
    )
    QUERY_ANSWER: Final = _attribute("hakgal.query.answer", "string", "The answer given (`yes`, `no_or_unknown`).")
    QUERY_OUTCOME: Final = _attribute("hakgal.query.outcome", "string", "How the query ended.", _values(Outcome))
    # Provers
    PROVER_NAME: Final = _attribute(
        "hakgal.prover.name", "string", "Prover in the portfolio (`functional`, `z3`, `pattern`, `oracle`)."
    )
    PROVER_RESULT: Final = _attribute("hakgal.prover.result", "string", "The prover's result.", _values(ProverResult))
    PROVER_REASON: Final = _attribute("hakgal.prover.reason", "string", "The prover's short reason for its result.")
    PROVER_ORDER: Final = _attribute(
        "hakgal.prover.order", "int", "Position of the prover in this query's portfolio, from 0."
    )
    PROVER_TIMEOUT: Final = _attribute("hakgal.prover.timeout", "double", "The prover's timeout in seconds.")
    # Caches
    CACHE_NAME: Final = _attribute("hakgal.cache.name", "string", "Which cache was looked up.", _values(CacheName))
    CACHE_HIT: Final = _attribute("hakgal.cache.hit", "boolean", "Whether the lookup found an entry.")
    # Knowledge base and retrieval
    KB_FACT_COUNT: Final = _attribute("hakgal.kb.fact_count", "int", "Facts in the knowledge base after the operation.")
    KB_OPERATION: Final = _attribute(
        "hakgal.kb.operation", "string", "Knowledge-base change (`add`, `retract`, `build`, `learn`)."
    )
    RAG_CHUNK_COUNT: Final = _attribute("hakgal.rag.chunk_count", "int", "Text chunks retrieved for the question.")
    RAG_FACT_COUNT: Final = _attribute("hakgal.rag.fact_count", "int", "Candidate facts extracted from the chunks.")
    # LLM cost (no OTel standard yet)
    LLM_COST_AMOUNT: Final = _attribute(
        "hakgal.llm.cost.amount", "double", "Cost of the LLM call from the configured pricing table."
    )
    LLM_COST_CURRENCY: Final = _attribute("hakgal.llm.cost.currency", "string", "Currency of `hakgal.llm.cost.amount`.")
    LLM_COST_KNOWN: Final = _attribute(
        "hakgal.llm.cost.known",
        "boolean",
        "False when the model has no price in the config: no cost is recorded, never $0.",
    )
    # Errors and messages
    ERROR_SCOPE: Final = _attribute(
        "hakgal.error.scope", "string", "Operation kind an error was counted in.", _values(ErrorScope)
    )
    MESSAGE_LEVEL: Final = _attribute(
        "hakgal.message.level", "string", "Level of a `hakgal.message` span event (`info`, `warning`, `error`)."
    )
    # OTel GenAI conventions
    GEN_AI_OPERATION_NAME: Final = _attribute(
        "gen_ai.operation.name", "string", "GenAI operation.", _values(GenAIOperation)
    )
    GEN_AI_PROVIDER_NAME: Final = _attribute(
        "gen_ai.provider.name", "string", "LLM provider (`deepseek`, `mistral_ai`, `gcp.gemini`, ...)."
    )
    GEN_AI_SYSTEM: Final = _attribute(
        "gen_ai.system",
        "string",
        "Legacy twin of `gen_ai.provider.name`; emitted only with `genai.emit_legacy_system`.",
    )
    GEN_AI_REQUEST_MODEL: Final = _attribute("gen_ai.request.model", "string", "Model asked for.")
    GEN_AI_REQUEST_MAX_TOKENS: Final = _attribute("gen_ai.request.max_tokens", "int", "Token limit of the request.")
    GEN_AI_REQUEST_TEMPERATURE: Final = _attribute(
        "gen_ai.request.temperature", "double", "Sampling temperature of the request."
    )
    GEN_AI_RESPONSE_MODEL: Final = _attribute("gen_ai.response.model", "string", "Model that answered.")
    GEN_AI_RESPONSE_ID: Final = _attribute("gen_ai.response.id", "string", "Provider's id of the response.")
    GEN_AI_RESPONSE_FINISH_REASONS: Final = _attribute(
        "gen_ai.response.finish_reasons", "string[]", "Why generation stopped, one per choice."
    )
    GEN_AI_USAGE_INPUT_TOKENS: Final = _attribute("gen_ai.usage.input_tokens", "int", "Prompt tokens used.")
    GEN_AI_USAGE_OUTPUT_TOKENS: Final = _attribute("gen_ai.usage.output_tokens", "int", "Completion tokens used.")
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = _attribute(
        "gen_ai.usage.cache_read.input_tokens", "int", "Input tokens served from the provider's prompt cache."
    )
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _attribute(
        "gen_ai.usage.cache_creation.input_tokens",
        "int",
        "Input tokens written to the provider's prompt cache (the current name; see the next one).",
    )
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = _attribute(
        "gen_ai.usage.cache_write.input_tokens",
        "int",
        "The same, under the GenAI conventions' coming name; also emitted with `genai.emit_upcoming_names`.",
    )
    GEN_AI_TOKEN_TYPE: Final = _attribute(
        "gen_ai.token.type", "string", "Token kind on the token-usage metric.", _values(TokenType)
    )
    GEN_AI_INPUT_MESSAGES: Final = _attribute(
        "gen_ai.input.messages",
        "string",
        "Prompt messages (without the system prompt) as JSON per the conventions' schema: `role` and"
        " `parts` (`{type: text, content}`); only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.",
    )
    GEN_AI_OUTPUT_MESSAGES: Final = _attribute(
        "gen_ai.output.messages",
        "string",
        "Response messages as JSON per the conventions' schema: `role`, `parts` and `finish_reason`;"
        " only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.",
    )
    GEN_AI_SYSTEM_INSTRUCTIONS: Final = _attribute(
        "gen_ai.system_instructions",
        "string",
        "The system prompt as a JSON list of parts;"
        " only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.",
    )
    GEN_AI_DATA_SOURCE_ID: Final = _attribute(
        "gen_ai.data_source.id", "string", "The data source a retrieval searched (`hakgal.corpus`)."
    )
    GEN_AI_RETRIEVAL_TOP_K: Final = _attribute(
        "gen_ai.retrieval.top_k", "int", "How many documents a retrieval asked for at most."
    )
    # OTel general conventions
    SERVER_ADDRESS: Final = _attribute("server.address", "string", "Host of the LLM or oracle endpoint.")
    SERVER_PORT: Final = _attribute("server.port", "int", "Port of the LLM or oracle endpoint.")
    ERROR_TYPE: Final = _attribute(
        "error.type",
        "string",
        "Exception class name, the HTTP status code of a failed LLM request (`503`), or a fixed code"
        " (`timeout`, `malformed_response`, ..., `_OTHER`); absent on success.",
    )
    # Tail sampling ([sampling.tail])
    SAMPLING_DECISION: Final = _attribute(
        "otel_hakgal.sampling.decision", "string", "What tail sampling did with a trace.", _values(SamplingDecision)
    )
    SAMPLING_REASON: Final = _attribute(
        "otel_hakgal.sampling.reason",
        "string",
        "Why tail sampling kept the trace (on its local root span; on the metric, also why one was dropped).",
        _values(SamplingReason),
    )
    SAMPLING_RATE: Final = _attribute(
        "otel_hakgal.sampling.rate",
        "double",
        "On a kept trace's local root: the probability tail sampling kept a trace like it with (1.0 for"
        " errors and slow traces, `keep_ratio` or the rule's for the others). Multiply by the head rate.",
    )
    SAMPLING_PARTIAL: Final = _attribute(
        "otel_hakgal.sampling.partial",
        "boolean",
        "On every span of a trace decided before its local root ended (see `otel_hakgal.sampling.incomplete`).",
    )
    # The layer's own health
    EXPORT_BACKEND: Final = _attribute(
        "otel_hakgal.backend", "string", "The backend (`sentry`, `otlp`, ...) a metric of the layer's health is about."
    )


_GEN_AI_SPAN_ATTRIBUTES = (
    Attr.GEN_AI_OPERATION_NAME,
    Attr.GEN_AI_PROVIDER_NAME,
    Attr.GEN_AI_REQUEST_MODEL,
    Attr.GEN_AI_REQUEST_MAX_TOKENS,
    Attr.GEN_AI_REQUEST_TEMPERATURE,
    Attr.GEN_AI_RESPONSE_MODEL,
    Attr.GEN_AI_RESPONSE_ID,
    Attr.GEN_AI_RESPONSE_FINISH_REASONS,
    Attr.GEN_AI_USAGE_INPUT_TOKENS,
    Attr.GEN_AI_USAGE_OUTPUT_TOKENS,
    Attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    Attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    Attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    Attr.GEN_AI_SYSTEM,
    Attr.GEN_AI_INPUT_MESSAGES,
    Attr.GEN_AI_OUTPUT_MESSAGES,
    Attr.GEN_AI_SYSTEM_INSTRUCTIONS,
    Attr.LLM_COST_AMOUNT,
    Attr.LLM_COST_CURRENCY,
    Attr.LLM_COST_KNOWN,
    Attr.SERVER_ADDRESS,
    Attr.SERVER_PORT,
    Attr.ERROR_TYPE,
)


class SpanName:
    """Span names. ``{verb}``, ``{prover}`` and ``{cache}`` come from closed sets."""

    COMMAND: Final = _span(
        "hakgal.command {verb}",
        "INTERNAL",
        "One API command, from dispatch to answer, including a timeout.",
        (Attr.COMMAND_NAME, Attr.COMMAND_TEXT, Attr.COMMAND_OUTCOME, Attr.COMMAND_TIMEOUT, Attr.ERROR_TYPE),
    )
    QUERY: Final = _span(
        "hakgal.query",
        "INTERNAL",
        "A question answered by the reasoning pipeline.",
        (
            Attr.QUERY_TYPE,
            Attr.QUERY_TEXT,
            Attr.QUERY_FORMULA,
            Attr.QUERY_ANSWER,
            Attr.QUERY_OUTCOME,
            Attr.ERROR_TYPE,
        ),
    )
    PROVER: Final = _span(
        "hakgal.prover {prover}",
        "INTERNAL",
        "One prover of the portfolio trying one goal.",
        (
            Attr.PROVER_NAME,
            Attr.PROVER_RESULT,
            Attr.PROVER_REASON,
            Attr.PROVER_ORDER,
            Attr.PROVER_TIMEOUT,
            Attr.ERROR_TYPE,
        ),
    )
    CACHE: Final = _span(
        "hakgal.cache {cache}", "INTERNAL", "One cache lookup.", (Attr.CACHE_NAME, Attr.CACHE_HIT, Attr.ERROR_TYPE)
    )
    LLM: Final = _span(  # GenAI convention
        "{operation} {model}", "CLIENT", "One call to an LLM provider (GenAI conventions).", _GEN_AI_SPAN_ATTRIBUTES
    )
    PARSE: Final = _span(
        "hakgal.parse",
        "INTERNAL",
        "Normalisation and grammar check of a formula.",
        (Attr.QUERY_FORMULA, Attr.ERROR_TYPE),
    )
    RAG_RETRIEVE: Final = _span(  # GenAI convention: a retrieval, so consumers show it as a retriever
        "retrieval {data_source}",
        "INTERNAL",
        "Retrieval of text chunks for a question from the in-process corpus (GenAI retrieval span).",
        (Attr.GEN_AI_OPERATION_NAME, Attr.GEN_AI_DATA_SOURCE_ID, Attr.GEN_AI_RETRIEVAL_TOP_K, Attr.RAG_CHUNK_COUNT,
         Attr.ERROR_TYPE),
    )
    RAG_EXTRACT: Final = _span(
        "hakgal.rag.extract",
        "INTERNAL",
        "Fact extraction from the chunks by all providers in parallel.",
        (Attr.RAG_FACT_COUNT,),
    )
    KB_UPDATE: Final = _span(
        "hakgal.kb.update", "INTERNAL", "A change to the knowledge base.", (Attr.KB_OPERATION, Attr.KB_FACT_COUNT)
    )


# Bucket boundaries. HAK-GAL durations span 1 ms cache hits to 120 s KB builds.
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# From the GenAI metrics spec.
GEN_AI_DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
GEN_AI_TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
    16777216, 67108864,
)  # fmt: skip

_GEN_AI_METRIC_ATTRIBUTES = (
    Attr.GEN_AI_OPERATION_NAME,
    Attr.GEN_AI_PROVIDER_NAME,
    Attr.GEN_AI_REQUEST_MODEL,
    Attr.GEN_AI_RESPONSE_MODEL,
    Attr.SERVER_ADDRESS,
    Attr.SERVER_PORT,
)


class Metric:
    """Metric names."""

    COMMAND_DURATION: Final = _metric(
        "hakgal.command.duration",
        "histogram",
        "s",
        "Duration of API commands.",
        (Attr.COMMAND_NAME, Attr.COMMAND_OUTCOME, Attr.ERROR_TYPE),
        DURATION_BUCKETS,
    )
    QUERY_DURATION: Final = _metric(
        "hakgal.query.duration",
        "histogram",
        "s",
        "Duration of reasoning queries.",
        (Attr.QUERY_TYPE, Attr.QUERY_OUTCOME, Attr.ERROR_TYPE),
        DURATION_BUCKETS,
    )
    PROVER_DURATION: Final = _metric(
        "hakgal.prover.duration",
        "histogram",
        "s",
        "Duration of one prover run.",
        (Attr.PROVER_NAME, Attr.PROVER_RESULT),
        DURATION_BUCKETS,
    )
    PROVER_RUNS: Final = _metric(
        "hakgal.prover.runs",
        "counter",
        "{run}",
        "Prover runs by prover and result.",
        (Attr.PROVER_NAME, Attr.PROVER_RESULT),
    )
    CACHE_LOOKUPS: Final = _metric(
        "hakgal.cache.lookups",
        "counter",
        "{lookup}",
        "Cache lookups by cache and hit or miss.",
        (Attr.CACHE_NAME, Attr.CACHE_HIT),
    )
    LLM_COST: Final = _metric(
        "hakgal.llm.cost",
        "counter",
        f"{{{DEFAULT_COST_CURRENCY}}}",
        "Cost of LLM calls with a known price (currency in the unit and attribute).",
        (Attr.GEN_AI_PROVIDER_NAME, Attr.GEN_AI_REQUEST_MODEL, Attr.LLM_COST_CURRENCY),
    )
    ERRORS: Final = _metric(
        "hakgal.errors",
        "counter",
        "{error}",
        "Errors by `error.type` and the kind of operation they happened in.",
        (Attr.ERROR_TYPE, Attr.ERROR_SCOPE),
    )
    GEN_AI_OPERATION_DURATION: Final = _metric(
        "gen_ai.client.operation.duration",
        "histogram",
        "s",
        "GenAI client operation duration (GenAI conventions).",
        (*_GEN_AI_METRIC_ATTRIBUTES, Attr.ERROR_TYPE),
        GEN_AI_DURATION_BUCKETS,
    )
    GEN_AI_TOKEN_USAGE: Final = _metric(
        "gen_ai.client.token.usage",
        "histogram",
        "{token}",
        "Tokens used per GenAI call (GenAI conventions).",
        (*_GEN_AI_METRIC_ATTRIBUTES, Attr.GEN_AI_TOKEN_TYPE),
        GEN_AI_TOKEN_BUCKETS,
    )
    # The GenAI conventions' coming names (their unreleased change notes), emitted as well as the
    # current ones with `genai.emit_upcoming_names`, so dashboards can move before the old names go.
    GEN_AI_INFERENCE_DURATION: Final = _metric(
        "gen_ai.client.inference.duration",
        "histogram",
        "s",
        "The coming name of `gen_ai.client.operation.duration` for inference calls (with"
        " `genai.emit_upcoming_names`).",
        (*_GEN_AI_METRIC_ATTRIBUTES, Attr.ERROR_TYPE),
        GEN_AI_DURATION_BUCKETS,
    )
    GEN_AI_INFERENCE_INPUT_TOKENS: Final = _metric(
        "gen_ai.client.inference.operation.input_tokens",
        "histogram",
        "{token}",
        "Input tokens per inference call: the coming per-direction split of `gen_ai.client.token.usage`"
        " (with `genai.emit_upcoming_names`).",
        (*_GEN_AI_METRIC_ATTRIBUTES, Attr.ERROR_TYPE),
        GEN_AI_TOKEN_BUCKETS,
    )
    GEN_AI_INFERENCE_OUTPUT_TOKENS: Final = _metric(
        "gen_ai.client.inference.operation.output_tokens",
        "histogram",
        "{token}",
        "Output tokens per inference call: the coming per-direction split of `gen_ai.client.token.usage`"
        " (with `genai.emit_upcoming_names`).",
        (*_GEN_AI_METRIC_ATTRIBUTES, Attr.ERROR_TYPE),
        GEN_AI_TOKEN_BUCKETS,
    )
    EXPORT_DROPPED: Final = _metric(
        "otel_hakgal.export.dropped",
        "observable_counter",
        "{item}",
        "Telemetry a backend dropped since the process started, by backend and reason (`error.type`):"
        " `queue_full` (spans or Sentry transactions beyond an export queue's capacity), `transport_queue_full`"
        " (Sentry envelopes beyond sentry-sdk's transport queue), `span_limit` (spans a Sentry transaction"
        " could not take: past its bounds, or ended after it was sent), `signal_refused` (spans, metric data"
        " points or log records of a signal the receiver refused with HTTP 404 or 405, not sent since).",
        (Attr.EXPORT_BACKEND, Attr.ERROR_TYPE),
    )
    LOGS_DROPPED: Final = _metric(
        "otel_hakgal.logs.dropped",
        "observable_counter",
        "{record}",
        "Log records not exported since the process started, by reason (`error.type`): `rate_limit`"
        " (beyond `logs.max_per_second`, for every backend at once). A backend's full log queue counts in"
        " `otel_hakgal.export.dropped`.",
        (Attr.ERROR_TYPE,),
    )

    SAMPLING_TRACES: Final = _metric(
        "otel_hakgal.sampling.traces",
        "observable_counter",
        "{trace}",
        "Traces tail sampling decided since the process started, by decision and reason. Metrics are"
        " never sampled: the command and LLM metrics count every trace, kept or not.",
        (Attr.SAMPLING_DECISION, Attr.SAMPLING_REASON),
    )
    SAMPLING_INCOMPLETE: Final = _metric(
        "otel_hakgal.sampling.incomplete",
        "observable_counter",
        "{trace}",
        "Traces tail sampling let go incomplete since the process started, by reason (`error.type`):"
        " `trace_full` (spans past `max_spans_per_trace` dropped), `too_old`, `too_many_traces` and"
        " `shutdown` (decided before the local root ended; their spans carry `otel_hakgal.sampling.partial`).",
        (Attr.ERROR_TYPE,),
    )


class ExportDropReason(StrEnum):
    """``error.type`` of ``otel_hakgal.export.dropped``."""

    QUEUE_FULL = "queue_full"  # spans, log records or Sentry transactions waiting for export
    TRANSPORT_QUEUE_FULL = "transport_queue_full"  # Sentry envelopes waiting in sentry-sdk's transport
    SPAN_LIMIT = "span_limit"  # spans a Sentry transaction could not take: past its bounds, or late
    SIGNAL_REFUSED = "signal_refused"  # items of a signal the receiver refused (HTTP 404/405), not sent since


class LogDropReason:
    """``error.type`` of ``otel_hakgal.logs.dropped``."""

    RATE_LIMIT: Final = "rate_limit"  # beyond logs.max_per_second


class LogRecordField:
    """Fields every Python ``logging.LogRecord`` gets, for log formats: the names of
    ``opentelemetry-instrumentation-logging``. Outside a span the ids are ``"0"``.

    Exported records carry the ids natively (trace_id, span_id, trace_flags), not as attributes.
    """

    TRACE_ID: Final = "otelTraceID"  # 32 hex digits
    SPAN_ID: Final = "otelSpanID"  # 16 hex digits
    TRACE_SAMPLED: Final = "otelTraceSampled"  # bool
    SERVICE_NAME: Final = "otelServiceName"  # service.name of the running configuration


ATTRIBUTES: Final[tuple[AttributeDef, ...]] = tuple(_ATTRIBUTES.values())
SPANS: Final[tuple[SpanDef, ...]] = tuple(_SPANS.values())
METRICS: Final[tuple[MetricDef, ...]] = tuple(_METRICS.values())


def metric_def(name: str) -> MetricDef:
    """Return the definition of metric ``name``; raises ``KeyError`` for unknown names."""
    return _METRICS[name]


@dataclass(frozen=True)
class InstrumentationMetricDef:
    """A metric that an OpenTelemetry instrumentation records, not the layer itself.

    The ``prometheus`` backend serves these; the dashboards and alert rules use
    them, so their names are pinned here too. ``attributes`` are the ones the
    dashboards use. ``recorded_as``: the name the instrumentation records, when
    the layer serves the metric under another one (``name``, by a View).
    """

    name: str
    instrument: str
    unit: str
    description: str
    source: str
    attributes: tuple[str, ...] = ()
    recorded_as: str = ""
    buckets: tuple[float, ...] = ()
    convention: str = ""  # the conventions its name and attributes follow (instrumentation.md)

    @property
    def instrument_name(self) -> str:
        """The name the instrumentation creates the instrument with."""
        return self.recorded_as or self.name


_FLASK = "opentelemetry-instrumentation-flask"
_SYSTEM_METRICS = "opentelemetry-instrumentation-system-metrics"
# The system-metrics instrumentation records under its own scope's schema, 1.11.0.
_SYSTEM_METRICS_CONVENTION = "OTel semconv (system-metrics instrumentation, schema 1.11.0)"
_OLD_HTTP_CONVENTION = "OTel semconv before v1.21 (old HTTP)"
_PROMETHEUS_PROCESS_CONVENTION = "Prometheus standard process metric"

# The stable HTTP conventions' attributes that the layer's dashboards, tests and docs rely on.
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_ROUTE: Final = "http.route"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
# The Flask instrumentation's buckets for http.server.request.duration (the HTTP conventions' advice).
HTTP_DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# HTTP server metrics of the Flask instrumentation, under the stable HTTP conventions
# (OTEL_SEMCONV_STABILITY_OPT_IN=http, the layer's default). ``error.type`` is the status code of a 5xx.
HTTP_SERVER_METRICS: Final[tuple[InstrumentationMetricDef, ...]] = (
    InstrumentationMetricDef(
        "http.server.request.duration",
        "histogram",
        "s",
        "Duration of inbound HTTP requests.",
        _FLASK,
        (
            HTTP_REQUEST_METHOD,
            HTTP_RESPONSE_STATUS_CODE,
            HTTP_ROUTE,
            URL_SCHEME,
            NETWORK_PROTOCOL_VERSION,
            Attr.ERROR_TYPE,
        ),
        buckets=HTTP_DURATION_BUCKETS,
        convention=Convention.SEMCONV,
    ),
    InstrumentationMetricDef(
        "http.server.active_requests",
        "up_down_counter",
        "{request}",
        "HTTP requests in flight.",
        _FLASK,
        (HTTP_REQUEST_METHOD, URL_SCHEME),
        convention=Convention.SEMCONV,
    ),
)
# The old names (the Flask instrumentation's default without the opt-in; both at once under ``http/dup``).
LEGACY_HTTP_SERVER_METRICS: Final[tuple[InstrumentationMetricDef, ...]] = (
    InstrumentationMetricDef(
        "http.server.duration",
        "histogram",
        "ms",
        "Duration of inbound HTTP requests (old HTTP conventions).",
        _FLASK,
        ("http.method", "http.status_code", "http.target"),
        convention=_OLD_HTTP_CONVENTION,
    ),
    InstrumentationMetricDef(
        "http.server.active_requests",
        "up_down_counter",
        "requests",
        "HTTP requests in flight (old HTTP conventions).",
        _FLASK,
        ("http.method",),
        convention=_OLD_HTTP_CONVENTION,
    ),
)

# Process resource usage, served by the ``prometheus`` backend.
PROCESS_METRICS: Final[tuple[InstrumentationMetricDef, ...]] = (
    InstrumentationMetricDef(
        "process.cpu.time",
        "observable_counter",
        "s",
        "CPU seconds, by `type` (user, system).",
        _SYSTEM_METRICS,
        ("type",),
        convention=_SYSTEM_METRICS_CONVENTION,
    ),
    InstrumentationMetricDef(
        "process.cpu.utilization",
        "observable_gauge",
        "1",
        "CPU time over elapsed time, divided by the number of CPUs.",
        _SYSTEM_METRICS,
        convention=_SYSTEM_METRICS_CONVENTION,
    ),
    InstrumentationMetricDef(
        "process.memory.usage",
        "observable_up_down_counter",
        "By",
        "Resident memory.",
        _SYSTEM_METRICS,
        convention=_SYSTEM_METRICS_CONVENTION,
    ),
    InstrumentationMetricDef(
        "process.memory.virtual",
        "observable_up_down_counter",
        "By",
        "Virtual memory.",
        _SYSTEM_METRICS,
        convention=_SYSTEM_METRICS_CONVENTION,
    ),
    # Served under Prometheus's standard process names: a gauge named ``*_count`` fails
    # ``promtool check metrics`` (it reads as a histogram's count), and
    # ``process.open_file_descriptor.count`` is deprecated in the conventions.
    InstrumentationMetricDef(
        "process.threads",
        "observable_up_down_counter",
        "",
        "Threads of the process.",
        _SYSTEM_METRICS,
        recorded_as="process.thread.count",
        convention=_PROMETHEUS_PROCESS_CONVENTION,
    ),
    InstrumentationMetricDef(
        "process.open_fds",
        "observable_up_down_counter",
        "",
        "Open file descriptors.",
        _SYSTEM_METRICS,
        recorded_as="process.open_file_descriptor.count",
        convention=_PROMETHEUS_PROCESS_CONVENTION,
    ),
)
