"""One test per sentry-sdk name in ``otel_hakgal.backends.sentry._compat``: it exists and does what the layer needs.

A sentry-sdk upgrade that breaks one of these fails here, by name, before any
end-to-end Sentry test. Clients are built standalone (never installed as the
global client) and talk to a real loopback Sentry where they send.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.context import Context, get_value, set_value
from sentry_sdk.envelope import Item, PayloadRef
from sentry_sdk.integrations.opentelemetry.propagator import SentryPropagator

from otel_hakgal.backends.sentry import _compat
from otel_hakgal.backends.sentry.worker import SenderPool
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import PUBLIC_KEY, dsn
from tests.support.processes import ROOT

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"


@pytest.fixture
def make_client() -> Iterator[Callable[..., Any]]:
    """Standalone sentry-sdk clients (not the global one), closed after the test."""
    clients: list[Any] = []

    def make(**options: Any) -> Any:
        client = sentry_sdk.Client(default_integrations=False, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=0.5)


def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- envelope items ------------------------------------------------------------------


def test_span_item_type_is_sentry_sdks_streamed_span_item() -> None:
    assert (_compat.SPAN_ITEM_TYPE, _compat.SPAN_ITEM_CONTENT_TYPE) == (
        "span",
        "application/vnd.sentry.items.span.v2+json",
    )
    item = Item(type=_compat.SPAN_ITEM_TYPE, content_type=_compat.SPAN_ITEM_CONTENT_TYPE, payload=PayloadRef(json={}))
    assert item.data_category == "span"  # lost spans in such an item are counted as spans


def test_v2_span_converts_a_transaction_span_with_its_op_and_data() -> None:
    span = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "parent_span_id": "c" * 16,
        "op": "gen_ai.chat",
        "description": "chat deepseek-chat",
        "start_timestamp": "2024-01-01T00:00:00.000000Z",
        "timestamp": "2024-01-01T00:00:01.500000Z",
        "status": "ok",
        "data": {"gen_ai.request.model": "deepseek-chat", "gen_ai.usage.input_tokens": 42},
    }
    event = {"release": "1.0", "environment": "test", "transaction": "POST /ask", "contexts": {"trace": {}}}
    converted = _compat.v2_span(span, event)

    assert (converted["trace_id"], converted["span_id"], converted["parent_span_id"]) == (TRACE_ID, SPAN_ID, "c" * 16)
    assert converted["name"] == "chat deepseek-chat"
    assert converted["end_timestamp"] - converted["start_timestamp"] == pytest.approx(1.5)
    attributes = {key: value["value"] for key, value in converted["attributes"].items()}
    assert attributes["sentry.op"] == "gen_ai.chat"
    assert attributes["gen_ai.request.model"] == "deepseek-chat" and attributes["gen_ai.usage.input_tokens"] == 42
    assert attributes["sentry.release"] == "1.0" and attributes["sentry.segment.name"] == "POST /ask"


def test_log_item_type_is_sentry_sdks_log_batch_item() -> None:
    assert (_compat.LOG_ITEM_TYPE, _compat.LOG_ITEM_CONTENT_TYPE) == ("log", "application/vnd.sentry.items.log+json")
    item = Item(type=_compat.LOG_ITEM_TYPE, content_type=_compat.LOG_ITEM_CONTENT_TYPE, payload=PayloadRef(json={}))
    assert item.data_category == "log_item"  # lost logs are counted as logs


# --- events --------------------------------------------------------------------------------


def test_prepare_event_applies_scope_processors_options_and_before_send_transaction(
    make_client: Callable[..., Any],
) -> None:
    seen_hints: list[dict[str, Any]] = []

    def before_send_transaction(event: Any, hint: Any) -> Any:
        seen_hints.append(hint)
        return None if event["transaction"] == "drop me" else event

    client = make_client(release="1.0", environment="test", before_send_transaction=before_send_transaction)
    scope = sentry_sdk.Scope()
    scope.set_tag("tenant", "acme")

    def transaction(name: str) -> dict[str, Any]:
        return {"type": "transaction", "transaction": name, "contexts": {"trace": {"trace_id": TRACE_ID}}}

    prepared = _compat.prepare_event(client, transaction("keep me"), scope, {"marker": 1})
    assert prepared is not None
    assert (prepared["release"], prepared["environment"]) == ("1.0", "test")
    assert prepared["tags"]["tenant"] == "acme"  # the scope's data
    assert [hint["marker"] for hint in seen_hints] == [1]  # the hint reaches before_send_transaction
    assert _compat.prepare_event(client, transaction("drop me"), scope, {}) is None


def test_merged_scope_holds_the_isolation_and_current_scopes_tags() -> None:
    with sentry_sdk.isolation_scope() as isolation:
        isolation.set_tag("from", "isolation")
        with sentry_sdk.new_scope() as current:
            current.set_tag("inner", "current")
            merged = _compat.merged_scope()
    event = merged.apply_to_event({}, {})
    assert event is not None
    assert event["tags"]["from"] == "isolation" and event["tags"]["inner"] == "current"


def test_without_live_request_processors_drops_flasks_request_processor_and_keeps_the_others() -> None:
    from flask import Flask, request
    from sentry_sdk.integrations.flask import FlaskIntegration, _make_request_event_processor
    from sentry_sdk.scope import use_isolation_scope

    app = Flask(__name__)
    with app.test_request_context("/ask", method="POST", json={"question": "kept out"}):
        with sentry_sdk.isolation_scope() as isolation:
            isolation.set_tag("tenant", "acme")
            isolation.add_event_processor(lambda event, hint: {**event, "extra": {"kept": True}})
            # What the Flask integration adds to the isolation scope when a request starts:
            flasks = _make_request_event_processor(app, request, FlaskIntegration())
            isolation.add_event_processor(flasks)
            forked = _compat.without_live_request_processors(isolation)
        with use_isolation_scope(forked):  # event processors run from the scopes in force
            event = forked.apply_to_event({}, {})
    assert flasks in isolation._event_processors and flasks not in forked._event_processors  # the original keeps it
    assert event is not None
    assert event["tags"]["tenant"] == "acme" and event["extra"] == {"kept": True} and "request" not in event


# --- logs -----------------------------------------------------------------------------------


def _log(body: str, **fields: Any) -> dict[str, Any]:
    return {
        "severity_text": "warn",
        "severity_number": 13,
        "body": body,
        "attributes": {"logger.name": "app"},
        "time_unix_nano": 1_700_000_000_123_456_789,
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        **fields,
    }


def test_capture_log_sends_the_logs_own_trace_span_and_time_with_the_scopes_attributes(
    make_client: Callable[..., Any], sentry_receiver: SentryReceiver
) -> None:
    seen: list[dict[str, Any]] = []

    def before_send_log(log: Any, hint: Any) -> Any:
        seen.append(dict(log))
        return None if log["body"] == "drop me" else log

    client = make_client(dsn=dsn(sentry_receiver), release="1.0", environment="test", before_send_log=before_send_log)
    scope = sentry_sdk.Scope()
    scope.set_attribute("tenant", "acme")
    _compat.capture_log(client, _log("kept"), scope)
    _compat.capture_log(client, _log("drop me"), scope)
    _compat.capture_log(client, _log("no trace", trace_id=None, span_id=None), scope)
    client.flush(timeout=5)

    logs = {log["body"]: log for log in sentry_receiver.wait_for("log", 2)}
    assert set(logs) == {"kept", "no trace"}  # before_send_log ran, and may drop
    kept = logs["kept"]
    assert (kept["trace_id"], kept["span_id"], kept["level"]) == (TRACE_ID, SPAN_ID, "warn")
    assert kept["timestamp"] == pytest.approx(1_700_000_000.123456789)
    attributes = {key: value["value"] for key, value in kept["attributes"].items()}
    assert attributes["tenant"] == "acme" and attributes["logger.name"] == "app"  # the scope's attributes
    assert attributes["sentry.severity_number"] == 13
    # a log without ids gets the scope's trace id, never a span id of the calling thread
    assert len(logs["no trace"]["trace_id"]) == 32 and "span_id" not in logs["no trace"]
    assert [log["body"] for log in seen] == ["kept", "drop me", "no trace"]


def test_log_batcher_depth_reports_buffered_logs_and_the_drop_bound(make_client: Callable[..., Any]) -> None:
    client = make_client(dsn=f"http://{PUBLIC_KEY}@127.0.0.1:9/1")  # nothing is flushed in this test
    assert _compat.log_batcher_depth(client) == (0, 1000)
    for index in range(3):
        _compat.capture_log(client, _log(f"buffered {index}"), sentry_sdk.Scope())
    assert _compat.log_batcher_depth(client) == (3, 1000)
    assert _compat.log_batcher_depth(object()) is None  # type: ignore[arg-type]


def test_otlp_logs_target_is_the_dsns_otlp_logs_endpoint_with_its_auth() -> None:
    url, headers = _compat.otlp_logs_target(f"https://{PUBLIC_KEY}@o1.ingest.sentry.io/42")
    assert url == "https://o1.ingest.sentry.io/api/42/integration/otlp/v1/logs/"
    assert headers["X-Sentry-Auth"].startswith(f"Sentry sentry_key={PUBLIC_KEY},")


# --- transport ------------------------------------------------------------------------------


def test_hooked_transport_wraps_each_request(make_client: Callable[..., Any], sentry_receiver: SentryReceiver) -> None:
    statuses: list[int] = []

    class Recording(_compat.HookedHttpTransport):
        def around_request(self, send: Callable[[], Any]) -> Any:
            response = send()
            statuses.append(response.status)
            return response

    client = make_client(dsn=dsn(sentry_receiver), transport=Recording)
    client.capture_event({"message": "through the hook", "level": "info"})
    client.flush(timeout=5)

    [event] = sentry_receiver.wait_for("event")
    assert event["message"] == "through the hook"
    assert statuses == [200]


def test_hooked_transport_knows_the_item_types_of_the_envelope_it_sends(
    make_client: Callable[..., Any], sentry_receiver: SentryReceiver
) -> None:
    sent: list[frozenset[str]] = []

    class Recording(_compat.HookedHttpTransport):
        def around_request(self, send: Callable[[], Any]) -> Any:
            sent.append(self.sending_items)
            return send()

    client = make_client(dsn=dsn(sentry_receiver), transport=Recording)
    client.capture_event({"message": "an event", "level": "info"})
    client.flush(timeout=5)
    _compat.capture_log(client, _log("a log"), sentry_sdk.Scope())
    client.flush(timeout=5)

    sentry_receiver.wait_for("log")
    assert sent == [frozenset({"event"}), frozenset({"log"})]
    assert client.transport.sending_items == frozenset()  # only while a request runs


def test_hooked_transport_counts_envelopes_dropped_by_a_full_queue(
    make_client: Callable[..., Any], sentry_receiver: SentryReceiver
) -> None:
    sentry_receiver.fail(delay_s=2.0)  # the first send holds the worker; the queue (1) fills behind it
    client = make_client(dsn=dsn(sentry_receiver), transport=_compat.HookedHttpTransport, transport_queue_size=1)
    for index in range(5):
        client.capture_event({"message": f"burst {index}", "level": "info"})
    assert client.transport.queue_overflows >= 3
    sentry_receiver.heal()


def test_transport_queue_reports_depth_and_capacity(
    make_client: Callable[..., Any], sentry_receiver: SentryReceiver
) -> None:
    client = make_client(dsn=dsn(sentry_receiver), transport_queue_size=7)
    assert _compat.transport_queue(client.transport) == (0, 7)
    sentry_receiver.fail(delay_s=2.0)
    for index in range(3):
        client.capture_event({"message": f"queued {index}", "level": "info"})
    depth, capacity = _compat.transport_queue(client.transport) or (0, 0)
    assert capacity == 7 and 1 <= depth <= 3  # one may already be on its way
    assert _compat.transport_queue(object()) is None
    sentry_receiver.heal()


def test_hooked_transport_sends_through_its_senders_and_keeps_that_many_connections(
    make_client: Callable[..., Any], sentry_receiver: SentryReceiver
) -> None:
    class Three(_compat.HookedHttpTransport):
        senders = 3

    client = make_client(dsn=dsn(sentry_receiver), transport=Three, transport_queue_size=9)
    transport = client.transport
    assert isinstance(transport._worker, SenderPool) and transport._worker.senders == 3
    assert transport._pool.connection_pool_kw["maxsize"] == 3
    assert _compat.transport_queue(transport) == (0, 9)
    sentry_receiver.fail(delay_s=0.3)
    started = time.monotonic()
    for index in range(3):
        client.capture_event({"message": f"at once {index}", "level": "info"})
    client.flush(timeout=5)
    assert time.monotonic() - started < 0.8  # three round trips at once, not one after another
    assert len(sentry_receiver.wait_for("event", 3)) == 3


def test_hooked_transport_gets_a_fresh_pool_in_a_forked_child(
    make_client: Callable[..., Any], sentry_receiver: SentryReceiver
) -> None:
    client = make_client(dsn=dsn(sentry_receiver), transport=_compat.HookedHttpTransport)
    client.capture_event({"message": "before", "level": "info"})
    client.flush(timeout=5)
    parents = client.transport._pool
    _compat._transports_after_fork_in_child()  # what the child runs right after fork
    assert client.transport._pool is not parents
    client.capture_event({"message": "after", "level": "info"})
    client.flush(timeout=5)
    assert [event["message"] for event in sentry_receiver.wait_for("event", 2)] == ["before", "after"]


@pytest.mark.parametrize(("level", "encoding"), [(0, None), (1, "gzip")])
def test_compression_options_set_the_envelope_encoding(
    make_client: Callable[..., Any], sentry_receiver: SentryReceiver, level: int, encoding: str | None
) -> None:
    client = make_client(dsn=dsn(sentry_receiver), **_compat.compression_options(level))
    client.capture_event({"message": "compressed?", "level": "info"})
    client.flush(timeout=5)
    sentry_receiver.wait_for("event")
    [envelope] = sentry_receiver.envelopes()
    assert envelope.request_headers.get("content-encoding") == encoding


# --- scope and OTel context ------------------------------------------------------------------


def test_external_propagation_context_gives_events_the_trace_id() -> None:
    _compat.register_external_propagation_context(lambda: (TRACE_ID, SPAN_ID))
    try:
        event = _compat.merged_scope().apply_to_event({}, {})
        assert event is not None
        assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
    finally:
        _compat.remove_external_propagation_context()
    event = _compat.merged_scope().apply_to_event({}, {})
    assert event is not None and event["contexts"]["trace"]["trace_id"] != TRACE_ID


def test_sentry_context_keys_are_the_ones_sentry_sdks_otel_propagator_fills() -> None:
    carrier = {"sentry-trace": f"{TRACE_ID}-{SPAN_ID}-1", "baggage": f"sentry-trace_id={TRACE_ID}"}
    context = SentryPropagator().extract(carrier, context=Context())
    assert isinstance(get_value(_compat.SENTRY_BAGGAGE_KEY, context), _compat.Baggage)
    assert get_value(_compat.SENTRY_TRACE_KEY, context)["trace_id"] == TRACE_ID  # type: ignore[index]
    assert get_value(_compat.SENTRY_TRACE_KEY, set_value(_compat.SENTRY_TRACE_KEY, "x", Context())) == "x"


def test_span_origin_is_sentry_sdks_otel_origin() -> None:
    assert _compat.SPAN_ORIGIN == "auto.otel"


def test_baggage_parses_freezes_and_serializes_sentry_entries() -> None:
    incoming = _compat.Baggage.from_incoming_header(f"userId=bob,sentry-trace_id={TRACE_ID},sentry-sample_rate=0.5")
    assert incoming.sentry_items == {"trace_id": TRACE_ID, "sample_rate": "0.5"}
    incoming.freeze()
    assert not incoming.mutable
    assert incoming.dynamic_sampling_context() == {"trace_id": TRACE_ID, "sample_rate": "0.5"}
    made = _compat.Baggage(sentry_items={"trace_id": TRACE_ID, "public_key": "pk"}, mutable=False)
    assert made.serialize() == f"sentry-trace_id={TRACE_ID},sentry-public_key=pk"
    assert _compat.Baggage.SENTRY_PREFIX == "sentry-"


def test_extract_sentrytrace_data_reads_the_sampled_flag() -> None:
    assert _compat.extract_sentrytrace_data(f"{TRACE_ID}-{SPAN_ID}-1") == {
        "trace_id": TRACE_ID,
        "parent_span_id": SPAN_ID,
        "parent_sampled": True,
    }
    assert _compat.extract_sentrytrace_data(f"{TRACE_ID}-{SPAN_ID}-0")["parent_sampled"] is False  # type: ignore[index]
    assert _compat.extract_sentrytrace_data(f"{TRACE_ID}-{SPAN_ID}")["parent_sampled"] is None  # type: ignore[index]


def test_event_from_exception_builds_a_handled_error_event(make_client: Callable[..., Any]) -> None:
    client = make_client()
    error = KeyError("missing fact")
    event, hint = _compat.event_from_exception(
        error, client_options=client.options, mechanism={"type": "otel_hakgal", "handled": True}
    )
    [value] = event["exception"]["values"]
    assert value["type"] == "KeyError" and value["mechanism"] == {"type": "otel_hakgal", "handled": True}
    assert hint["exc_info"][1] is error


def test_format_timestamp_writes_sentrys_iso_form() -> None:
    assert _compat.format_timestamp(datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == "2024-01-02T03:04:05.006000Z"


def test_otlp_traces_target_is_the_dsns_otlp_endpoint_with_its_auth() -> None:
    url, headers = _compat.otlp_traces_target(f"http://{PUBLIC_KEY}@127.0.0.1:1234/42")
    assert url == "http://127.0.0.1:1234/api/42/integration/otlp/v1/traces/"
    assert f"sentry_key={PUBLIC_KEY}," in headers["X-Sentry-Auth"]


# --- the failure this module exists for ------------------------------------------------------


def test_a_missing_name_fails_at_import_with_the_supported_range() -> None:
    code = (
        "import sys; sys.modules['sentry_sdk._span_batcher'] = None\n"
        "try:\n"
        "    import otel_hakgal.backends.sentry._compat\n"
        "except ImportError as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("IncompatibleSentrySdk"), result.stdout
    assert "sentry_sdk._span_batcher" in result.stdout and _compat.SUPPORTED in result.stdout


# --- the continuous profiler --------------------------------------------------------------------


@pytest.fixture
def profiled_client(make_client: Callable[..., Any], sentry_receiver: SentryReceiver) -> Iterator[Any]:
    """A standalone client whose init set up a trace-lifecycle continuous profiler (torn down after)."""
    client = make_client(dsn=dsn(sentry_receiver), profile_session_sample_rate=1.0, profile_lifecycle="trace")
    scheduler = _compat.profile_scheduler()
    yield client, scheduler
    if scheduler is not None:
        _compat.stop_profile_scheduler(scheduler)


def test_profile_scheduler_is_the_one_init_set_up_and_its_session_is_sampled(profiled_client: Any) -> None:
    _, scheduler = profiled_client
    assert scheduler is not None and _compat.profile_session_sampled(scheduler)


def test_profile_session_sampled_is_false_at_rate_zero_and_in_manual_lifecycle(make_client: Callable[..., Any]) -> None:
    make_client(profile_session_sample_rate=0.0, profile_lifecycle="trace")
    assert not _compat.profile_session_sampled(_compat.profile_scheduler())
    make_client(profile_session_sample_rate=1.0, profile_lifecycle="manual")
    manual = _compat.profile_scheduler()
    assert not _compat.profile_session_sampled(manual)
    _compat.stop_profile_scheduler(manual)


def test_start_profile_runs_the_sampler_until_the_handle_stops_then_sends_its_chunk(
    profiled_client: Any, sentry_receiver: SentryReceiver
) -> None:
    client, scheduler = profiled_client
    handle = _compat.start_profile(scheduler)
    profiler_id = _compat.running_profiler_id(scheduler)
    assert handle is not None and profiler_id is not None and len(profiler_id) == 32
    time.sleep(0.05)
    assert _compat.running_profiler_id(scheduler) == profiler_id  # one id while it runs
    handle.stop()
    assert _compat.wait_profiler_idle(scheduler, 2.0)  # stops itself at the next sample
    assert _compat.running_profiler_id(scheduler) is None
    client.flush(timeout=5)
    [item] = [i for e in sentry_receiver.envelopes() for i in e.items if i.type == _compat.PROFILE_CHUNK_ITEM_TYPE]
    assert item.json["profiler_id"] == profiler_id and item.json["profile"]["samples"]


def test_stop_profile_scheduler_stops_a_held_sampler_and_forgets_it_only_if_global(
    profiled_client: Any, make_client: Callable[..., Any]
) -> None:
    _, scheduler = profiled_client
    handle = _compat.start_profile(scheduler)
    assert handle is not None
    make_client(profile_session_sample_rate=1.0, profile_lifecycle="trace")  # a newer scheduler is global now
    newer = _compat.profile_scheduler()
    assert newer is not scheduler
    _compat.stop_profile_scheduler(scheduler)  # although its handle is still held
    assert _compat.running_profiler_id(scheduler) is None and _compat.wait_profiler_idle(scheduler, 0.1)
    assert _compat.profile_scheduler() is newer
    _compat.stop_profile_scheduler(newer)
    assert _compat.profile_scheduler() is None
