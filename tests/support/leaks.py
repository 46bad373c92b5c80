"""Planted secrets and where they went: receivers that keep every request, and a leak search.

:class:`RecordingOtlpReceiver` and :class:`RecordingSentryReceiver` keep each
request as it arrived (path, headers, decompressed body), so a test can
search every byte and also tell which request header carried what.

:func:`find_leaks` searches haystacks (named byte strings) for planted
secrets in three forms: the value as planted, each random part of it, and
both normalised (case-folded, everything but letters and digits removed), so
that a derived copy such as the formula ``PasswordHunter2X`` counts as a leak
of ``hunter2-x``.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from otel_hakgal.testing.sentry_receiver import Envelope, parse_envelope

ALNUM = string.ascii_letters + string.digits
MIN_PART_LENGTH = 8  # random parts this long never occur by chance in a few MB of telemetry


def token(length: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def word(length: int = 9) -> str:
    """A lower-case random "word" (a passphrase word that is still unique)."""
    return token(length, string.ascii_lowercase)


def normalise(text: str | bytes) -> bytes:
    """Case-folded, only letters and digits: ``Password=Hunter2-X`` -> ``passwordhunter2x``."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return re.sub(rb"[^a-z0-9]", b"", raw.lower())


# --- planted secrets --------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """One planted secret: ``value`` as planted, ``channel`` where (a command, a header, ...)."""

    name: str
    value: str
    channel: str
    # Random parts of the value (>= MIN_PART_LENGTH letters/digits each); default: those of the value.
    parts: tuple[str, ...] = ()

    def needles(self) -> Iterator[tuple[str, bytes, bool]]:
        """(form, bytes, normalised?) to search for."""
        yield "verbatim", self.value.encode("utf-8"), False
        parts = self.parts or tuple(p for p in re.split(r"[^A-Za-z0-9]+", self.value) if len(p) >= MIN_PART_LENGTH)
        for part in parts:
            if part != self.value:
                yield f"part {part[:6]}...", part.encode("utf-8"), False
        yield "normalised", normalise(self.value), True
        for part in parts:
            if normalise(part) != normalise(self.value):
                yield f"normalised part {part[:6]}...", normalise(part), True


@dataclass(frozen=True)
class Leak:
    secret: str
    channel: str
    where: str
    form: str
    snippet: bytes

    def __str__(self) -> str:
        return f"{self.secret} (planted in {self.channel}) -> {self.where} [{self.form}]: ...{self.snippet!r}..."


@dataclass
class Haystack:
    """A named byte string to search, with the secrets that may legitimately be in it."""

    name: str
    data: bytes
    allowed: frozenset[str] = frozenset()
    _normalised: bytes | None = field(default=None, repr=False)
    _lowered: bytes | None = field(default=None, repr=False)

    @property
    def lowered(self) -> bytes:
        if self._lowered is None:
            self._lowered = self.data.lower()
        return self._lowered

    @property
    def normalised(self) -> bytes:
        if self._normalised is None:
            self._normalised = normalise(self.data)
        return self._normalised


def _around(blob: bytes, needle: bytes, width: int = 70) -> bytes:
    at = blob.find(needle)
    return blob[max(0, at - width) : at + len(needle) + width]


def _around_ignoring_case(stack: Haystack, needle: bytes, width: int = 70) -> bytes:
    at = stack.lowered.find(needle.lower())
    return stack.data[max(0, at - width) : at + len(needle) + width]


def find_leaks(planted: Iterable[Secret], haystacks: Iterable[Haystack]) -> list[Leak]:
    """Every (secret, haystack) where the secret shows up in some form; the first form found is reported."""
    leaks = []
    stacks = list(haystacks)
    for secret in planted:
        for stack in stacks:
            if secret.name in stack.allowed or not stack.data:
                continue
            for form, needle, normalised in secret.needles():
                if not needle:
                    continue
                if normalised:
                    if needle in stack.normalised:
                        snippet = _around(stack.normalised, needle)
                        leaks.append(Leak(secret.name, secret.channel, stack.name, form, snippet))
                        break
                elif needle.lower() in stack.lowered:
                    snippet = _around_ignoring_case(stack, needle)
                    leaks.append(Leak(secret.name, secret.channel, stack.name, form, snippet))
                    break
    return leaks


# --- receivers that keep every request ---------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes  # decompressed


class RecordingOtlpReceiver(OtlpReceiver):
    """An :class:`OtlpReceiver` that also keeps each request's path and headers (``requests``, never cleared)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[Request] = []
        self._local = threading.local()
        super().__init__(host, port)

    def _record(self, path: str, body: bytes) -> tuple[int, bytes]:
        headers = dict(getattr(self._local, "headers", {}))
        with self._lock:
            self.requests.append(Request(path, headers, body))
        return super()._record(path, body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        base: Any = super()._handler_class()
        receiver = self

        class Handler(base):  # type: ignore[misc]
            def do_POST(self) -> None:
                receiver._local.headers = {k.lower(): v for k, v in self.headers.items()}
                super().do_POST()

        return Handler

    def trace_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/v1/traces")]


class RecordingSentryReceiver(SentryReceiver):
    """A :class:`SentryReceiver` that keeps each request (``requests``, never cleared) and takes any DSN key."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, project: str = "1", public_key: str = "") -> None:
        self.requests: list[Request] = []
        self.public_key = public_key or secrets.token_hex(16)  # 32 hex digits, as Sentry issues them
        super().__init__(host, port, project)

    @property
    def dsn(self) -> str:
        host = self._server.server_address[0]
        return f"http://{self.public_key}@{host!s}:{self.port}/{self.project}"

    def _record(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests.append(Request(path, dict(headers), body))
        return super()._record(path, body, headers)

    def envelope_requests(self) -> list[tuple[Request, Envelope]]:
        with self._lock:
            requests = [r for r in self.requests if "/envelope" in r.path]
        return [(r, parse_envelope(r.body, "", r.headers)) for r in requests]

    def otlp_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if "/otlp/" in r.path]


def headers_blob(requests: Iterable[Request]) -> bytes:
    return "\n".join(f"{k}: {v}" for r in requests for k, v in r.headers.items()).encode("utf-8", "surrogateescape")


def bodies_blob(requests: Iterable[Request]) -> bytes:
    return b"\n".join(r.body for r in requests)


# --- every string of what arrived --------------------------------------------------------


def strings_in(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every string in a JSON-like structure, dict keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield f"{path}.<key>", key
            yield from strings_in(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from strings_in(item, f"{path}[{index}]")


def otlp_as_dict(request: Request) -> dict[str, Any]:
    """An OTLP request decoded generically (every field, span names, status, events, links, resource)."""
    message: Any = ExportMetricsServiceRequest() if request.path.rstrip("/").endswith("metrics") else None
    if message is None:
        message = ExportTraceServiceRequest()
    message.ParseFromString(request.body)
    decoded: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return decoded


def envelope_as_dict(envelope: Envelope) -> dict[str, Any]:
    """An envelope's headers and items, JSON payloads decoded (others as text)."""
    items = []
    for item in envelope.items:
        payload = item.json
        if payload is None:
            payload = item.payload.decode("utf-8", "replace")
        items.append({"headers": item.headers, "payload": payload})
    return {"headers": envelope.headers, "items": items}


def overlong_strings(documents: Iterable[tuple[str, Any]], limit: int) -> list[str]:
    """``where path: length: start`` for every string over ``limit`` characters, walking each document generically."""
    found = []
    for where, document in documents:
        for path, text in strings_in(document):
            if len(text) > limit:
                found.append(f"{where} {path}: {len(text)} chars: {text[:80]!r}")
    return found


def span_dicts(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The spans of a decoded OTLP traces request."""
    for resource_spans in document.get("resource_spans", []):
        for scope_spans in resource_spans.get("scope_spans", []):
            yield from scope_spans.get("spans", [])
