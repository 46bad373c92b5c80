import gzip
import json
import re

import requests

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
