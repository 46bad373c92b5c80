"""A loopback stand-in for Sentry's ingest: envelopes and OTLP traces, kept in memory.

Point the Sentry SDK at :attr:`SentryReceiver.dsn` (``http://<32 hex>@127.0.0.1:<port>/1``).
It accepts

- ``POST /api/<project>/envelope/`` (plain or gzip): one JSON header line, then
  item header / payload pairs (payload length from the item header's
  ``length``, else up to the next newline);
- ``POST /api/<project>/integration/otlp/v1/traces/``: OTLP protobuf, decoded
  with :func:`otel_hakgal.testing.receiver.decode_traces`;
- ``POST /api/<project>/integration/otlp/v1/logs/``: OTLP protobuf, decoded
  with :func:`otel_hakgal.testing.receiver.decode_logs`.

Sentry Logs arrive in envelopes as ``log`` items (``{"items": [...]}``, content
type ``application/vnd.sentry.items.log+json``): :meth:`SentryReceiver.logs`
lists them one by one.

Faults (status, delay, unreachable) are switched at runtime as for any
:class:`~otel_hakgal.testing.receiver.LoopbackServer`.
"""

from __future__ import annotations

import gzip
import json
import secrets
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from otel_hakgal.testing.receiver import (
    LoopbackServer,
    QuietHandler,
    ReceivedLog,
    ReceivedSpan,
    _wait,
    decode_logs,
    decode_traces,
)

OTLP_TRACES_PATH = ["integration", "otlp", "v1", "traces"]
OTLP_LOGS_PATH = ["integration", "otlp", "v1", "logs"]


@dataclass(frozen=True)
class EnvelopeItem:
    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))

    @property
    def json(self) -> Any:
        """The payload parsed as JSON (``None`` for non-JSON payloads)."""
        try:
            return json.loads(self.payload)
        except ValueError:
            return None


@dataclass(frozen=True)
class Envelope:
    headers: dict[str, Any]
    items: tuple[EnvelopeItem, ...]
    project: str
    request_headers: dict[str, str] = field(default_factory=dict)


def parse_envelope(body: bytes, project: str = "", request_headers: dict[str, str] | None = None) -> Envelope:
    """Parse Sentry's envelope format (https://develop.sentry.dev/sdk/data-model/envelopes/)."""
    header_line, _, rest = body.partition(b"\n")
    headers = json.loads(header_line) if header_line.strip() else {}
    items: list[EnvelopeItem] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        if not item_line.strip():
            continue
        item_headers = json.loads(item_line)
        length = item_headers.get("length")
        if length is not None:
            payload, rest = rest[:length], rest[length:]
            if rest.startswith(b"\n"):
                rest = rest[1:]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append(EnvelopeItem(item_headers, payload))
    return Envelope(headers, tuple(items), project, dict(request_headers or {}))


class SentryReceiver(LoopbackServer):
    """Sentry ingest on 127.0.0.1. Use as a context manager or call ``start``/``stop``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, project: str = "1", public_key: str | None = None
    ) -> None:
        """``public_key``: the DSN's key, 32 hex digits as Sentry issues them (random by default)."""
        self.project = project
        self.public_key = public_key or secrets.token_hex(16)
        self._envelopes: list[Envelope] = []
        self._otlp_spans: list[ReceivedSpan] = []
        self._otlp_logs: list[ReceivedLog] = []
        self.otlp_request_headers: list[dict[str, str]] = []  # of OTLP traces requests
        self.otlp_logs_request_headers: list[dict[str, str]] = []
        self.bodies: list[bytes] | None = None  # set to [] to keep every decompressed request body
        self.request_count = 0
        super().__init__(host, port)

    # --- lifecycle ---

    @property
    def dsn(self) -> str:
        host = self._server.server_address[0]
        return f"http://{self.public_key}@{host!s}:{self.port}/{self.project}"

    # --- what arrived ---

    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._envelopes)

    def items(self, item_type: str | None = None) -> list[EnvelopeItem]:
        return [i for e in self.envelopes() for i in e.items if item_type is None or i.type == item_type]

    def transactions(self) -> list[dict[str, Any]]:
        return [i.json for i in self.items("transaction")]

    def errors(self) -> list[dict[str, Any]]:
        """Error and message events (item type ``event``)."""
        return [i.json for i in self.items("event")]

    def streamed_spans(self) -> list[dict[str, Any]]:
        """Spans sent as ``span`` items (Sentry sends ``gen_ai.*`` spans this way), v2 format."""
        spans: list[dict[str, Any]] = []
        for item in self.items("span"):
            spans.extend((item.json or {}).get("items", []))
        return spans

    def profile_chunks(self) -> list[dict[str, Any]]:
        """Continuous profiler chunks (item type ``profile_chunk``): ``profiler_id``, ``chunk_id`` and
        ``profile`` with ``frames``, ``stacks``, ``samples`` and ``thread_metadata``."""
        return [i.json for i in self.items("profile_chunk")]

    def logs(self) -> list[dict[str, Any]]:
        """Sentry Logs (``log`` items), one dict each: ``timestamp``, ``level``, ``body``, ``trace_id``,
        ``span_id`` and ``attributes`` (each ``{"value": ..., "type": ...}``)."""
        logs: list[dict[str, Any]] = []
        for item in self.items("log"):
            logs.extend((item.json or {}).get("items", []))
        return logs

    def otlp_spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._otlp_spans)

    def otlp_logs(self) -> list[ReceivedLog]:
        """Log records received at the OTLP logs endpoint."""
        with self._lock:
            return list(self._otlp_logs)

    def clear(self) -> None:
        with self._lock:
            self._envelopes.clear()
            self._otlp_spans.clear()
            self._otlp_logs.clear()
            self.otlp_request_headers.clear()
            self.otlp_logs_request_headers.clear()

    def wait_for(self, what: str, count: int = 1, timeout_s: float = 10.0) -> list[Any]:
        """Wait until ``count`` of ``what`` arrived: ``"transaction"``, ``"event"``, ``"span"``, ``"profile_chunk"``,
        ``"log"`` (Sentry Logs), ``"otlp"`` (OTLP spans) or ``"otlp_log"``."""

        def found() -> list[Any] | None:
            got: list[Any]
            if what == "transaction":
                got = self.transactions()
            elif what == "event":
                got = self.errors()
            elif what == "span":
                got = self.streamed_spans()
            elif what == "profile_chunk":
                got = self.profile_chunks()
            elif what == "log":
                got = self.logs()
            elif what == "otlp":
                got = self.otlp_spans()
            elif what == "otlp_log":
                got = self.otlp_logs()
            else:
                raise ValueError(f"unknown kind {what!r}")
            return got if len(got) >= count else None

        return _wait(found, timeout_s, f"{count} {what}")

    # --- HTTP ---

    def _record(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.bodies is not None:
            with self._lock:
                self.bodies.append(body)
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if len(parts) < 3 or parts[0] != "api":
            return 404
        project = parts[1]
        if parts[2:] == ["envelope"]:
            envelope = parse_envelope(body, project, headers)
            with self._lock:
                self._envelopes.append(envelope)
            return 200
        if parts[2:] == OTLP_TRACES_PATH:
            spans = decode_traces(body)
            with self._lock:
                self._otlp_spans.extend(spans)
                self.otlp_request_headers.append(headers)
            return 200
        if parts[2:] == OTLP_LOGS_PATH:
            logs = decode_logs(body)
            with self._lock:
                self._otlp_logs.extend(logs)
                self.otlp_logs_request_headers.append(headers)
            return 200
        return 404

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.read_body()
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                with receiver._lock:
                    receiver.request_count += 1
                fault = receiver._fault()
                if fault is not None:
                    self.reply(fault, "application/json", b"{}", receiver._fault_headers(fault))
                    return
                try:
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
                    status = receiver._record(self.path, body, {k.lower(): v for k, v in self.headers.items()})
                except Exception:
                    status = 400
                self.reply(status, "application/json", b"{}")

        return Handler
