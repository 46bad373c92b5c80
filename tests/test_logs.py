"""Logs as the third signal (issue 17): the service's log records reach the backends in their traces,
at the configured level and rate, scrubbed and masked like spans; the app's logging stays as it was."""

from __future__ import annotations

import json
import logging
import math
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord

import otel_hakgal as hg
from otel_hakgal import logs
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.config import load_config
from otel_hakgal.conventions import LogDropReason, Metric, SpanName
from otel_hakgal.log_redaction import CORRELATION_DEFAULTS
from otel_hakgal.pipeline import Handle
from otel_hakgal.user_text import OMITTED
from tests.support.plugins import install_plugin
from tests.support.processes import clean_env

log = logging.getLogger("tests.logs")


@pytest.fixture
def handle() -> Iterator[Handle]:
    running = hg.setup(backends=["memory"])
    try:
        yield running
    finally:
        running.shutdown()


def exported(handle: Handle) -> list[ReadableLogRecord]:
    """The records the memory backend got from this test's logger."""
    return [r for r in handle.backend(MemoryBackend).logs() if r.instrumentation_scope.name == log.name]


def export_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logs.ExportHandler)]


def as_text(records: list[ReadableLogRecord]) -> str:
    return "\n".join(record.to_json() for record in records)


def test_a_warning_inside_a_command_is_exported_with_the_command_spans_ids(handle: Handle) -> None:
    with hg.command("ask", text="Was ist die Hauptstadt von Frankreich?"):
        log.warning("provider %s failed, falling back to %s", "deepseek", "mistral", extra={"attempt": 2})
    log.error("after the command")
    [span] = handle.backend(MemoryBackend).spans()
    inside, outside = exported(handle)

    record = inside.log_record
    assert span.name == SpanName.COMMAND.format(verb="ask")
    assert (record.trace_id, record.span_id) == (span.context.trace_id, span.context.span_id)
    assert record.trace_flags is not None and record.trace_flags.sampled
    assert record.body == "provider deepseek failed, falling back to mistral"
    assert (record.severity_text, record.severity_number) == ("WARN", SeverityNumber.WARN)
    assert dict(record.attributes or {}) == {"attempt": 2}  # extras; the ids travel natively, not as attributes
    assert inside.resource.attributes["service.name"] == span.resource.attributes["service.name"] == "hak-gal"
    assert (outside.log_record.trace_id, outside.log_record.span_id) == (0, 0)
    assert outside.log_record.severity_text == "ERROR"


def test_records_below_the_threshold_are_not_exported() -> None:
    running = hg.setup(backends=["memory"])
    try:
        log.info("below the default threshold")
        log.warning("at it")
        assert [r.log_record.body for r in exported(running)] == ["at it"]
    finally:
        running.shutdown()
    running = hg.setup(backends=["memory"], settings={"logs.level": "error"})
    try:
        log.warning("below ERROR")
        log.critical("above it")
        assert [r.log_record.body for r in exported(running)] == ["above it"]
    finally:
        running.shutdown()


def test_secrets_in_the_message_the_exception_and_extras_are_redacted_in_every_field() -> None:
    key = "sk-" + secrets.token_hex(24)
    password = secrets.token_urlsafe(12)
    # scrub_logs off: the local log lines keep what they had; what is exported is scrubbed regardless.
    running = hg.setup(backends=["memory"], settings={"redaction.scrub_logs": False})
    try:
        with hg.command("build_kb"):
            try:
                raise PermissionError(f"provider refused key {key}")
            except PermissionError:
                log.exception("login with password=%s failed", password)
            log.warning("retrying", extra={"api_key": key, "detail": f"sent password={password}"})
        records = exported(running)
    finally:
        running.shutdown()
    assert key not in as_text(records) and password not in as_text(records)
    failed, retrying = (r.log_record for r in records)
    assert failed.body == "login with password=[REDACTED] failed"
    attributes = dict(failed.attributes or {})
    assert attributes["exception.type"] == "PermissionError"
    assert attributes["exception.message"] == "provider refused key [REDACTED]"
    assert attributes["exception.stacktrace"].rstrip().endswith("PermissionError: provider refused key [REDACTED]")
    assert dict(retrying.attributes or {}) == {"api_key": "[REDACTED]", "detail": "sent password=[REDACTED]"}


def test_bodies_and_attributes_are_cut_to_max_attribute_length() -> None:
    running = hg.setup(
        backends=["memory"], settings={"redaction.scrub_logs": False, "redaction.max_attribute_length": 200}
    )
    try:
        try:
            raise FileNotFoundError("no such data file: " + "m" * 10_000)
        except FileNotFoundError:
            log.exception("build_kb %s", "n" * 60_000, extra={"path": "p" * 5_000})
        [record] = exported(running)
    finally:
        running.shutdown()
    strings = [record.log_record.body, *(v for v in (record.log_record.attributes or {}).values())]
    assert all(isinstance(s, str) and len(s) <= 200 for s in strings), [len(str(s)) for s in strings]


def test_text_mode_omit_masks_the_command_text_in_a_logged_exception() -> None:
    text = "Ist Sokrates sterblich wie alle Menschen?"
    running = hg.setup(backends=["memory"], settings={"redaction.text_mode": "omit"})
    try:
        # Logged inside the command, before the exception escaped it ...
        with hg.command("ask", text=text):
            try:
                raise ValueError(f"cannot parse {text!r}")
            except ValueError:
                log.exception("command failed: %s", text)
        # ... and by the caller, after it escaped: the text noted on the exception is masked.
        try:
            with hg.command("ask", text=text):
                raise ValueError(f"no answer for {text}")
        except ValueError:
            log.exception("request failed")
        records = exported(running)
    finally:
        running.shutdown()
    assert len(records) == 2
    assert text not in as_text(records)
    inside, outside = (dict(r.log_record.attributes or {}) for r in records)
    assert records[0].log_record.body == f"command failed: {OMITTED}"
    assert inside["exception.message"] == f"cannot parse '{OMITTED}'"
    assert outside["exception.message"] == f"no answer for {OMITTED}"
    assert OMITTED in outside["exception.stacktrace"]


def test_text_mode_omit_masks_the_text_of_an_exception_logged_as_an_argument_after_its_command() -> None:
    text = "Welche Bücher über Sokrates gibt es?"
    password = secrets.token_urlsafe(12)
    running = hg.setup(backends=["memory"], settings={"redaction.text_mode": "omit"})
    try:
        try:
            with hg.command("build_kb", text=text):
                raise ValueError(f"cannot build a KB for {text!r}")
        except ValueError as error:
            # Like the demo: after the command ended, no exc_info, the exception only as an argument.
            log.warning("command %s failed: %s", "build_kb", error)
            log.warning("command %(verb)s failed: %(error)s", {"verb": "build_kb", "error": error})
            # A secret makes the scrubber replace the arguments with the scrubbed message: the note stays.
            log.warning("login with password=%s failed: %s", password, error)
        records = exported(running)
    finally:
        running.shutdown()
    assert len(records) == 3
    assert text not in as_text(records) and password not in as_text(records)
    assert records[0].log_record.body == f"command build_kb failed: cannot build a KB for '{OMITTED}'"
    assert records[1].log_record.body == records[0].log_record.body
    assert records[2].log_record.body == f"login with password=[REDACTED] failed: cannot build a KB for '{OMITTED}'"
    assert not any(key.startswith("_otel_hakgal") for r in records for key in r.log_record.attributes or {})


def _dropped(handle: Handle) -> float:
    data = handle.backend(MemoryBackend).metrics()
    points = [
        point
        for resource_metrics in (data.resource_metrics if data else ())
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == Metric.LOGS_DROPPED
        for point in metric.data.data_points  # type: ignore[union-attr]
        if (point.attributes or {}).get("error.type") == LogDropReason.RATE_LIMIT
    ]
    return float(sum(point.value for point in points))  # type: ignore[union-attr]


def test_a_burst_exports_at_most_the_cap_and_counts_the_drops(caplog: pytest.LogCaptureFixture) -> None:
    cap = 50
    logs.LOG_DROPS.reset()  # an earlier test's drops were reported less than a minute ago
    running = hg.setup(backends=["memory"], settings={"logs.max_per_second": cap})
    try:
        before = _dropped(running)
        started = time.monotonic()
        for index in range(1000):
            log.warning("burst %d", index)
        elapsed = time.monotonic() - started
        sent = len(exported(running))
        dropped = _dropped(running) - before
    finally:
        running.shutdown()
    # A full bucket (one second's worth), plus what refills while the loop runs.
    assert cap <= sent <= cap + math.ceil(elapsed * cap) + 1, (sent, elapsed)
    assert dropped == 1000 - sent
    reports = [r for r in caplog.records if r.name == "otel_hakgal.logs" and "logs.max_per_second" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in reports]  # one warning, not one per record
    assert Metric.LOGS_DROPPED in reports[0].getMessage()


def test_the_root_handler_is_installed_once_and_removed_at_shutdown() -> None:
    root = logging.getLogger()
    level = root.level
    first = hg.setup(backends=["memory"])
    second = hg.setup(backends=["memory"], settings={"logs.level": "ERROR"})
    try:
        assert not first.active
        [handler] = export_handlers()
        assert handler.threshold == logging.ERROR  # type: ignore[attr-defined]
        assert hg.setup() is second  # what the launcher's later setup() call gets: the running handle
        assert len(export_handlers()) == 1
    finally:
        second.shutdown()
    assert export_handlers() == []
    assert root.level == level  # never touched
    disabled = hg.setup(backends=["memory"], settings={"logs.enabled": False})
    try:
        assert export_handlers() == []
        assert disabled.log_processors == ()
        log.error("not exported")
        assert exported(disabled) == []
    finally:
        disabled.shutdown()


def test_otel_logs_exporter_none_turns_logs_off() -> None:
    assert load_config(environ={"OTEL_LOGS_EXPORTER": "none"}).logs.enabled is False
    assert load_config(environ={"OTEL_LOGS_EXPORTER": "otlp"}).logs.enabled is True
    assert load_config(environ={"OTEL_HAKGAL_LOGS": "false", "OTEL_LOGS_EXPORTER": "otlp"}).logs.enabled is False
    assert load_config(environ={"OTEL_HAKGAL_LOGS_LEVEL": "info"}).logs.level == "info"


def test_the_demo_log_format_shows_the_trace_and_span_ids(handle: Handle) -> None:
    from otel_hakgal.demo.api import LOG_FORMAT

    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    formatter = logging.Formatter(LOG_FORMAT, defaults=CORRELATION_DEFAULTS)
    capture = Lines()
    capture.setFormatter(formatter)
    log.addHandler(capture)
    try:
        with hg.command("status"):
            log.warning("inside")
        log.warning("outside")
    finally:
        log.removeHandler(capture)
    [span] = handle.backend(MemoryBackend).spans()
    ids = f"trace_id={span.context.trace_id:032x} span_id={span.context.span_id:016x}"
    assert lines == [f"WARNING tests.logs {ids}: inside", "WARNING tests.logs trace_id=0 span_id=0: outside"]
    # A record made without the record factory (before setup(), or by hand) formats too.
    bare = logging.LogRecord("tests.logs", logging.WARNING, __file__, 1, "bare", (), None)
    assert formatter.format(bare) == "WARNING tests.logs trace_id=0 span_id=0: bare"


@pytest.mark.parametrize(
    "name", ["otel_hakgal", "otel_hakgal.delivery", "opentelemetry.sdk._shared_internal", "urllib3.connectionpool"]
)
def test_records_of_the_layers_own_loggers_are_not_exported(handle: Handle, name: str) -> None:
    logging.getLogger(name).error("export failed: receiver down")
    logging.getLogger("sentry_sdk.errors").error("envelope dropped")
    logging.getLogger("otel_hakgal.demo.commands").error("command build_kb failed")  # the app's
    bodies = [r.log_record.body for r in handle.backend(MemoryBackend).logs()]
    assert bodies == ["command build_kb failed"]


RAISING = """
from opentelemetry.sdk._logs import LogRecordProcessor

from otel_hakgal.backends import Backend, Parts


class _Raising(LogRecordProcessor):
    def on_emit(self, log_record):
        raise RuntimeError("broken on_emit")

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


class RaisingLogsBackend(Backend):
    name = "raising-logs"

    def create_parts(self):
        return Parts(log_processors=(_Raising(),))
"""

BATCHED = """
import json
import os

from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

from otel_hakgal.backends import Backend, Parts


class FileExporter(LogRecordExporter):
    def __init__(self, path):
        self.path = path
        self.stopped = False

    def export(self, batch):
        with open(self.path, "a", encoding="utf-8") as out:
            for record in batch:
                line = {"pid": os.getpid(), "body": record.log_record.body, "trace_id": record.log_record.trace_id}
                out.write(json.dumps(line) + "\\n")
        return LogRecordExportResult.SUCCESS

    def shutdown(self):
        self.stopped = True

    def force_flush(self, timeout_millis=30000):
        return True


class BatchedLogsBackend(Backend):
    name = "batched-logs"

    def create_parts(self):
        self.exporter = FileExporter(os.environ["BATCHED_LOGS_PATH"])
        # A minute between exports: what arrives sooner came from a flush.
        return Parts(log_processors=(BatchLogRecordProcessor(self.exporter, schedule_delay_millis=60_000),))
"""


@pytest.fixture
def log_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Backends ``raising-logs`` (its log processor raises) and ``batched-logs`` (a batch processor to a file)."""
    from otel_hakgal.backends import registry

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install_plugin(plugins, "raising-logs", "raising_logs_backend:RaisingLogsBackend", RAISING)
    install_plugin(plugins, "batched-logs", "batched_logs_backend:BatchedLogsBackend", BATCHED)
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.setenv("BATCHED_LOGS_PATH", str(tmp_path / "logs.jsonl"))
    registry._targets.cache_clear()
    registry.backend_class.cache_clear()
    yield plugins
    registry._targets.cache_clear()
    registry.backend_class.cache_clear()


def test_a_failing_log_processor_never_reaches_the_app_or_the_other_backends(
    log_plugins: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = hg.setup(backends=["raising-logs", "memory"])
    try:
        log.warning("first")
        log.warning("second")
        assert [r.log_record.body for r in exported(running)] == ["first", "second"]
    finally:
        running.shutdown()
    warnings = [r for r in caplog.records if "log processor _Raising failed" in r.getMessage()]
    assert len(warnings) == 1


def test_force_flush_and_shutdown_cover_log_processors(log_plugins: Path, tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    running = hg.setup(backends=["batched-logs"])
    try:
        log.warning("queued")
        assert not path.exists()  # the batch waits a minute
        assert running.force_flush(5)
        assert [json.loads(line)["body"] for line in path.read_text().splitlines()] == ["queued"]
        log.warning("at shutdown")
    finally:
        assert running.shutdown(5)
    assert [json.loads(line)["body"] for line in path.read_text().splitlines()] == ["queued", "at shutdown"]
    assert running.backend("batched-logs").exporter.stopped  # type: ignore[attr-defined]


def _run(script: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.mark.slow
def test_sigterm_and_fork_deliver_the_queued_log_records(log_plugins: Path, tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    script = """
        import logging, os, signal, time
        import otel_hakgal as hg

        log = logging.getLogger("app")
        handle = hg.setup(backends=["batched-logs"])
        pid = os.fork()
        if pid == 0:  # the SDK restarts the batch thread in the child; the child's records are its own
            with hg.command("status"):
                log.warning("from the child")
            handle.force_flush(5)
            os._exit(0)
        os.waitpid(pid, 0)
        with hg.command("status"):
            log.warning("from the parent")
        os.kill(os.getpid(), signal.SIGTERM)  # exits through atexit, which flushes
        time.sleep(30)
    """
    env = clean_env(PYTHONPATH=str(log_plugins), BATCHED_LOGS_PATH=str(path))
    done = _run(script, env)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(line["body"] for line in lines) == ["from the child", "from the parent"], done.stderr
    child, parent = sorted(lines, key=lambda line: line["body"])
    assert child["pid"] != parent["pid"]
    assert child["trace_id"] and parent["trace_id"] and child["trace_id"] != parent["trace_id"]


def test_the_apps_logging_is_as_without_the_handler() -> None:
    """No handler of its own: warnings still go to stderr (lastResort); basicConfig after setup() applies."""
    script = """
        import logging
        import otel_hakgal as hg

        handle = hg.setup(backends=["memory"])
        log = logging.getLogger("app")
        log.warning("first, before any logging configuration")
        logging.basicConfig(format="CONFIGURED %(levelname)s trace_id=%(otelTraceID)s %(message)s")
        log.warning("second")
        with hg.command("status"):
            log.info("below the levels")
        print(len(handle.backend("memory").logs()), sorted(type(h).__name__ for h in logging.getLogger().handlers))
        handle.shutdown()
        print(sorted(type(h).__name__ for h in logging.getLogger().handlers))
    """
    done = _run(script, clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "first, before any logging configuration",
        "CONFIGURED WARNING trace_id=0 second",
    ]
    assert done.stdout.splitlines() == ["2 ['ExportHandler', 'StreamHandler']", "['StreamHandler']"]


def test_severity_numbers_follow_the_otel_mapping() -> None:
    assert logs.severity_number(logging.DEBUG) is SeverityNumber.DEBUG
    assert logs.severity_number(logging.INFO) is SeverityNumber.INFO
    assert logs.severity_number(logging.WARNING + 1) is SeverityNumber.WARN2
    assert logs.severity_number(logging.ERROR + 7) is SeverityNumber.ERROR4
    assert logs.severity_number(logging.CRITICAL) is SeverityNumber.FATAL
    assert logs.severity_number(99) is SeverityNumber.FATAL4
    assert logs.severity_number(5) is SeverityNumber.UNSPECIFIED


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = logs.TokenBucket(10.0, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(20)) == 10
    now[0] += 0.5
    assert sum(bucket.take() for _ in range(20)) == 5
    now[0] += 60.0
    assert sum(bucket.take() for _ in range(20)) == 10  # never more than one second's worth


def _extra_is_kept(**extra: Any) -> dict[str, Any]:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", (), None)
    record.__dict__.update(extra)
    return dict(logs.translate(record).attributes or {})


def test_extras_become_attributes_and_odd_values_text() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert _extra_is_kept(user="bob", tries=3, tags=["a", "b"], obj=Odd(), nothing=None) == {
        "user": "bob",
        "tries": 3,
        "tags": ["a", "b"],
        "obj": "odd",
    }


def test_a_record_whose_arguments_do_not_fit_is_exported_with_its_template() -> None:
    # The app's handlers report such a record ("--- Logging error ---"); the export keeps the template.
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "%d facts", ("many",), None)
    assert logs.translate(record).body == "%d facts"
