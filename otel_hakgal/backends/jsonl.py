"""Backend ``jsonl``: one OTLP-JSON export request per line, in a file.

The lines follow the OTLP/JSON encoding (lowerCamelCase keys, hex trace and
span ids), the format of the OpenTelemetry Collector's file exporter, so the
file can be replayed into a collector or read with ``jq``. Spans, metrics and
log records share the one file, as in the Collector's exporter: a line holds
``resourceSpans``, ``resourceMetrics`` or ``resourceLogs``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_hakgal.backends.base import Backend, Parts
from otel_hakgal.backends.batching import (
    CountingBatchLogRecordProcessor,
    CountingBatchSpanProcessor,
    periodic_reader,
)
from otel_hakgal.config import Config, setting
from otel_hakgal.delivery import DeliveryLog

logger = logging.getLogger("otel_hakgal")
delivery_logger = logging.getLogger("otel_hakgal.delivery")  # rate-limited: see otel_hakgal.log_limits

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})
M = TypeVar("M", bound=Message)
PATH_ENV = "OTEL_HAKGAL_JSONL_PATH"
DEFAULT_PATH = "hakgal-telemetry.jsonl"


@dataclass(frozen=True)
class JsonlSettings:
    path: str = setting(
        DEFAULT_PATH, "File that export requests (spans, metrics, log records) are appended to.", env=PATH_ENV
    )
    metrics: bool = setting(True, "Also write metrics.")


def _hex_ids(node: Any) -> Any:
    """Protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids as hex."""
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex() if key in _ID_KEYS and isinstance(value, str) else _hex_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(item) for item in node]
    return node


def _base64_ids(node: Any) -> Any:
    """The inverse of :func:`_hex_ids`: protobuf's JSON parser reads bytes as base64."""
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode()
            if key in _ID_KEYS and isinstance(value, str)
            else _base64_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_base64_ids(item) for item in node]
    return node


def to_otlp_json(message: Message) -> str:
    """Serialise an OTLP protobuf request as one OTLP/JSON line."""
    as_dict = MessageToDict(message, preserving_proto_field_name=False, use_integers_for_enums=True)
    return json.dumps(_hex_ids(as_dict), separators=(",", ":"), ensure_ascii=False)


def from_otlp_json(line: str | dict[str, Any], message: M) -> M:
    """Parse one OTLP/JSON line (or its dict) into ``message`` (e.g. an empty ``ExportLogsServiceRequest()``)."""
    as_dict = json.loads(line) if isinstance(line, str) else line
    ParseDict(_base64_ids(as_dict), message)
    return message


def unwritable_reason(path: Path) -> str | None:
    """Why appending to ``path`` would fail, found without creating anything; ``None`` if it would work.

    Missing directories count as creatable (the backend creates them at start)
    when the nearest existing one is a directory we may write to.
    """
    try:
        if path.is_dir():
            return "it is a directory"
        if path.exists():
            return None if os.access(path, os.W_OK) else "permission denied"
        ancestor = path.absolute().parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"{str(ancestor)!r} is not a directory"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"no permission to create files in {str(ancestor)!r}"
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        return str(error)
    return None


class _LineWriter:
    """Appends whole lines to one file from several exporter threads.

    A failed write (a missing directory, a full disk) loses only that export
    request: it is logged on the rate-limited ``otel_hakgal.delivery`` logger,
    counted in the backend's ``stats().sends``, and makes the next
    ``force_flush()`` return False. A later write to a path that became
    writable succeeds: the backend does not give up.
    """

    def __init__(self, path: Path, log: DeliveryLog | None = None) -> None:
        self.path = path
        self.log = log or DeliveryLog()
        self._lock = threading.Lock()
        self._failures = 0  # failed writes since the last take_failures()
        self.writable = True  # whether the last open (the start probe or a write) worked

    def prepare(self) -> OSError | None:
        """Create missing directories and open the file once, as the first write would; the error if that fails."""
        mkdir_error: OSError | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            mkdir_error = error
        except ValueError:  # a NUL byte in the path: opening it below says so
            pass
        try:
            with self._lock, self.path.open("a", encoding="utf-8"):
                pass
        except OSError as error:
            self.writable = False
            # Opening says it best ('Not a directory', not mkdir's 'File exists'), unless the directory is missing
            # because mkdir was refused ('Permission denied', not 'No such file or directory').
            return mkdir_error if isinstance(error, FileNotFoundError) and mkdir_error is not None else error
        except ValueError as error:
            self.writable = False
            return OSError(str(error))
        return None

    def write(self, line: str) -> bool:
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except (OSError, ValueError) as error:
            with self._lock:
                self._failures += 1
                self.writable = False
            self.log.record_error(error)
            delivery_logger.warning("jsonl backend cannot write %s (%s); its telemetry is dropped", self.path, error)
            return False
        self.writable = True
        return True

    def take_failures(self) -> int:
        """Failed writes since the previous call."""
        with self._lock:
            failures, self._failures = self._failures, 0
        return failures


def _warn_if_unwritable(writer: _LineWriter) -> None:
    error = writer.prepare()
    if error is not None:
        # Once, at start, on the layer's own logger: the delivery logger's budget may be spent.
        logger.warning(
            "otel_hakgal: jsonl backend cannot write %s (%s); its telemetry is dropped until the path is writable",
            writer.path,
            error.strerror or error,
        )


class JsonlSpanExporter(SpanExporter):
    def __init__(self, writer: _LineWriter) -> None:
        self._writer = writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._writer.write(to_otlp_json(encode_spans(spans)))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


class JsonlFileSpanExporter(JsonlSpanExporter):
    """The ``jsonl`` exporter for ``OTEL_TRACES_EXPORTER=jsonl`` under the plain SDK configurator."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__(_LineWriter(Path(path or os.environ.get(PATH_ENV) or DEFAULT_PATH)))
        self._prepared = False
        self._prepare_lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._prepared:
            with self._prepare_lock:
                if not self._prepared:
                    # Once, at the first export (as JsonlBackend.start() for the backend): the constructor does no I/O.
                    _warn_if_unwritable(self._writer)
                    self._prepared = True
        return super().export(spans)


class JsonlLogExporter(LogRecordExporter):
    def __init__(self, writer: _LineWriter) -> None:
        self._writer = writer

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = self._writer.write(to_otlp_json(encode_logs(batch)))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


class JsonlMetricExporter(MetricExporter):
    def __init__(self, writer: _LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        ok = self._writer.write(to_otlp_json(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class JsonlBackend(Backend):
    name = "jsonl"
    Settings = JsonlSettings

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        self.writer = _LineWriter(Path(self.settings.path), self.delivery)

    @classmethod
    def probe(cls, config: Config, settings: JsonlSettings) -> list[str]:
        """For ``check-config``: a path that cannot be written (pure ``check`` cannot look at files)."""
        reason = unwritable_reason(Path(settings.path))
        if reason is None:
            return []
        return [
            config.problem(
                "jsonl.path", f"{settings.path!r} cannot be written: {reason}; the jsonl backend would drop everything"
            )
        ]

    def start(self) -> Parts:
        # Not a start failure: that would stop every other backend too. A warning now, False from force_flush.
        _warn_if_unwritable(self.writer)
        return super().start()

    def force_flush(self, timeout_s: float) -> bool:
        # Runs after the processors and readers flushed: any write of theirs that failed is known by now.
        return self.writer.take_failures() == 0 and self.writer.writable

    def create_parts(self) -> Parts:
        readers: tuple[MetricReader, ...] = ()
        if self.settings.metrics:
            readers = (periodic_reader(JsonlMetricExporter(self.writer), self.config),)
        processor = CountingBatchSpanProcessor(JsonlSpanExporter(self.writer), self.config)
        log_processors: tuple[CountingBatchLogRecordProcessor, ...] = ()
        if self.config.logs.enabled:
            log_processors = (CountingBatchLogRecordProcessor(JsonlLogExporter(self.writer), self.config),)
        return Parts(span_processors=(processor,), metric_readers=readers, log_processors=log_processors)
