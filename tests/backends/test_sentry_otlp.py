"""Backend ``sentry-otlp``: spans over OTLP to Sentry's endpoint, errors through the SDK, both linked."""

from __future__ import annotations

import pytest

import otel_hakgal as hg
from otel_hakgal.config import ConfigError
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import PARENT_ID, TRACE_ID, _baggage, _sampled, running_service


def _otlp(receiver: SentryReceiver) -> dict[str, object]:
    return {"backends": ["sentry-otlp"], "settings": {"sentry-otlp.dsn": receiver.dsn}}


def test_spans_go_to_the_otlp_endpoint_and_errors_link_to_them(sentry_receiver: SentryReceiver) -> None:
    with running_service(**_otlp(sentry_receiver)) as (service, handle):
        assert service.ask(fail=True).status_code == 500
        handle.force_flush(5)
        spans = sentry_receiver.wait_for("otlp", 7)
        [error] = sentry_receiver.wait_for("event")
        [sent] = service.downstream.headers

    by_name = {s.name: s for s in spans}
    server = by_name["POST /ask"]
    query = by_name["hakgal.query"]
    assert query.trace_id == server.trace_id and by_name["chat deepseek-chat"].parent_span_id == query.span_id
    assert "sentry_key=public" in sentry_receiver.otlp_request_headers[0]["x-sentry-auth"]
    # no Sentry transactions: the spans arrive once, as OTLP
    assert sentry_receiver.transactions() == []
    assert error["exception"]["values"][-1]["type"] == "ValueError"
    assert error["contexts"]["trace"]["trace_id"] == server.trace_id
    assert error["contexts"]["trace"]["span_id"] == query.span_id
    assert error["tags"]["hakgal.command.name"] == "ask"
    assert len(sentry_receiver.errors()) == 1
    # outgoing: both trace headers and a Sentry DSC headed here
    assert sent["traceparent"].split("-")[1] == server.trace_id and _sampled(sent["traceparent"])
    assert sent["sentry-trace"].startswith(server.trace_id) and sent["sentry-trace"].endswith("-1")
    assert _baggage(sent["baggage"])["sentry-trace_id"] == server.trace_id


def test_incoming_sentry_trace_and_user_baggage(sentry_receiver: SentryReceiver) -> None:
    headers = {"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1", "baggage": f"userId=bob,sentry-trace_id={TRACE_ID}"}
    with running_service(**_otlp(sentry_receiver)) as (service, handle):
        service.ask(headers=headers)
        handle.force_flush(5)
        spans = sentry_receiver.wait_for("otlp", 7)
        [sent] = service.downstream.headers

    server = next(s for s in spans if s.name == "POST /ask")
    assert (server.trace_id, server.parent_span_id) == (TRACE_ID, PARENT_ID)
    baggage = _baggage(sent["baggage"])
    assert baggage["userId"] == "bob" and baggage["sentry-trace_id"] == TRACE_ID


def test_sentry_and_sentry_otlp_together_are_refused(sentry_receiver: SentryReceiver) -> None:
    with pytest.raises(ConfigError, match="choose one"):
        hg.setup(backends=["sentry", "sentry-otlp"], settings={"sentry.dsn": sentry_receiver.dsn})
