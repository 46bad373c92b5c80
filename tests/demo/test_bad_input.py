"""Bad input over real HTTP (issue 8, item 5; issue 14, items 4, 5, 8, 9 and 13).

One gunicorn server under the launcher (backends ``otlp`` and ``sentry``) and
one ``python -m otel_hakgal.demo.api`` server (``otlp`` and ``sentry-otlp``)
export to loopback receivers. Each bad input gets a 4xx or a normal answer,
never a 5xx and never a hang; the server still answers a normal command
afterwards; a client's mistake files no Sentry error event; and no string in
any field that reaches a receiver (span names, status messages, events,
attributes, resource, links, Sentry events) is longer than
``redaction.max_attribute_length``, or invalid UTF-8. 404 scans do not make
span names unbounded: an unmatched request is named by its method alone.

The closing test gives the counts: bad inputs tried, and 5xx answers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import secrets
import socket
import string
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_hakgal.demo.api import MAX_BODY_BYTES
from otel_hakgal.testing import ReceivedSpan
from otel_hakgal.testing.receiver import any_value
from tests.support.leaks import (
    RecordingOtlpReceiver,
    RecordingSentryReceiver,
    Request,
    envelope_as_dict,
    otlp_as_dict,
    overlong_strings,
)
from tests.support.processes import VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

MAX_ATTRIBUTE_LENGTH = 200  # small, so the long inputs below really get cut
SERVER_KIND = 2
MB = 1024 * 1024
REQUEST_TIMEOUT_S = 30.0  # a request that takes longer is a hang
CONFIG = (
    f"\n[redaction]\nmax_attribute_length = {MAX_ATTRIBUTE_LENGTH}\n"
    "max_text_length = 100000\n\n[genai]\ncapture_message_content = true\n"
)


@dataclass
class Server:
    process: ServerProcess
    receiver: RecordingOtlpReceiver
    sentry: RecordingSentryReceiver
    form: str = "launcher+gunicorn"

    @property
    def port(self) -> int:
        return self.process.port


# --- the closing note: every bad input tried, and its answer ------------------------------------


@dataclass
class Tried:
    form: str
    name: str
    status: int | None  # None: no answer within REQUEST_TIMEOUT_S (a hang)


TRIED: list[Tried] = []


def tally(server: Server, name: str, status: int | None) -> None:
    TRIED.append(Tried(server.form, name, status))


def _serve(
    argv: list[str],
    env: dict[str, str],
    port: int,
    receiver: RecordingOtlpReceiver,
    sentry: RecordingSentryReceiver,
    form: str,
) -> Iterator[Server]:
    process = ServerProcess(argv, env, port)
    try:
        process.wait_ready(timeout_s=60)
        assert process.post_command("status")[0] == 200, process.output  # warm: simulator and KB started
        yield Server(process, receiver, sentry, form)
    finally:
        output = process.stop()
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn (threaded worker) under the launcher; backends ``otlp`` and ``sentry``."""
    config = tmp_path_factory.mktemp("bad-input") / "otel.toml"
    # Command text may be longer than the attribute limit and prompts are recorded: both get cut by it.
    config.write_text('backends = ["otlp", "sentry"]\n' + CONFIG)
    with RecordingOtlpReceiver() as receiver, RecordingSentryReceiver() as sentry:
        receiver.bodies = []  # the raw requests too: events and status messages are checked in them
        port = free_port()
        env = clean_env(
            OTEL_HAKGAL_CONFIG=str(config),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            SENTRY_DSN=sentry.dsn,
            OTEL_BSP_SCHEDULE_DELAY="50",  # spans reach the receiver soon after each request
            OTEL_METRIC_EXPORT_INTERVAL="60000",
        )
        gunicorn = [str(VENV_BIN / "gunicorn"), "-w", "1", "--threads", "4", "-b", f"127.0.0.1:{port}"]
        argv = [str(VENV_BIN / "opentelemetry-instrument"), *gunicorn, "otel_hakgal.demo.api:app"]
        yield from _serve(argv, env, port, receiver, sentry, "launcher+gunicorn")


@pytest.fixture(scope="module")
def werkzeug_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m otel_hakgal.demo.api`` (werkzeug: long request lines and headers reach the app);
    backends ``otlp`` and ``sentry-otlp``."""
    config = tmp_path_factory.mktemp("bad-input-python-m") / "otel.toml"
    config.write_text('backends = ["otlp", "sentry-otlp"]\n' + CONFIG)
    with RecordingOtlpReceiver() as receiver, RecordingSentryReceiver() as sentry:
        receiver.bodies = []
        port = free_port()
        env = clean_env(
            OTEL_HAKGAL_CONFIG=str(config),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            SENTRY_DSN=sentry.dsn,
            OTEL_BSP_SCHEDULE_DELAY="50",
            OTEL_METRIC_EXPORT_INTERVAL="60000",
            HAKGAL_PORT=str(port),
        )
        yield from _serve([sys.executable, "-m", "otel_hakgal.demo.api"], env, port, receiver, sentry, "python -m")


@pytest.fixture(params=["launcher+gunicorn", "python -m"])
def target(request: pytest.FixtureRequest) -> Server:
    """Each of the two servers in turn."""
    found: Server = request.getfixturevalue("server" if request.param == "launcher+gunicorn" else "werkzeug_server")
    return found


# --- talking raw HTTP -----------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def post(port: int, body: bytes, headers: dict[str, str] | None = None, chunked: bool = False) -> Answer:
    """POST ``body`` as given (no re-encoding); ``chunked`` sends it without a Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if chunked:
            pieces = (body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024))
            connection.request("POST", "/api/command", body=pieces, headers=all_headers, encode_chunked=True)
        else:
            connection.request("POST", "/api/command", body=body, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        payload = json.loads(raw) if response.getheader("Content-Type", "").startswith("application/json") else {}
        return Answer(response.status, payload)
    finally:
        connection.close()


def post_over_socket(port: int, request: bytes) -> int:
    """Send a raw request; the status of the answer. The server may answer before reading it all."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # it may answer and close early: read what it said
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in received and (chunk := sock.recv(4096)):
                received += chunk
    status_line = received.split(b"\r\n", 1)[0].decode("latin-1")
    assert status_line.startswith("HTTP/1."), f"no HTTP answer: {received[:200]!r}"
    return int(status_line.split()[1])


def command_body(command: str) -> bytes:
    return json.dumps({"command": command}).encode()


# --- the bad inputs -------------------------------------------------------------------------

NESTED_10000 = b"[" * 10_000 + b"]" * 10_000
NESTED_OBJECTS_10000 = b'{"command": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}"
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f\x85\u2028\u2029\u202e\ufeff"
LONE_SURROGATES = "\ud800 \udfff x \udc80\ud83d"  # unpaired halves, as JSON \u escapes allow

# (body, expected status ("4xx": any client error), a phrase of the error for 400s; fits in the 64 KiB
# limit unless said)
BODIES: dict[str, tuple[bytes, int | str, str]] = {
    "1mb-command": (command_body("ask " + "x" * MB), 400, "larger than"),
    "1mb-of-multibyte": (json.dumps({"command": "ask " + "ü" * MB}, ensure_ascii=False).encode(), 400, "larger than"),
    "invalid-utf8": (b'{"command": "ask \xff\xfe \xc3\x28 \xed\xa0\x80"}', 400, "UTF-8"),
    "utf8-encoded-surrogate": (b'{"command": "parse \xed\xa0\x80"}', 400, "UTF-8"),
    "raw-control-characters": (b'{"command": "ask \x00\x01\x1b[2J\x07"}', 400, "not JSON"),
    "escaped-control-characters": (command_body("parse " + CONTROL), 200, ""),
    "control-characters-as-verb": (command_body(CONTROL + " x"), 200, ""),
    "escaped-lone-surrogates": (command_body("parse " + LONE_SURROGATES), 200, ""),
    "lone-surrogates-in-ask": (command_body("ask Is " + LONE_SURROGATES + " a city?"), 200, ""),
    "lone-surrogate-as-verb": (command_body("\ud800"), 200, ""),
    "lone-surrogates-in-build-kb": (command_body("build_kb " + LONE_SURROGATES), "4xx", ""),
    "nested-10000-deep": (NESTED_10000, 400, "nested too deeply"),
    "nested-10000-deep-command": (NESTED_OBJECTS_10000, 400, "nested too deeply"),
    "nested-900-deep-command": (b'{"command": ' + b"[" * 900 + b"]" * 900 + b"}", 400, "must be a string"),
    "json-array": (b'["ask Is Rome a city?"]', 400, "JSON array, not an object"),
    "json-string": (b'"ask Is Rome a city?"', 400, "JSON string, not an object"),
    "json-number": (b"1e999", 400, "JSON number, not an object"),
    "json-null": (b"null", 400, "JSON null, not an object"),
    "json-huge-integer": (b'{"command": ' + b"9" * 50_000 + b"}", 400, "not JSON"),
    "command-not-a-string": (b'{"command": {"verb": "ask"}}', 400, "must be a string"),
    "empty-body": (b"", 400, "not JSON"),
    "long-parse-under-the-limit": (command_body("parse " + "Ä(" * 8_000), 200, ""),
    "long-what-is-under-the-limit": (command_body("what_is " + "\u00e9\ud800" * 4_000), 200, ""),
}
# build_kb of a name that is no file is the client's mistake (issue 14, item 8): a 4xx with a JSON
# error, 400 or 404 as the service chooses; lone surrogates in the name must not crash on encoding.


def _string_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _string_values(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _string_values(item)


def assert_well_formed(spans: list[ReceivedSpan], bodies: list[bytes]) -> None:
    for span in spans:
        assert len(span.trace_id) == 32 and len(span.span_id) == 16, span
        assert 0 < span.start_ns <= span.end_ns, span
    # Every string of every span as sent, events and status included; decoding checks UTF-8.
    for body in bodies:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for raw in scope_spans.spans:
                    pairs = [*raw.attributes, *(a for e in raw.events for a in e.attributes)]
                    pairs += [a for link in raw.links for a in link.attributes]
                    texts = [raw.name, raw.status.message, *(e.name for e in raw.events)]
                    texts += [t for pair in pairs for t in _string_values(any_value(pair.value))]
                    for text in texts:
                        assert len(text) <= MAX_ATTRIBUTE_LENGTH, (raw.name, len(text), text[:80])
                        text.encode("utf-8")  # raises on a lone surrogate


def clear(server: Server) -> None:
    server.receiver.clear()
    server.receiver.bodies = []


def wait_for_server_spans(receiver: RecordingOtlpReceiver, count: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout_s
    while True:
        spans = receiver.spans()
        if len([s for s in spans if s.kind == SERVER_KIND]) >= count:
            return spans
        assert time.monotonic() < deadline, f"{count} server spans never arrived: {sorted(s.name for s in spans)}"
        time.sleep(0.02)


def assert_still_serving_and_spans_well_formed(server: Server, requests_reaching_flask: int) -> list[ReceivedSpan]:
    status, body = server.process.post_command("status")
    assert status == 200 and body["status"] == "success", body
    spans = wait_for_server_spans(server.receiver, requests_reaching_flask + 1)
    time.sleep(0.1)  # a straggler from a worker thread would arrive now
    spans = server.receiver.spans()
    assert_well_formed(spans, list(server.receiver.bodies or []))
    assert [s.name for s in spans if s.name == "hakgal.command status"], "the follow-up command is traced"
    return spans


@pytest.mark.parametrize("name", list(BODIES))
def test_a_bad_body_gets_a_400_or_a_normal_answer(server: Server, name: str) -> None:
    body, expected, phrase = BODIES[name]
    clear(server)

    answer = post(server.port, body)
    tally(server, name, answer.status)

    if expected == "4xx":
        assert 400 <= answer.status < 500, (name, answer)
        assert answer.body and answer.body.get("error"), f"a 4xx says what is wrong: {answer.body}"
    else:
        assert answer.status == expected, (name, answer)
    assert answer.body, "every answer is JSON"
    if expected == 400:
        assert answer.body["status"] == "error" and phrase in answer.body["error"], answer.body
    json.dumps(answer.body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert_still_serving_and_spans_well_formed(server, requests_reaching_flask=1)


def test_a_1mb_chunked_body_without_length_gets_a_400(server: Server) -> None:
    clear(server)
    try:
        answer = post(server.port, command_body("ask " + "x" * MB), chunked=True)
    except (BrokenPipeError, ConnectionResetError):
        # The server answered 400 and closed while the upload went on: on a loaded machine the
        # reset can overtake the answer. Refused either way, never a 5xx; it must still serve.
        answer = None
    tally(server, "1mb-chunked-body", None if answer is None else answer.status)
    if answer is None:
        TRIED[-1].status = 400  # refused, by a reset: no hang, no 5xx
    assert answer is None or (answer.status == 400 and "larger than" in answer.body["error"]), answer
    assert_still_serving_and_spans_well_formed(server, requests_reaching_flask=0 if answer is None else 1)


def test_a_lying_content_length_gets_a_400(server: Server) -> None:
    clear(server)
    answer = post(server.port, b'{"command": "status"}', headers={"Content-Length": str(MB)})
    tally(server, "lying-content-length", answer.status)
    assert answer.status == 400 and "larger than" in answer.body["error"], answer
    assert_still_serving_and_spans_well_formed(server, requests_reaching_flask=1)


HEADER_CASES = {
    "16kb-header": b"X-Huge: " + b"h" * 16 * 1024 + b"\r\n",
    "1mb-header": b"X-Huge: " + b"h" * MB + b"\r\n",
    "1000-headers": b"".join(b"X-Many-%d: v\r\n" % i for i in range(1000)),
}


@pytest.mark.parametrize("name", list(HEADER_CASES))
def test_huge_headers_get_gunicorns_4xx(server: Server, name: str) -> None:
    clear(server)
    body = command_body("status")
    request = (
        b"POST /api/command HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + HEADER_CASES[name]
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    # gunicorn's limit_request_field_size / limit_request_fields: 431 (or 400), before Flask sees it.
    status = post_over_socket(server.port, request)
    tally(server, name, status)
    assert status in (400, 431)
    assert_still_serving_and_spans_well_formed(server, requests_reaching_flask=0)


def test_long_attribute_values_are_cut_to_the_configured_limit(server: Server) -> None:
    clear(server)
    long_text = "Is " + "Ä" * 9_000 + "\ud800 a city?"
    answer = post(server.port, command_body("ask " + long_text))
    tally(server, "9000-character-question", answer.status)
    assert answer.status == 200
    spans = assert_still_serving_and_spans_well_formed(server, requests_reaching_flask=1)
    command = next(s for s in spans if s.name == "hakgal.command ask")
    assert command.attributes["hakgal.command.text"] == long_text[:MAX_ATTRIBUTE_LENGTH]
    prompts = [s.attributes["gen_ai.input.messages"] for s in spans if "gen_ai.input.messages" in s.attributes]
    assert prompts and all(len(p) == MAX_ATTRIBUTE_LENGTH for p in prompts), prompts


def test_the_body_limit_is_what_the_docs_say() -> None:
    assert MAX_BODY_BYTES == 64 * 1024
    assert "64 KiB" in (Path(__file__).parents[2] / "otel_hakgal/demo/api.py").read_text()


# --- issue 14: client mistakes, scans, oversize and malformed headers, the length of every string ----


def send(
    server: Server, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer | None:
    """One request as given; ``None`` when no answer came within ``REQUEST_TIMEOUT_S`` (a hang)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
    except TimeoutError:
        return None
    finally:
        connection.close()
    try:
        payload = json.loads(raw) if response.getheader("Content-Type", "").startswith("application/json") else {}
    except ValueError:
        payload = {}
    return Answer(response.status, payload)


def send_command(server: Server, command: str, headers: dict[str, str] | None = None) -> Answer | None:
    return send(
        server, "POST", "/api/command", command_body(command), {"Content-Type": "application/json", **(headers or {})}
    )


def clear_all(server: Server) -> None:
    clear(server)
    server.sentry.clear()


def _token(length: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def _show(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


BUILD_KB_MISTAKES = {
    "missing-file": "missing-" + _token(8) + ".txt",
    "path-traversal": "../../../../etc/passwd",
    "dot": ".",
    "nul-byte": "corpus\x00.txt",
    "60kb-name": "n" * 60_000,
}


@pytest.mark.parametrize("case", list(BUILD_KB_MISTAKES))
def test_a_build_kb_client_mistake_is_a_4xx_with_a_clear_message_and_no_sentry_error(target: Server, case: str) -> None:
    """Issue 14, item 8: a client's mistake is a 4xx with a clear message, and files no error event."""
    clear_all(target)
    answer = send_command(target, "build_kb " + BUILD_KB_MISTAKES[case])
    tally(target, f"build_kb {case}", None if answer is None else answer.status)
    assert answer is not None, "no answer: the request hung"
    wait_for_server_spans(target.receiver, 1)
    time.sleep(1.0)  # Sentry's transport sends from its own thread: an error event would be here by now
    errors = target.sentry.errors()
    message = answer.body.get("error") or answer.body.get("chatResponse")
    problems = []
    if not 400 <= answer.status < 500:
        problems.append(f"HTTP {answer.status}, not a 4xx: {_show(answer.body)}")
    if not isinstance(message, str) or not message.strip():
        problems.append(f"no message says what is wrong: {_show(answer.body)}")
    elif len(message) > 1000:  # a clear message names the problem; it does not echo 60 KB back
        problems.append(f"the message is {len(message)} characters long: {message[:100]!r}...")
    if errors:
        values = [e.get("exception", {}).get("values", [{}])[-1].get("type") for e in errors]
        problems.append(f"{len(errors)} Sentry error events filed ({values})")
    assert not problems, f"{target.form}: build_kb {case}: " + "; ".join(problems)


def _server_spans(server: Server) -> list[ReceivedSpan]:
    return [s for s in server.receiver.spans() if s.kind == SERVER_KIND]


def test_404_scans_and_a_60kb_path_give_bounded_span_names(target: Server) -> None:
    """Issue 14, item 4: a request no route matched is named by its method alone, so 200 random 404 paths give
    a handful of span names at most (OTLP and Sentry), and a 60 KB path no 60 KB name."""
    clear_all(target)
    scans = [("GET", f"/{_token(6)}/{_token(10)}.php") for _ in range(100)]
    scans += [("GET", f"/.env.{_token(12)}") for _ in range(50)]
    scans += [("POST", f"/api/v1/{_token(16)}/command") for _ in range(50)]
    answers = []
    for number, (method, path) in enumerate(scans):
        answer = send(target, method, path, command_body("status") if method == "POST" else None)
        tally(target, f"404-scan-{number}", None if answer is None else answer.status)
        answers.append(answer)
    long_path = "/" + "p" * 60_000
    long_answer = send(target, "GET", long_path)
    tally(target, "60kb-url-path", None if long_answer is None else long_answer.status)
    assert all(a is not None for a in [*answers, long_answer]), "a request hung"
    assert {a.status for a in answers if a is not None} <= {404, 405}, Counter(
        None if a is None else a.status for a in answers
    )
    assert long_answer is not None and 400 <= long_answer.status < 500, long_answer

    reaching_flask = len(scans) + (1 if long_answer.status == 404 else 0)  # gunicorn refuses a 60 KB line itself
    wait_for_server_spans(target.receiver, reaching_flask, timeout_s=20)
    time.sleep(0.3)
    names = sorted({s.name for s in _server_spans(target)})
    shown = [name[:60] for name in names[:8]]
    assert len(names) <= 3 and set(names) <= {"GET", "POST"}, f"{len(names)} server span names: {shown}"
    assert all(len(s.name) <= MAX_ATTRIBUTE_LENGTH for s in target.receiver.spans())

    # What Sentry got for the same requests: transaction names (sentry) or span names (sentry-otlp).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_sentry_server_names(target)) < reaching_flask:
        time.sleep(0.1)
    sentry_names = _sentry_server_names(target)
    assert sentry_names, "Sentry got none of the requests"
    distinct = sorted(set(sentry_names))
    assert len(distinct) <= 3, f"{len(distinct)} names in Sentry: {[n[:60] for n in distinct[:8]]}"
    assert all(len(name) <= MAX_ATTRIBUTE_LENGTH for name in distinct), [len(n) for n in distinct]


def _sentry_server_names(server: Server) -> list[str]:
    """Names of the server-side roots Sentry received: transactions, or server spans over OTLP."""
    names = [str(t.get("transaction")) for t in server.sentry.transactions()]
    names += [s.name for s in server.sentry.otlp_spans() if s.kind == SERVER_KIND]
    return names


def test_an_oversize_baggage_header_is_logged_rarely_and_cut(target: Server) -> None:
    """Issue 14, item 9: a 20 KB ``baggage`` header on every request must not flood the log with itself."""
    marker = "bg" + _token(10)
    header = ",".join(f"k{i}={marker}{i:05d}" for i in range(1000))
    assert len(header) > 20_000
    before = len(target.process.output)
    statuses = []
    for number in range(10):
        answer = send_command(target, "status", {"baggage": header})
        statuses.append(None if answer is None else answer.status)
        tally(target, f"20kb-baggage-{number}", statuses[-1])
    time.sleep(0.5)
    lines = [line for line in target.process.output[before:].splitlines() if marker in line]
    assert None not in statuses and all(s < 500 for s in statuses if s is not None), statuses
    longest = max((len(line) for line in lines), default=0)
    assert len(lines) <= 3 and longest <= 2000, (
        f"{target.form}: {len(lines)} log lines carry the header (longest {longest} characters): {lines[:1]!r:.300}"
    )


VALID_TRACEPARENT = f"00-{'a' * 32}-{'b' * 16}-01"
TRACE_HEADERS: dict[str, dict[str, str]] = {
    "traceparent-all-zero": {"traceparent": f"00-{'0' * 32}-{'0' * 16}-01"},
    "traceparent-zero-span-id": {"traceparent": f"00-{'a' * 32}-{'0' * 16}-01"},
    "traceparent-garbage": {"traceparent": "00-zzzz-yyyy-01"},
    "traceparent-version-ff": {"traceparent": f"ff-{'a' * 32}-{'b' * 16}-01"},
    "traceparent-trailing-junk": {"traceparent": VALID_TRACEPARENT + "-junk"},
    "traceparent-4kb": {"traceparent": "00-" + "a" * 4000},
    "traceparent-two-joined": {"traceparent": f"{VALID_TRACEPARENT},00-{'c' * 32}-{'d' * 16}-01"},
    "tracestate-200-entries": {
        "traceparent": VALID_TRACEPARENT,
        "tracestate": ",".join(f"k{i}=v{i}" for i in range(200)),
    },
    "tracestate-invalid": {"traceparent": VALID_TRACEPARENT, "tracestate": "=,==,k=v=w,\x7f,"},
    "sentry-trace-all-zero-with-baggage": {
        "sentry-trace": f"{'0' * 32}-{'0' * 16}-1",
        "baggage": f"sentry-trace_id={'1' * 32},sentry-public_key={'2' * 32},sentry-sample_rate=1.0",
    },
    "sentry-trace-zero-span-id": {"sentry-trace": f"{'a' * 32}-{'0' * 16}-1"},
    "sentry-trace-garbage": {"sentry-trace": "not-a-trace"},
    "sentry-trace-bad-flag": {"sentry-trace": f"{'a' * 32}-{'b' * 16}-7"},
    "sentry-trace-4kb": {"sentry-trace": "f" * 4000},
    "baggage-garbage": {"baggage": "%%%,=,;;;,k=v;p=q=r"},
    "baggage-invalid-percent-utf8": {"baggage": "k=%ff%fe%ed%a0%80"},
    "baggage-200-entries": {"baggage": ",".join(f"k{i}=v{i}" for i in range(200))},
    "traceparent-and-sentry-trace-disagree": {
        "traceparent": VALID_TRACEPARENT,
        "sentry-trace": f"{'c' * 32}-{'d' * 16}-1",
        "baggage": f"sentry-trace_id={'c' * 32}",
    },
}


@pytest.mark.parametrize("case", list(TRACE_HEADERS))
def test_malformed_trace_headers_get_a_normal_answer_and_a_valid_trace(target: Server, case: str) -> None:
    clear_all(target)
    answer = send_command(target, "status", TRACE_HEADERS[case])
    tally(target, case, None if answer is None else answer.status)
    assert answer is not None, "no answer: the request hung"
    if answer.status != 200:  # the HTTP server may refuse a header it cannot parse (gunicorn: DEL in a value)
        assert 400 <= answer.status < 500, (case, answer)
        return
    server_span = next(s for s in wait_for_server_spans(target.receiver, 1) if s.kind == SERVER_KIND)
    assert len(server_span.trace_id) == 32 and server_span.trace_id != "0" * 32, server_span.trace_id
    assert len(server_span.span_id) == 16 and server_span.span_id != "0" * 16, server_span.span_id


def test_an_unknown_verb_is_recorded_as_a_command_with_its_own_outcome(target: Server) -> None:
    """Issue 14, item 13: ``frobnicate now`` leaves a command span, so command counts and error rates see it."""
    clear_all(target)
    answer = send_command(target, "frobnicate now")
    tally(target, "unknown-verb", None if answer is None else answer.status)
    assert answer is not None and answer.status < 500, answer
    server_span = next(s for s in wait_for_server_spans(target.receiver, 1) if s.kind == SERVER_KIND)
    deadline = time.monotonic() + 3
    while True:
        commands = [
            s
            for s in target.receiver.spans()
            if s.name.startswith("hakgal.command") and s.trace_id == server_span.trace_id
        ]
        if commands or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    names = sorted({s.name for s in target.receiver.spans()})
    assert commands, f"{target.form}: no command span for an unknown verb; spans: {names}"
    outcome = commands[0].attributes.get("hakgal.command.outcome")
    assert outcome not in (None, "success", "error", "timeout"), f"outcome {outcome!r}: not its own"


def test_the_length_walk_reaches_every_field() -> None:
    """The walk itself: span names, status messages, event names, link attributes and the resource are seen."""
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    span = resource_spans.scope_spans.add().spans.add()
    span.name, span.status.message = "n" * 201, "s" * 201
    span.events.add().name = "e" * 201
    link = span.links.add().attributes.add()
    link.key, link.value.string_value = "k", "l" * 201
    resource = resource_spans.resource.attributes.add()
    resource.key, resource.value.string_value = "service.name", "r" * 201
    request = Request("/v1/traces", {}, message.SerializeToString())
    found = overlong_strings([("otlp", otlp_as_dict(request))], 200)
    assert len(found) == 5, found
    assert overlong_strings([("sentry", {"exception": {"values": [{"value": "v" * 201}]}})], 200)


def test_no_string_over_the_limit_in_anything_a_receiver_got(target: Server) -> None:
    """Issue 14, items 4 and 5: every string in every field of everything the receivers got so far in this module
    (OTLP traces and metrics decoded generically: span names, status messages, events, links, resource; Sentry
    envelopes and Sentry's OTLP) is at most ``redaction.max_attribute_length`` characters."""
    assert target.process.post_command("status")[0] == 200
    time.sleep(1.0)
    documents: list[tuple[str, Any]] = [(f"otlp {r.path}", otlp_as_dict(r)) for r in target.receiver.requests]
    documents += [("sentry envelope", envelope_as_dict(envelope)) for _, envelope in target.sentry.envelope_requests()]
    documents += [("sentry otlp", otlp_as_dict(r)) for r in target.sentry.otlp_requests()]
    assert len(documents) > 1
    over = overlong_strings(documents, MAX_ATTRIBUTE_LENGTH)
    where = sorted({re.sub(r"\[\d+\]", "[]", line.split(": ", 1)[0]) for line in over})
    assert not over, f"{target.form}: {len(over)} strings over {MAX_ATTRIBUTE_LENGTH} characters in {where}:\n" + (
        "\n".join(over[:15])
    )


def test_closing_note_bad_inputs_tried_and_5xx(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's closing note: how many bad inputs were tried here, how many got a 5xx or hung."""
    if not TRIED:
        pytest.skip("run with the rest of the module: it counts what the tests above tried")
    five_xx = [t for t in TRIED if t.status is not None and t.status >= 500]
    hangs = [t for t in TRIED if t.status is None]
    by_form = {form: sum(1 for t in TRIED if t.form == form) for form in sorted({t.form for t in TRIED})}
    note = f"bad inputs tried: {len(TRIED)} {by_form}; 5xx: {len(five_xx)}; hangs: {len(hangs)}"
    with capsys.disabled():
        print("\n" + note)
    details = [f"{t.form}: {t.name}: {t.status}" for t in [*five_xx, *hangs]]
    assert not five_xx and not hangs, note + "\n" + "\n".join(details)
