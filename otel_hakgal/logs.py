"""Logs, the third signal: the service's ``logging`` records, exported to the backends in their traces.

Every piece exists once per process; :mod:`otel_hakgal.pipeline` creates them
at the first ``setup()`` that exports logs and switches them with each one:

- :class:`ExportHandler`, one ``logging.Handler`` on the root logger, attached
  while the running configuration exports logs (``logs.enabled`` and a backend
  that takes them) and removed when it does not. It turns each record at
  ``logs.level`` or above into an OTel log record, in the caller's thread and
  context, so the record carries the trace id, span id and trace flags of the
  span current where it was logged. Records of the layer's own loggers and of
  the libraries it exports with (:data:`OWN_LOGGERS`) are never exported: a
  receiver that is down would otherwise turn each failed export into a record
  to export. The app's handlers and the root logger's level are left alone:
  a record a logger's level filters out, or that a logger with
  ``propagate = False`` keeps from the root, is not exported either.
- The ``LoggerProvider``, with the TracerProvider's resource. It is the
  layer's own and never made the global one: only records through the handler
  reach the backends (a second handler, such as the one
  ``opentelemetry-instrumentation-logging`` installs, exports nowhere).
- :class:`FanOutLogProcessor`, the provider's one processor: per record it
  takes a token of the process-wide rate cap (``logs.max_per_second``; drops
  are counted in ``otel_hakgal.logs.dropped`` and reported in one warning a
  minute), masks the user text of the operations around it and of a logged
  exception per ``redaction.text_mode``, scrubs secrets from the body and
  every string attribute (``exception.message`` and ``exception.stacktrace``
  included) and cuts them to ``redaction.max_attribute_length``, then hands it
  to each backend's log processors. A processor that raises is skipped, with
  one warning, and never reaches the app.

A root handler changes two things the ``logging`` module decides by whether
the root logger has handlers; both are kept as they were without it. A record
no other handler takes goes to ``logging.lastResort`` (stderr) as before.
And ``logging.basicConfig``, ``logging.config.dictConfig`` and
``fileConfig`` run with the handler taken off the root logger and put back
after, so an app that configures logging after ``setup()`` is configured as
it asked (``basicConfig`` does nothing when the root logger has a handler).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from opentelemetry._logs import Logger as OtelLogger
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import get_current
from opentelemetry.metrics import CallbackOptions, MeterProvider, ObservableCounter, Observation
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource

from otel_hakgal import runtime
from otel_hakgal.config import Config
from otel_hakgal.conventions import INSTRUMENTATION_SCOPE, SCHEMA_URL, Attr, LogDropReason, Metric, metric_def
from otel_hakgal.genai import is_duplicate_event
from otel_hakgal.log_limits import INTERVAL_S, count_value
from otel_hakgal.log_redaction import CORRELATION_DEFAULTS, CORRELATION_FIELDS
from otel_hakgal.redaction import SecretScrubber
from otel_hakgal.user_text import LOGGED_HIDDEN_KEY, TextMask, logged_hidden_texts, user_text_mask
from otel_hakgal.version import __version__

__all__ = [
    "CORRELATION_DEFAULTS",
    "LOG_DROPS",
    "OWN_LOGGERS",
    "ExportHandler",
    "FanOutLogProcessor",
    "TokenBucket",
    "create_drop_counter",
    "is_own_logger",
    "new_logger_provider",
]

logger = logging.getLogger("otel_hakgal.logs")

# Loggers whose records are never exported (with every logger below them): the layer's own and
# those of the libraries it exports with.
OWN_LOGGERS: Final = ("otel_hakgal", "opentelemetry", "urllib3", "sentry_sdk")
# ... except the reference service's, which is the application.
APP_LOGGERS: Final = ("otel_hakgal.demo",)
_NAME_CACHE_LIMIT: Final = 10_000

# The key the body is scrubbed under: it names no secret, so only what is in the text is redacted.
_BODY_KEY: Final = "log.body"
# A LogRecord's own fields (and what formatters add): everything else on a record is an ``extra``.
_RECORD_FIELDS: Final = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", (), None)),
        "message",
        "asctime",
        "taskName",
        LOGGED_HIDDEN_KEY,
        *CORRELATION_FIELDS,
    }
)
_PLAIN: Final = (str, bool, int, float, bytes)
_SEVERITY_TEXT: Final = {"WARNING": "WARN", "CRITICAL": "FATAL"}  # the OTel log data model's names

# Set while this thread hands a record to the provider: the record holds its token of the rate cap,
# and a record logged meanwhile (by a processor) is not exported.
_emitting = threading.local()


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


_own: dict[str, bool] = {}


def is_own_logger(name: str) -> bool:
    """Whether records of logger ``name`` stay out of the export (:data:`OWN_LOGGERS`)."""
    own = _own.get(name)
    if own is None:
        if len(_own) >= _NAME_CACHE_LIMIT:  # logger names made per request must not grow it without end
            _own.clear()
        own = _own[name] = _under(name, OWN_LOGGERS) and not _under(name, APP_LOGGERS)
    return own


def severity_number(levelno: int) -> SeverityNumber:
    """The OTel severity of a ``logging`` level (DEBUG 10 -> 5, INFO 20 -> 9, ..., 13 -> DEBUG4)."""
    if levelno < logging.DEBUG:
        return SeverityNumber.UNSPECIFIED
    if levelno >= logging.CRITICAL + 3:
        return SeverityNumber.FATAL4
    tens, ones = divmod(levelno, 10)
    return SeverityNumber(4 * tens + 1 + min(ones, 3))


# --- the rate cap -------------------------------------------------------------------------


class TokenBucket:
    """``rate`` tokens a second, at most one second's worth (and at least one) kept."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.configure(rate)

    def configure(self, rate: float) -> None:
        """A new rate, with a full bucket (a reconfiguration starts a fresh second)."""
        with self._lock:
            self.rate = rate
            self.capacity = max(rate, 1.0)
            self._tokens = self.capacity
            self._last = self._clock()

    def take(self) -> bool:
        """Spend a token; ``False`` when there is none."""
        with self._lock:
            now = self._clock()
            tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if tokens < 1.0:
                self._tokens = tokens
                return False
            self._tokens = tokens - 1.0
            return True

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it at the fork


class LogDropTally:
    """Log records not exported, by reason, for the process's lifetime; reported in one warning a minute.

    Called once per dropped record, so in a flood: lock-free unless a report is due.
    """

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._counters: dict[str, itertools.count[int]] = {}
        self._next_report = 0.0

    def count(self, reason: str, limit: float) -> None:
        counter = self._counters.get(reason)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(reason, itertools.count())
        total = next(counter) + 1  # next() on a count is atomic under the GIL; += is not
        if self._clock() < self._next_report:
            return
        with self._lock:
            now = self._clock()
            if now < self._next_report:
                return  # another thread reported meanwhile
            self._next_report = now + self.interval_s
        # Our own logger: never exported, so the report cannot feed the flood it reports.
        logger.warning(
            "otel_hakgal: log records beyond logs.max_per_second (%g a second) are not exported;"
            " %d dropped so far, counted in the metric %s",
            limit,
            total,
            Metric.LOGS_DROPPED,
        )

    def totals(self) -> dict[str, int]:
        """Records dropped since the process started, by reason."""
        return {reason: count_value(counter) for reason, counter in list(self._counters.items())}

    def reset(self) -> None:
        """Forget the counts and report the next drop at once (for tests)."""
        with self._lock:
            self._counters = {}
            self._next_report = 0.0

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it at the fork


LOG_DROPS: Final = LogDropTally()


def observe_log_drops(options: CallbackOptions) -> Iterable[Observation]:
    """``otel_hakgal.logs.dropped``: from 0 while logs are exported, so increase() sees the first drop."""
    totals = LOG_DROPS.totals()
    if totals or runtime.current.config.logs.enabled:
        for reason in (LogDropReason.RATE_LIMIT,):
            yield Observation(totals.get(reason, 0), {Attr.ERROR_TYPE: reason})


def create_drop_counter(meter_provider: MeterProvider) -> ObservableCounter:
    """The ``otel_hakgal.logs.dropped`` instrument; create it once per process."""
    definition = metric_def(Metric.LOGS_DROPPED)
    meter = meter_provider.get_meter(INSTRUMENTATION_SCOPE, __version__, schema_url=SCHEMA_URL)
    return meter.create_observable_counter(
        definition.name, callbacks=[observe_log_drops], unit=definition.unit, description=definition.description
    )


# --- redaction of an exported record --------------------------------------------------------


def redact_log_record(
    record: LogRecord, scrubber: SecretScrubber | None, noted: Mapping[str, str] | None = None
) -> None:
    """``record``'s body and string attributes, masked per ``text_mode``, scrubbed and cut, in place.

    The mask covers the user text of the open operations, of ``record.exception``, and ``noted``: the texts
    noted on the exceptions the ``logging`` record carried (its arguments), which may have escaped an
    operation that ended before the record was logged.
    """
    mask = user_text_mask(record.exception)
    if noted:
        mask = TextMask(noted).merged(mask) or None
    body = record.body
    if isinstance(body, str):
        if mask is not None:
            body = mask(body)
        if scrubber is not None:
            body = scrubber.scrub_value(_BODY_KEY, body, remember=False)  # log lines never repeat: no cache
        record.body = body
    attributes = record.attributes
    if not attributes:
        return
    changed: dict[str, Any] = {}
    if mask is not None:
        for key, value in attributes.items():
            if isinstance(value, str):
                masked = mask(value)
                if masked is not value:
                    changed[key] = masked
    if scrubber is not None:
        scrubbed = scrubber.scrub_attributes({**attributes, **changed} if changed else attributes, remember=False)
        if scrubbed is not None:
            changed.update((k, v) for k, v in scrubbed.items() if v is not attributes.get(k))
    for key, value in changed.items():
        attributes[key] = value  # type: ignore[index]  # the SDK's BoundedAttributes, made mutable


# --- the fan-out ------------------------------------------------------------------------------


class FanOutLogProcessor(LogRecordProcessor):
    """The provider's one processor: the rate cap and redaction, then the active backends' processors."""

    def __init__(self) -> None:
        # Processors and the scrubber in one tuple, read once per record (as the span fan-out does).
        self._route: tuple[tuple[LogRecordProcessor, ...], SecretScrubber | None] = ((), None)
        self.bucket = TokenBucket(100.0)
        self._warned: set[int] = set()
        self._emitted = itertools.count()  # next() on a count is atomic under the GIL; += is not
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self.bucket._after_fork_in_child)

            def after_fork_in_child() -> None:
                if (method := reinit()) is not None:
                    method()

            os.register_at_fork(after_in_child=after_fork_in_child)

    @property
    def processors(self) -> tuple[LogRecordProcessor, ...]:
        return self._route[0]

    @property
    def records_emitted(self) -> int:
        """Records handed to the backends since the process started."""
        return count_value(self._emitted)

    def switch(self, processors: Sequence[LogRecordProcessor], scrubber: SecretScrubber | None, rate: float) -> None:
        self.bucket.configure(rate)
        self._route = (tuple(processors), scrubber)

    def admit(self) -> bool:
        """Take a token of the rate cap; a record without one is dropped and counted."""
        if self.bucket.take():
            return True
        LOG_DROPS.count(LogDropReason.RATE_LIMIT, self.bucket.rate)
        return False

    def _failed(self, processor: object, what: str) -> None:
        if id(processor) not in self._warned:  # one warning per processor, not one per record
            self._warned.add(id(processor))
            logger.warning("%s %s failed; its log records are dropped", what, type(processor).__name__, exc_info=True)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        processors, scrubber = self._route
        if not processors:
            return
        scope = log_record.instrumentation_scope
        if scope is not None and is_own_logger(scope.name):
            return
        if scope is not None and is_duplicate_event(scope.name, log_record.log_record.event_name):
            return  # another instrumentation's event about a layer LLM call (otel_hakgal.genai)
        # A record from the export handler holds its token already (taken before it was translated).
        if not getattr(_emitting, "active", False) and not self.admit():
            return
        try:
            noted = getattr(_emitting, "noted", None) if getattr(_emitting, "active", False) else None
            redact_log_record(log_record.log_record, scrubber, noted)
        except Exception:  # never export a record whose redaction failed
            self._failed(self, "log redaction in")
            return
        next(self._emitted)
        for processor in processors:
            try:
                processor.on_emit(log_record)
            except Exception:
                self._failed(processor, "log processor")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all([processor.force_flush(timeout_millis) for processor in self.processors])

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()


def new_logger_provider(config: Config, resource: Resource, meter_provider: MeterProvider) -> LoggerProvider:
    """The layer's LoggerProvider (not registered globally), limits from ``[limits]``, lengths cut by the fan-out."""
    count = config.limits.attribute_count
    # Every limit given, so the SDK reads none of its environment variables.
    limits = LogRecordLimits(
        max_attributes=count,
        max_attribute_length=LogRecordLimits.UNSET,
        max_log_record_attributes=count,
        max_log_record_attribute_length=LogRecordLimits.UNSET,
    )
    # shutdown_on_exit off: the handle shuts down the processors, bounded in time.
    return LoggerProvider(
        resource=resource, shutdown_on_exit=False, meter_provider=meter_provider, log_record_limits=limits
    )


# --- the root handler ---------------------------------------------------------------------------


def _attribute_value(value: object) -> Any:
    """An ``extra`` as an attribute value: plain values and lists of them as they are, others as text."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, list | tuple) and all(isinstance(item, _PLAIN) for item in value):
        return value
    return str(value)


def translate(record: logging.LogRecord) -> LogRecord:
    """``record`` as an OTel log record, in the current context (its span gives the record's ids)."""
    attributes: dict[str, Any] = {}
    fields = record.__dict__
    for key in fields.keys() - _RECORD_FIELDS:  # one set operation: most records have no extras
        value = fields[key]
        if value is not None:
            try:
                attributes[key] = _attribute_value(value)
            except Exception:  # an extra whose str() fails is left out, never the record
                continue
    try:
        body = record.getMessage()
    except Exception:  # arguments that do not fit the message: the app's handlers report it, the template goes
        body = str(record.msg)
    exc_info = record.exc_info
    return LogRecord(
        timestamp=int(record.created * 1e9),
        observed_timestamp=time.time_ns(),
        context=get_current(),
        severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
        severity_number=severity_number(record.levelno),
        body=body,
        attributes=attributes or None,
        # The SDK adds exception.type, .message and .stacktrace from it; the fan-out scrubs them.
        exception=exc_info[1] if exc_info else None,
    )


class ExportHandler(logging.Handler):
    """The one handler that exports log records (on the root logger while logs are exported)."""

    def __init__(self, provider: LoggerProvider, fan_out: FanOutLogProcessor) -> None:
        super().__init__(logging.WARNING)
        self.provider = provider
        self.fan_out = fan_out
        self.threshold = logging.WARNING  # logs.level
        self._loggers: dict[str, OtelLogger] = {}
        self._broken = False

    def set_threshold(self, threshold: int) -> None:
        self.threshold = threshold
        # Records below the threshold come in too when logging.lastResort would print them (see emit).
        last = logging.lastResort
        self.setLevel(min(threshold, last.level) if last is not None else threshold)

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: exporting is thread-safe, and the lock would serialise every thread that logs.
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        last = logging.lastResort
        if last is not None and record.levelno >= last.level and self._alone(record):
            last.handle(record)  # what the record got before this handler was here: stderr
        if record.levelno < self.threshold or is_own_logger(record.name) or getattr(_emitting, "active", False):
            return
        fan_out = self.fan_out
        if not fan_out.processors or not fan_out.admit():  # the cap before the translation: floods cost little
            return
        _emitting.active = True
        try:
            _emitting.noted = logged_hidden_texts(record)
            otel_logger = self._loggers.get(record.name)
            if otel_logger is None:
                if len(self._loggers) >= _NAME_CACHE_LIMIT:
                    self._loggers.clear()
                otel_logger = self._loggers[record.name] = self.provider.get_logger(record.name)
            otel_logger.emit(translate(record))
        except Exception:
            if not self._broken:  # one warning, not one per record
                self._broken = True
                logger.warning("exporting a log record failed; such records are dropped", exc_info=True)
        finally:
            _emitting.active = False
            _emitting.noted = None

    def _alone(self, record: logging.LogRecord) -> bool:
        """Whether no other handler takes ``record`` (the ``logging`` module would then use lastResort)."""
        found = logging.Logger.manager.loggerDict.get(record.name)
        node: logging.Logger | None = found if isinstance(found, logging.Logger) else logging.getLogger()
        while node is not None:
            for handler in node.handlers:
                if handler is not self:
                    return False
            if not node.propagate:
                break
            node = node.parent
        return True

    # --- on and off the root logger ---

    def attach(self, threshold: int) -> None:
        """Put the handler on the root logger (once, however often called) at ``threshold``."""
        with _Root.lock:
            self.set_threshold(threshold)
            root = logging.getLogger()
            if self not in root.handlers:
                root.addHandler(self)
            _Root.handler = self
            _keep_out_of_logging_config()

    def detach(self) -> None:
        """Take the handler off the root logger."""
        with _Root.lock:
            logging.getLogger().removeHandler(self)
            if _Root.handler is self:
                _Root.handler = None

    @property
    def attached(self) -> bool:
        return self in logging.getLogger().handlers


class _Root:
    lock = threading.Lock()
    handler: ExportHandler | None = None  # the handler meant to be on the root logger
    patched = False


def _without_export_handler(configure: Callable[..., Any]) -> Callable[..., Any]:
    """``configure`` (a ``logging`` configuration function) run with the export handler off the root logger."""

    @functools.wraps(configure)
    def configure_logging(*args: Any, **kwargs: Any) -> Any:
        handler = _Root.handler
        root = logging.getLogger()
        if handler is None or handler not in root.handlers:
            return configure(*args, **kwargs)
        root.removeHandler(handler)
        try:
            return configure(*args, **kwargs)
        finally:
            if _Root.handler is handler and handler not in root.handlers:
                root.addHandler(handler)

    return configure_logging


def _keep_out_of_logging_config() -> None:
    """Wrap ``basicConfig``, ``dictConfig`` and ``fileConfig`` once (see the module docstring)."""
    if _Root.patched:
        return
    _Root.patched = True
    import logging.config  # here: 5 ms of imports (socketserver ...) only for a process that exports logs

    setattr(logging, "basicConfig", _without_export_handler(logging.basicConfig))  # noqa: B010
    setattr(logging.config, "dictConfig", _without_export_handler(logging.config.dictConfig))  # noqa: B010
    setattr(logging.config, "fileConfig", _without_export_handler(logging.config.fileConfig))  # noqa: B010


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=LOG_DROPS._after_fork_in_child)
