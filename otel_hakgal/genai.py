"""GenAI content capture and nested-duplicate suppression, per the OpenTelemetry GenAI conventions.

**Messages.** Captured content is recorded in the shape of the conventions'
JSON schemas (``gen-ai-input-messages.json``, ``gen-ai-output-messages.json``,
``gen-ai-system-instructions.json``): a message is ``role`` plus ``parts``
(``{"type": "text", "content": ...}``), output messages add
``finish_reason``, and the system prompt is a list of parts in
``gen_ai.system_instructions``, not a message. :func:`dumps_within` serializes
within a length limit by cutting message *contents* (marked with
``GEN_AI_TRUNCATION_MARKER``), never the JSON, so the attribute stays valid
JSON; the secret scrubber re-serializes the same way after scrubbing
(:mod:`otel_hakgal.redaction`).

The types and serialization are written here rather than taken from
``opentelemetry-util-genai``: its message types and serializer moved between
1.1b0 and 1.3b0 (the official openai instrumentation 2.4b0 imports a module
that 1.2b0 removed), and it has no length-bounded serialization, which an
attribute cut to ``redaction.max_attribute_length`` needs.

**Nested duplicates.** While a layer LLM call is open, its context carries
:data:`LLM_CALL_KEY` (the call span's context). Another instrumentation that
wraps the same provider SDK call (the official ``openai`` instrumentation under
the ``opentelemetry-instrument`` launcher) would record the same call again:
a second ``chat {model}`` span under the layer's and its tokens counted twice
in ``gen_ai.client.token.usage``. The layer keeps its own record (cost, the
HAK-GAL provider name, ``error.type``, redaction) and drops the duplicate:

* a span of another instrumentation scope, started directly under the layer's
  LLM span with ``gen_ai.*`` start attributes, reaches no backend
  (``FanOutSpanProcessor``);
* ``gen_ai.client.*`` measurements of other meters recorded inside a layer LLM
  call are not recorded (the layer's switching meter provider);
* ``gen_ai.*`` events of other scopes emitted inside a layer LLM call are not
  exported (the log fan-out);
* with ``opentelemetry-util-genai`` >= 1.3 installed, the call's context also
  carries util-genai's own inference context, so instrumentations built on its
  ``TelemetryHandler`` create no span, metrics or events of their own at all
  (util-genai's nested-invocation suppression).
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

from otel_hakgal.conventions import (
    GEN_AI_TEXT_PART,
    GEN_AI_TRUNCATION_MARKER,
    INSTRUMENTATION_SCOPE,
    Attr,
)

# The span attributes that hold JSON per a schema of the conventions: cut and scrubbed as JSON.
JSON_ATTRIBUTES: Final = frozenset(
    {Attr.GEN_AI_INPUT_MESSAGES, Attr.GEN_AI_OUTPUT_MESSAGES, Attr.GEN_AI_SYSTEM_INSTRUCTIONS}
)
DEFAULT_FINISH_REASON: Final = "stop"
# Metric names of the GenAI client conventions: another meter's are duplicates inside a layer call.
GEN_AI_CLIENT_METRIC_PREFIX: Final = "gen_ai.client."
_GEN_AI_PREFIX: Final = "gen_ai."

Message = dict[str, Any]
Part = dict[str, Any]


# --- messages ------------------------------------------------------------------------


def text_part(text: str) -> Part:
    return {"type": GEN_AI_TEXT_PART, "content": text}


def _parts(content: object) -> list[Part]:
    """Message content as parts: a string is one text part; OpenAI's content lists are mapped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    if isinstance(content, Mapping):
        content = [content]
    parts: list[Part] = []
    if isinstance(content, Iterable):
        for item in content:
            if isinstance(item, str):
                parts.append(text_part(item))
            elif isinstance(item, Mapping):
                kind = str(item.get("type") or GEN_AI_TEXT_PART)
                if kind == GEN_AI_TEXT_PART and "content" not in item and "text" in item:
                    parts.append(text_part(str(item["text"])))  # OpenAI: {"type": "text", "text": ...}
                elif kind == GEN_AI_TEXT_PART and "content" in item:
                    parts.append(text_part(str(item["content"])))
                else:
                    parts.append({**{str(k): v for k, v in item.items()}, "type": kind})  # a generic part
            else:
                parts.append(text_part(str(item)))
        return parts
    return [text_part(str(content))]


def _message(message: object, role: str) -> Message:
    """One message in the conventions' shape; one already in it (``parts``) is kept."""
    if isinstance(message, Mapping):
        if isinstance(message.get("parts"), list):
            converted = {str(k): v for k, v in message.items()}
            converted.setdefault("role", role)
            return converted
        converted = {"role": str(message.get("role") or role), "parts": _parts(message.get("content"))}
        if message.get("name"):
            converted["name"] = str(message["name"])
        return converted
    return {"role": role, "parts": _parts(message)}


def input_messages(messages: object) -> tuple[list[Part], list[Message]]:
    """``(system_instructions, input_messages)`` from chat messages (OpenAI-style or the conventions').

    System messages become parts of ``gen_ai.system_instructions``; the rest are input messages.
    """
    if messages is None:
        return [], []
    items = [messages] if isinstance(messages, str | Mapping) else list(messages)  # type: ignore[call-overload]
    system: list[Part] = []
    chat: list[Message] = []
    for item in items:
        message = _message(item, "user")
        if message.get("role") == "system":
            system.extend(message["parts"])
        else:
            chat.append(message)
    return system, chat


def system_instructions(instructions: object) -> list[Part]:
    """``gen_ai.system_instructions`` parts from a string, parts or system messages."""
    if instructions is None:
        return []
    if isinstance(instructions, str):
        return [text_part(instructions)]
    parts: list[Part] = []
    items = [instructions] if isinstance(instructions, Mapping) else list(instructions)  # type: ignore[call-overload]
    for item in items:
        if isinstance(item, Mapping) and ("role" in item or "parts" in item):
            parts.extend(_message(item, "system")["parts"])
        else:
            parts.extend(_parts(item))
    return parts


def output_messages(messages: object, finish_reasons: Sequence[str] | None = None) -> list[Message]:
    """Output messages with ``finish_reason``: the i-th message gets the i-th reason (default ``stop``)."""
    if messages is None:
        return []
    items = [messages] if isinstance(messages, str | Mapping) else list(messages)  # type: ignore[call-overload]
    reasons = list(finish_reasons or ())
    out: list[Message] = []
    for index, item in enumerate(items):
        message = _message(item, "assistant")
        if not message.get("finish_reason"):
            reason = (
                item.get("finish_reason") if isinstance(item, Mapping) and item.get("finish_reason") else None
            ) or (reasons[index] if index < len(reasons) else DEFAULT_FINISH_REASON)
            message["finish_reason"] = str(reason)
        out.append(message)
    return out


# --- length-bounded JSON -------------------------------------------------------------


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _strings(value: Any, found: list[tuple[Any, Any]]) -> None:
    """Collects (container, key) of every ``content`` string: the text a cut may shorten."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "content" and isinstance(item, str):
                found.append((value, key))
            else:
                _strings(item, found)
    elif isinstance(value, list):
        for item in value:
            _strings(item, found)


def dumps_within(value: Any, limit: int | None) -> str:
    """``value`` as compact JSON of at most ``limit`` characters: contents are cut, never the JSON.

    The longest contents are cut first, each keeping a ``GEN_AI_TRUNCATION_MARKER``; when even
    empty contents do not fit, trailing list items are left out (at worst ``[]``). ``value`` is
    changed in place.
    """
    text = _dumps(value)
    if limit is None or len(text) <= limit:
        return text
    slots: list[tuple[Any, Any]] = []
    _strings(value, slots)
    marker = GEN_AI_TRUNCATION_MARKER
    for _ in range(8):  # each round cuts by the measured excess; escapes make one round not always enough
        excess = len(text) - limit
        if excess <= 0:
            return text
        lengths = sorted((len(container[key]) for container, key in slots), reverse=True)
        if not lengths or lengths[0] <= len(marker):
            break
        # Water-filling: the cap on every content that makes them shrink by the excess together.
        cap = _cap(lengths, excess, len(marker))
        for container, key in slots:
            content = container[key]
            if len(content) > cap and len(content) > len(marker):
                keep = max(cap - len(marker), 0)
                container[key] = content[:keep] + marker
        text = _dumps(value)
    while len(text) > limit and isinstance(value, list) and value:
        value.pop()  # the structure itself does not fit: fewer messages (or parts), each still valid
        text = _dumps(value)
    if len(text) > limit:
        return "[]" if isinstance(value, list) else "{}"
    return text


def _cap(lengths: Sequence[int], excess: int, marker: int) -> int:
    """The largest cap ``c`` on contents (``lengths`` sorted longest first) that frees ``excess`` characters.

    A content longer than ``c`` becomes ``c`` characters long, of which ``marker`` are the marker.
    """
    total = 0
    for index, length in enumerate(lengths):
        total += length
        count = index + 1
        following = lengths[count] if count < len(lengths) else 0
        cap = (total - excess) // count
        if cap >= following and cap >= marker:
            return cap
    return marker


def is_json_attribute(key: str) -> bool:
    return key in JSON_ATTRIBUTES


def rebuild_json(text: str, clean: Any, limit: int | None) -> str | None:
    """``text`` (a JSON attribute) with every string passed through ``clean``, within ``limit``.

    ``None`` when ``text`` is not JSON (the caller then treats it as plain text).
    """
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return dumps_within(clean(value), limit)


# --- nested duplicates ----------------------------------------------------------------

LLM_CALL_KEY: Final = otel_context.create_key("otel_hakgal.llm_call")



def _util_genai_inference() -> tuple[Any, Any]:
    """util-genai's inference context key and data class (>= 1.3), or ``(None, None)``."""
    try:
        module = importlib.import_module("opentelemetry.util.genai.invocation")
        return module.CLIENT_INFERENCE_CONTEXT_KEY, module.InferenceData
    except Exception:  # absent, or an older util-genai without nested-invocation suppression
        return None, None


_UTIL_GENAI_KEY, _UtilGenAIData = _util_genai_inference()


def llm_call_context(ctx: Context, span_context: SpanContext) -> Context:
    """``ctx`` marked as inside the layer LLM call whose span has ``span_context``."""
    ctx = otel_context.set_value(LLM_CALL_KEY, span_context, ctx)
    if _UTIL_GENAI_KEY is not None and _UtilGenAIData is not None:
        with contextlib.suppress(Exception):  # a changed util-genai: the layer's own suppression still holds
            ctx = otel_context.set_value(_UTIL_GENAI_KEY, _UtilGenAIData(), ctx)
    return ctx


def in_llm_call(ctx: Context | None = None) -> bool:
    """Whether ``ctx`` (default: the current context) is inside a layer LLM call."""
    return otel_context.get_value(LLM_CALL_KEY, ctx) is not None


def is_duplicate_span(scope_name: str | None, attributes: Mapping[str, Any] | None, parent: Context | None) -> bool:
    """Whether a span starting under ``parent`` records again the layer LLM call it is directly under.

    True for a span of another instrumentation scope with ``gen_ai.*`` start attributes whose parent is
    the layer's LLM span itself (an HTTP client span there, without ``gen_ai.*``, is kept).
    """
    if scope_name == INSTRUMENTATION_SCOPE or not attributes:
        return False
    call = otel_context.get_value(LLM_CALL_KEY, parent)
    if call is None:
        return False
    if not any(key.startswith(_GEN_AI_PREFIX) for key in attributes):
        return False
    return bool(trace.get_current_span(parent).get_span_context() == call)


def is_duplicate_event(scope_name: str | None, event_name: str | None) -> bool:
    """Whether a log event of another scope describes again the layer LLM call currently open."""
    return (
        scope_name != INSTRUMENTATION_SCOPE
        and bool(event_name)
        and str(event_name).startswith(_GEN_AI_PREFIX)
        and in_llm_call()
    )
