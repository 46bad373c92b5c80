"""OTel log records to Sentry Logs, in the trace of the span they were emitted in, off the request thread.

The layer's core scrubs, cuts and rate-limits each record before any backend's
processor sees it. :class:`SentryLogProcessor` only queues the record with the
Sentry scopes of its thread (a deque append); one background
:class:`~otel_hakgal.backends.sentry.worker.FifoWorker` converts it with
:func:`sentry_log` and hands it to the client the backend started. The client
applies the scopes' attributes (``sentry.environment``, ``sentry.release``,
``server.address``, the SDK's name), runs ``before_send_log`` (the layer's
scrubber again, for what sentry-sdk added) and adds the log to its batcher,
which sends up to 100 logs per envelope at least every 5 seconds.

The trace and span id are the OTel record's, so a log shares its trace id with
the transaction of its root span (and with the span's other backends). The
public ``sentry_sdk.logger`` cannot set them (it takes them from the calling
thread's scope), nor the record's timestamp: hence ``_compat.capture_log``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import sentry_sdk
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.trace import format_span_id, format_trace_id
from sentry_sdk.scope import use_isolation_scope, use_scope

from otel_hakgal import runtime
from otel_hakgal.backends.base import QueueStats
from otel_hakgal.backends.batching import DROPS
from otel_hakgal.backends.sentry import _compat
from otel_hakgal.backends.sentry.client import LOG_SCRUBBER_KEY, wait_for_room
from otel_hakgal.backends.sentry.vocabulary import (
    IGNORED_LOGGERS,
    LOG_ORIGIN,
    LOG_ORIGIN_ATTRIBUTE,
    LOGGER_NAME_ATTRIBUTE,
    log_level,
)
from otel_hakgal.backends.sentry.worker import FifoWorker

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from sentry_sdk.client import BaseClient
    from sentry_sdk.scope import Scope

    from otel_hakgal.redaction import SecretScrubber

# Records waiting for the worker: ten seconds at the default cap of 100 records a second; more are dropped and
# counted. The same bound as sentry-sdk's own log batcher behind it.
LOG_QUEUE_SIZE: Final = 1000
# Room the worker leaves in the log batcher's buffer for logs the app sends through ``sentry_sdk.logger``.
BATCHER_RESERVE: Final = 100
WORKER_NAME: Final = "otel_hakgal-sentry-logs"


def attribute_value(value: Any) -> Any:
    """An OTel attribute value as a Sentry log attribute: a scalar, a list of one scalar type, else JSON text."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        if not value:
            return []
        kind = type(value[0])
        if kind in (str, bool, int, float) and all(type(item) is kind for item in value):
            return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _body(body: Any) -> str:
    if isinstance(body, str):
        return body
    if body is None:
        return ""
    return str(attribute_value(body))


class _Resources:
    """Each resource's attributes as Sentry log attributes, converted once (a process has one or two)."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Resource, dict[str, Any]]] = {}

    def attributes(self, resource: Resource | None) -> Mapping[str, Any]:
        if resource is None:
            return {}
        known = self._by_id.get(id(resource))
        if known is not None and known[0] is resource:
            return known[1]
        converted = {key: attribute_value(value) for key, value in resource.attributes.items()}
        if len(self._by_id) > 16:  # a resource per setup(): old ones are not kept alive
            self._by_id.clear()
        self._by_id[id(resource)] = (resource, converted)
        return converted


_RESOURCES: Final = _Resources()


def sentry_log(record: ReadWriteLogRecord) -> dict[str, Any]:
    """The Sentry log (sentry-sdk's ``Log`` dict) for an OTel log record.

    Level from the severity number; the body as text; attributes: the resource's, the record's
    over them, ``logger.name`` (the OTel logger's scope is the Python logger's name) and ``sentry.origin``;
    the record's timestamp, trace id and span id (none outside a span: the client then fills in its
    scope's trace id, as for any log).
    """
    data = record.log_record
    number = data.severity_number.value if data.severity_number is not None else 0
    attributes: dict[str, Any] = dict(_RESOURCES.attributes(record.resource))
    for key, value in (data.attributes or {}).items():
        attributes[key] = attribute_value(value)
    scope = record.instrumentation_scope
    if scope is not None and scope.name:
        attributes.setdefault(LOGGER_NAME_ATTRIBUTE, scope.name)
    attributes[LOG_ORIGIN_ATTRIBUTE] = LOG_ORIGIN
    return {
        "severity_text": log_level(number),
        "severity_number": number,
        "body": _body(data.body),
        "attributes": attributes,
        "time_unix_nano": data.timestamp or data.observed_timestamp or time.time_ns(),
        "trace_id": format_trace_id(data.trace_id) if data.trace_id else None,
        "span_id": format_span_id(data.span_id) if data.span_id else None,
    }


class SentryLogProcessor(LogRecordProcessor):
    """Sends each OTel log record to Sentry as a Sentry Log through ``client``, off the emitting thread.

    ``inline=True`` converts and hands over on the emitting thread (tests).
    Records of :data:`~otel_hakgal.backends.sentry.vocabulary.IGNORED_LOGGERS`
    and records emitted on the worker's own thread are skipped: handing a log
    to sentry-sdk must not make another.
    """

    def __init__(
        self,
        client: BaseClient,
        *,
        inline: bool = False,
        max_queue_size: int = LOG_QUEUE_SIZE,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.client = client
        self.inline = inline
        self.shutdown_timeout_s = shutdown_timeout_s
        self.worker = FifoWorker(max_queue_size, name=WORKER_NAME)
        self.sent = 0  # handed to the client's batcher
        self.overflowed = 0  # handed over while the batcher was full: sentry-sdk drops those

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self.client.transport is None:  # no DSN, or closed since
            return
        scope = log_record.instrumentation_scope
        if scope is not None and scope.name in IGNORED_LOGGERS:
            return
        if threading.current_thread().name == WORKER_NAME:
            return
        # The secret policy of the runtime in force now: the worker may run after setup() replaced it.
        scrubber = runtime.current.scrubber
        if self.inline:
            self._send(log_record, _compat.merged_scope(), scrubber, wait=False)
            return
        # Converted in the scopes of this thread (scope attributes, user), as sentry-sdk's own handler would.
        isolation, current = sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()
        if not self.worker.submit(lambda: self._send_in(isolation, current, log_record, scrubber)):
            DROPS.noticed()  # the worker counted it; reported with every other drop

    def _send_in(
        self, isolation: Scope, current: Scope, record: ReadWriteLogRecord, scrubber: SecretScrubber | None
    ) -> None:
        with use_isolation_scope(isolation), use_scope(current):
            self._send(record, _compat.merged_scope(), scrubber, wait=True)

    def _send(self, record: ReadWriteLogRecord, scope: Scope, scrubber: SecretScrubber | None, *, wait: bool) -> None:
        client = self.client
        if client.transport is None:
            return
        # The batcher's own thread empties it at 100 logs (or every 5 seconds): a burst waits here for a moment
        # instead of overflowing it, which sentry-sdk only reports to Sentry.
        if wait and not wait_for_room(lambda: _compat.log_batcher_depth(client), BATCHER_RESERVE):
            self.overflowed += 1  # counted here: the batcher drops it with no count the layer can read
            DROPS.noticed()
        log = sentry_log(record)
        log[LOG_SCRUBBER_KEY] = scrubber  # for before_send_log, which gets no hint
        _compat.capture_log(client, log, scope)
        self.sent += 1

    def queue_stats(self) -> dict[str, QueueStats]:
        """The worker's queue (records), and the client's log batcher (logs waiting for their envelope)."""
        stats = {"sentry log worker": self.worker.queue_stats()}
        depth = _compat.log_batcher_depth(self.client)
        if depth is not None:
            stats["sentry log batcher"] = QueueStats(queued=depth[0], capacity=depth[1], dropped=self.overflowed)
        return stats

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Hand every queued record to the client, within ``timeout_millis``.

        The client's batched logs reach Sentry with the backend's ``force_flush``, which flushes the
        client once for all its processors (a flush here too would wait for a Sentry that is down again).
        """
        return self.worker.drain(timeout_millis / 1000)

    def shutdown(self) -> None:
        # The client's close (the backend's shutdown, after this) sends what its batcher still holds.
        self.worker.stop(self.shutdown_timeout_s)
