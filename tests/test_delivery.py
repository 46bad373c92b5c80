import http.server
import logging
import os
import secrets
import threading

import pytest
import requests

from otel_hakgal.backends.http_session import RecordingSession
from otel_hakgal.delivery import SIGNAL_LOGGER, DeliveryLog, SignalGate, display_url
from otel_hakgal.testing import OtlpReceiver


def test_records_statuses_and_errors_of_real_sends(otlp_receiver: OtlpReceiver) -> None:
    log = DeliveryLog()
    session = RecordingSession(log)
    assert session.post(otlp_receiver.endpoint + "/v1/traces", data=b"", timeout=5).status_code == 200
    otlp_receiver.fault_status = 503
    session.post(otlp_receiver.endpoint + "/v1/traces", data=b"", timeout=5)
    with pytest.raises(requests.ConnectionError):
        session.post("http://127.0.0.1:9/v1/traces", data=b"", timeout=5)
    assert log.statuses == {200: 1, 503: 1} and log.errors == {"ConnectionError": 1}
    assert log.attempts == 3 and not log.ok
    assert log.describe() == "HTTP 200 x1, HTTP 503 x1, ConnectionError x1"


def test_ok_needs_at_least_one_send() -> None:
    log = DeliveryLog()
    assert not log.ok and log.describe() == "nothing was sent"
    log.record_status(202)
    assert log.ok


def test_a_gate_closes_on_the_first_refusal_warns_once_and_counts_what_it_does_not_send(
    otlp_receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=SIGNAL_LOGGER)
    gate = SignalGate("otlp", "metrics", "metrics", "set otlp.metrics = false")
    session = RecordingSession(DeliveryLog(), gate)
    user, password = "someone", secrets.token_hex(8)
    url = otlp_receiver.endpoint.replace("//", f"//{user}:{password}@") + "/v1/metrics"

    def send() -> int:
        return session.post(url, data=b"", timeout=5).status_code

    assert gate.run(2, send, -1) == 200 and gate.open
    otlp_receiver.refuse("metrics", 405)
    assert gate.run(3, send, -1) == 405 and not gate.open
    assert gate.run(4, send, -1) == -1 and gate.run(5, send, -1) == -1  # not sent
    assert gate.run(6, send, -1) == -1
    assert len(otlp_receiver.headers_for("metrics")) == 2
    off = gate.state()
    assert off is not None and off.refused and off.status == 405 and off.unsent == 3 + 4 + 5 + 6
    assert off.url == f"{otlp_receiver.endpoint}/v1/metrics"  # no credentials, no query
    [record] = caplog.records
    message = record.getMessage()
    assert record.name == SIGNAL_LOGGER and password not in message
    assert f"{off.url} answered HTTP 405 (Method Not Allowed)" in message and "set otlp.metrics = false" in message


def test_urls_in_the_warning_lose_credentials_query_and_fragment() -> None:
    assert display_url("https://user:pw@host.example:8443/v1/logs?api_key=k#x") == "https://host.example:8443/v1/logs"
    assert display_url("http://[::1]:4318/v1/traces") == "http://[::1]:4318/v1/traces"


def test_only_404_and_405_refuse_a_signal() -> None:
    gate = SignalGate("otlp", "traces", "spans", "set otlp.traces = false")
    for status in (200, 400, 401, 403, 413, 429, 500, 502, 503):
        gate.answered("http://127.0.0.1:4318/v1/traces", status)
    assert gate.open and gate.state() is None
    gate.answered("http://127.0.0.1:4318/v1/traces", 404)
    assert not gate.open


class _PortsHandler(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a 200 over a kept-alive connection and notes the client's port."""

    protocol_version = "HTTP/1.1"
    ports: list[int] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.ports.append(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection_and_the_parent_keeps_its_own() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PortsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    log = DeliveryLog()
    session = RecordingSession(log)
    try:
        assert session.post(url, data=b"1", timeout=5).status_code == 200  # one kept-alive connection now
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if session.post(url, data=b"2", timeout=5).status_code == 200 else 1
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        assert session.post(url, data=b"3", timeout=5).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
    parent, child, parent_again = _PortsHandler.ports
    assert child != parent  # two processes on one connection would read each other's answers
    assert parent_again == parent  # the child closed only its copy: the parent's connection still works
