"""A loopback OTLP/HTTP receiver that decodes protobuf, for tests and benchmarks.

It stands in for an OpenTelemetry Collector: ``POST /v1/traces``,
``/v1/metrics`` and ``/v1/logs`` (gzip or plain protobuf) are decoded with
``opentelemetry-proto`` and kept in memory, with each request's headers.
Faults (see :class:`LoopbackServer`) can be switched on and off at runtime:
an HTTP status, a delay, or the port going unreachable; and per signal
(:meth:`OtlpReceiver.refuse`), a receiver that does not take one, as a
traces-only consumer answers 405 on ``/v1/metrics``.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

T = TypeVar("T")


def any_value(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` to the matching Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: int
    status_code: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    events: tuple[str, ...]
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class ReceivedPoint:
    metric: str
    unit: str
    attributes: dict[str, Any]
    value: float | None = None  # sums and gauges
    count: int | None = None  # histograms
    sum: float | None = None
    bounds: tuple[float, ...] = ()
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedLog:
    body: Any  # the message, for records from ``logging``
    severity_text: str  # "WARN", "ERROR", ...
    severity_number: int  # 13 WARN, 17 ERROR, ...
    attributes: dict[str, Any]
    trace_id: str | None  # hex; None outside any span
    span_id: str | None
    resource: dict[str, Any]
    scope: str  # the logger's name
    time_ns: int
    flags: int = 0  # W3C trace flags (1: sampled)


def decode_logs(body: bytes) -> list[ReceivedLog]:
    request = ExportLogsServiceRequest.FromString(body)
    logs = []
    for resource_logs in request.resource_logs:
        resource = attributes_of(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                logs.append(
                    ReceivedLog(
                        body=any_value(record.body),
                        severity_text=record.severity_text,
                        severity_number=record.severity_number,
                        attributes=attributes_of(record.attributes),
                        trace_id=record.trace_id.hex() or None,
                        span_id=record.span_id.hex() or None,
                        resource=resource,
                        scope=scope_logs.scope.name,
                        time_ns=record.time_unix_nano,
                        flags=record.flags,
                    )
                )
    return logs


def decode_traces(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        kind=span.kind,
                        status_code=span.status.code,
                        attributes=attributes_of(span.attributes),
                        resource=resource,
                        scope=scope_spans.scope.name,
                        events=tuple(event.name for event in span.events),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                    )
                )
    return spans


def decode_metrics(body: bytes) -> list[ReceivedPoint]:
    request = ExportMetricsServiceRequest.FromString(body)
    points = []
    for resource_metrics in request.resource_metrics:
        resource = attributes_of(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                for point in data.data_points:
                    attributes = attributes_of(point.attributes)
                    if kind == "histogram":
                        points.append(
                            ReceivedPoint(
                                metric.name,
                                metric.unit,
                                attributes,
                                count=point.count,
                                sum=point.sum,
                                bounds=tuple(point.explicit_bounds),
                                resource=resource,
                            )
                        )
                    else:
                        value = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
                        points.append(
                            ReceivedPoint(metric.name, metric.unit, attributes, value=value, resource=resource)
                        )
    return points


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers in one call and keeps test output clean.

    It speaks HTTP/1.1 with keep-alive, as real ingest endpoints do: a sender
    reuses its connection instead of paying a connect per request.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: Nagle would hold the body for an ACK
    timeout = 30  # an idle kept-alive connection frees its thread after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def read_body(self) -> bytes:
        """The request body, sized by ``Content-Length`` or sent chunked (HTTP/1.1: otherwise there is none)."""
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return b""
        chunks = []
        while size := int(self.rfile.readline().split(b";", 1)[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline().strip():  # trailers, up to the empty line
            pass
        return b"".join(chunks)

    def reply(self, status: int, content_type: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    """Keeps its open connections, so that going down also drops the kept-alive ones."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender that went away mid-request (a process that exited, an export that timed out) is not
        # the receiver's error: no traceback for it on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_all(self) -> None:
        """Stop listening and cut every open connection, as a crashed server would."""
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a daemon thread; subclasses give ``_handler_class``.

    Faults, switchable at any time (for outage and recovery tests):

    - :attr:`fault_status`: answer every request with this status (with
      ``Retry-After: <retry_after>`` on 429 and 503: without it Sentry's
      transport backs off for 60 s);
    - :attr:`fault_delay_s`: answer only after this many seconds;
    - :meth:`go_down` / :meth:`come_back`: close the listening port (connection
      refused) and listen again on the same port.

    :meth:`heal` clears every fault and releases requests still being delayed.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self.fault_status: int | None = None
        self.fault_delay_s = 0.0
        self.retry_after: str | None = "1"
        self._healed = threading.Event()  # set by heal(): delayed requests answer at once
        self._server = self._bind(host, port)
        self._address = (host, self.port)  # the port stays the same across go_down / come_back
        self._down = False

    def _bind(self, host: str, port: int) -> _Server:
        return _Server((host, port), self._handler_class())

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def is_down(self) -> bool:
        return self._down

    def start(self) -> Self:
        name = f"{type(self).__name__}-{self.port}"
        threading.Thread(target=self._server.serve_forever, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        self._healed.set()
        if not self._down:
            self._server.close_all()
        self._down = True

    def fail(self, status: int | None = None, delay_s: float = 0.0) -> None:
        """Answer every request with ``status`` (None: normally) after ``delay_s`` seconds."""
        self._healed.clear()
        self.fault_delay_s = delay_s
        self.fault_status = status

    def go_down(self) -> None:
        """Stop listening: connections to the port are refused until :meth:`come_back`."""
        if not self._down:
            self._server.close_all()
            self._down = True

    def come_back(self) -> None:
        """Listen again on the same port (after :meth:`go_down`)."""
        if self._down:
            self._server = self._bind(*self._address)
            self._down = False
            self.start()

    def heal(self) -> None:
        """Clear every fault: answer normally, at once, and listen again if down."""
        self.fault_status = None
        self.fault_delay_s = 0.0
        self._healed.set()
        self.come_back()

    def _fault(self) -> int | None:
        """Apply the delay fault; the status to answer with instead of handling the request, if any."""
        delay = self.fault_delay_s
        if delay:
            self._healed.wait(delay)
        return self.fault_status

    def _fault_headers(self, status: int) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if status in (429, 503) and self.retry_after else {}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


SIGNALS = ("traces", "metrics", "logs")


def signal_of(path: str) -> str | None:
    """The OTLP signal a request path is for (``/v1/logs`` -> ``"logs"``), if any."""
    return next((signal for signal in SIGNALS if path.endswith(f"/v1/{signal}")), None)


class OtlpReceiver(LoopbackServer):
    """OTLP/HTTP receiver on 127.0.0.1. Use as a context manager or call ``start``/``stop``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self._logs: list[ReceivedLog] = []
        self._headers: dict[str, list[dict[str, str]]] = {}
        self.request_count = 0
        self.bodies: list[bytes] | None = None  # set to [] to keep every decompressed request body
        # Signal ("traces", "metrics", "logs") -> the status every request for it gets (see refuse()).
        self.signal_faults: dict[str, int] = {}
        super().__init__(host, port)

    def refuse(self, signal: str, status: int = 405) -> None:
        """Answer every request for ``signal`` with ``status``, as a receiver that does not take it (a
        traces-only consumer answers 405 on ``/v1/metrics``); the other signals are received as usual.
        Requests are still counted (``headers_for``). :meth:`heal` takes every signal again."""
        self.signal_faults[signal] = status

    def heal(self) -> None:
        self.signal_faults.clear()
        super().heal()

    @property
    def endpoint(self) -> str:
        return f"http://{self._server.server_address[0]!s}:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def metric_points(self, name: str | None = None) -> list[ReceivedPoint]:
        with self._lock:
            return [p for p in self._points if name is None or p.metric == name]

    def logs(self) -> list[ReceivedLog]:
        """Log records received, in the order they arrived."""
        with self._lock:
            return list(self._logs)

    def headers_for(self, signal: str) -> list[dict[str, str]]:
        """The headers (names in lower case) of each request for ``signal`` ("traces", "metrics", "logs")."""
        with self._lock:
            return list(self._headers.get(signal, []))

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._points.clear()
            self._logs.clear()
            self._headers.clear()

    def wait_for_spans(self, count: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans arrived; returns them (raises on timeout)."""
        return _wait(lambda: self.spans() if len(self.spans()) >= count else None, timeout_s, f"{count} spans")

    def wait_for_metric(self, name: str, timeout_s: float = 10.0) -> list[ReceivedPoint]:
        return _wait(lambda: self.metric_points(name) or None, timeout_s, f"metric {name}")

    def wait_for_logs(self, count: int, timeout_s: float = 10.0) -> list[ReceivedLog]:
        """Wait until at least ``count`` log records arrived; returns them (raises on timeout)."""
        return _wait(lambda: self.logs() if len(self.logs()) >= count else None, timeout_s, f"{count} log records")

    def _record(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.bodies is not None:
            with self._lock:
                self.bodies.append(body)
        if path.endswith("/v1/traces"):
            spans = decode_traces(body)
            with self._lock:
                self._spans.extend(spans)
            return 200, ExportTraceServiceResponse().SerializeToString()
        if path.endswith("/v1/metrics"):
            points = decode_metrics(body)
            with self._lock:
                self._points.extend(points)
            return 200, ExportMetricsServiceResponse().SerializeToString()
        if path.endswith("/v1/logs"):
            logs = decode_logs(body)
            with self._lock:
                self._logs.extend(logs)
            return 200, ExportLogsServiceResponse().SerializeToString()
        return 404, b""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.read_body()
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                signal = signal_of(self.path)
                with receiver._lock:
                    receiver.request_count += 1
                    if signal is not None:
                        headers = {name.lower(): value for name, value in self.headers.items()}
                        receiver._headers.setdefault(signal, []).append(headers)
                fault = receiver._fault()
                if fault is None and signal is not None:
                    fault = receiver.signal_faults.get(signal)
                if fault is not None:
                    self.reply(fault, "application/x-protobuf", b"", receiver._fault_headers(fault))
                    return
                try:
                    status, payload = receiver._record(self.path, body)
                except Exception:  # undecodable body: answer like a collector would
                    status, payload = 400, b""
                self.reply(status, "application/x-protobuf", payload)

        return Handler


def _wait(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"receiver did not get {what} within {timeout_s} s")
        time.sleep(0.02)
