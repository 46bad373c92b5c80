"""Faults of the loopback receivers, switched at runtime: status, delay, unreachable, and healing."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from otel_hakgal.testing.outages import FAULTS, apply_fault
from otel_hakgal.testing.receiver import LoopbackServer


def _url(receiver: LoopbackServer) -> str:
    path = "/v1/traces" if isinstance(receiver, OtlpReceiver) else "/api/1/envelope/"
    return f"http://127.0.0.1:{receiver.port}{path}"


@pytest.fixture(params=[OtlpReceiver, SentryReceiver], ids=["otlp", "sentry"])
def receiver(request: pytest.FixtureRequest) -> LoopbackServer:
    server: LoopbackServer = request.param().start()
    request.addfinalizer(server.stop)
    return server


def test_status_faults_carry_retry_after_on_429_and_503(receiver: LoopbackServer) -> None:
    receiver.fail(429)
    answer = requests.post(_url(receiver), data=b"", timeout=5)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    receiver.fail(500)
    answer = requests.post(_url(receiver), data=b"", timeout=5)
    assert answer.status_code == 500 and "Retry-After" not in answer.headers
    receiver.retry_after = None
    receiver.fail(503)
    assert "Retry-After" not in requests.post(_url(receiver), data=b"", timeout=5).headers
    receiver.heal()
    assert requests.post(_url(receiver), data=b"", timeout=5).status_code == 200


def test_delay_holds_the_answer_and_heal_releases_it(receiver: LoopbackServer) -> None:
    receiver.fail(delay_s=0.3)
    started = time.monotonic()
    assert requests.post(_url(receiver), data=b"", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3

    receiver.fail(delay_s=30)
    answers: list[int] = []
    waiting = threading.Thread(target=lambda: answers.append(requests.post(_url(receiver), timeout=60).status_code))
    waiting.start()
    time.sleep(0.3)
    assert answers == []  # still held
    started = time.monotonic()
    receiver.heal()
    waiting.join(5)
    assert answers == [200] and time.monotonic() - started < 2


def test_go_down_refuses_connections_and_come_back_listens_on_the_same_port(receiver: LoopbackServer) -> None:
    port, url = receiver.port, _url(receiver)
    receiver.go_down()
    assert receiver.is_down
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data=b"", timeout=5)
    receiver.come_back()
    assert receiver.port == port and not receiver.is_down
    assert requests.post(url, data=b"", timeout=5).status_code == 200
    receiver.go_down()
    receiver.heal()  # heal also brings it back
    assert requests.post(url, data=b"", timeout=5).status_code == 200


def test_every_named_fault_applies_and_heals(receiver: LoopbackServer) -> None:
    for fault in FAULTS:
        apply_fault(receiver, fault)
        if fault == "delay-5s":
            assert receiver.fault_delay_s == 5.0
        elif fault == "unreachable":
            assert receiver.is_down
        else:
            assert requests.post(_url(receiver), data=b"", timeout=5).status_code == int(fault[5:])
        receiver.heal()
        assert requests.post(_url(receiver), data=b"", timeout=5).status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        apply_fault(receiver, "gone")


def test_connections_are_kept_alive_and_going_down_cuts_them(receiver: LoopbackServer) -> None:
    connections: list[object] = []
    track = receiver._server.track

    def counting_track(connection: object) -> None:
        connections.append(connection)
        track(connection)  # type: ignore[arg-type]

    receiver._server.track = counting_track  # type: ignore[method-assign]
    with requests.Session() as session:
        for _ in range(5):
            assert session.post(_url(receiver), data=b"", timeout=5).status_code == 200
        assert len(connections) == 1  # one connection for five requests, as a real ingest allows
        receiver.go_down()
        with pytest.raises(requests.ConnectionError):  # the kept-alive connection went down with the port
            session.post(_url(receiver), data=b"", timeout=5)
        receiver.come_back()
        assert session.post(_url(receiver), data=b"", timeout=5).status_code == 200


def test_a_chunked_body_is_read_whole_and_the_connection_stays_usable(receiver: LoopbackServer) -> None:
    receiver.bodies = []  # type: ignore[attr-defined]
    with requests.Session() as session:
        answer = session.post(_url(receiver), data=iter([b"first ", b"second"]), timeout=5)  # no length: chunked
        assert answer.status_code in (200, 400)  # not a valid payload, but read and answered
        assert session.post(_url(receiver), data=b"", timeout=5).status_code == 200
    assert b"first second" in receiver.bodies  # type: ignore[attr-defined]


def test_a_sender_that_goes_away_mid_request_leaves_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    import socket
    import struct

    with OtlpReceiver() as receiver:
        receiver.fail(delay_s=0.3)  # the answer comes after the sender has gone
        sender = socket.create_connection(("127.0.0.1", receiver.port))
        sender.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        deadline = time.monotonic() + 5
        while receiver.request_count < 1 and time.monotonic() < deadline:  # read before the reset, which drops it
            time.sleep(0.01)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sender.close()
        time.sleep(0.6)  # the handler has tried to answer
    assert receiver.request_count == 1
    assert "Traceback" not in capfd.readouterr().err
