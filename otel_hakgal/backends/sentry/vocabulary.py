"""Sentry's side of the names: span ops, which attributes become tags and error context, measurements, logs.

Every HAK-GAL name itself comes from :mod:`otel_hakgal.conventions`; this
module only says how Sentry shows them. No sentry-sdk import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from otel_hakgal.conventions import Attr, GenAIOperation, Metric, SpanName

# --- span ops ------------------------------------------------------------------

OP_HTTP_SERVER: Final = "http.server"
OP_HTTP_CLIENT: Final = "http.client"
OP_HTTP: Final = "http"
OP_CACHE_GET: Final = "cache.get"
OP_DB: Final = "db"
GEN_AI_OPS: Final[Mapping[str, str]] = {
    GenAIOperation.CHAT: "gen_ai.chat",
    GenAIOperation.TEXT_COMPLETION: "gen_ai.text_completion",
    GenAIOperation.GENERATE_CONTENT: "gen_ai.chat",
    GenAIOperation.EMBEDDINGS: "gen_ai.embeddings",
}
# GenAI operations that are no model call: not a gen_ai span for Sentry's AI views, no LLM time or
# tokens (the RAG retrieval keeps its HAK-GAL op, by span name, below).
GEN_AI_NOT_MODEL_CALLS: Final = frozenset({GenAIOperation.RETRIEVAL.value})


def span_name_prefix(template: str) -> str:
    """The fixed part of a span-name template (``"hakgal.command {verb}"`` -> ``"hakgal.command"``)."""
    return template.split(" {", 1)[0]


# Span-name prefix -> op for HAK-GAL's own spans (the name's variable part goes to the description).
HAKGAL_OPS: Final[Mapping[str, str]] = {
    span_name_prefix(SpanName.COMMAND): "hakgal.command",
    span_name_prefix(SpanName.QUERY): "hakgal.query",
    span_name_prefix(SpanName.PROVER): "hakgal.prover",
    span_name_prefix(SpanName.PARSE): "hakgal.parse",
    span_name_prefix(SpanName.RAG_RETRIEVE): "hakgal.rag.retrieve",
    span_name_prefix(SpanName.RAG_EXTRACT): "hakgal.rag.extract",
    span_name_prefix(SpanName.KB_UPDATE): "hakgal.kb.update",
}

# Old and new (OTEL_SEMCONV_STABILITY_OPT_IN=http) HTTP attribute names, new first.
HTTP_METHOD: Final = ("http.request.method", "http.method")
HTTP_STATUS: Final = ("http.response.status_code", "http.status_code")
HTTP_ROUTE: Final = ("http.route",)
HTTP_TARGET: Final = ("url.path", "http.target")
HTTP_URL: Final = ("url.full", "http.url")
PEER: Final = ("server.address", "net.peer.name")

# --- tags and error context ------------------------------------------------------

MAX_TAG_LENGTH: Final = 200  # Sentry's limit for tag values


def string_value(value: Any, limit: int) -> str:
    """An attribute value as a Sentry tag or context string (sequences comma-joined), cut to ``limit``."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return text[:limit]


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

# --- measurements ------------------------------------------------------------------


class Measurement:
    """Transaction measurements: summed over the transaction's spans."""

    COMMAND_DURATION: Final = Metric.COMMAND_DURATION
    QUERY_DURATION: Final = Metric.QUERY_DURATION
    PROVER_DURATION: Final = Metric.PROVER_DURATION
    LLM_DURATION: Final = "hakgal.llm.duration"  # Sentry-only: summed LLM time per transaction
    LLM_COST: Final = Metric.LLM_COST
    INPUT_TOKENS: Final = Attr.GEN_AI_USAGE_INPUT_TOKENS
    OUTPUT_TOKENS: Final = Attr.GEN_AI_USAGE_OUTPUT_TOKENS
    TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"  # Sentry's AI views read it


# Sentry's unit of each measurement; the rest are plain counts ("none").
MEASUREMENT_UNITS: Final[Mapping[str, str]] = {
    Measurement.COMMAND_DURATION: "millisecond",
    Measurement.QUERY_DURATION: "millisecond",
    Measurement.PROVER_DURATION: "millisecond",
    Measurement.LLM_DURATION: "millisecond",
}

# --- logs ----------------------------------------------------------------------------

# Sentry Logs' attributes the layer sets itself (https://develop.sentry.dev/sdk/telemetry/logs/).
LOG_ORIGIN_ATTRIBUTE: Final = "sentry.origin"
# The origin sentry-sdk's own stdlib logging handler gives its logs: these are Python ``logging`` records too.
LOG_ORIGIN: Final = "auto.log.stdlib"
LOGGER_NAME_ATTRIBUTE: Final = "logger.name"

# Loggers whose records never become Sentry Logs, as sentry-sdk's own list: sending a log would log again.
IGNORED_LOGGERS: Final = frozenset({"sentry_sdk.errors", "urllib3.connectionpool", "urllib3.connection"})

# Sentry's log levels by OTel severity number range (OTel logs data model: 1-4 trace ... 21-24 fatal).
_LOG_LEVELS: Final = ((4, "trace"), (8, "debug"), (12, "info"), (16, "warn"), (20, "error"), (24, "fatal"))


def log_level(severity_number: int) -> str:
    """Sentry's log level for an OTel severity number; ``info`` for an unspecified (0) or unknown one."""
    if severity_number < 1:
        return "info"
    for upper, level in _LOG_LEVELS:
        if severity_number <= upper:
            return level
    return "fatal"
