"""The service's own logs pass the secret scrubber; OTel's baggage warnings are few and short (issue 14, item 9);
every record carries the ids of its span (issue 17)."""

import logging
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry import propagate

import otel_hakgal as hg
from otel_hakgal import log_redaction
from otel_hakgal.testing import TelemetryRecorder

BAGGAGE_LOGGER = "opentelemetry.baggage.propagation"


class Lines(logging.Handler):
    """Collects the lines a real handler would write, formatted."""

    def __init__(self, fmt: str = "%(levelname)s %(name)s %(message)s") -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(fmt))
        self.lines: list[str] = []
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lines_lock:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def lines() -> Iterator[Lines]:
    """A handler on the root logger, added after ``setup()``: handlers added late are covered too."""
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def sk_key() -> str:
    return "sk-" + secrets.token_hex(24)


def test_werkzeug_access_log_holds_no_api_key(hakgal_telemetry: TelemetryRecorder) -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask("access-log-test")

    @app.get("/")
    def index() -> str:
        return "ok"

    werkzeug_logger = logging.getLogger("werkzeug")
    handler = Lines()
    werkzeug_logger.addHandler(handler)
    level = werkzeug_logger.level
    werkzeug_logger.setLevel(logging.INFO)
    key = secrets.token_urlsafe(24)[:32]
    server = make_server("127.0.0.1", 0, app)  # not threaded: shutdown() returns after the request is logged
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/?api_key={key}&page=2"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        serving.join(10)
        server.server_close()
        werkzeug_logger.removeHandler(handler)
        werkzeug_logger.setLevel(level)
    [line] = [line for line in handler.lines if "GET /" in line]
    assert key not in handler.text
    assert '"GET /?api_key=[REDACTED]&page=2 HTTP/1.1" 200' in line


def test_application_warning_and_its_traceback_are_scrubbed(hakgal_telemetry: TelemetryRecorder, lines: Lines) -> None:
    key = sk_key()
    logger = logging.getLogger("tests.demo.commands")
    try:
        raise PermissionError(f"provider refused key {key}")
    except PermissionError as error:
        logger.warning("command %s failed: %s", "build_kb", error, exc_info=True)
    assert key not in lines.text
    [first, *traceback] = lines.lines[0].split("\n")
    assert first == "WARNING tests.demo.commands command build_kb failed: provider refused key [REDACTED]"
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "PermissionError: provider refused key [REDACTED]"


def test_clean_records_keep_their_arguments(hakgal_telemetry: TelemetryRecorder) -> None:
    logger = logging.getLogger("tests.clean")
    clean = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "%d facts in %s", (3, "corpus.txt"), None)
    assert (clean.msg, clean.args) == ("%d facts in %s", (3, "corpus.txt"))  # only changed records are rewritten
    dirty = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "password=%s", ("hunter2hunter2",), None)
    assert (dirty.msg, dirty.args) == ("password=[REDACTED]", ())
    # A record that cannot be formatted is left for the handler to report, never an exception at the call.
    broken = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert (broken.msg, broken.args) == ("%d items", ("many",))


def test_long_messages_and_traceback_lines_are_cut(lines: Lines) -> None:
    recorder = TelemetryRecorder(settings={"redaction.max_attribute_length": 200})
    try:
        logger = logging.getLogger("tests.long")
        logger.warning("build_kb %s", "n" * 60_000)
        name = "m" * 60_000
        try:
            raise FileNotFoundError(f"no such data file: {name}")
        except FileNotFoundError:
            logger.exception("failed")
    finally:
        recorder.close()
    message = lines.lines[0].removeprefix("WARNING tests.long ")
    assert len(message) == 200 and message.endswith("…")
    traceback = lines.lines[1].split("\n")
    assert max(len(line) for line in traceback) <= 200
    assert traceback[-1].startswith("FileNotFoundError: no such data file: mmm") and traceback[-1].endswith("…")


def test_reconfiguration_applies_and_scrub_logs_turns_it_off(lines: Lines) -> None:
    logger = logging.getLogger("tests.switch")
    key = sk_key()
    recorder = TelemetryRecorder(settings={"redaction.scrub_logs": False})
    try:
        logger.warning("using %s", key)
    finally:
        recorder.close()
    recorder = TelemetryRecorder()
    try:
        logger.warning("using %s", key)
    finally:
        recorder.close()
    logger.warning("idle, using %s", key)  # telemetry shut down: the scrubber of the idle configuration
    assert lines.lines == [
        f"WARNING tests.switch using {key}",
        "WARNING tests.switch using [REDACTED]",
        "WARNING tests.switch idle, using [REDACTED]",
    ]


def test_install_is_idempotent(hakgal_telemetry: TelemetryRecorder) -> None:
    factory = logging.getLogRecordFactory()
    budget = log_redaction.install()
    assert log_redaction.install() is budget
    assert logging.getLogRecordFactory() is factory
    filters = logging.getLogger(BAGGAGE_LOGGER).filters
    assert len([f for f in filters if type(f).__name__ == "_BudgetFilter"]) == 1


def test_oversize_baggage_warnings_are_few_short_and_counted(
    hakgal_telemetry: TelemetryRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = log_redaction.install()
    budget.reset()
    monkeypatch.setattr(budget, "interval_s", 1.0)
    handler = Lines()
    baggage_logger = logging.getLogger(BAGGAGE_LOGGER)
    baggage_logger.addHandler(handler)
    header = "user.note=" + "a" * 20_000 + f",api_key={secrets.token_hex(16)}"  # 20 KB
    try:
        started = time.monotonic()
        for _ in range(100):
            propagate.extract({"baggage": header})
        assert time.monotonic() - started < 1.0, "the burst must fit in one interval"
        assert len(handler.lines) == 1
        assert budget.suppressed == log_redaction.suppressed() == 99
        time.sleep(1.05)
        propagate.extract({"baggage": header})
    finally:
        baggage_logger.removeHandler(handler)
    assert len(handler.lines) == 2
    first, second = handler.lines
    assert first.startswith(f"WARNING {BAGGAGE_LOGGER} Baggage header `user.note=aaa")
    assert f"({len(header)} characters)` exceeded the maximum number of bytes per baggage-string" in first
    assert second.endswith("(99 similar suppressed)")
    assert all(len(line) < 300 for line in handler.lines)


def test_every_record_carries_the_ids_of_its_span_and_the_service_name() -> None:
    """The fields of opentelemetry-instrumentation-logging, set by the one record factory wrapper."""
    recorder = TelemetryRecorder(service_name="hak-gal-correlation")
    logger = logging.getLogger("tests.correlation")
    try:
        outside = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "outside", (), None)
        with hg.command("ask") as command:
            in_command = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "in the command", (), None)
            with hg.step("hakgal.parse") as step:
                in_step = logger.makeRecord(logger.name, logging.DEBUG, __file__, 1, "in the step", (), None)
            after_step = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "after the step", (), None)
    finally:
        recorder.close()

    def fields(record: logging.LogRecord) -> tuple[object, ...]:
        return (record.otelTraceID, record.otelSpanID, record.otelTraceSampled, record.otelServiceName)  # type: ignore[attr-defined]

    def ids(span: object) -> tuple[str, str]:
        context = span.get_span_context()  # type: ignore[attr-defined]
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    assert fields(outside) == ("0", "0", False, "hak-gal-correlation")
    assert fields(in_command) == (*ids(command.span), True, "hak-gal-correlation")
    assert fields(in_step) == (*ids(step.span), True, "hak-gal-correlation")
    assert fields(after_step) == fields(in_command)
    assert ids(step.span)[0] == ids(command.span)[0]
