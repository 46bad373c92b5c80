import logging
import secrets

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
