"""A flood of transactions: all of them reach Sentry, and beyond the configured capacity the drops are
counted in ``otel_hakgal.export.dropped`` and reported in one warning."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

import otel_hakgal as hg
from otel_hakgal.backends.batching import DROPS
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.backends.sentry.client import TRANSPORT_QUEUE_SIZE
from otel_hakgal.conventions import Attr, Metric
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import dsn

THREADS = 16


@pytest.fixture
def drops(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh drop tally whose report comes 1.5 s after the first drop (a flood here takes well under that)."""
    DROPS.reset()
    monkeypatch.setattr(DROPS, "settle_s", 1.5)
    yield
    DROPS.reset()


def _flood(per_thread: int) -> None:
    """``THREADS`` threads, each finishing ``per_thread`` requests of a command, a query and a prover run."""
    start = threading.Barrier(THREADS)

    def requests() -> None:
        start.wait()
        for _ in range(per_thread):
            with hg.command("ask", text="Is Socrates mortal?"), hg.query("Is Socrates mortal?") as query:
                with hg.prover("z3") as prover:
                    prover.set_result("proved")
                query.set_answer("yes")

    threads = [threading.Thread(target=requests) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _dropped_metric(handle: hg.Handle) -> dict[tuple[Any, Any], float]:
    data = handle.backend(MemoryBackend).metrics()
    assert data is not None
    return {
        (point.attributes[Attr.EXPORT_BACKEND], point.attributes[Attr.ERROR_TYPE]): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == Metric.EXPORT_DROPPED
        for point in metric.data.data_points
    }


@pytest.mark.slow
def test_a_flood_of_2000_transactions_from_16_threads_arrives_whole(
    sentry_receiver: SentryReceiver, drops: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    handle = hg.setup(backends=["sentry", "memory"], settings={"sentry.dsn": dsn(sentry_receiver)})
    try:
        _flood(2000 // THREADS)
        assert handle.force_flush(60)
        stats = handle.stats()["sentry"]
        dropped = _dropped_metric(handle)
    finally:
        handle.shutdown()

    assert len(sentry_receiver.transactions()) == 2000
    assert stats.dropped == 0, stats.queues  # before: sentry-sdk's transport queue overflowed (914 lost)
    assert dropped[("sentry", "queue_full")] == 0 and dropped[("sentry", "transport_queue_full")] == 0
    assert not _drop_reports(caplog)


def test_beyond_the_configured_queue_drops_are_counted_and_reported_in_one_warning(
    sentry_receiver: SentryReceiver, drops: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_hakgal.export")
    settings = {"sentry.dsn": dsn(sentry_receiver), "sentry.max_queue_size": 4}
    handle = hg.setup(backends=["sentry", "memory"], settings=settings)
    try:
        _flood(25)
        assert handle.force_flush(30)
        worker = handle.stats()["sentry"].queues["sentry span worker"]
        [warning] = _wait_for_reports(caplog)
        dropped = _dropped_metric(handle)
    finally:
        handle.shutdown()

    assert worker.capacity == 4 and worker.dropped > 0
    assert len(sentry_receiver.transactions()) == THREADS * 25 - worker.dropped  # nothing else lost
    assert dropped[("sentry", "queue_full")] == worker.dropped
    assert dropped[("memory", "queue_full")] == 0  # every running backend has its series
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert re.search(rf"\b{worker.dropped} telemetry items dropped\b", message), message
    assert f"sentry: {worker.dropped} queue_full" in message and Metric.EXPORT_DROPPED in message


def _drop_reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "otel_hakgal.export"]


def _wait_for_reports(caplog: pytest.LogCaptureFixture, timeout_s: float = 10.0) -> list[logging.LogRecord]:
    deadline = time.monotonic() + timeout_s
    while not _drop_reports(caplog) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a second report would have come by now, were the reports not limited
    return _drop_reports(caplog)


def test_sentry_sdks_backpressure_monitor_is_off(sentry_receiver: SentryReceiver) -> None:
    # It would halve sentry-sdk's own sampling under load, unseen: the OTel sampler decides once instead,
    # and overload meets the queues above, whose drops are counted and reported.
    handle = hg.setup(backends=["sentry"], settings={"sentry.dsn": dsn(sentry_receiver)})
    try:
        client = sentry_sdk.get_client()
        assert client.options["enable_backpressure_handling"] is False and client.monitor is None
        assert client.options["transport_queue_size"] == TRANSPORT_QUEUE_SIZE
    finally:
        handle.shutdown()
