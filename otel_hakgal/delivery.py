"""What a backend's sends actually did: HTTP statuses and errors, for ``selftest``; and whether it still sends
each signal (:class:`SignalGate`: a receiver that answers 404 or 405 for a signal does not take it)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from otel_hakgal.conventions import Metric

T = TypeVar("T")


class DeliveryLog:
    """Counts a backend's network sends by outcome. Thread-safe; cheap enough to keep always on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}

    def record_status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def record_error(self, error: BaseException) -> None:
        with self._lock:
            key = f"{type(error).__name__}"
            self.errors[key] = self.errors.get(key, 0) + 1

    @property
    def attempts(self) -> int:
        with self._lock:
            return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> bool:
        """True when something was sent and every send got a 2xx answer."""
        with self._lock:
            sent = bool(self.statuses or self.errors)
            return sent and not self.errors and all(200 <= status < 300 for status in self.statuses)

    def counts(self) -> dict[str, int]:
        """Sends by outcome: ``"HTTP <status>"`` or the exception's class name -> count."""
        with self._lock:
            counts = {f"HTTP {status}": count for status, count in sorted(self.statuses.items())}
            counts.update(sorted(self.errors.items()))
        return counts

    def describe(self) -> str:
        return ", ".join(f"{outcome} x{count}" for outcome, count in self.counts().items()) or "nothing was sent"


class SignalDeliveryLog(DeliveryLog):
    """The sends of one signal (log records), also counted in the backend's own log.

    ``selftest`` reads it to tell whether log records arrived, apart from spans and metrics.
    """

    def __init__(self, backend_log: DeliveryLog) -> None:
        super().__init__()
        self._backend_log = backend_log

    def record_status(self, status: int) -> None:
        super().record_status(status)
        self._backend_log.record_status(status)

    def record_error(self, error: BaseException) -> None:
        super().record_error(error)
        self._backend_log.record_error(error)


# --- signals a receiver refuses -------------------------------------------------------------------

# Answers that say the receiver does not take a signal at all (a traces-only OTLP consumer answers 405 on
# /v1/metrics); any other failure is an outage, retried by the exporter and sent again next time.
REFUSING_STATUSES: Final = frozenset({404, 405})
# The one warning per refused signal: a logger of its own, outside the export warning budget
# (:mod:`otel_hakgal.log_limits`), so it is never suppressed, and never exported (an ``otel_hakgal`` logger).
SIGNAL_LOGGER: Final = "otel_hakgal.export.signals"
signal_logger = logging.getLogger(SIGNAL_LOGGER)


@dataclass(frozen=True)
class SignalOff:
    """A signal a backend does not send: turned off by its configuration, or refused by its receiver."""

    why: str  # the config key that turned it off (``otlp.metrics = false``), or the receiver's answer
    url: str = ""  # the receiver that refused it (credentials and query left out)
    status: int | None = None  # the refusing HTTP status; None: turned off by the configuration
    unsent: int = 0  # items (spans, metric data points, log records) not sent since the refusal, it included
    turn_off: str = ""  # for a refused signal: how to stop sending it

    @property
    def refused(self) -> bool:
        return self.status is not None


def display_url(url: str) -> str:
    """``url`` without credentials, query or fragment, to show in a warning."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "the receiver"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _Export:
    """The export running on a thread, through :meth:`SignalGate.run`."""

    def __init__(self, gate: SignalGate) -> None:
        self.gate = gate
        self.refused = False  # its receiver refused the signal during this export


_current = threading.local()


def refused_in_this_export() -> bool:
    """Whether the export running on this thread was refused (404/405): its exporter's own failure line is
    then left out, as the gate's warning says more."""
    export: _Export | None = getattr(_current, "export", None)
    return export is not None and export.refused


class SignalGate:
    """Whether one backend still sends one signal (spans, metrics or log records) to its receiver.

    Open until the receiver answers 404 or 405 (:data:`REFUSING_STATUSES`) for the signal, as a
    traces-only OTLP consumer does on ``/v1/metrics``. Then one warning names the backend, the signal, the
    URL, the status and how to turn the signal off; from then on, nothing of the signal is sent and what
    would have been is counted (:meth:`state`). The backend's other signals go on. The gate stays closed for
    the backend's lifetime: the next ``setup()`` that starts the backend again starts with an open one.
    """

    def __init__(self, backend: str, signal: str, noun: str, turn_off: str) -> None:
        self.backend = backend
        self.signal = signal  # "traces", "metrics", "logs"
        self.noun = noun  # what is sent, for the warning: "spans", "metrics", "log records"
        self.turn_off = turn_off  # how to stop sending the signal, for the warning
        self._lock = threading.Lock()
        self._refused: SignalOff | None = None
        self._unsent = 0

    @property
    def open(self) -> bool:
        return self._refused is None

    def run(self, items: int, export: Callable[[], T], skipped: T) -> T:
        """``export()`` while the gate is open, else ``skipped`` with the ``items`` counted as unsent.

        A batch whose export the receiver refused counts as unsent too.
        """
        if self._refused is not None:
            self._count(items)
            return skipped
        previous = getattr(_current, "export", None)
        current = _current.export = _Export(self)
        try:
            return export()
        finally:
            _current.export = previous
            if current.refused:
                self._count(items)

    def answered(self, url: str, status: int, reason: str | None = None) -> None:
        """The receiver at ``url`` answered ``status`` to a send of this signal: a refusal closes the gate."""
        if status not in REFUSING_STATUSES:
            return
        export: _Export | None = getattr(_current, "export", None)
        if export is not None and export.gate is self:
            export.refused = True
        shown = display_url(url)
        with self._lock:
            if self._refused is not None:
                return
            self._refused = SignalOff(f"{shown} answered HTTP {status}", shown, status, turn_off=self.turn_off)
        signal_logger.warning(
            "otel_hakgal: backend %r stopped sending %s: %s answered HTTP %d%s, so that receiver does not take"
            " them%s. The other signals go on; no more %s are sent until the next setup() (counted in"
            " Handle.stats() and the metric %s). To turn them off: %s.",
            self.backend,
            self.noun,
            shown,
            status,
            f" ({reason})" if reason else "",
            " (or the URL's path is wrong)" if status == 404 else "",
            self.noun,
            Metric.EXPORT_DROPPED,
            self.turn_off,
        )

    def _count(self, items: int) -> None:
        with self._lock:
            self._unsent += items

    def state(self) -> SignalOff | None:
        """How the receiver refused the signal, with the items not sent since; None while it is sent."""
        with self._lock:
            return None if self._refused is None else dataclasses.replace(self._refused, unsent=self._unsent)


class MuteRefusedExports(logging.Filter):
    """Leaves out an exporter's own failure line for an export its receiver refused (the gate warned)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or not refused_in_this_export()


_MUTE = MuteRefusedExports()


def mute_refused_exports(loggers: tuple[str, ...]) -> None:
    """Put :class:`MuteRefusedExports` first on each of ``loggers``; idempotent.

    First, so the record it leaves out never reaches :mod:`otel_hakgal.log_limits`' filter, which is last
    and would spend the export warning budget on it.
    """
    for name in loggers:
        target = logging.getLogger(name)
        if target.filters and target.filters[0] is _MUTE:
            continue
        target.removeFilter(_MUTE)
        target.filters.insert(0, _MUTE)
