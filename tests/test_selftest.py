"""`otel-hakgal selftest` as a user runs it: a subprocess against loopback receivers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otel_hakgal.selftest import TEST_ERROR, TEST_LOG, TEST_LOGGER, TEST_MESSAGE
from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from tests.support.processes import ROOT, clean_env

pytestmark = [pytest.mark.system, pytest.mark.slow]


def _selftest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_hakgal.cli", "selftest", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_success_through_every_backend(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    env = clean_env(
        OTEL_HAKGAL_BACKENDS="sentry,otlp,console",
        SENTRY_DSN=sentry_receiver.dsn,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
    )
    result = _selftest(env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "ok" in lines["sentry"] and "HTTP 200" in lines["sentry"]
    assert "ok" in lines["otlp"] and "HTTP 200" in lines["otlp"]
    assert "log line delivered (HTTP 200 x1)" in lines["otlp"]
    assert "delivered in process; log line written in process" in lines["console"]
    assert "a test log line" in result.stdout.splitlines()[0]
    # What the seed's script checked by hand: the error, the message and the trace arrived.
    events = sentry_receiver.errors()
    assert any(TEST_ERROR in str(e.get("exception")) for e in events)
    assert any(
        (e.get("logentry") or {}).get("message") == TEST_MESSAGE or e.get("message") == TEST_MESSAGE for e in events
    )
    [transaction] = sentry_receiver.transactions()
    assert transaction["transaction"] == "hakgal.command selftest"
    names = {s.name for s in otlp_receiver.spans()}
    assert {"hakgal.command selftest", "hakgal.query", "hakgal.prover selftest"} <= names
    # The test log line, in the test trace: under the query, where it was logged.
    [log] = [r for r in otlp_receiver.logs() if r.scope == TEST_LOGGER]
    [query] = [s for s in otlp_receiver.spans() if s.name == "hakgal.query"]
    assert log.body == TEST_LOG and (log.trace_id, log.span_id) == (query.trace_id, query.span_id)


def test_failure_exit_names_the_failing_backend(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.fault_status = 500
    env = clean_env(
        OTEL_HAKGAL_BACKENDS="sentry,otlp",
        SENTRY_DSN=sentry_receiver.dsn,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
    )
    result = _selftest(env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "FAILED" in lines["sentry"] and "HTTP 500" in lines["sentry"]
    assert "ok" in lines["otlp"]


def test_unreachable_backend_and_bad_config(tmp_path: Path) -> None:
    result = _selftest(
        clean_env(OTEL_HAKGAL_BACKENDS="otlp", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
        "--config",
        str(tmp_path / "absent.toml"),
    )
    assert result.returncode == 2 and "does not exist" in result.stdout
    config = tmp_path / "down.toml"
    config.write_text('backends = ["otlp"]\n[otlp]\nendpoint = "http://127.0.0.1:9"\ntimeout = 1.0\n')
    result = _selftest(clean_env(), "--config", str(config))
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "ConnectionError" in result.stdout


def test_log_records_that_do_not_arrive_fail_the_backend(otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    config = tmp_path / "logs-down.toml"
    config.write_text(
        f'backends = ["otlp"]\n[otlp]\nendpoint = "{otlp_receiver.endpoint}"\n'
        'logs_endpoint = "http://127.0.0.1:9/v1/logs"\ntimeout = 1.0\nmetrics = false\n'
    )
    result = _selftest(clean_env(), "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.split()[0] == "otlp"]
    assert "FAILED" in line and "log line NOT delivered (ConnectionError" in line, line
    assert {s.name for s in otlp_receiver.spans()} >= {"hakgal.command selftest"}  # the trace went through


def test_with_logs_off_no_log_line_is_sent_or_checked(otlp_receiver: OtlpReceiver) -> None:
    env = clean_env(
        OTEL_HAKGAL_BACKENDS="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint, OTEL_LOGS_EXPORTER="none"
    )
    result = _selftest(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(logs are off)" in result.stdout.splitlines()[0]
    assert "log line" not in result.stdout.splitlines()[1]
    assert otlp_receiver.logs() == [] and TEST_LOG not in result.stdout + result.stderr


def test_a_signal_the_receiver_refuses_fails_the_backend_with_how_to_turn_it_off(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.refuse("metrics", 405)  # a traces-only consumer
    env = clean_env(OTEL_HAKGAL_BACKENDS="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint)
    result = _selftest(env)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.split()[0] == "otlp"]
    url = f"{otlp_receiver.endpoint}/v1/metrics"
    assert "FAILED" in line and f"metrics REFUSED ({url} answered HTTP 405;" in line, line
    assert "otlp.metrics = false" in line and "log line delivered" in line, line
    assert {s.name for s in otlp_receiver.spans()} >= {"hakgal.command selftest"}  # the trace went through
    # one warning in the app's log, not the exporter's ERROR
    assert result.stderr.count("stopped sending metrics") == 1 and "Failed to export" not in result.stderr


def test_the_llm_observability_config_passes_against_a_traces_only_consumer(otlp_receiver: OtlpReceiver) -> None:
    for signal in ("metrics", "logs"):
        otlp_receiver.refuse(signal, 405)
    env = clean_env(
        OTEL_HAKGAL_BACKENDS="otlp",  # the config's prometheus left out: its port may be taken here
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{otlp_receiver.endpoint}/v1/traces",
    )
    result = _selftest(env, "--config", str(ROOT / "configs" / "llm-observability.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.split()[0] == "otlp"]
    assert "metrics off (otlp.metrics = false)" in line and "logs off (otlp.logs = false)" in line, line
    spans = otlp_receiver.spans()
    assert spans and all(s.resource["openinference.project.name"] == "hak-gal" for s in spans)
    assert otlp_receiver.headers_for("metrics") == otlp_receiver.headers_for("logs") == []
