"""Backend ``sentry-otlp``: spans over OTLP to Sentry's endpoint, errors through the SDK, both linked."""

from __future__ import annotations

import secrets
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

import otel_hakgal as hg
from otel_hakgal.backends.sentry.otlp_session import PROTOCOL_HEADERS
from otel_hakgal.config import ConfigError
from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from tests.backends.test_sentry import PARENT_ID, PUBLIC_KEY, TRACE_ID, _baggage, _sampled, dsn, running_service


def _otlp(receiver: SentryReceiver) -> dict[str, object]:
    return {"backends": ["sentry-otlp"], "settings": {"sentry-otlp.dsn": dsn(receiver)}}


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
    assert f"sentry_key={PUBLIC_KEY}," in sentry_receiver.otlp_request_headers[0]["x-sentry-auth"]
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
        hg.setup(backends=["sentry", "sentry-otlp"], settings={"sentry.dsn": dsn(sentry_receiver)})


# --- each exporter its own endpoint, headers and TLS files ------------------------------------------------


class HeaderRecordingReceiver(OtlpReceiver):
    """An OTLP collector on 127.0.0.1 that also keeps each request's headers."""

    def __init__(self) -> None:
        self.request_headers: list[dict[str, str]] = []
        super().__init__()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self
        base: Any = super()._handler_class()

        class Handler(base):  # type: ignore[misc]
            def do_POST(self) -> None:
                receiver.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                super().do_POST()

        return Handler


def test_another_collectors_credentials_and_endpoint_never_reach_sentry(
    sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    bearer, team = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer {bearer},x-honeycomb-team={team}")
    with HeaderRecordingReceiver() as collector, OtlpReceiver() as elsewhere:
        # the traces endpoint of the environment is the collector's (it wins over otlp.endpoint), never Sentry's
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.endpoint}/v1/traces")
        settings = {"sentry-otlp.dsn": dsn(sentry_receiver), "otlp.endpoint": elsewhere.endpoint, "otlp.metrics": False}
        handle = hg.setup(backends=["sentry-otlp", "otlp"], settings=settings)
        try:
            with hg.command("status"):
                pass
            assert handle.force_flush(10)
            sentry_receiver.wait_for("otlp")
            collector.wait_for_spans(1)
        finally:
            handle.shutdown()
        assert elsewhere.request_count == 0

    assert sentry_receiver.otlp_request_headers and collector.request_headers
    for sent in sentry_receiver.otlp_request_headers:
        assert set(sent) <= PROTOCOL_HEADERS | {"host", "x-sentry-auth"}, sent
        assert bearer not in str(sent) and team not in str(sent)
        assert f"sentry_key={PUBLIC_KEY}," in sent["x-sentry-auth"]
    for sent in collector.request_headers:  # the otlp backend: the variable is its configuration
        assert sent["authorization"] == f"Bearer {bearer}" and sent["x-honeycomb-team"] == team
        assert "x-sentry-auth" not in sent


def test_another_collectors_tls_files_are_not_used_for_sentry(
    sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # requests checks that a client certificate exists before any request, plain HTTP too: used for
    # Sentry, these would fail every export
    for name in ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY", "TRACES_CLIENT_CERTIFICATE", "TRACES_CLIENT_KEY"):
        monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{name}", str(tmp_path / f"{name.lower()}.pem"))
    with running_service(**_otlp(sentry_receiver)) as (service, handle):
        assert service.ask().status_code == 200
        assert handle.force_flush(10)
        spans = sentry_receiver.wait_for("otlp", 7)
    assert {span.name for span in spans} >= {"POST /ask", "hakgal.query"}
    assert set(handle.stats()["sentry-otlp"].sends) == {"HTTP 200"}  # no OSError for a missing certificate
