"""The Sentry backends' lifecycle: config checks, no sentry-sdk needed to load, reconfiguration, stats.

sentry-sdk has one global client; these tests make sure a backend closes only
the client it started, so a reconfiguration (new backends start before the
old ones stop) or an abandoned setup never leaves Sentry without a client.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sentry_sdk

import otel_hakgal as hg
from otel_hakgal.backends.registry import backend_class
from otel_hakgal.backends.sentry import SentryBackend, SentryOtlpBackend, SentrySettings
from otel_hakgal.config import Config, ConfigError, SamplingSettings, load_config
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import dsn
from tests.support.processes import ROOT

# --- check() ------------------------------------------------------------------------------


def test_both_sentry_backends_are_one_problem_named_once() -> None:
    config = Config(backends=("otlp", "sentry", "sentry-otlp"))
    choose_one = "key 'backends': 'sentry' and 'sentry-otlp' both drive the one Sentry SDK; choose one"
    assert any(problem.endswith(choose_one) for problem in SentryBackend.check(config, SentrySettings()))
    # the first of the two reports it
    assert not any(choose_one in problem for problem in SentryOtlpBackend.check(config, SentrySettings()))

    with pytest.raises(ConfigError) as raised:
        load_config(environ={}, overrides={"backends": ["sentry-otlp", "sentry"]})
    assert [problem for problem in raised.value.problems if "choose one" in problem] == [
        f"setup() argument: {choose_one}"
    ]


@pytest.mark.parametrize("section", ["sentry", "sentry-otlp"])
def test_a_traces_sample_rate_that_disagrees_with_the_sampler_names_key_value_and_fix(section: str) -> None:
    config = Config(backends=(section,), sampling=SamplingSettings(sampler="parentbased_traceidratio", ratio=0.25))
    cls = backend_class(section)
    assert cls.check(config, SentrySettings(traces_sample_rate=0.25)) == []
    [problem] = cls.check(config, SentrySettings(traces_sample_rate=0.5))
    assert problem.endswith(
        f"key '{section}.traces_sample_rate': 0.5 disagrees with the OTel sampler "
        "(parentbased_traceidratio, rate 0.25); sampling is decided once, by the OTel sampler: "
        f"set sampling.ratio = 0.5 and drop {section}.traces_sample_rate"
    )
    always_on = Config(backends=(section,), sampling=SamplingSettings(sampler="always_on", ratio=0.25))
    assert "(always_on, rate 1.0)" in cls.check(always_on, SentrySettings(traces_sample_rate=0.25))[0]

    with pytest.raises(ConfigError, match=rf"argument: key '{section}\.traces_sample_rate': 0\.5 disagrees"):
        load_config(environ={}, overrides={"backends": [section], f"{section}.traces_sample_rate": 0.5})


def test_the_backend_classes_load_and_check_without_sentry_sdk() -> None:
    code = """
import json, sys
sys.modules["sentry_sdk"] = None  # as if the [sentry] extra were not installed
from otel_hakgal.backends.registry import backend_class
from otel_hakgal.backends.sentry import SentrySettings
from otel_hakgal.config import Config
problems = {}
for name in ("sentry", "sentry-otlp"):
    cls = backend_class(name)
    problems[name] = cls.check(Config(backends=(name,)), SentrySettings())
print(json.dumps({"problems": problems, "sentry_sdk_loaded": sys.modules["sentry_sdk"] is not None}))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert not report["sentry_sdk_loaded"]
    for name, problems in report["problems"].items():
        [problem] = problems
        assert f"key 'backends': backend {name!r} needs sentry_sdk" in problem
        assert "pip install 'otel_hakgal[sentry]'" in problem


# --- one global client, several backends over time ----------------------------------------------


def _settings(receiver: SentryReceiver, **extra: object) -> dict[str, object]:
    return {"sentry.dsn": dsn(receiver), **extra}


def test_reconfiguring_to_a_new_dsn_sends_through_the_new_client(sentry_receiver: SentryReceiver) -> None:
    with SentryReceiver() as second:
        first = hg.setup(backends=["sentry"], settings=_settings(sentry_receiver))
        old = first.backend(SentryBackend)
        with hg.command("status"):
            pass
        first.force_flush(5)
        sentry_receiver.wait_for("transaction")

        handle = hg.setup(backends=["sentry"], settings=_settings(second))
        try:
            new = handle.backend(SentryBackend)
            assert not first.active
            assert old.client is not None and new.client is not None
            assert sentry_sdk.get_client() is new.client.client  # the retired backend left the new client alone
            assert old.client.client.transport is None  # and closed its own
            with hg.command("status"):
                hg.capture_exception(ValueError("after the switch"))
            hg.capture_message("still linked", "warning")
            handle.force_flush(5)
            [transaction] = second.wait_for("transaction")
            error, message = second.wait_for("event", 2)
        finally:
            handle.shutdown()

    assert error["exception"]["values"][-1]["type"] == "ValueError"
    assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    assert error["tags"]["component"] == "hak-gal-api"  # the running backend's decoration
    assert message["message"] == "still linked"
    assert len(sentry_receiver.transactions()) == 1 and sentry_receiver.errors() == []
    assert not sentry_sdk.get_client().is_active()  # shut down: sentry-sdk is uninitialised again


def test_an_abandoned_setup_gives_sentry_back_the_running_client(
    plugin_backends: None, sentry_receiver: SentryReceiver
) -> None:
    first = hg.setup(backends=["sentry"], settings=_settings(sentry_receiver))
    running = first.backend(SentryBackend).client
    try:
        with SentryReceiver() as other, pytest.raises(hg.BackendStartError, match="'exploding' failed to start"):
            # The new sentry backend starts (its client becomes the global one), then the setup fails.
            hg.setup(backends=["sentry", "exploding"], settings=_settings(other))
        assert running is not None and sentry_sdk.get_client() is running.client
        with hg.command("status"):
            hg.capture_exception(KeyError("still reported"))
        first.force_flush(5)
        [transaction] = sentry_receiver.wait_for("transaction")
        [error] = sentry_receiver.wait_for("event")
        assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
        assert other.request_count == 0
    finally:
        first.shutdown()


# --- a Sentry that never answers -------------------------------------------------------------------


@contextmanager
def _silent_sentry() -> Iterator[str]:
    """A DSN whose loopback port takes connections (the kernel's backlog accepts them) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://{'0' * 32}@127.0.0.1:{listener.getsockname()[1]}/1"


def test_force_flush_against_a_sentry_that_never_answers_keeps_to_its_timeout() -> None:
    with _silent_sentry() as silent_dsn:
        handle = hg.setup(
            backends=["sentry"],
            settings={"sentry.dsn": silent_dsn, "logs.enabled": True, "export.shutdown_timeout": 0.5},
        )
        try:
            assert handle.backend(SentryBackend).parts.log_processors  # the log processor takes part
            with hg.command("status"):
                logging.getLogger("hakgal.app").warning("into the void")
            start = time.monotonic()
            handle.force_flush(1.0)
            elapsed = time.monotonic() - start
        finally:
            handle.shutdown()
    # One client flush within the budget: not one per processor (transactions, logs) and another for the backend.
    assert elapsed < 1.5, f"force_flush(1.0) took {elapsed:.2f} s"


# --- stats ------------------------------------------------------------------------------------


def test_stats_report_the_span_worker_open_spans_and_the_transport_queue(sentry_receiver: SentryReceiver) -> None:
    handle = hg.setup(backends=["sentry"], settings=_settings(sentry_receiver))
    try:
        with hg.command("status"):
            pass
        handle.force_flush(5)
        sentry_receiver.wait_for("transaction")
        stats = handle.stats()["sentry"]
    finally:
        handle.shutdown()

    queues = stats.queues
    assert queues["sentry span worker"].capacity == 8192 and queues["sentry span worker"].queued == 0
    assert queues["sentry transport"].capacity == 1000
    assert {"sentry open transactions", "sentry open spans"} <= set(queues)
    assert stats.dropped == 0
    assert stats.sends.get("HTTP 200", 0) >= 1


def test_sentry_otlp_stats_include_its_batch_span_processor(sentry_receiver: SentryReceiver) -> None:
    handle = hg.setup(backends=["sentry-otlp"], settings={"sentry-otlp.dsn": dsn(sentry_receiver)})
    try:
        queues = handle.stats()["sentry-otlp"].queues
    finally:
        handle.shutdown()
    assert any(name.startswith("batch span processor") for name in queues)
    assert "sentry transport" in queues
