"""How the Sentry backend groups OTel spans into transactions: the real sentry-sdk to a loopback Sentry.

The processor files each ended span under its local root and sends the root's
transaction when the root ends; these cases check the edges of that grouping
and the bounds that keep its memory flat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import sentry_sdk
from opentelemetry import trace

import otel_hakgal as hg
from otel_hakgal.backends.sentry import SentryBackend
from otel_hakgal.backends.sentry.client import wait_for_transport_room
from otel_hakgal.backends.sentry.transactions import SentryTransactionProcessor
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import PUBLIC_KEY, dsn


@pytest.fixture
def handle(sentry_receiver: SentryReceiver) -> Iterator[hg.Handle]:
    handle = hg.setup(backends=["sentry"], settings={"sentry.dsn": dsn(sentry_receiver)})
    try:
        yield handle
    finally:
        handle.shutdown()


def _processor(handle: hg.Handle) -> SentryTransactionProcessor:
    backend = handle.backend("sentry")
    assert isinstance(backend, SentryBackend) and backend.processor is not None
    return backend.processor


def _op_names(transaction: dict[str, object]) -> list[str]:
    return sorted(str(span["description"]) for span in transaction["spans"])  # type: ignore[attr-defined, index]


def test_a_child_that_outlives_its_root_is_left_out_and_counted(
    handle: hg.Handle, sentry_receiver: SentryReceiver
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("kept"):
            pass
        late = tracer.start_span("late")  # a child whose work goes on after the request
    late.end()
    handle.force_flush(5)
    [transaction] = sentry_receiver.wait_for("transaction")

    assert transaction["transaction"] == "root"
    assert _op_names(transaction) == ["kept"]  # Sentry's own processor drops late children too
    assert _processor(handle).late_spans == 1
    assert handle.stats()["sentry"].queues["sentry open spans"].dropped == 1  # public: stats() counts it


def test_spans_past_the_per_transaction_limit_are_dropped(handle: hg.Handle, sentry_receiver: SentryReceiver) -> None:
    _processor(handle).max_spans = 3
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("root"):
        for index in range(5):
            with tracer.start_as_current_span(f"child {index}"):
                pass
    handle.force_flush(5)
    [transaction] = sentry_receiver.wait_for("transaction")

    assert _op_names(transaction) == ["child 0", "child 1", "child 2"]  # the first ones, in end order


def test_roots_that_never_end_are_forgotten_oldest_first(handle: hg.Handle, sentry_receiver: SentryReceiver) -> None:
    processor = _processor(handle)
    processor.max_open_transactions = 2
    tracer = trace.get_tracer("test")
    leaked = [tracer.start_span(f"never ends {index}") for index in range(50)]
    assert len(processor._open) <= 2  # bounded, however many roots are left open

    leaked[0].end()  # forgotten long ago: nothing to send
    leaked[-1].end()  # still known: sent
    handle.force_flush(5)
    [transaction] = sentry_receiver.wait_for("transaction")
    assert transaction["transaction"] == "never ends 49"


def test_a_span_whose_local_parent_is_unknown_becomes_its_own_transaction(
    handle: hg.Handle, sentry_receiver: SentryReceiver
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        pass
    # Started after its parent ended (say, a callback): Sentry's processor makes it a transaction too.
    with tracer.start_as_current_span("callback", context=trace.set_span_in_context(request)):
        pass
    handle.force_flush(5)
    transactions = sentry_receiver.wait_for("transaction", 2)

    by_name = {t["transaction"]: t for t in transactions}
    assert set(by_name) == {"request", "callback"}
    callback = by_name["callback"]["contexts"]["trace"]
    assert callback["parent_span_id"] == by_name["request"]["contexts"]["trace"]["span_id"]
    assert callback["trace_id"] == by_name["request"]["contexts"]["trace"]["trace_id"]


def test_scope_tags_at_the_end_of_the_root_reach_its_transaction_and_the_envelope_has_the_dsc(
    handle: hg.Handle, sentry_receiver: SentryReceiver
) -> None:
    with sentry_sdk.isolation_scope(), hg.command("status"):
        sentry_sdk.set_tag("tenant", "acme")
    with hg.command("status"):  # another request: its own scope, no tenant
        pass
    handle.force_flush(5)
    # Several senders: envelopes may arrive in any order.
    first, second = sorted(sentry_receiver.wait_for("transaction", 2), key=lambda t: t["start_timestamp"])

    assert first["tags"].get("tenant") == "acme" and "tenant" not in second["tags"]
    trace_id = first["contexts"]["trace"]["trace_id"]
    [envelope] = [
        e
        for e in sentry_receiver.envelopes()
        if e.items[0].type == "transaction" and e.items[0].json["contexts"]["trace"]["trace_id"] == trace_id
    ]
    dsc = envelope.headers["trace"]
    assert dsc["trace_id"] == trace_id
    assert dsc["public_key"] == PUBLIC_KEY and dsc["sampled"] == "true" and dsc["sample_rate"] == "1.0"


def test_auto_enabled_sentry_integrations_stay_off(handle: hg.Handle) -> None:
    # OTel traces the LLM clients; Sentry's auto-enabled integrations would only repeat it, at a cost per call.
    integrations = set(sentry_sdk.get_client().integrations)
    assert {"flask", "logging", "threading"} <= integrations
    assert not integrations & {"openai", "httpx", "httpx2"}


def test_the_worker_waits_for_room_in_the_transport_queue_within_a_bound(sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.fail(delay_s=5.0)  # the first send holds sentry-sdk's transport; the queue fills behind it
    client = sentry_sdk.Client(dsn=dsn(sentry_receiver), default_integrations=False, transport_queue_size=4)
    try:
        for index in range(5):
            client.capture_event({"message": f"queued {index}", "level": "info"})
        started = time.monotonic()
        assert not wait_for_transport_room(client.transport, timeout_s=0.3)  # full: waits, then gives up
        assert 0.3 <= time.monotonic() - started < 2.0
        sentry_receiver.heal()
        assert wait_for_transport_room(client.transport, timeout_s=5.0)  # drained below the reserve: room
    finally:
        client.close(timeout=1.0)


def test_a_transaction_never_reads_the_request_body_after_the_response(sentry_receiver: SentryReceiver) -> None:
    # Transactions are prepared on the worker, after the response: reading the body there raced the server
    # draining it (gunicorn: "generator already executing") and sent a body text_mode had never seen.
    from flask import Flask, request

    app = Flask(__name__)
    kept: list[object] = []  # the request object outlives the response (a server or a framework holds it)

    @app.post("/unread")
    def unread() -> str:
        kept.append(request._get_current_object())  # type: ignore[attr-defined]
        return "ok"

    handle = hg.setup(backends=["sentry"], settings={"sentry.dsn": dsn(sentry_receiver), "redaction.text_mode": "omit"})
    try:
        hg.instrument_flask(app)
        question = "is the unread question about Alice answered?"
        assert app.test_client().post("/unread", json={"question": question}).status_code == 200
        handle.force_flush(5)
        [transaction] = sentry_receiver.wait_for("transaction")
    finally:
        handle.shutdown()
    assert transaction["request"]["method"] == "POST" and transaction["request"]["url"].endswith("/unread")
    assert "data" not in transaction["request"] and "Alice" not in str(transaction)
    assert kept[0].stream.read() == json.dumps({"question": question}).encode()  # type: ignore[attr-defined]
