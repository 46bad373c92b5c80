"""Sentry profiling of OTel spans: sentry-sdk's continuous profiler, linked to the transactions, over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from opentelemetry import trace

import otel_hakgal as hg
from otel_hakgal.config import ConfigError
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import dsn
from tests.support.processes import ROOT
from tests.support.reference_app import run_demo_against_sentry, serve_reference_app

SAMPLER_THREAD = "sentry.profiler.ThreadContinuousScheduler"
Z3_TIMES_OUT = "ask Is Adam an ancestor of Eva?"  # the workload's step where Z3 runs until its timeout
QUICK = "ask What is the capital of France?"


@contextmanager
def reference_service(receiver: SentryReceiver, **settings: Any) -> Iterator[tuple[str, hg.Handle]]:
    """The reference service, set up from ``configs/sentry.toml`` with the DSN pointed at ``receiver``."""
    handle = hg.setup(ROOT / "configs" / "sentry.toml", settings={"sentry.dsn": dsn(receiver), **settings})
    try:
        with serve_reference_app(z3_timeout_s=0.3) as base:
            yield base, handle
    finally:
        handle.shutdown()


def _post(base: str, command: str) -> None:
    assert requests.post(f"{base}/api/command", json={"command": command}, timeout=30).status_code < 600


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SAMPLER_THREAD and t.is_alive()]


def _frames_on(chunk: dict[str, Any], thread_id: str) -> set[tuple[str, str]]:
    """(module, function) of every frame sampled on ``thread_id`` in ``chunk``."""
    profile = chunk["profile"]
    stacks = {sample["stack_id"] for sample in profile["samples"] if sample["thread_id"] == thread_id}
    frames = profile["frames"]
    return {
        (frames[f].get("module") or "", frames[f].get("function") or "") for s in stacks for f in profile["stacks"][s]
    }


def _no_sampler_left() -> bool:
    deadline = time.monotonic() + 2
    while _sampler_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _sampler_threads()


# --- backend `sentry` with configs/sentry.toml ----------------------------------------------


def test_sentry_toml_sends_profile_chunks_linked_to_the_transactions(sentry_receiver: SentryReceiver) -> None:
    with reference_service(sentry_receiver) as (base, handle):
        _post(base, QUICK)
        _post(base, Z3_TIMES_OUT)
        handle.force_flush(10)
        transactions = sentry_receiver.wait_for("transaction", 2)
        chunks = sentry_receiver.wait_for("profile_chunk")
    assert _no_sampler_left()  # shutdown stopped the sampler this backend started

    by_id: dict[str, list[dict[str, Any]]] = {}
    for chunk in sentry_receiver.profile_chunks():
        assert chunk["platform"] == "python" and chunk["version"] == "2"
        by_id.setdefault(chunk["profiler_id"], []).append(chunk)
    assert chunks
    for transaction in transactions:
        profiler_id = transaction["contexts"]["profile"]["profiler_id"]
        assert profiler_id in by_id, (profiler_id, list(by_id))
        data = transaction["contexts"]["trace"]["data"]
        assert data["thread.name"] and data["thread.id"].isdigit()
    # the request thread of the Z3 command was sampled inside the reference service's prover
    [z3_tx] = [
        t
        for t in transactions
        if t["tags"].get("hakgal.command.name") == "ask" and any(s["op"] == "hakgal.prover" for s in t["spans"])
    ][-1:]
    thread_id = z3_tx["contexts"]["trace"]["data"]["thread.id"]
    on_request_thread: set[tuple[str, str]] = set()
    on_any_thread: set[tuple[str, str]] = set()
    for chunk in by_id[z3_tx["contexts"]["profile"]["profiler_id"]]:
        on_request_thread |= _frames_on(chunk, thread_id)
        for other in {sample["thread_id"] for sample in chunk["profile"]["samples"]}:
            on_any_thread |= _frames_on(chunk, other)
    assert ("otel_hakgal.demo.api", "create_app.<locals>.api_command") in on_request_thread
    # the command waits for its provers, which run Z3 on the service's prover pool threads
    assert ("otel_hakgal.demo.z3_prover", "Z3Prover.prove") in on_any_thread, sorted(on_any_thread)


def test_profiles_sample_rate_zero_sends_no_profile(sentry_receiver: SentryReceiver) -> None:
    with reference_service(sentry_receiver, **{"sentry.profiles_sample_rate": 0.0}) as (base, handle):
        _post(base, QUICK)
        assert not _sampler_threads()
        handle.force_flush(10)
        [transaction] = sentry_receiver.wait_for("transaction")
    assert "profile" not in transaction["contexts"]
    assert "thread.id" not in transaction["contexts"]["trace"].get("data", {})
    assert sentry_receiver.profile_chunks() == []
    assert not any(item.type.startswith("profile") for item in sentry_receiver.items())


def test_shutdown_stops_the_sampler_even_with_a_root_still_open(sentry_receiver: SentryReceiver) -> None:
    handle = hg.setup(
        backends=["sentry"], settings={"sentry.dsn": dsn(sentry_receiver), "sentry.profiles_sample_rate": 1.0}
    )
    span = trace.get_tracer("test").start_span("never ends")
    try:
        assert len(_sampler_threads()) == 1
    finally:
        handle.shutdown()
    assert _no_sampler_left()
    # its samples so far were sent before the client closed
    [chunk] = sentry_receiver.wait_for("profile_chunk")
    assert chunk["profile"]["samples"]
    span.end()


def test_reconfigure_stops_the_old_backends_sampler_and_the_new_one_profiles(sentry_receiver: SentryReceiver) -> None:
    settings = {"sentry.dsn": dsn(sentry_receiver), "sentry.profiles_sample_rate": 1.0}
    first = hg.setup(backends=["sentry"], settings=settings)
    old_profiler = first.backend("sentry").profiler
    tracer = trace.get_tracer("test")
    open_root = tracer.start_span("open across the reconfigure")
    second = hg.setup(backends=["sentry"], settings={**settings, "sentry.tags": {"round": "2"}})
    try:
        assert second is not first and old_profiler is not None
        assert first.backend("sentry").profiler is None  # retired: its sampler was stopped
        with tracer.start_as_current_span("after"):
            time.sleep(0.05)
        second.force_flush(5)
        [after] = [t for t in sentry_receiver.wait_for("transaction") if t["transaction"] == "after"]
        chunk_ids = {c["profiler_id"] for c in sentry_receiver.profile_chunks()}
        assert after["contexts"]["profile"]["profiler_id"] in chunk_ids
    finally:
        open_root.end()
        second.shutdown()
    assert _no_sampler_left()


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["sentry", "sentry-otlp"])
def test_a_fractional_profiles_sample_rate_is_refused_with_what_to_set(section: str) -> None:
    with pytest.raises(ConfigError) as raised:
        hg.setup(backends=[section], settings={f"{section}.profiles_sample_rate": 0.25})
    message = str(raised.value)
    assert f"{section}.profiles_sample_rate" in message and "cannot be honoured" in message
    assert f"{section}.profile_session_sample_rate = 0.25" in message


def test_profiles_sample_rate_contradicting_the_session_rate_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"drop sentry\.profiles_sample_rate"):
        hg.setup(
            backends=["sentry"],
            settings={"sentry.profiles_sample_rate": 1.0, "sentry.profile_session_sample_rate": 0.5},
        )


def test_the_session_rate_alone_decides(sentry_receiver: SentryReceiver) -> None:
    settings = {"sentry.dsn": dsn(sentry_receiver), "sentry.profile_session_sample_rate": 1.0}
    handle = hg.setup(backends=["sentry"], settings=settings)
    try:
        with trace.get_tracer("test").start_as_current_span("root"):
            time.sleep(0.03)
        handle.force_flush(5)
        [transaction] = sentry_receiver.wait_for("transaction")
        assert transaction["contexts"]["profile"]["profiler_id"]
    finally:
        handle.shutdown()


# --- backend `sentry-otlp` -------------------------------------------------------------------


def test_sentry_otlp_tags_root_spans_with_the_profiler_id(sentry_receiver: SentryReceiver) -> None:
    settings = {"sentry-otlp.dsn": dsn(sentry_receiver), "sentry-otlp.profiles_sample_rate": 1.0}
    handle = hg.setup(backends=["sentry-otlp"], settings=settings)
    tracer = trace.get_tracer("test")
    try:
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
            time.sleep(0.05)
        handle.force_flush(5)
        spans = {s.name: s for s in sentry_receiver.wait_for("otlp", 2)}
        [chunk] = sentry_receiver.wait_for("profile_chunk")
    finally:
        handle.shutdown()
    root = spans["root"].attributes
    assert root["sentry.profiler_id"] == chunk["profiler_id"]
    assert root["thread.id"] == str(threading.get_ident()) and root["thread.name"] == "MainThread"
    assert "sentry.profiler_id" not in spans["child"].attributes
    assert _no_sampler_left()


# --- the demo ----------------------------------------------------------------------------------


@pytest.mark.system
@pytest.mark.slow
def test_demo_with_the_sentry_config_sends_linked_profile_chunks(sentry_receiver: SentryReceiver) -> None:
    run_demo_against_sentry(dsn(sentry_receiver))
    chunks = sentry_receiver.profile_chunks()
    transactions = sentry_receiver.transactions()
    assert chunks and transactions
    chunk_ids = {c["profiler_id"] for c in chunks}
    linked = {t["contexts"]["profile"]["profiler_id"] for t in transactions}
    assert linked <= chunk_ids
    modules = {f.get("module") or "" for c in chunks for f in c["profile"]["frames"]}
    assert "otel_hakgal.demo.z3_prover" in modules
