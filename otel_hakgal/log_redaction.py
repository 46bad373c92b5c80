"""Every log record is made correlated with its trace, and passes the same secret scrubber as the telemetry.

One wrapper of the process's LogRecord factory does both, installed once by
``setup()`` (:func:`install`), so it runs for every record of every logger
when it is made, before any filter or handler sees it.

Correlation: each record gets the fields of ``opentelemetry-instrumentation-logging``
(:class:`~otel_hakgal.conventions.LogRecordField`), so a format can show them
(``trace_id=%(otelTraceID)s span_id=%(otelSpanID)s``):
``otelTraceID`` (32 hex digits), ``otelSpanID`` (16), ``otelTraceSampled``
and ``otelServiceName``, from the span current where the record is made;
outside a span the ids are ``"0"``. A formatter for records made before
``setup()`` takes :data:`CORRELATION_DEFAULTS` (``logging.Formatter(fmt,
defaults=CORRELATION_DEFAULTS)``), so formatting never fails. The package
itself is not used: its own factory wrapper would be a second one, and its
entry point would add a second export handler under the launcher.

Scrubbing: the service's own log lines carry secrets too: werkzeug's access
log prints the request line with its ``?api_key=`` value, and an application
that logs a failed command prints the exception message with whatever key it
quotes. Every record is scrubbed, for every handler, including handlers added later:

- the message (``record.getMessage()``) is scrubbed and cut to
  ``redaction.max_attribute_length``; only when that changes it are ``msg``
  and ``args`` replaced by the result (``args = ()``);
- a record with ``exc_info`` gets its traceback formatted once, scrubbed, with
  each line cut to the same length, into ``exc_text``, which the standard
  ``Formatter`` prints instead of formatting the traceback again;
- ``stack_info`` is scrubbed.

The scrubber is read from :data:`otel_hakgal.runtime.current` on every
record, so a reconfiguration applies at once; with telemetry idle or disabled,
one built from the running configuration is used. ``redaction.scrub_logs =
false`` turns the rewriting off. The factory runs only for records a logger
actually makes (after the level check), so disabled debug logging costs
nothing.

Noisy loggers (:data:`NOISY_LOGGERS`) that log client input at WARNING on
every request get a rate limit and short arguments too: OTel's baggage
propagator logs a whole oversize ``baggage`` header (20 KB) per request. Their
string arguments are cut to :data:`NOISY_ARG_LENGTH` characters with the
original length noted, and one :class:`~otel_hakgal.log_limits.WarningBudget`
lets one WARNING-or-worse record a minute through; the next one that passes
says how many were suppressed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import trace

from otel_hakgal import runtime
from otel_hakgal.config import Config
from otel_hakgal.conventions import LogRecordField
from otel_hakgal.log_limits import INTERVAL_S, WarningBudget
from otel_hakgal.redaction import SecretScrubber
from otel_hakgal.user_text import LOGGED_HIDDEN_KEY, arguments_hidden_texts

# Loggers that log client-controlled input on every request: rate-limited, with short arguments.
NOISY_LOGGERS: Final = frozenset({"opentelemetry.baggage.propagation"})
NOISY_ARG_LENGTH: Final = 64
# The key the message is scrubbed under: names no secret, so only what is in the text is redacted.
_MESSAGE_KEY: Final = "log.message"
_CUT: Final = "…"

# Formats tracebacks as the standard handlers would (their default formatException).
_FORMATTER: Final = logging.Formatter()

# What a record made outside a span carries, and what a formatter assumes for one made otherwise.
CORRELATION_DEFAULTS: Final = {
    LogRecordField.TRACE_ID: "0",
    LogRecordField.SPAN_ID: "0",
    LogRecordField.TRACE_SAMPLED: False,
    LogRecordField.SERVICE_NAME: "",
}
CORRELATION_FIELDS: Final = frozenset(CORRELATION_DEFAULTS)

RecordFactory = Callable[..., logging.LogRecord]


class _State:
    lock = threading.Lock()
    factory: RecordFactory | None = None  # ours, once installed
    budget: WarningBudget | None = None
    # The scrubber built for a configuration that runs without one (idle, disabled).
    fallback: tuple[Config, SecretScrubber] | None = None


_busy = threading.local()  # a record made while scrubbing one (a log call in the scrubber) is left alone


def install(interval_s: float = INTERVAL_S) -> WarningBudget:
    """Correlate and scrub every log record from now on, and rate-limit :data:`NOISY_LOGGERS`; idempotent.

    Returns the noisy loggers' budget (its ``suppressed`` counts the records refused).
    """
    with _State.lock:
        if _State.factory is None:
            _State.factory = _scrubbing(logging.getLogRecordFactory())
            logging.setLogRecordFactory(_State.factory)
        if _State.budget is None:
            _State.budget = WarningBudget(interval_s)
            for name in sorted(NOISY_LOGGERS):
                logging.getLogger(name).addFilter(_BudgetFilter(_State.budget))
        return _State.budget


def suppressed() -> int:
    """Records of the noisy loggers suppressed so far (0 before :func:`install`)."""
    budget = _State.budget
    return 0 if budget is None else budget.suppressed


class _BudgetFilter(logging.Filter):
    """WARNING-or-worse records pass as the budget admits them; lower levels always pass."""

    def __init__(self, budget: WarningBudget) -> None:
        super().__init__()
        self.budget = budget

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or self.budget.admit(record)


def _scrubbing(make: RecordFactory) -> RecordFactory:
    """``make`` (the factory in place), followed by :func:`correlate` and :func:`redact_record`."""

    def make_scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        with contextlib.suppress(Exception):  # a log call must never fail over its correlation
            correlate(record)
        if getattr(_busy, "active", False):
            return record
        _busy.active = True
        try:
            scrubber = active_scrubber()
            if scrubber is not None:
                redact_record(record, scrubber)
        except Exception:  # a log call must never fail over its scrubbing: the record stays as made
            pass
        finally:
            _busy.active = False
        return record

    return make_scrubbed_record


class _Ids:
    """The hex ids of the span context seen last: a request's records share one, formatting it once is enough."""

    last: tuple[trace.SpanContext, str, str] | None = None


def correlate(record: logging.LogRecord) -> None:
    """Set the :class:`~otel_hakgal.conventions.LogRecordField` fields of ``record`` from the current span."""
    span_context = trace.get_current_span().get_span_context()
    d = record.__dict__  # four plain assignments, the cheapest way in
    if span_context.is_valid:
        last = _Ids.last
        if last is None or last[0] is not span_context:
            # One tuple, replaced whole: threads never see the ids of two contexts mixed.
            last = _Ids.last = (
                span_context,
                format(span_context.trace_id, "032x"),
                format(span_context.span_id, "016x"),
            )
        d[LogRecordField.TRACE_ID] = last[1]
        d[LogRecordField.SPAN_ID] = last[2]
        d[LogRecordField.TRACE_SAMPLED] = span_context.trace_flags.sampled
    else:
        d[LogRecordField.TRACE_ID] = "0"
        d[LogRecordField.SPAN_ID] = "0"
        d[LogRecordField.TRACE_SAMPLED] = False
    d[LogRecordField.SERVICE_NAME] = runtime.current.config.service.name


def active_scrubber() -> SecretScrubber | None:
    """The scrubber for log records now: the running one, ``None`` when ``redaction.scrub_logs`` is off."""
    rt = runtime.current
    if not rt.config.redaction.scrub_logs:
        return None
    if rt.scrubber is not None:
        return rt.scrubber
    fallback = _State.fallback
    if fallback is None or fallback[0] is not rt.config:
        fallback = _State.fallback = (rt.config, SecretScrubber.for_config(rt.config))
    return fallback[1]


def redact_record(record: logging.LogRecord, scrubber: SecretScrubber) -> None:
    """Scrub and cut ``record``'s message, traceback and stack in place (see the module docstring)."""
    if record.name in NOISY_LOGGERS and isinstance(record.args, tuple):
        record.args = tuple(_short(arg) for arg in record.args)
    limit = scrubber.max_length
    message = record.getMessage()
    clean = scrubber.scrub_value(_MESSAGE_KEY, message, remember=False)  # log lines never repeat: no cache
    if limit is not None and len(message) > limit:
        clean = clean[: max(limit - 1, 0)] + _CUT
    if clean is not message and clean != message:
        # The exceptions among the arguments go with them: keep the user text noted on them, to be masked.
        if hidden := arguments_hidden_texts(record.args):
            record.__dict__[LOGGED_HIDDEN_KEY] = hidden
        record.msg = clean
        record.args = ()
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = _cut_lines(scrubber.scrub(_FORMATTER.formatException(record.exc_info), remember=False), limit)
    if record.stack_info:
        record.stack_info = _cut_lines(scrubber.scrub(record.stack_info, remember=False), limit)


def _short(arg: object) -> object:
    if isinstance(arg, str) and len(arg) > NOISY_ARG_LENGTH:
        return f"{arg[:NOISY_ARG_LENGTH]}{_CUT}({len(arg)} characters)"
    return arg


def _cut_lines(text: str, limit: int | None) -> str:
    """``text`` with each line cut to ``limit``: a traceback keeps its shape and its last line."""
    if limit is None or len(text) <= limit:
        return text
    lines = text.split("\n")
    return "\n".join(line if len(line) <= limit else line[: max(limit - 1, 0)] + _CUT for line in lines)
