import gzip
import json
import re

import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otel_hakgal.testing import SentryReceiver
from otel_hakgal.testing.sentry_receiver import parse_envelope


def _envelope() -> bytes:
    event = json.dumps({"event_id": "a" * 32, "message": "hi\nthere"}).encode()
    attachment = b"raw\nbytes"
    return b"\n".join(
        [
            json.dumps({"event_id": "a" * 32}).encode(),
            json.dumps({"type": "event", "length": len(event)}).encode(),
            event,
            json.dumps({"type": "attachment", "length": len(attachment)}).encode(),
            attachment,
            json.dumps({"type": "client_report"}).encode(),  # no length: up to the newline
            b'{"discarded_events": []}',
        ]
    )


def test_parses_items_with_and_without_length() -> None:
    envelope = parse_envelope(_envelope())
    assert envelope.headers == {"event_id": "a" * 32}
    assert [i.type for i in envelope.items] == ["event", "attachment", "client_report"]
    assert envelope.items[0].json["message"] == "hi\nthere"
    assert envelope.items[1].payload == b"raw\nbytes"
    assert envelope.items[2].json == {"discarded_events": []}


def test_receives_plain_and_gzip_envelopes_and_injects_faults() -> None:
    with SentryReceiver() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/api/1/envelope/"
        assert re.fullmatch(r"[0-9a-f]{32}", receiver.public_key)
        assert receiver.dsn == f"http://{receiver.public_key}@127.0.0.1:{receiver.port}/1"
        assert requests.post(url, data=_envelope(), timeout=5).status_code == 200
        gz = requests.post(url, data=gzip.compress(_envelope()), headers={"Content-Encoding": "gzip"}, timeout=5)
        assert gz.status_code == 200
        assert len(receiver.wait_for("event", 2)) == 2
        assert requests.post(f"http://127.0.0.1:{receiver.port}/other", data=b"", timeout=5).status_code == 404
        receiver.fault_status = 503
        assert requests.post(url, data=_envelope(), timeout=5).status_code == 503
        assert len(receiver.errors()) == 2


def test_log_items_are_listed_one_log_each() -> None:
    logs = {"version": 2, "items": [{"body": "first", "level": "warn"}, {"body": "second", "level": "error"}]}
    payload = json.dumps(logs).encode()
    item = {"type": "log", "item_count": 2, "content_type": "application/vnd.sentry.items.log+json"}
    body = b"\n".join([b"{}", json.dumps({**item, "length": len(payload)}).encode(), payload])
    with SentryReceiver() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/api/1/envelope/"
        assert requests.post(url, data=body, timeout=5).status_code == 200
        assert [log["body"] for log in receiver.wait_for("log", 2)] == ["first", "second"]
        assert receiver.errors() == []


def test_otlp_logs_are_decoded_at_the_otlp_logs_path_with_their_headers() -> None:
    record = LogRecord(
        time_unix_nano=1_700_000_000_000_000_000,
        severity_number=SeverityNumber.SEVERITY_NUMBER_WARN,
        severity_text="WARN",
        body=AnyValue(string_value="a warning"),
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
    )
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="svc"))]),
                scope_logs=[ScopeLogs(scope=InstrumentationScope(name="app"), log_records=[record])],
            )
        ]
    )
    with SentryReceiver() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/api/1/integration/otlp/v1/logs/"
        sent = requests.post(url, data=request.SerializeToString(), headers={"x-sentry-auth": "sentry k"}, timeout=5)
        assert sent.status_code == 200
        [log] = receiver.wait_for("otlp_log")
        assert receiver.otlp_spans() == [] and receiver.otlp_request_headers == []
        assert receiver.otlp_logs_request_headers[0]["x-sentry-auth"] == "sentry k"
    assert (log.body, log.severity_text, log.scope) == ("a warning", "WARN", "app")
    assert (log.trace_id, log.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert log.resource["service.name"] == "svc"
