import pytest
import requests

from otel_hakgal.backends.http_session import RecordingSession
from otel_hakgal.delivery import DeliveryLog
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
