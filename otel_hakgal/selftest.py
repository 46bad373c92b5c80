"""``otel-hakgal selftest``: the seed's integration test script, for every configured backend.

It sends a test error, a test message and a test trace through the layer's
API, flushes, and reports per backend what the sends did.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from otel_hakgal.api import capture_exception, capture_message, command, prover, query
from otel_hakgal.backends.base import Backend
from otel_hakgal.config import ConfigError, load_config
from otel_hakgal.conventions import ProverResult
from otel_hakgal.pipeline import BackendStartError, setup

TEST_ERROR = "Test error for the otel_hakgal integration"
TEST_MESSAGE = "HAK-GAL otel_hakgal integration test"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG_ERROR = 0, 1, 2


class SelftestError(Exception):
    """The test error; a class of its own so it is easy to find in a backend."""


@dataclass(frozen=True)
class BackendReport:
    backend: str
    ok: bool
    detail: str


def send_test_signals() -> None:
    """One trace with a command, a query and a prover; inside it, a handled error and a message."""
    with command("selftest", text="otel-hakgal selftest"), query("integration test", query_type="selftest"):
        with prover("selftest", order=0) as run:
            time.sleep(0.01)  # a measurable duration, as the seed's test transaction had
            run.set_result(ProverResult.PROVED, reason="selftest")
        try:
            raise SelftestError(TEST_ERROR)
        except SelftestError as error:
            capture_exception(error, selftest=True)
        capture_message(TEST_MESSAGE, level="info")


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
    try:
        send_test_signals()
        flushed = handle.force_flush(timeout_s)
        reports = [_report(name, backend, flushed) for name, backend in handle.backends.items()]
    finally:
        handle.shutdown(timeout_s)
    _print(reports, out)
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


def _print(reports: Sequence[BackendReport], out: TextIO) -> None:
    if not reports:
        print("otel-hakgal selftest: no backend is configured (set backends or OTEL_HAKGAL_BACKENDS)", file=out)
        return
    width = max(len(r.backend) for r in reports)
    print("otel-hakgal selftest: sent a test error, a test message and a test trace", file=out)
    for report in reports:
        print(f"  {report.backend.ljust(width)}  {'ok    ' if report.ok else 'FAILED'}  {report.detail}", file=out)
