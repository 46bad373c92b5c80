"""A loopback OTLP/HTTP receiver that decodes protobuf, for tests and benchmarks.

It stands in for an OpenTelemetry Collector: ``POST /v1/traces`` and
``/v1/metrics`` (gzip or plain protobuf) are decoded with ``opentelemetry-proto``
and kept in memory. Faults can be injected: an HTTP status, or a delay.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

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
    """A request handler that answers in one call and keeps test output clean."""

    def reply(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a daemon thread; subclasses give ``_handler_class``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Self:
        name = f"{type(self).__name__}-{self.port}"
        threading.Thread(target=self._server.serve_forever, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


class OtlpReceiver(LoopbackServer):
    """OTLP/HTTP receiver on 127.0.0.1. Use as a context manager or call ``start``/``stop``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self.request_count = 0
        self.fault_status: int | None = None  # answer every request with this status
        self.fault_delay_s = 0.0  # answer only after this delay
        self.bodies: list[bytes] | None = None  # set to [] to keep every decompressed request body
        super().__init__(host, port)

    @property
    def endpoint(self) -> str:
        return f"http://{self._server.server_address[0]!s}:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def metric_points(self, name: str | None = None) -> list[ReceivedPoint]:
        with self._lock:
            return [p for p in self._points if name is None or p.metric == name]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._points.clear()

    def wait_for_spans(self, count: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans arrived; returns them (raises on timeout)."""
        return _wait(lambda: self.spans() if len(self.spans()) >= count else None, timeout_s, f"{count} spans")

    def wait_for_metric(self, name: str, timeout_s: float = 10.0) -> list[ReceivedPoint]:
        return _wait(lambda: self.metric_points(name) or None, timeout_s, f"metric {name}")

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
        return 404, b""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    receiver.request_count += 1
                if receiver.fault_delay_s:
                    time.sleep(receiver.fault_delay_s)
                if receiver.fault_status is not None:
                    status, payload = receiver.fault_status, b""
                else:
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
