"""Logs on the Sentry backends: Sentry Logs in the transaction's trace (``sentry``), OTLP logs at Sentry's
OTLP logs endpoint (``sentry-otlp``), redacted, at the threshold, and one error event per logged exception.

Everything runs through ``otel_hakgal.setup()`` against the loopback Sentry, with the real sentry-sdk and,
where a request is involved, a real Flask app over HTTP.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import requests
import sentry_sdk
from flask import Flask, request

import otel_hakgal as hg
from otel_hakgal.backends.sentry import SentryBackend, SentryOtlpBackend
from otel_hakgal.backends.sentry.logs import SentryLogProcessor
from otel_hakgal.backends.sentry.otlp_session import PROTOCOL_HEADERS
from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from tests.backends.test_sentry import PUBLIC_KEY, dsn, served

# The app's logger: not one of the layer's own (those are never exported).
APP: Final = logging.getLogger("hakgal.app")


class ProviderError(RuntimeError):
    pass


def _sentry(
    receiver: SentryReceiver, backend: str = "sentry", settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {"backends": [backend], "settings": {f"{backend}.dsn": dsn(receiver), **(settings or {})}}


@contextmanager
def telemetry(**setup_kwargs: Any) -> Iterator[hg.Handle]:
    handle = hg.setup(**setup_kwargs)
    try:
        yield handle
    finally:
        handle.shutdown()


def attributes(log: dict[str, Any]) -> dict[str, Any]:
    """A Sentry log item's attributes as plain values."""
    return {key: value["value"] for key, value in log["attributes"].items()}


def logs_with(receiver: SentryReceiver, text: str) -> list[dict[str, Any]]:
    return [log for log in receiver.logs() if text in log["body"]]


def errors_of(receiver: SentryReceiver, error_type: str) -> list[dict[str, Any]]:
    return [e for e in receiver.errors() if e.get("exception", {}).get("values", [{}])[-1].get("type") == error_type]


def make_app() -> Flask:
    app = Flask("sentry_logs_test_app")

    @app.post("/ask")
    def ask() -> dict[str, Any]:
        body = request.get_json(force=True)
        with hg.command("ask", text=body["question"]), hg.query(body["question"]):
            if body.get("warn"):
                APP.warning("provider %s failed over: %s", "deepseek", body["warn"])
            if body.get("log_exception"):
                try:
                    raise ProviderError("deepseek timed out")
                except ProviderError:
                    APP.exception("provider failed")
                    if body.get("reraise"):
                        raise
        return {"answer": "yes"}

    instrumented: Flask = hg.instrument_flask(app)
    return instrumented


@contextmanager
def service(**setup_kwargs: Any) -> Iterator[tuple[str, hg.Handle]]:
    with telemetry(**setup_kwargs) as handle, served(make_app()) as base:
        yield base, handle


def ask(base: str, **flags: Any) -> requests.Response:
    return requests.post(base + "/ask", json={"question": "Is Socrates mortal?", **flags}, timeout=10)


# --- sentry: Sentry Logs in the transaction's trace ----------------------------------------------------------


def test_warning_in_a_request_is_one_sentry_log_in_the_transactions_trace(sentry_receiver: SentryReceiver) -> None:
    with service(**_sentry(sentry_receiver)) as (base, handle):
        assert ask(base, warn="quota exhausted").status_code == 200
        assert handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [log] = sentry_receiver.wait_for("log")  # once: sentry-sdk's logging integration sends no copy

    trace = tx["contexts"]["trace"]
    query = next(span for span in tx["spans"] if span["op"] == "hakgal.query")
    assert log["trace_id"] == trace["trace_id"]
    assert log["span_id"] == query["span_id"]  # the span current where it was logged
    assert log["level"] == "warn" and log["body"] == "provider deepseek failed over: quota exhausted"
    found = attributes(log)
    assert found["sentry.severity_number"] == 13 and found["logger.name"] == "hakgal.app"
    assert found["sentry.origin"] == "auto.log.stdlib"
    assert found["sentry.environment"] == "development" and found["sentry.release"] == "unknown"
    assert found["server.address"] and found["service.name"] == "hak-gal"
    assert not [key for key in found if key.startswith("sentry.message.")]  # no raw template or arguments
    assert sentry_receiver.errors() == []  # a warning is a log, not an error event


def test_warning_in_a_command_carries_the_commands_trace_and_span(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver)) as handle:
        with hg.command("status") as command:
            APP.warning("knowledge base is stale")
            span = command.span.get_span_context()
        assert handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [log] = sentry_receiver.wait_for("log")

    assert log["trace_id"] == tx["contexts"]["trace"]["trace_id"] == f"{span.trace_id:032x}"
    assert log["span_id"] == tx["contexts"]["trace"]["span_id"] == f"{span.span_id:016x}"


def test_a_log_outside_any_span_has_a_trace_id_and_no_span_id(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver)) as handle:
        APP.error("disk almost full")
        assert handle.force_flush(5)
        [log] = sentry_receiver.wait_for("log")
    assert log["level"] == "error" and len(log["trace_id"]) == 32 and "span_id" not in log


def test_records_below_the_threshold_are_not_sent(sentry_receiver: SentryReceiver) -> None:
    APP.setLevel(logging.DEBUG)
    try:
        with telemetry(**_sentry(sentry_receiver)) as handle:
            with hg.command("status"):
                APP.info("cache warmed")  # below the default WARNING
                APP.warning("cache half empty")
            assert handle.force_flush(5)
            sentry_receiver.wait_for("transaction")
            assert [log["body"] for log in sentry_receiver.wait_for("log")] == ["cache half empty"]
        sentry_receiver.clear()
        with telemetry(**_sentry(sentry_receiver, settings={"logs.level": "ERROR"})) as handle:
            with hg.command("status"):
                APP.warning("cache half empty")
                APP.error("cache gone")
            assert handle.force_flush(5)
            sentry_receiver.wait_for("transaction")
            assert [log["body"] for log in sentry_receiver.wait_for("log")] == ["cache gone"]
    finally:
        APP.setLevel(logging.NOTSET)


def test_a_planted_key_and_an_environment_secret_are_redacted_in_log_items(
    sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = "sk-" + secrets.token_hex(20)
    mistral = secrets.token_hex(20)
    monkeypatch.setenv("MISTRAL_API_KEY", mistral)
    sentry_receiver.bodies = []
    with telemetry(**_sentry(sentry_receiver)) as handle:
        # sentry-sdk adds the scope's attributes to every log after the layer's redaction: scrubbed again
        with hg.command("ask"), sentry_sdk.isolation_scope() as scope:
            scope.set_attribute("retry.note", f"retried with Bearer {planted}")
            APP.warning(
                "provider rejected key %s, falling back to mistral with %s",
                planted,
                mistral,
                extra={"provider.reply": f"invalid api key {planted}"},
            )
            # the app's own Sentry Logs: sentry-sdk adds the raw template and arguments, scrubbed too
            sentry_sdk.logger.warning("retrying with {key}", key=mistral)
        assert handle.force_flush(5)
        logs = {log["body"].split(" ", 1)[0]: log for log in sentry_receiver.wait_for("log", 2)}

    layer, app = logs["provider"], logs["retrying"]
    assert layer["body"] == "provider rejected key [REDACTED], falling back to mistral with [REDACTED]"
    found = attributes(layer)
    assert found["provider.reply"] == "invalid api key [REDACTED]"
    assert found["retry.note"] == "retried with Bearer [REDACTED]"
    assert app["body"] == "retrying with [REDACTED]"
    assert attributes(app)["sentry.message.parameter.key"] == "[REDACTED]"
    assert attributes(app)["sentry.message.template"] == "retrying with {key}"
    bodies = b"".join(sentry_receiver.bodies)
    assert planted.encode() not in bodies and mistral.encode() not in bodies


def test_log_processor_queues_and_log_delivery_are_reported(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver)) as handle:
        backend = handle.backend(SentryBackend)
        [processor] = backend.parts.log_processors
        assert isinstance(processor, SentryLogProcessor)
        with hg.command("status"):
            APP.warning("one")
            APP.warning("two")
        assert handle.force_flush(5)
        sentry_receiver.wait_for("log", 2)
        queues = handle.stats()["sentry"].queues
        assert backend.log_delivery.ok and backend.log_delivery.counts() == {"HTTP 200": 1}
    assert queues["sentry log worker"].dropped == 0 and queues["sentry log worker"].capacity == 1000
    assert queues["sentry log batcher"].queued == 0 and queues["sentry log batcher"].capacity == 1000
    assert processor.sent == 2


def test_shutdown_sends_logs_still_batched(sentry_receiver: SentryReceiver) -> None:
    handle = hg.setup(**_sentry(sentry_receiver))
    APP.warning("last words")
    handle.shutdown()  # no flush first: sentry-sdk's batcher would wait 5 s
    [log] = sentry_receiver.wait_for("log", timeout_s=2)
    assert log["body"] == "last words"


def test_with_logs_off_nothing_is_sent_as_a_log(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver, settings={"logs.enabled": False})) as handle:
        assert handle.backend(SentryBackend).parts.log_processors == ()
        assert sentry_sdk.get_client().options["enable_logs"] is False
        with hg.command("status"):
            APP.warning("unheard")
        assert handle.force_flush(5)
        sentry_receiver.wait_for("transaction")
    assert sentry_receiver.logs() == []


# --- one error event per logged exception ----------------------------------------------------------------------


def test_logged_exception_inside_an_operation_is_one_error_event_linked_to_its_span(
    sentry_receiver: SentryReceiver,
) -> None:
    with telemetry(**_sentry(sentry_receiver)) as handle:
        with hg.command("status") as command:
            try:
                raise ProviderError("deepseek timed out")
            except ProviderError:
                APP.exception("provider failed")
            span = command.span.get_span_context()
        assert handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [log] = sentry_receiver.wait_for("log")

    [error] = sentry_receiver.errors()
    assert error["exception"]["values"][-1]["mechanism"]["type"] == "logging"
    assert error["logentry"]["formatted"] == "provider failed"
    assert error["contexts"]["trace"]["trace_id"] == tx["contexts"]["trace"]["trace_id"] == f"{span.trace_id:032x}"
    assert error["contexts"]["trace"]["span_id"] == f"{span.span_id:016x}"
    assert error["tags"]["hakgal.command.name"] == "status"
    # the record itself is a log item too (not an error event), in the same trace, with the exception
    assert log["level"] == "error" and log["trace_id"] == error["contexts"]["trace"]["trace_id"]
    assert attributes(log)["exception.type"].endswith("ProviderError")


def _log_then_escape_and_capture() -> Any:
    """``logger.exception`` inside a command, the exception escapes it and is captured once more; the command."""
    try:
        with hg.command("status") as command:
            try:
                raise ProviderError("deepseek timed out")
            except ProviderError:
                APP.exception("provider failed")
                raise
    except ProviderError as escaped:
        hg.capture_exception(escaped)  # the layer's error linker gets it once more
    return command


def test_logged_exception_that_escapes_and_is_captured_again_is_one_error_event(
    sentry_receiver: SentryReceiver,
) -> None:
    with telemetry(**_sentry(sentry_receiver)) as handle:
        span = _log_then_escape_and_capture().span.get_span_context()
        assert handle.force_flush(5)
        sentry_receiver.wait_for("transaction")

    [error] = sentry_receiver.errors()
    assert error["logentry"]["formatted"] == "provider failed"  # the first report stays
    assert error["contexts"]["trace"]["trace_id"] == f"{span.trace_id:032x}"


def test_logged_exception_in_a_flask_request_is_one_error_event(sentry_receiver: SentryReceiver) -> None:
    with service(**_sentry(sentry_receiver)) as (base, handle):
        assert ask(base, log_exception=True).status_code == 200
        assert ask(base, log_exception=True, reraise=True).status_code == 500  # Flask's integration sees it too
        assert handle.force_flush(5)
        transactions = sentry_receiver.wait_for("transaction", 2)

    errors = errors_of(sentry_receiver, "ProviderError")
    assert len(errors) == 2  # one per request
    assert {e["contexts"]["trace"]["trace_id"] for e in errors} == {
        tx["contexts"]["trace"]["trace_id"] for tx in transactions
    }
    assert all(e["exception"]["values"][-1]["mechanism"]["type"] == "logging" for e in errors)


def test_logged_exception_outside_any_span_is_one_error_event(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver)) as handle:
        try:
            raise ProviderError("deepseek timed out")
        except ProviderError as logged:
            APP.exception("provider failed")
            hg.capture_exception(logged)
        assert handle.force_flush(5)
        [log] = sentry_receiver.wait_for("log")

    [error] = sentry_receiver.errors()
    assert error["contexts"]["trace"]["trace_id"] == log["trace_id"]  # the scope's trace: still one trace


def test_an_exception_logged_in_another_thread_is_not_filed_twice(sentry_receiver: SentryReceiver) -> None:
    # sentry-sdk's DedupeIntegration remembers the last exception per context only: a thread's is not the caller's
    caught: list[BaseException] = []

    def work() -> None:
        try:
            raise ProviderError("deepseek timed out")
        except ProviderError as error:
            APP.exception("provider failed in a worker")
            caught.append(error)

    with telemetry(**_sentry(sentry_receiver)) as handle:
        with hg.command("status"):
            hg.start_thread(work).join()
            hg.capture_exception(caught[0])
            try:
                raise KeyError("missing fact")
            except KeyError:
                APP.exception("lookup failed")  # another exception in between
            hg.capture_exception(caught[0])
        assert handle.force_flush(5)
        sentry_receiver.wait_for("transaction")

    assert len(errors_of(sentry_receiver, "ProviderError")) == 1
    assert len(errors_of(sentry_receiver, "KeyError")) == 1


def test_one_exception_instance_raised_in_two_traces_is_filed_in_each(sentry_receiver: SentryReceiver) -> None:
    prebuilt = ProviderError("deepseek is down")  # an app may raise one instance again and again
    with telemetry(**_sentry(sentry_receiver)) as handle:
        for _ in range(2):
            try:
                with hg.command("status"):
                    try:
                        raise prebuilt
                    except ProviderError:
                        APP.exception("provider failed")
                        raise
            except ProviderError as escaped:
                hg.capture_exception(escaped)
        assert handle.force_flush(5)
        transactions = sentry_receiver.wait_for("transaction", 2)

    errors = errors_of(sentry_receiver, "ProviderError")
    assert sorted(e["contexts"]["trace"]["trace_id"] for e in errors) == sorted(
        tx["contexts"]["trace"]["trace_id"] for tx in transactions
    )


# --- sentry-otlp: Sentry's OTLP logs endpoint ---------------------------------------------------------------------


def test_sentry_otlp_sends_logs_to_the_otlp_logs_endpoint_in_the_spans_trace(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver, "sentry-otlp")) as handle:
        with hg.command("status") as command:
            APP.warning("knowledge base is stale")
            span = command.span.get_span_context()
        assert handle.force_flush(5)
        spans = sentry_receiver.wait_for("otlp")
        [log] = sentry_receiver.wait_for("otlp_log")
        log_delivery = handle.backend(SentryOtlpBackend).log_delivery
        queues = handle.stats()["sentry-otlp"].queues

    [root] = [s for s in spans if s.span_id == f"{span.span_id:016x}"]
    assert (log.trace_id, log.span_id) == (root.trace_id, root.span_id)
    assert (log.body, log.severity_text, log.scope) == ("knowledge base is stale", "WARN", "hakgal.app")
    assert log.resource["service.name"] == "hak-gal"
    assert f"sentry_key={PUBLIC_KEY}," in sentry_receiver.otlp_logs_request_headers[0]["x-sentry-auth"]
    assert sentry_receiver.logs() == []  # once, over OTLP: no Sentry Logs envelope items
    assert log_delivery.ok and queues["batch log processor 0"].dropped == 0


def test_sentry_otlp_logged_exception_is_one_error_event(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver, "sentry-otlp")) as handle:
        command = _log_then_escape_and_capture()
        assert handle.force_flush(5)
        [log] = sentry_receiver.wait_for("otlp_log")

    [error] = sentry_receiver.errors()
    trace_id = f"{command.span.get_span_context().trace_id:032x}"
    assert error["contexts"]["trace"]["trace_id"] == log.trace_id == trace_id
    assert log.attributes["exception.type"].endswith("ProviderError")


def test_another_collectors_log_headers_endpoint_and_tls_files_never_reach_sentry(
    sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bearer, team = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", f"authorization=Bearer {bearer}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-honeycomb-team={team}")
    # requests checks that a client certificate exists before any request: used for Sentry, it would fail it
    for name in ("LOGS_CLIENT_CERTIFICATE", "LOGS_CLIENT_KEY", "LOGS_CERTIFICATE"):
        monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{name}", str(tmp_path / f"{name.lower()}.pem"))
    with OtlpReceiver() as elsewhere:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", f"{elsewhere.endpoint}/v1/logs")
        with telemetry(**_sentry(sentry_receiver, "sentry-otlp")) as handle:
            with hg.command("status"):
                APP.warning("knowledge base is stale")
            assert handle.force_flush(10)
            sentry_receiver.wait_for("otlp_log")
            log_delivery = handle.backend(SentryOtlpBackend).log_delivery
        assert elsewhere.request_count == 0

    assert log_delivery.counts() == {"HTTP 200": 1}
    assert sentry_receiver.otlp_logs_request_headers
    for sent in sentry_receiver.otlp_logs_request_headers:
        assert set(sent) <= PROTOCOL_HEADERS | {"host", "x-sentry-auth"}, sent
        assert bearer not in str(sent) and team not in str(sent)
        assert f"sentry_key={PUBLIC_KEY}," in sent["x-sentry-auth"]


def test_one_warning_from_many_threads_is_one_log_each(sentry_receiver: SentryReceiver) -> None:
    with telemetry(**_sentry(sentry_receiver)) as handle:

        def work(index: int) -> None:
            with hg.command("status"):
                APP.warning("worker %d done", index)

        threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert handle.force_flush(5)
        transactions = sentry_receiver.wait_for("transaction", 8)
        logs = sentry_receiver.wait_for("log", 8)

    assert sorted(log["body"] for log in logs) == [f"worker {index} done" for index in range(8)]
    assert {log["trace_id"] for log in logs} == {tx["contexts"]["trace"]["trace_id"] for tx in transactions}
