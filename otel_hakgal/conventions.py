"""HAK-GAL semantic conventions: the single source of every telemetry name.

Every span name, attribute key, metric name, unit and bucket boundary that
``otel_hakgal`` emits is defined here and nowhere else. ``instrumentation.md``
is checked against the definitions at the bottom of this module by a test.

HAK-GAL's own names are domain-first and low-cardinality (``hakgal.<domain>.*``).
LLM calls follow the OpenTelemetry GenAI conventions; cost, which has no
standard yet, lives under ``hakgal.llm.cost.*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

INSTRUMENTATION_SCOPE: Final = "otel_hakgal"
# Span event added by ``capture_message`` (attributes: ``message`` and ``hakgal.message.level``).
MESSAGE_EVENT: Final = "hakgal.message"


class SpanName:
    """Span names. ``{verb}``, ``{prover}`` and ``{cache}`` come from closed sets."""

    COMMAND: Final = "hakgal.command {verb}"
    QUERY: Final = "hakgal.query"
    PROVER: Final = "hakgal.prover {prover}"
    CACHE: Final = "hakgal.cache {cache}"
    LLM: Final = "{operation} {model}"  # GenAI convention
    PARSE: Final = "hakgal.parse"
    RAG_RETRIEVE: Final = "hakgal.rag.retrieve"
    RAG_EXTRACT: Final = "hakgal.rag.extract"
    KB_UPDATE: Final = "hakgal.kb.update"


class Attr:
    """Attribute keys."""

    # Commands (one span per API command)
    COMMAND_NAME: Final = "hakgal.command.name"
    COMMAND_TEXT: Final = "hakgal.command.text"
    COMMAND_OUTCOME: Final = "hakgal.command.outcome"
    COMMAND_TIMEOUT: Final = "hakgal.command.timeout"
    # Queries (natural-language question -> formula -> answer)
    QUERY_TYPE: Final = "hakgal.query.type"
    QUERY_TEXT: Final = "hakgal.query.text"
    QUERY_FORMULA: Final = "hakgal.query.formula"
    QUERY_ANSWER: Final = "hakgal.query.answer"
    QUERY_OUTCOME: Final = "hakgal.query.outcome"
    # Provers
    PROVER_NAME: Final = "hakgal.prover.name"
    PROVER_RESULT: Final = "hakgal.prover.result"
    PROVER_REASON: Final = "hakgal.prover.reason"
    PROVER_ORDER: Final = "hakgal.prover.order"
    PROVER_TIMEOUT: Final = "hakgal.prover.timeout"
    # Caches
    CACHE_NAME: Final = "hakgal.cache.name"
    CACHE_HIT: Final = "hakgal.cache.hit"
    # Knowledge base and retrieval
    KB_FACT_COUNT: Final = "hakgal.kb.fact_count"
    KB_OPERATION: Final = "hakgal.kb.operation"
    RAG_CHUNK_COUNT: Final = "hakgal.rag.chunk_count"
    RAG_FACT_COUNT: Final = "hakgal.rag.fact_count"
    # LLM cost (no OTel standard yet)
    LLM_COST_AMOUNT: Final = "hakgal.llm.cost.amount"
    LLM_COST_CURRENCY: Final = "hakgal.llm.cost.currency"
    LLM_COST_KNOWN: Final = "hakgal.llm.cost.known"
    # Errors and messages
    ERROR_SCOPE: Final = "hakgal.error.scope"
    MESSAGE_LEVEL: Final = "hakgal.message.level"
    # OTel GenAI conventions
    GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
    GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
    GEN_AI_SYSTEM: Final = "gen_ai.system"  # legacy, behind a switch
    GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
    GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
    GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
    GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
    GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
    GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
    GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
    GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
    GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
    GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
    GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
    # OTel general conventions
    SERVER_ADDRESS: Final = "server.address"
    SERVER_PORT: Final = "server.port"
    ERROR_TYPE: Final = "error.type"


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
    PROVIDER_ERROR: Final = "provider_error"
    MALFORMED_RESPONSE: Final = "malformed_response"
    INVALID_FORMULA: Final = "invalid_formula"
    OTHER: Final = "_OTHER"  # the OTel fallback value


class TokenType(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class GenAIOperation(StrEnum):
    CHAT = "chat"
    TEXT_COMPLETION = "text_completion"
    GENERATE_CONTENT = "generate_content"
    EMBEDDINGS = "embeddings"


class Metric:
    """Metric names."""

    COMMAND_DURATION: Final = "hakgal.command.duration"
    QUERY_DURATION: Final = "hakgal.query.duration"
    PROVER_DURATION: Final = "hakgal.prover.duration"
    PROVER_RUNS: Final = "hakgal.prover.runs"
    CACHE_LOOKUPS: Final = "hakgal.cache.lookups"
    LLM_COST: Final = "hakgal.llm.cost"
    ERRORS: Final = "hakgal.errors"
    GEN_AI_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
    GEN_AI_TOKEN_USAGE: Final = "gen_ai.client.token.usage"


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

DEFAULT_COST_CURRENCY: Final = "USD"


# --- Definitions: what each name means. instrumentation.md is built from these. ---


@dataclass(frozen=True)
class AttributeDef:
    key: str
    type: str
    description: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpanDef:
    name: str
    kind: str
    description: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class MetricDef:
    name: str
    instrument: str
    unit: str
    description: str
    attributes: tuple[str, ...]
    buckets: tuple[float, ...] = ()


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


ATTRIBUTES: Final[tuple[AttributeDef, ...]] = (
    AttributeDef(Attr.COMMAND_NAME, "string", "Command verb, lower-cased (`ask`, `add_raw`, ...)."),
    AttributeDef(Attr.COMMAND_TEXT, "string", "Command arguments, truncated or hashed per `redaction.text_mode`."),
    AttributeDef(Attr.COMMAND_OUTCOME, "string", "How the command ended.", _values(Outcome)),
    AttributeDef(Attr.COMMAND_TIMEOUT, "double", "The command's timeout in seconds."),
    AttributeDef(Attr.QUERY_TYPE, "string", "Kind of query: the verb that started it (`ask`, `explain`)."),
    AttributeDef(Attr.QUERY_TEXT, "string", "The question, truncated or hashed per `redaction.text_mode`."),
    AttributeDef(Attr.QUERY_FORMULA, "string", "The logic formula the question was translated to (truncated)."),
    AttributeDef(Attr.QUERY_ANSWER, "string", "The answer given (`yes`, `no_or_unknown`)."),
    AttributeDef(Attr.QUERY_OUTCOME, "string", "How the query ended.", _values(Outcome)),
    AttributeDef(Attr.PROVER_NAME, "string", "Prover in the portfolio (`functional`, `z3`, `pattern`, `oracle`)."),
    AttributeDef(Attr.PROVER_RESULT, "string", "The prover's result.", _values(ProverResult)),
    AttributeDef(Attr.PROVER_REASON, "string", "The prover's short reason for its result."),
    AttributeDef(Attr.PROVER_ORDER, "int", "Position of the prover in this query's portfolio, from 0."),
    AttributeDef(Attr.PROVER_TIMEOUT, "double", "The prover's timeout in seconds."),
    AttributeDef(Attr.CACHE_NAME, "string", "Which cache was looked up.", _values(CacheName)),
    AttributeDef(Attr.CACHE_HIT, "boolean", "Whether the lookup found an entry."),
    AttributeDef(Attr.KB_FACT_COUNT, "int", "Facts in the knowledge base after the operation."),
    AttributeDef(Attr.KB_OPERATION, "string", "Knowledge-base change (`add`, `retract`, `build`, `learn`)."),
    AttributeDef(Attr.RAG_CHUNK_COUNT, "int", "Text chunks retrieved for the question."),
    AttributeDef(Attr.RAG_FACT_COUNT, "int", "Candidate facts extracted from the chunks."),
    AttributeDef(Attr.LLM_COST_AMOUNT, "double", "Cost of the LLM call from the configured pricing table."),
    AttributeDef(Attr.LLM_COST_CURRENCY, "string", "Currency of `hakgal.llm.cost.amount`."),
    AttributeDef(
        Attr.LLM_COST_KNOWN,
        "boolean",
        "False when the model has no price in the config: no cost is recorded, never $0.",
    ),
    AttributeDef(Attr.ERROR_SCOPE, "string", "Operation kind an error was counted in.", _values(ErrorScope)),
    AttributeDef(Attr.MESSAGE_LEVEL, "string", "Level of a `hakgal.message` span event (`info`, `warning`, `error`)."),
    AttributeDef(Attr.GEN_AI_OPERATION_NAME, "string", "GenAI operation.", _values(GenAIOperation)),
    AttributeDef(Attr.GEN_AI_PROVIDER_NAME, "string", "LLM provider (`deepseek`, `mistral_ai`, `gcp.gemini`, ...)."),
    AttributeDef(
        Attr.GEN_AI_SYSTEM,
        "string",
        "Legacy twin of `gen_ai.provider.name`; emitted only with `genai.emit_legacy_system`.",
    ),
    AttributeDef(Attr.GEN_AI_REQUEST_MODEL, "string", "Model asked for."),
    AttributeDef(Attr.GEN_AI_REQUEST_MAX_TOKENS, "int", "Token limit of the request."),
    AttributeDef(Attr.GEN_AI_REQUEST_TEMPERATURE, "double", "Sampling temperature of the request."),
    AttributeDef(Attr.GEN_AI_RESPONSE_MODEL, "string", "Model that answered."),
    AttributeDef(Attr.GEN_AI_RESPONSE_ID, "string", "Provider's id of the response."),
    AttributeDef(Attr.GEN_AI_RESPONSE_FINISH_REASONS, "string[]", "Why generation stopped, one per choice."),
    AttributeDef(Attr.GEN_AI_USAGE_INPUT_TOKENS, "int", "Prompt tokens used."),
    AttributeDef(Attr.GEN_AI_USAGE_OUTPUT_TOKENS, "int", "Completion tokens used."),
    AttributeDef(Attr.GEN_AI_TOKEN_TYPE, "string", "Token kind on the token-usage metric.", _values(TokenType)),
    AttributeDef(
        Attr.GEN_AI_INPUT_MESSAGES,
        "string",
        "Prompt messages as JSON; only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.",
    ),
    AttributeDef(
        Attr.GEN_AI_OUTPUT_MESSAGES,
        "string",
        "Response messages as JSON; only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.",
    ),
    AttributeDef(Attr.SERVER_ADDRESS, "string", "Host of the LLM or oracle endpoint."),
    AttributeDef(Attr.SERVER_PORT, "int", "Port of the LLM or oracle endpoint."),
    AttributeDef(
        Attr.ERROR_TYPE,
        "string",
        "Exception class name, or a fixed code (`timeout`, `provider_error`, ...); absent on success.",
    ),
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
    Attr.GEN_AI_SYSTEM,
    Attr.GEN_AI_INPUT_MESSAGES,
    Attr.GEN_AI_OUTPUT_MESSAGES,
    Attr.LLM_COST_AMOUNT,
    Attr.LLM_COST_CURRENCY,
    Attr.LLM_COST_KNOWN,
    Attr.SERVER_ADDRESS,
    Attr.SERVER_PORT,
    Attr.ERROR_TYPE,
)

SPANS: Final[tuple[SpanDef, ...]] = (
    SpanDef(
        SpanName.COMMAND,
        "INTERNAL",
        "One API command, from dispatch to answer, including a timeout.",
        (Attr.COMMAND_NAME, Attr.COMMAND_TEXT, Attr.COMMAND_OUTCOME, Attr.COMMAND_TIMEOUT, Attr.ERROR_TYPE),
    ),
    SpanDef(
        SpanName.QUERY,
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
    ),
    SpanDef(
        SpanName.PROVER,
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
    ),
    SpanDef(
        SpanName.CACHE,
        "INTERNAL",
        "One cache lookup.",
        (Attr.CACHE_NAME, Attr.CACHE_HIT, Attr.ERROR_TYPE),
    ),
    SpanDef(SpanName.LLM, "CLIENT", "One call to an LLM provider (GenAI conventions).", _GEN_AI_SPAN_ATTRIBUTES),
    SpanDef(
        SpanName.PARSE,
        "INTERNAL",
        "Normalisation and grammar check of a formula.",
        (Attr.QUERY_FORMULA, Attr.ERROR_TYPE),
    ),
    SpanDef(SpanName.RAG_RETRIEVE, "INTERNAL", "Retrieval of text chunks for a question.", (Attr.RAG_CHUNK_COUNT,)),
    SpanDef(
        SpanName.RAG_EXTRACT,
        "INTERNAL",
        "Fact extraction from the chunks by all providers in parallel.",
        (Attr.RAG_FACT_COUNT,),
    ),
    SpanDef(SpanName.KB_UPDATE, "INTERNAL", "A change to the knowledge base.", (Attr.KB_OPERATION, Attr.KB_FACT_COUNT)),
)

_GEN_AI_METRIC_ATTRIBUTES = (
    Attr.GEN_AI_OPERATION_NAME,
    Attr.GEN_AI_PROVIDER_NAME,
    Attr.GEN_AI_REQUEST_MODEL,
    Attr.GEN_AI_RESPONSE_MODEL,
    Attr.SERVER_ADDRESS,
)

METRICS: Final[tuple[MetricDef, ...]] = (
    MetricDef(
        Metric.COMMAND_DURATION,
        "histogram",
        "s",
        "Duration of API commands.",
        (Attr.COMMAND_NAME, Attr.COMMAND_OUTCOME, Attr.ERROR_TYPE),
        DURATION_BUCKETS,
    ),
    MetricDef(
        Metric.QUERY_DURATION,
        "histogram",
        "s",
        "Duration of reasoning queries.",
        (Attr.QUERY_TYPE, Attr.QUERY_OUTCOME, Attr.ERROR_TYPE),
        DURATION_BUCKETS,
    ),
    MetricDef(
        Metric.PROVER_DURATION,
        "histogram",
        "s",
        "Duration of one prover run.",
        (Attr.PROVER_NAME, Attr.PROVER_RESULT),
        DURATION_BUCKETS,
    ),
    MetricDef(
        Metric.PROVER_RUNS,
        "counter",
        "{run}",
        "Prover runs by prover and result.",
        (Attr.PROVER_NAME, Attr.PROVER_RESULT),
    ),
    MetricDef(
        Metric.CACHE_LOOKUPS,
        "counter",
        "{lookup}",
        "Cache lookups by cache and hit or miss.",
        (Attr.CACHE_NAME, Attr.CACHE_HIT),
    ),
    MetricDef(
        Metric.LLM_COST,
        "counter",
        "{USD}",
        "Cost of LLM calls with a known price (currency in the unit and attribute).",
        (Attr.GEN_AI_PROVIDER_NAME, Attr.GEN_AI_REQUEST_MODEL, Attr.LLM_COST_CURRENCY),
    ),
    MetricDef(
        Metric.ERRORS,
        "counter",
        "{error}",
        "Errors by `error.type` and the kind of operation they happened in.",
        (Attr.ERROR_TYPE, Attr.ERROR_SCOPE),
    ),
    MetricDef(
        Metric.GEN_AI_OPERATION_DURATION,
        "histogram",
        "s",
        "GenAI client operation duration (GenAI conventions).",
        (*_GEN_AI_METRIC_ATTRIBUTES, Attr.ERROR_TYPE),
        GEN_AI_DURATION_BUCKETS,
    ),
    MetricDef(
        Metric.GEN_AI_TOKEN_USAGE,
        "histogram",
        "{token}",
        "Tokens used per GenAI call (GenAI conventions).",
        (*_GEN_AI_METRIC_ATTRIBUTES, Attr.GEN_AI_TOKEN_TYPE),
        GEN_AI_TOKEN_BUCKETS,
    ),
)


@dataclass(frozen=True)
class InstrumentationMetricDef:
    """A metric that an OpenTelemetry instrumentation records, not the layer itself.

    The ``prometheus`` backend serves these; the dashboards and alert rules use
    them, so their names are pinned here too. ``attributes`` are the ones the
    dashboards use.
    """

    name: str
    instrument: str
    unit: str
    description: str
    source: str
    attributes: tuple[str, ...] = ()


_FLASK = "opentelemetry-instrumentation-flask"
_SYSTEM_METRICS = "opentelemetry-instrumentation-system-metrics"

# HTTP server metrics of the Flask instrumentation, under the default (old) HTTP conventions.
HTTP_SERVER_METRICS: Final[tuple[InstrumentationMetricDef, ...]] = (
    InstrumentationMetricDef(
        "http.server.duration",
        "histogram",
        "ms",
        "Duration of inbound HTTP requests.",
        _FLASK,
        ("http.method", "http.status_code", "http.target"),
    ),
    InstrumentationMetricDef(
        "http.server.active_requests",
        "up_down_counter",
        "requests",
        "HTTP requests in flight.",
        _FLASK,
        ("http.method",),
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
    ),
    InstrumentationMetricDef(
        "process.cpu.utilization",
        "observable_gauge",
        "1",
        "CPU time over elapsed time, divided by the number of CPUs.",
        _SYSTEM_METRICS,
    ),
    InstrumentationMetricDef(
        "process.memory.usage", "observable_up_down_counter", "By", "Resident memory.", _SYSTEM_METRICS
    ),
    InstrumentationMetricDef(
        "process.memory.virtual", "observable_up_down_counter", "By", "Virtual memory.", _SYSTEM_METRICS
    ),
    InstrumentationMetricDef(
        "process.thread.count", "observable_up_down_counter", "", "Threads of the process.", _SYSTEM_METRICS
    ),
    InstrumentationMetricDef(
        "process.open_file_descriptor.count",
        "observable_up_down_counter",
        "",
        "Open file descriptors.",
        _SYSTEM_METRICS,
    ),
)


def metric_def(name: str) -> MetricDef:
    """Return the definition of metric ``name``; raises ``KeyError`` for unknown names."""
    for definition in METRICS:
        if definition.name == name:
            return definition
    raise KeyError(name)


# --- Error-tracking backends (Sentry): which names become tags, contexts and measurements. ---

# Attributes of a transaction's spans that become searchable transaction tags (the root span's
# value wins, else the outermost span that has one). Low-cardinality only: tags are indexed.
TRANSACTION_TAG_ATTRIBUTES: Final[tuple[str, ...]] = (
    Attr.COMMAND_NAME,
    Attr.COMMAND_OUTCOME,
    Attr.QUERY_TYPE,
    Attr.QUERY_OUTCOME,
    Attr.QUERY_ANSWER,
    Attr.KB_OPERATION,
)

# Attributes of the spans an error happened in (and their open ancestors) that an error event
# carries: the tags above as tags, these as the ``hakgal`` context (already redacted, and cut to
# ``redaction.max_text_length``).
ERROR_CONTEXT_ATTRIBUTES: Final[tuple[str, ...]] = (
    Attr.COMMAND_NAME,
    Attr.COMMAND_TEXT,
    Attr.COMMAND_TIMEOUT,
    Attr.QUERY_TYPE,
    Attr.QUERY_TEXT,
    Attr.PROVER_NAME,
    Attr.CACHE_NAME,
    Attr.GEN_AI_PROVIDER_NAME,
    Attr.GEN_AI_REQUEST_MODEL,
    Attr.ERROR_TYPE,
)


class Measurement:
    """Transaction measurements (Sentry): summed over the transaction's spans."""

    COMMAND_DURATION: Final = "hakgal.command.duration"
    QUERY_DURATION: Final = "hakgal.query.duration"
    PROVER_DURATION: Final = "hakgal.prover.duration"
    LLM_DURATION: Final = "hakgal.llm.duration"
    LLM_COST: Final = "hakgal.llm.cost"
    INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
    TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"


@dataclass(frozen=True)
class MeasurementDef:
    name: str
    unit: str
    description: str


MEASUREMENTS: Final[tuple[MeasurementDef, ...]] = (
    MeasurementDef(Measurement.COMMAND_DURATION, "millisecond", "Duration of the command spans in the transaction."),
    MeasurementDef(Measurement.QUERY_DURATION, "millisecond", "Duration of the query spans in the transaction."),
    MeasurementDef(Measurement.PROVER_DURATION, "millisecond", "Summed duration of all prover runs."),
    MeasurementDef(Measurement.LLM_DURATION, "millisecond", "Summed duration of all LLM calls."),
    MeasurementDef(Measurement.LLM_COST, "none", "Summed known cost of the LLM calls (`hakgal.llm.cost.currency`)."),
    MeasurementDef(Measurement.INPUT_TOKENS, "none", "Prompt tokens of all LLM calls."),
    MeasurementDef(Measurement.OUTPUT_TOKENS, "none", "Completion tokens of all LLM calls."),
    MeasurementDef(Measurement.TOTAL_TOKENS, "none", "Prompt plus completion tokens of all LLM calls."),
)
