"""Backend ``sentry``: the real sentry-sdk over real HTTP to a loopback Sentry, a real Flask app.

Scenarios that need a fresh process (the new HTTP conventions are read once per
process) run this module as a script: ``python -m tests.backends.test_sentry <scenario>``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import pytest
import requests
from flask import Flask, request
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode
from werkzeug.serving import make_server

import otel_hakgal as hg
from otel_hakgal.backends.sentry.transactions import map_span
from otel_hakgal.config import ConfigError
from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from otel_hakgal.user_text import OMITTED

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
# The DSN public key of every Sentry test: 32 hex digits, as Sentry issues them. The receiver's own DSN has
# the key `public`, shorter than any secret the scrubber looks for: it hid a key scrubbed where Sentry needs it.
PUBLIC_KEY: Final = secrets.token_hex(16)


def dsn(receiver: SentryReceiver) -> str:
    """``receiver``'s DSN with the realistic :data:`PUBLIC_KEY`."""
    return receiver.dsn.replace(f"//{receiver.public_key}@", f"//{PUBLIC_KEY}@", 1)


# --- the service under test, and a downstream that records headers ----------------


class Downstream:
    """A loopback HTTP server standing in for the LLM endpoint; records request headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                downstream.headers.append({k.lower(): v for k, v in self.headers.items()})
                body = b'{"choices": []}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/chat/completions"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# A secret and user text in the locals of a failing function (Sentry's stack-frame variables).
LOCAL_SECRET: Final = "sk-" + secrets.token_hex(20)
LONG_PATH: Final = "/corpus/" + "p" * 5000


def read_corpus(question: str) -> None:
    note = f"retried with Bearer {LOCAL_SECRET}"  # not a name sentry-sdk's own denylist filters
    path_text = LONG_PATH
    raise FileNotFoundError(f"no corpus for {len(question)} characters at {len(path_text)} ({len(note)})")


def make_app(downstream_url: str) -> Flask:
    """The ``ask`` flow of the reference service, reduced to its telemetry shape."""
    app = Flask("sentry_test_app")

    @app.post("/ask")
    def ask() -> dict[str, Any]:
        body = request.get_json(force=True)
        question = body["question"]
        with hg.command("ask", text=question), hg.query(question) as q:
            with hg.step("hakgal.parse") as parse:
                parse.set_attribute("hakgal.query.formula", "Mortal(socrates)")
            with hg.cache_lookup("proof") as cache:
                cache.miss()
            with hg.prover("z3", order=0) as prover:
                prover.set_result("proved", "found a proof")
                if body.get("handled"):
                    hg.capture_exception(KeyError("missing fact"))
            with hg.llm_call("deepseek", "deepseek-chat", server_address="127.0.0.1") as llm:
                requests.post(downstream_url, json={"q": question}, headers=hg.propagation_headers(), timeout=5)
                llm.record_usage(input_tokens=42, output_tokens=7, finish_reasons=["stop"])
            if body.get("thread"):

                def work() -> None:
                    with hg.step("hakgal.rag.extract"):
                        raise RuntimeError("extractor crashed")

                hg.start_thread(work).join()
            if body.get("fail"):
                raise ValueError("prover portfolio exploded")
            if body.get("read_corpus"):
                read_corpus(question)
            q.set_answer("yes")
        return {"answer": "yes"}

    return hg.instrument_flask(app)


@contextmanager
def served(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


class Service:
    def __init__(self, base: str, downstream: Downstream) -> None:
        self.base = base
        self.downstream = downstream

    def ask(self, headers: dict[str, str] | None = None, **flags: Any) -> requests.Response:
        body = {"question": "Is Socrates mortal? " + "x" * 300, **flags}
        return requests.post(self.base + "/ask", json=body, headers=headers or {}, timeout=10)


@contextmanager
def running_service(**setup_kwargs: Any) -> Iterator[tuple[Service, hg.Handle]]:
    downstream = Downstream()
    handle = hg.setup(**setup_kwargs)
    try:
        with served(make_app(downstream.url)) as base:
            yield Service(base, downstream), handle
    finally:
        handle.shutdown()
        downstream.close()


def _sentry(receiver: SentryReceiver, **settings: Any) -> dict[str, Any]:
    return {"backends": ["sentry"], "settings": {"sentry.dsn": dsn(receiver), **settings}}


def by_trace(items: list[dict[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    return [i for i in items if i["contexts"]["trace"]["trace_id"] == trace_id]


def span_by_op(transaction: dict[str, Any], op: str) -> dict[str, Any]:
    found = [s for s in transaction["spans"] if s["op"] == op]
    assert len(found) == 1, (op, [s["op"] for s in transaction["spans"]])
    return found[0]


# --- the ask flow ---------------------------------------------------------------------


def test_ask_flow_becomes_one_transaction_with_ops_tags_and_measurements(sentry_receiver: SentryReceiver) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask().status_code == 200
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [llm] = sentry_receiver.wait_for("span")

    assert tx["transaction"] == "POST /ask"
    assert tx["transaction_info"]["source"] == "route"
    trace = tx["contexts"]["trace"]
    assert trace["op"] == "http.server" and trace["status"] == "ok"
    assert tx["tags"]["http.status_code"] == "200"
    # hakgal.* attributes of the flow, from the explicit list, as searchable tags; default tags too
    assert tx["tags"]["hakgal.command.name"] == "ask"
    assert tx["tags"]["hakgal.command.outcome"] == "success"
    assert tx["tags"]["hakgal.query.answer"] == "yes"
    assert tx["tags"]["component"] == "hak-gal-api" and tx["tags"]["system"] == "reasoning-engine"
    assert "hakgal.command.text" not in tx["tags"]  # high cardinality: data, never a tag

    command = span_by_op(tx, "hakgal.command")
    assert command["description"] == "hakgal.command ask" and command["status"] == "ok"
    assert command["parent_span_id"] == trace["span_id"]
    assert command["data"]["hakgal.command.text"] == "Is Socrates mortal? " + "x" * 80  # redacted to 100 chars
    query = span_by_op(tx, "hakgal.query")
    assert query["parent_span_id"] == command["span_id"]
    assert span_by_op(tx, "hakgal.parse")["data"]["hakgal.query.formula"] == "Mortal(socrates)"
    cache = span_by_op(tx, "cache.get")
    assert cache["description"] == "hakgal.cache proof" and cache["data"]["cache.hit"] is False
    prover = span_by_op(tx, "hakgal.prover")
    assert prover["description"] == "hakgal.prover z3"
    assert prover["data"]["hakgal.prover.result"] == "proved"

    # the LLM span: Sentry's AI op and data (sent as a streamed span item by sentry-sdk)
    attributes = {k: v["value"] for k, v in llm["attributes"].items()}
    assert llm["trace_id"] == trace["trace_id"] and llm["parent_span_id"] == query["span_id"]
    assert attributes["sentry.op"] == "gen_ai.chat"
    assert attributes["gen_ai.request.model"] == "deepseek-chat"
    assert attributes["gen_ai.usage.input_tokens"] == 42 and attributes["gen_ai.usage.total_tokens"] == 49
    assert attributes["gen_ai.system"] == "deepseek"

    measurements = tx["measurements"]
    assert measurements["gen_ai.usage.input_tokens"]["value"] == 42
    assert measurements["gen_ai.usage.output_tokens"]["value"] == 7
    assert measurements["gen_ai.usage.total_tokens"]["value"] == 49
    for name in ("hakgal.command.duration", "hakgal.query.duration", "hakgal.prover.duration"):
        assert measurements[name]["unit"] == "millisecond" and measurements[name]["value"] > 0
    assert measurements["hakgal.command.duration"]["value"] >= measurements["hakgal.query.duration"]["value"]


def test_failing_request_gives_one_error_linked_to_the_innermost_span_and_one_transaction(
    sentry_receiver: SentryReceiver,
) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask(fail=True).status_code == 500
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [error] = sentry_receiver.wait_for("event")
        sentry_receiver.wait_for("span")

    trace = tx["contexts"]["trace"]
    assert trace["status"] == "internal_error" and tx["tags"]["http.status_code"] == "500"
    assert tx["tags"]["hakgal.command.outcome"] == "error"
    query = span_by_op(tx, "hakgal.query")
    assert query["status"] == "internal_error" and query["data"]["error.type"] == "ValueError"

    assert error["exception"]["values"][-1]["type"] == "ValueError"
    assert error["exception"]["values"][-1]["mechanism"] == {"type": "flask", "handled": False}
    # linked to the trace and to the span the error was raised in, though that span had ended
    assert error["contexts"]["trace"]["trace_id"] == trace["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == query["span_id"]
    assert error["tags"]["hakgal.command.name"] == "ask" and error["tags"]["component"] == "hak-gal-api"
    context = error["contexts"]["hakgal"]
    assert context["hakgal.command.name"] == "ask"
    assert context["hakgal.command.text"] == "Is Socrates mortal? " + "x" * 80
    assert context["error.type"] == "ValueError"
    assert error["request"]["url"].endswith("/ask")  # Flask integration's request data
    # the envelope carries the trace's dynamic sampling context
    envelope = next(e for e in sentry_receiver.envelopes() if any(i.type == "event" for i in e.items))
    assert envelope.headers["trace"]["trace_id"] == trace["trace_id"]
    assert len(sentry_receiver.transactions()) == 1 and len(sentry_receiver.errors()) == 1


def test_handled_error_through_the_layer_links_to_the_open_span(sentry_receiver: SentryReceiver) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask(handled=True).status_code == 200
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [error] = sentry_receiver.wait_for("event")

    prover = span_by_op(tx, "hakgal.prover")
    assert error["exception"]["values"][-1]["type"] == "KeyError"
    assert error["exception"]["values"][-1]["mechanism"]["handled"] is True
    assert error["contexts"]["trace"]["trace_id"] == tx["contexts"]["trace"]["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == prover["span_id"]
    assert error["contexts"]["hakgal"]["hakgal.prover.name"] == "z3"
    assert error["tags"]["hakgal.command.name"] == "ask"
    assert tx["contexts"]["trace"]["status"] == "ok"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_error_in_a_worker_thread_links_to_its_span(sentry_receiver: SentryReceiver) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask(thread=True).status_code == 200
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [error] = sentry_receiver.wait_for("event")

    extract = span_by_op(tx, "hakgal.rag.extract")
    assert extract["parent_span_id"] == span_by_op(tx, "hakgal.query")["span_id"]
    assert error["exception"]["values"][-1]["type"] == "RuntimeError"
    assert error["contexts"]["trace"]["trace_id"] == tx["contexts"]["trace"]["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == extract["span_id"]
    assert error["contexts"]["hakgal"]["hakgal.command.name"] == "ask"


# --- propagation ------------------------------------------------------------------------


def _sampled(traceparent: str) -> bool:
    return bool(int(traceparent.split("-")[3], 16) & 1)


def _baggage(header: str) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)


def test_outgoing_calls_carry_traceparent_sentry_trace_and_sentry_baggage(sentry_receiver: SentryReceiver) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        service.ask()
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [llm] = sentry_receiver.wait_for("span")
        [sent] = service.downstream.headers

    trace_id = tx["contexts"]["trace"]["trace_id"]
    assert sent["traceparent"].startswith(f"00-{trace_id}-{llm['span_id']}-") and _sampled(sent["traceparent"])
    assert sent["sentry-trace"] == f"{trace_id}-{llm['span_id']}-1"
    baggage = _baggage(sent["baggage"])
    assert baggage["sentry-trace_id"] == trace_id and baggage["sentry-public_key"] == PUBLIC_KEY


@pytest.mark.parametrize(
    ("incoming", "sampled_out"),
    [
        ({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, "1"),
        ({"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1"}, "1"),
        ({"sentry-trace": f"{TRACE_ID}-{PARENT_ID}"}, "1"),  # deferred decision: sampled here
        (
            {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1"},
            "1",
        ),
    ],
    ids=["traceparent-only", "sentry-trace-only", "sentry-trace-deferred", "both"],
)
def test_incoming_trace_is_continued_from_either_header(
    sentry_receiver: SentryReceiver, incoming: dict[str, str], sampled_out: str
) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        service.ask(headers=incoming)
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [sent] = service.downstream.headers

    assert tx["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert tx["contexts"]["trace"]["parent_span_id"] == PARENT_ID
    assert sent["traceparent"].split("-")[1] == TRACE_ID
    assert sent["sentry-trace"].startswith(TRACE_ID) and sent["sentry-trace"].endswith("-" + sampled_out)


def test_user_baggage_survives_next_to_sentry_entries(sentry_receiver: SentryReceiver) -> None:
    incoming_dsc = f"sentry-trace_id={TRACE_ID},sentry-public_key=upstream,sentry-sample_rate=0.5,sentry-sampled=true"
    cases = [
        {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "baggage": "userId=bob,tenant=acme"},
        {"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1", "baggage": f"userId=bob,tenant=acme,{incoming_dsc}"},
    ]
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        for headers in cases:
            service.ask(headers=headers)
        handle.force_flush(5)
        sentry_receiver.wait_for("transaction", 2)
        first, second = service.downstream.headers

    for sent in (first, second):
        baggage = _baggage(sent["baggage"])
        assert baggage["userId"] == "bob" and baggage["tenant"] == "acme"
        assert baggage["sentry-trace_id"] == TRACE_ID
    assert _baggage(first["baggage"])["sentry-public_key"] == PUBLIC_KEY  # we head the Sentry trace
    assert _baggage(second["baggage"])["sentry-public_key"] == "upstream"  # the upstream's DSC, unchanged
    assert _baggage(second["baggage"])["sentry-sample_rate"] == "0.5"
    [tx_envelope] = [
        e for e in sentry_receiver.envelopes() if e.headers.get("trace", {}).get("public_key") == "upstream"
    ]
    assert tx_envelope.items[0].type == "transaction"


ZERO_TRACE_ID = "0" * 32
ZERO_SPAN_ID = "0" * 16


def _sentry_entries(baggage: str) -> dict[str, str]:
    return {k.removeprefix("sentry-"): v for k, v in _baggage(baggage).items() if k.startswith("sentry-")}


def _trace_header(receiver: SentryReceiver, item_type: str) -> dict[str, str]:
    [envelope] = [e for e in receiver.envelopes() if e.items and e.items[0].type == item_type]
    header: dict[str, str] = envelope.headers["trace"]
    return header


@pytest.mark.parametrize(
    "sentry_trace",
    [f"{ZERO_TRACE_ID}-{ZERO_SPAN_ID}-1", f"{TRACE_ID}-{ZERO_SPAN_ID}-1", f"{ZERO_TRACE_ID}-{PARENT_ID}-1"],
    ids=["all-zero", "zero-span-id", "zero-trace-id"],
)
def test_an_invalid_sentry_trace_starts_a_new_trace_and_its_sentry_baggage_stays_behind(
    sentry_receiver: SentryReceiver, sentry_trace: str
) -> None:
    stale = f"userId=bob,sentry-trace_id={TRACE_ID},sentry-public_key=upstream,sentry-sample_rate=0.5"
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask(headers={"sentry-trace": sentry_trace, "baggage": stale}, fail=True).status_code == 500
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [error] = sentry_receiver.wait_for("event")
        [sent] = service.downstream.headers

    new_trace = tx["contexts"]["trace"]["trace_id"]
    assert new_trace not in (TRACE_ID, ZERO_TRACE_ID) and tx["contexts"]["trace"].get("parent_span_id") is None
    # downstream, both headers and the DSC name the new trace; the user's own entry survives
    assert sent["traceparent"].split("-")[1] == new_trace and sent["sentry-trace"].startswith(new_trace)
    dsc = _sentry_entries(sent["baggage"])
    assert dsc["trace_id"] == new_trace and dsc["public_key"] == PUBLIC_KEY and dsc["sample_rate"] == "1.0"
    assert _baggage(sent["baggage"])["userId"] == "bob"
    # so do the envelopes of the transaction and of the error
    assert error["contexts"]["trace"]["trace_id"] == new_trace
    for item_type in ("transaction", "event"):
        assert _trace_header(sentry_receiver, item_type) == dsc


def test_sentry_trace_without_baggage_gets_the_dsc_its_downstream_calls_carry(sentry_receiver: SentryReceiver) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask(headers={"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1"}, fail=True).status_code == 500
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        sentry_receiver.wait_for("event")
        [sent] = service.downstream.headers

    assert tx["contexts"]["trace"]["trace_id"] == TRACE_ID
    dsc = _sentry_entries(sent["baggage"])  # headed here, for the continued trace
    assert dsc["trace_id"] == TRACE_ID and dsc["public_key"] == PUBLIC_KEY and dsc["sampled"] == "true"
    for item_type in ("transaction", "event"):
        assert _trace_header(sentry_receiver, item_type) == dsc


def test_incoming_sentry_baggage_of_another_trace_is_not_continued() -> None:
    """The real propagators' round trip: extract, then inject into the next call."""
    from opentelemetry import trace as otel_trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from otel_hakgal.backends.sentry.propagator import SentryTracePropagator

    other_trace = "1" * 32
    propagator = CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), SentryTracePropagator(head=None)]
    )
    cases = {
        "matching": ({"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1"}, TRACE_ID, True),
        "other trace": ({"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1"}, other_trace, False),
        "traceparent, other trace": ({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, other_trace, False),
        "traceparent, matching": ({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, TRACE_ID, True),
    }
    for name, (headers, baggage_trace, kept) in cases.items():
        carrier = {**headers, "baggage": f"sentry-trace_id={baggage_trace},sentry-public_key=upstream"}
        context = propagator.extract(carrier)
        assert otel_trace.get_current_span(context).get_span_context().trace_id == int(TRACE_ID, 16), name
        out: dict[str, str] = {}
        propagator.inject(out, context)
        # without a head (no DSN), a DSC of another trace leaves no Sentry entry at all
        assert _sentry_entries(out.get("baggage", "")).get("trace_id") == (TRACE_ID if kept else None), (name, out)


# --- the DSN public key -------------------------------------------------------------------------


def test_envelopes_carry_the_dsn_public_key_where_sentry_needs_it_and_nowhere_else(
    sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTRY_DSN", dsn(sentry_receiver))  # a secret-looking variable too: its key is not secret
    sentry_receiver.bodies = []
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask().status_code == 200
        assert service.ask(handled=True).status_code == 200
        assert service.ask(fail=True).status_code == 500
        with hg.command("status") as command:  # a DSN in span data is a secret: scrubbed, key and all
            command.set_attribute("app.config", f"sentry at {dsn(sentry_receiver)}")
        handle.force_flush(5)
        sentry_receiver.wait_for("transaction", 4)
        sentry_receiver.wait_for("event", 2)
        sentry_receiver.wait_for("span", 3)

    envelopes = sentry_receiver.envelopes()
    traced = [e for e in envelopes if e.items and e.items[0].type in ("transaction", "event")]
    assert len(traced) == 6
    for envelope in traced:  # the trace header: Sentry routes and samples by it
        assert envelope.headers["trace"]["public_key"] == PUBLIC_KEY
        assert f"sentry_key={PUBLIC_KEY}," in envelope.request_headers["x-sentry-auth"]
    for envelope in envelopes:  # and in no item: span data, contexts, request data, tags
        for item in envelope.items:
            assert PUBLIC_KEY not in item.payload.decode("utf-8", "replace"), item.type
    [status] = [t for t in sentry_receiver.transactions() if t["transaction"] == "hakgal.command status"]
    assert status["contexts"]["otel"]["attributes"]["app.config"].startswith("sentry at [REDACTED]")
    assert sum(body.count(PUBLIC_KEY.encode()) for body in sentry_receiver.bodies) == len(traced)


def test_the_dsn_public_key_in_a_captured_header_is_not_span_data(
    sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A browser SDK or a sibling service on the same DSN sends our key in its baggage; captured request
    # headers would copy it into span data.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "baggage")
    incoming = {
        "sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1",
        "baggage": f"sentry-trace_id={TRACE_ID},sentry-public_key={PUBLIC_KEY}",
    }
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask(headers=incoming).status_code == 200
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")

    assert "http.request.header.baggage" in tx["contexts"]["otel"]["attributes"]  # the header was captured
    assert _trace_header(sentry_receiver, "transaction")["public_key"] == PUBLIC_KEY
    for envelope in sentry_receiver.envelopes():
        for item in envelope.items:
            assert PUBLIC_KEY not in item.payload.decode("utf-8", "replace"), item.type


# --- stack-frame local variables ------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _read_corpus_frame(error: dict[str, Any]) -> dict[str, Any]:
    [frame] = [f for f in error["exception"]["values"][-1]["stacktrace"]["frames"] if f["function"] == "read_corpus"]
    return frame


@pytest.mark.parametrize(
    ("settings", "with_vars"),
    [({}, False), ({"sentry.include_local_variables": True}, True),
     ({"sentry.include_local_variables": True, "redaction.text_mode": "omit"}, False)],
    ids=["default", "on", "on-but-omit"],
)  # fmt: skip
def test_local_variables_are_off_by_default_and_pass_the_text_policy_when_on(
    sentry_receiver: SentryReceiver, settings: dict[str, Any], with_vars: bool
) -> None:
    with running_service(**_sentry(sentry_receiver, **settings)) as (service, handle):
        assert service.ask(read_corpus=True).status_code == 500
        handle.force_flush(5)
        [error] = sentry_receiver.wait_for("event")

    frames = [f for value in error["exception"]["values"] for f in value["stacktrace"]["frames"]]
    assert _read_corpus_frame(error)["context_line"].strip().startswith("raise FileNotFoundError")
    if not with_vars:
        assert all("vars" not in frame for frame in frames)
    else:
        variables = _read_corpus_frame(error)["vars"]
        assert set(variables) == {"question", "note", "path_text"}
        assert variables["note"] == "'retried with Bearer [REDACTED]'"
        # user text: cut to redaction.max_text_length, as command text is
        assert variables["path_text"].startswith("'/corpus/ppp") and len(variables["path_text"]) == 100
        assert all(len(text) <= 100 for frame in frames for text in _strings(frame.get("vars")))
    body = json.dumps(error)
    assert LOCAL_SECRET not in body and "p" * 101 not in body


# --- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "incoming",
    [{"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}, {"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-0"}],
    ids=["traceparent-00", "sentry-trace-0"],
)
def test_incoming_not_sampled_is_respected_and_errors_keep_the_trace_id(
    sentry_receiver: SentryReceiver, incoming: dict[str, str]
) -> None:
    with running_service(**_sentry(sentry_receiver)) as (service, handle):
        assert service.ask(headers=incoming, fail=True).status_code == 500
        handle.force_flush(5)
        [error] = sentry_receiver.wait_for("event")
        [sent] = service.downstream.headers

    assert sentry_receiver.transactions() == [] and sentry_receiver.streamed_spans() == []
    assert error["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert not _sampled(sent["traceparent"]) and sent["sentry-trace"].endswith("-0")
    assert sent["sentry-trace"].startswith(TRACE_ID)


def test_sampler_decides_once_and_incoming_sampled_is_honoured(sentry_receiver: SentryReceiver) -> None:
    with running_service(**_sentry(sentry_receiver), sample_ratio=0.0) as (service, handle):
        service.ask(fail=True)  # a new trace: dropped by the sampler, Sentry does not roll again
        service.ask(headers={"sentry-trace": f"{TRACE_ID}-{PARENT_ID}-1"})  # honoured
        handle.force_flush(5)
        [tx] = sentry_receiver.wait_for("transaction")
        [error] = sentry_receiver.wait_for("event")
        unsampled, _ = service.downstream.headers

    assert tx["contexts"]["trace"]["trace_id"] == TRACE_ID
    trace_id = unsampled["traceparent"].split("-")[1]
    assert error["contexts"]["trace"]["trace_id"] == trace_id  # unsampled, but the error has the trace id
    assert unsampled["sentry-trace"] == f"{trace_id}-{unsampled['traceparent'].split('-')[2]}-0"
    assert len(sentry_receiver.transactions()) == 1


def test_a_sentry_sample_rate_that_disagrees_with_the_sampler_is_refused(sentry_receiver: SentryReceiver) -> None:
    with pytest.raises(ConfigError, match=r"sentry\.traces_sample_rate"):
        hg.setup(backends=["sentry"], settings={"sentry.dsn": dsn(sentry_receiver), "sentry.traces_sample_rate": 0.5})
    handle = hg.setup(
        backends=["sentry"],
        sample_ratio=0.5,
        settings={"sentry.dsn": dsn(sentry_receiver), "sentry.traces_sample_rate": 0.5},
    )
    handle.shutdown()


# --- fan-out -----------------------------------------------------------------------------


def test_fan_out_delivers_the_same_spans_and_a_failing_sentry_harms_nothing(sentry_receiver: SentryReceiver) -> None:
    with OtlpReceiver() as collector:
        settings = {"sentry.dsn": dsn(sentry_receiver), "otlp.endpoint": collector.endpoint, "otlp.metrics": False}
        with running_service(backends=["sentry", "otlp"], settings=settings) as (service, handle):
            assert service.ask().status_code == 200
            handle.force_flush(5)
            [tx] = sentry_receiver.wait_for("transaction")
            spans = collector.wait_for_spans(7)
            sentry_receiver.fault_status = 500  # Sentry is down now
            collector.clear()
            assert service.ask().status_code == 200
            handle.force_flush(5)
            assert len(collector.wait_for_spans(7)) >= 7

    span_ids = {s.span_id for s in spans}
    assert tx["contexts"]["trace"]["span_id"] in span_ids
    assert {s["span_id"] for s in tx["spans"]} <= span_ids


# --- HTTP conventions ------------------------------------------------------------------------


def _span(kind: SpanKind, attributes: dict[str, Any], status: StatusCode = StatusCode.UNSET) -> ReadableSpan:
    return ReadableSpan(name="GET", kind=kind, attributes=attributes, status=Status(status))


@pytest.mark.parametrize(
    "attributes",
    [
        {"http.method": "GET", "http.url": "http://llm.local:8080/v1/chat?key=secret", "http.status_code": 503},
        {"http.request.method": "GET", "url.full": "http://llm.local:8080/v1/chat?key=secret",
         "http.response.status_code": 503},
    ],
    ids=["old", "new"],
)  # fmt: skip
def test_http_client_spans_map_under_old_and_new_conventions(attributes: dict[str, Any]) -> None:
    mapped = map_span(_span(SpanKind.CLIENT, attributes, StatusCode.ERROR))
    assert (mapped.op, mapped.description, mapped.http_status) == (
        "http.client",
        "GET http://llm.local:8080/v1/chat",
        503,
    )


def test_http_server_spans_under_the_new_conventions(sentry_receiver: SentryReceiver) -> None:
    env = {**os.environ, "OTEL_SEMCONV_STABILITY_OPT_IN": "http", "SENTRY_DSN": dsn(sentry_receiver)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.backends.test_sentry", "new-semconv"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    transactions = sentry_receiver.wait_for("transaction", 2)
    ok, failed = sorted(transactions, key=lambda t: t["tags"]["http.status_code"])
    assert "http.response.status_code" in ok["contexts"]["otel"]["attributes"]  # really the new conventions
    for tx, status, code in ((ok, "ok", "200"), (failed, "internal_error", "500")):
        assert tx["transaction"] == "POST /ask"
        assert tx["contexts"]["trace"]["op"] == "http.server"
        assert tx["contexts"]["trace"]["status"] == status
        assert tx["tags"]["http.status_code"] == code
    assert len(sentry_receiver.errors()) == 1


# --- scenarios run in a fresh process ------------------------------------------------------------


def _scenario_new_semconv() -> None:
    with running_service(backends=["sentry"]) as (service, handle):
        assert service.ask().status_code == 200
        assert service.ask(fail=True).status_code == 500
        handle.force_flush(5)


if __name__ == "__main__":
    scenarios = {"new-semconv": _scenario_new_semconv}
    scenarios[sys.argv[1]]()
    print(json.dumps({"ok": True}))


@pytest.mark.parametrize(("level", "encoding"), [(None, "gzip"), (0, None)])
def test_envelope_compression_follows_the_config(
    sentry_receiver: SentryReceiver, level: int | None, encoding: str | None
) -> None:
    settings = {} if level is None else {"sentry.compression_level": level}
    handle = hg.setup(**_sentry(sentry_receiver, **settings))
    try:
        with hg.command("status"):
            pass
        handle.force_flush(10)
    finally:
        handle.shutdown()
    (envelope,) = [e for e in sentry_receiver.envelopes() if any(i.type == "transaction" for i in e.items)]
    assert envelope.request_headers.get("content-encoding") == encoding


@pytest.mark.parametrize("text_mode", ["omit", "hash"])
def test_error_events_mask_user_text_as_the_spans_do(sentry_receiver: SentryReceiver, text_mode: str) -> None:
    """The exception object carries the raw name; Sentry's copy of it follows text_mode like the span's."""
    name = "notes-" + secrets.token_hex(12)
    handle = hg.setup(**_sentry(sentry_receiver, **{"redaction.text_mode": text_mode}))
    try:
        with pytest.raises(FileNotFoundError) as raised, hg.command("build_kb", text=name):
            raise FileNotFoundError(f"no knowledge base named {name!r}")
        hg.capture_exception(raised.value)
        handle.force_flush(5)
        [error] = sentry_receiver.wait_for("event")
    finally:
        handle.shutdown()

    [value] = error["exception"]["values"]
    assert value["type"] == "FileNotFoundError" and value["value"].startswith("no knowledge base named ")
    assert name not in json.dumps(error)


@pytest.mark.parametrize("text_mode", ["truncate", "hash", "omit"])
def test_the_request_body_in_an_error_event_follows_text_mode(sentry_receiver: SentryReceiver, text_mode: str) -> None:
    """The Flask integration attaches the request body, the question as typed: it follows text_mode too."""
    with running_service(**_sentry(sentry_receiver, **{"redaction.text_mode": text_mode})) as (service, handle):
        assert service.ask(fail=True).status_code == 500
        handle.force_flush(5)
        [error] = sentry_receiver.wait_for("event")
    question = "Is Socrates mortal? " + "x" * 300
    request = error["request"]
    assert request["url"].endswith("/ask") and request["method"] == "POST"
    if text_mode == "omit":
        assert "data" not in request
    elif text_mode == "hash":
        assert request["data"]["question"].startswith("sha256:")
    else:
        assert request["data"]["question"] == question[:100]  # max_text_length
    assert question not in json.dumps(error)


def test_log_events_and_breadcrumbs_mask_user_text_logged_after_its_operation(sentry_receiver: SentryReceiver) -> None:
    """An exception logged as an argument after its command ended: its noted text is masked in logentry and crumbs."""
    name = "notes-" + secrets.token_hex(12)
    app_log = logging.getLogger("tests.sentry.app")
    handle = hg.setup(**_sentry(sentry_receiver, **{"redaction.text_mode": "omit"}))
    try:
        try:
            with hg.command("build_kb", text=name):
                raise FileNotFoundError(f"no knowledge base named {name!r}")
        except FileNotFoundError as error:
            app_log.warning("command %s failed: %s", "build_kb", error)  # a breadcrumb only
            app_log.exception("command %s failed", "build_kb")
            app_log.error("command %s failed: %s", "build_kb", error)
        handle.force_flush(5)
        events = sentry_receiver.wait_for("event", 2)
    finally:
        handle.shutdown()

    assert name not in json.dumps(events)
    [logged] = [e for e in events if "exception" not in e]
    assert logged["logentry"]["formatted"] == f"command build_kb failed: no knowledge base named '{OMITTED}'"
    assert any(f"'{OMITTED}'" in str(param) for param in logged["logentry"]["params"])
    crumbs = [c for c in logged["breadcrumbs"]["values"] if c.get("category") == app_log.name]
    assert crumbs and all(OMITTED in c["message"] for c in crumbs if "failed:" in c["message"])
