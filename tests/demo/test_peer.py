"""Delegating commands to a peer HAK-GAL (``HAKGAL_PEER_URL``): its answers, and one trace across both."""

from __future__ import annotations

import pytest

from otel_hakgal.conventions import SpanName
from otel_hakgal.demo.api import create_app
from otel_hakgal.demo.k_assistant import KAssistant
from otel_hakgal.demo.peer import Peer
from otel_hakgal.demo.workload import post_command as post
from otel_hakgal.testing import TelemetryRecorder

from .conftest import serve, wait_for


def test_peer_from_the_environment() -> None:
    assert Peer.from_env({}) is None
    peer = Peer.from_env({"HAKGAL_PEER_URL": "http://127.0.0.1:5002/", "HAKGAL_PEER_VERBS": "Show, build_kb"})
    assert peer == Peer("http://127.0.0.1:5002", frozenset({"show", "build_kb"}))
    assert peer.delegates("show") and not peer.delegates("ask")
    every = Peer.from_env({"HAKGAL_PEER_URL": "http://127.0.0.1:5002"})
    assert every is not None and every.delegates("ask")


def test_delegated_commands_answer_as_the_peer_did_in_one_trace(
    assistant: KAssistant, hakgal_telemetry: TelemetryRecorder
) -> None:
    peer_url, stop_peer = serve(create_app(assistant))
    front_url, stop_front = serve(create_app(assistant, peer=Peer(peer_url, frozenset({"show", "build_kb"}))))
    try:
        status, body = post(front_url, "show")
        assert status == 200 and body["status"] == "success"
        commands = SpanName.COMMAND.format(verb="show")
        wait_for(hakgal_telemetry, lambda spans: len([s for s in spans if s.name == commands]) == 2)
        front, back = sorted(hakgal_telemetry.spans_named(commands), key=lambda span: span.start_time or 0)
        assert front.context.trace_id == back.context.trace_id  # the peer's spans joined the front's trace
        assert post(front_url, "build_kb no-such-file.hkb")[0] == 404  # the peer's client mistake, passed on
        status, body = post(front_url, "build_kb damaged.hkb")  # the peer's fault is a fault here too
        assert status == 500 and "the peer answered 500" in str(body["error"])
    finally:
        stop_front()
        stop_peer()


def test_a_peer_that_does_not_answer_is_a_server_fault(assistant: KAssistant) -> None:
    front_url, stop = serve(create_app(assistant, peer=Peer("http://127.0.0.1:9", timeout_s=2.0)))
    try:
        status, body = post(front_url, "show")
    finally:
        stop()
    assert status == 500 and "no answer from the peer" in str(body["error"])


@pytest.mark.parametrize("verb", ["help", "status"])
def test_verbs_not_delegated_run_here(assistant: KAssistant, verb: str) -> None:
    front_url, stop = serve(create_app(assistant, peer=Peer("http://127.0.0.1:9", frozenset({"show"}))))
    try:
        assert post(front_url, verb)[0] == 200
    finally:
        stop()
