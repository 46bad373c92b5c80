"""The `sentry` backend on the real reference service: its `ask` flow and its demo, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

import otel_hakgal as hg
from otel_hakgal.demo.commands import known_verbs
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import dsn
from tests.support.reference_app import run_demo_against_sentry, serve_reference_app

ASK = "ask What is the capital of France?"


@contextmanager
def reference_service(receiver: SentryReceiver) -> Iterator[tuple[str, hg.Handle]]:
    handle = hg.setup(backends=["sentry"], settings={"sentry.dsn": dsn(receiver)})
    try:
        with serve_reference_app(z3_timeout_s=1.0) as base:
            yield base, handle
    finally:
        handle.shutdown()


def _post(base: str, command: str) -> requests.Response:
    return requests.post(f"{base}/api/command", json={"command": command}, timeout=30)


def _ops(transaction: dict[str, Any]) -> list[str]:
    return [span["op"] for span in sorted(transaction["spans"], key=lambda s: s["start_timestamp"])]


def test_ask_flow_envelopes(sentry_receiver: SentryReceiver) -> None:
    with reference_service(sentry_receiver) as (base, handle):
        assert _post(base, ASK).status_code == 200
        handle.force_flush(10)
        [transaction] = sentry_receiver.wait_for("transaction")
        llm_spans = sentry_receiver.wait_for("span", count=4)  # 3 extraction calls + logicalize

    trace = transaction["contexts"]["trace"]
    assert transaction["transaction"] == "POST /api/command"
    assert trace["op"] == "http.server" and trace["status"] == "ok"
    ops = _ops(transaction)
    for expected in (
        "hakgal.command",
        "hakgal.query",
        "hakgal.rag.retrieve",
        "cache.get",
        "hakgal.parse",
        "hakgal.prover",
    ):
        assert expected in ops, ops
    by_op: dict[str, list[dict[str, Any]]] = {}
    for span in transaction["spans"]:
        by_op.setdefault(span["op"], []).append(span)
    [command] = by_op["hakgal.command"]
    assert command["description"] == "hakgal.command ask"
    assert command["data"]["hakgal.command.name"] == "ask"
    provers = sorted(by_op["hakgal.prover"], key=lambda s: s["start_timestamp"])
    assert [p["data"]["hakgal.prover.order"] for p in provers] == list(range(len(provers)))
    assert provers[-1]["data"]["hakgal.prover.result"] == "proved"
    caches = {s["data"]["hakgal.cache.name"]: s["data"]["cache.hit"] for s in by_op["cache.get"]}
    assert caches == {"prompt": False, "proof": False}
    assert transaction["tags"]["hakgal.command.name"] == "ask"
    assert transaction["tags"]["hakgal.query.answer"] == "yes"
    measurements = transaction["measurements"]
    assert measurements["gen_ai.usage.input_tokens"]["value"] > 0
    assert measurements["hakgal.command.duration"]["unit"] == "millisecond"
    assert {s["attributes"]["sentry.op"]["value"] for s in llm_spans} == {"gen_ai.chat"}
    assert {s["trace_id"] for s in llm_spans} == {trace["trace_id"]}


def test_failing_command_gives_one_error_linked_to_its_span(sentry_receiver: SentryReceiver) -> None:
    with reference_service(sentry_receiver) as (base, handle):
        response = _post(base, "build_kb damaged.hkb")  # a fault of the server (a client's mistake is a 4xx)
        assert response.status_code == 500 and response.json()["status"] == "error"
        handle.force_flush(10)
        [transaction] = sentry_receiver.wait_for("transaction")
        [error] = sentry_receiver.wait_for("event")

    assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    # linked to the innermost span the error was raised in: a failed step inside the command
    spans = {s["span_id"]: s for s in transaction["spans"]}
    failed_span = spans[error["contexts"]["trace"]["span_id"]]
    assert failed_span["status"] == "internal_error"
    parent = failed_span
    while parent["op"] != "hakgal.command":
        assert parent["parent_span_id"] in spans, (failed_span, [(x["op"], x["description"]) for x in spans.values()])
        parent = spans[parent["parent_span_id"]]
    assert parent["description"] == "hakgal.command build_kb"
    assert error["tags"]["hakgal.command.name"] == "build_kb"
    assert error["contexts"]["hakgal"]["hakgal.command.text"].startswith("damaged.hkb")
    assert len(sentry_receiver.errors()) == 1 and len(sentry_receiver.transactions()) == 1


@pytest.mark.system
@pytest.mark.slow
def test_demo_with_the_sentry_config_delivers_the_whole_workload(sentry_receiver: SentryReceiver) -> None:
    run_demo_against_sentry(dsn(sentry_receiver))
    transactions = sentry_receiver.transactions()
    commands = [t for t in transactions if t["transaction"] == "POST /api/command"]
    verbs = {t["tags"].get("hakgal.command.name") for t in commands}
    assert set(known_verbs()) <= verbs
    failed = [t for t in commands if t["contexts"]["trace"]["status"] != "ok"]
    errors = sentry_receiver.errors()
    assert errors, "the workload's failing command must arrive as an error"
    # every error belongs to one of the delivered traces
    trace_ids = {t["contexts"]["trace"]["trace_id"] for t in transactions}
    assert {e["contexts"]["trace"]["trace_id"] for e in errors} <= trace_ids
    assert failed
