"""``otel-hakgal selftest``: the seed's integration test script, for every configured backend.

It sends a test error, a test message, a test trace and (with ``[logs]
enabled``) a test log line inside that trace through the layer's API, flushes,
and reports per backend what the sends did; for a backend that exports log
records, whether the log line was delivered too; and the signals a backend
does not send (turned off, or refused by its receiver: that fails it).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from otel_hakgal.api import capture_exception, capture_message, command, prover, query
from otel_hakgal.backends.base import Backend
from otel_hakgal.config import Config, ConfigError, load_config
from otel_hakgal.conventions import ProverResult
from otel_hakgal.delivery import DeliveryLog
from otel_hakgal.pipeline import BackendStartError, setup

TEST_ERROR = "Test error for the otel_hakgal integration"
TEST_MESSAGE = "HAK-GAL otel_hakgal integration test"
TEST_LOG = "HAK-GAL otel_hakgal integration test log line"
TEST_LOGGER = "hakgal.selftest"  # an app logger: the layer never exports its own (otel_hakgal.*)
EXIT_OK, EXIT_FAILED, EXIT_CONFIG_ERROR = 0, 1, 2


class SelftestError(Exception):
    """The test error; a class of its own so it is easy to find in a backend."""


@dataclass(frozen=True)
class BackendReport:
    backend: str
    ok: bool
    detail: str


def test_log_level(config: Config) -> int:
    """The level of the test log line: WARNING, or the export threshold (``logs.level``) if that is higher."""
    return max(logging.WARNING, config.logs.level_number)


def send_test_signals(log_level: int | None = None) -> None:
    """One trace with a command, a query and a prover; inside it, a handled error, a message and
    (``log_level`` given) a log line at that level."""
    with command("selftest", text="otel-hakgal selftest"), query("integration test", query_type="selftest"):
        with prover("selftest", order=0) as run:
            time.sleep(0.01)  # a measurable duration, as the seed's test transaction had
            run.set_result(ProverResult.PROVED, reason="selftest")
        try:
            raise SelftestError(TEST_ERROR)
        except SelftestError as error:
            capture_exception(error, selftest=True)
        capture_message(TEST_MESSAGE, level="info")
        if log_level is not None:
            logging.getLogger(TEST_LOGGER).log(log_level, TEST_LOG)


def run_selftest(config_path: str | None, out: TextIO = sys.stdout, timeout_s: float = 10.0) -> int:
    """Run the self-test; returns the process exit code (0 ok, 1 a backend failed, 2 bad config)."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        print(f"otel-hakgal selftest: {error}", file=out)
        return EXIT_CONFIG_ERROR
    try:
        handle = setup(config)
    except BackendStartError as error:
        print(f"otel-hakgal selftest: {error}", file=out)
        return EXIT_FAILED
    logs = config.logs.enabled
    try:
        send_test_signals(test_log_level(config) if logs else None)
        flushed = handle.force_flush(timeout_s)
        reports = [
            _with_signals(_with_logs(_report(name, backend, flushed), backend, flushed), backend)
            for name, backend in handle.backends.items()
        ]
    finally:
        handle.shutdown(timeout_s)
    _print(reports, out, logs)
    return EXIT_OK if reports and all(r.ok for r in reports) else EXIT_FAILED


def _report(name: str, backend: Backend, flushed: bool) -> BackendReport:
    if not backend.remote:
        return BackendReport(name, True, "delivered in process")
    log = backend.delivery
    if log.ok and flushed:
        return BackendReport(name, True, f"delivered ({log.describe()})")
    why = log.describe() if log.attempts else "nothing was sent (check the endpoint or DSN)"
    if log.ok and not flushed:
        why += "; flush did not finish in time"
    return BackendReport(name, False, why)


def _with_logs(report: BackendReport, backend: Backend, flushed: bool) -> BackendReport:
    """``report`` with what became of the test log line, for a backend that exports log records."""
    if not backend.parts.log_processors:
        return report
    ok, detail = True, "log line written in process"
    if backend.remote:
        # A backend that counts its log sends apart (``log_delivery``) tells about them; otherwise the
        # line went with the other sends, which ``report`` judged.
        log = getattr(backend, "log_delivery", None)
        if not isinstance(log, DeliveryLog):
            detail = "log line sent with the rest"
        elif log.ok and flushed:
            detail = f"log line delivered ({log.describe()})"
        else:
            ok = False
            detail = f"log line NOT delivered ({log.describe() if log.attempts else 'nothing was sent'})"
    return BackendReport(report.backend, report.ok and ok, f"{report.detail}; {detail}")


def _with_signals(report: BackendReport, backend: Backend) -> BackendReport:
    """``report`` with the signals the backend does not send: a signal its receiver refused (HTTP 404/405)
    fails the backend, with how to turn it off; one its configuration turned off is only named."""
    try:
        signals_off = backend.stats().signals_off
    except Exception:  # a plugin's broken stats() must not break the self-test
        return report
    ok, details = report.ok, [report.detail]
    for signal, off in signals_off.items():
        if off.refused:
            ok = False
            details.append(f"{signal} REFUSED ({off.why}; to turn them off: {off.turn_off})")
        else:
            details.append(f"{signal} off ({off.why})")
    return BackendReport(report.backend, ok, "; ".join(details))


def _print(reports: Sequence[BackendReport], out: TextIO, logs: bool = False) -> None:
    if not reports:
        print("otel-hakgal selftest: no backend is configured (set backends or OTEL_HAKGAL_BACKENDS)", file=out)
        return
    width = max(len(r.backend) for r in reports)
    sent = (
        "a test error, a test message, a test log line and a test trace"
        if logs
        else ("a test error, a test message and a test trace (logs are off)")
    )
    print(f"otel-hakgal selftest: sent {sent}", file=out)
    for report in reports:
        print(f"  {report.backend.ljust(width)}  {'ok    ' if report.ok else 'FAILED'}  {report.detail}", file=out)
