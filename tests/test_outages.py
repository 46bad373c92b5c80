"""Backend outages: the reference service keeps answering, queues stay capped, logs stay quiet, delivery resumes.

Each push backend (``otlp``, ``sentry``, ``sentry-otlp``) runs against its real
loopback receiver, with the real exporter or sentry-sdk over HTTP, while the
receiver is unreachable, answers 500 or 429, or answers only after 5 s. The
app's own log calls (exported as log records) are not held by a receiver that
is down or slow, and the export errors are never exported as log records themselves. The
pull backend ``prometheus`` is checked against its own faults: nobody scrapes,
scrapers whose connections stall, its port already taken at startup.
Latency and memory figures over 20,000 requests are ``benchmarks/outages.py``'s job.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

import otel_hakgal as hg
from otel_hakgal import log_limits
from otel_hakgal.backends.prometheus import prometheus_name
from otel_hakgal.conventions import Metric, SpanName, metric_def
from otel_hakgal.delivery import SIGNAL_LOGGER, DeliveryLog
from otel_hakgal.demo.api import create_app
from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
from otel_hakgal.demo.providers import Endpoints
from otel_hakgal.demo.simulator import LLMSimulator
from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from otel_hakgal.testing.outages import (
    APP_LOGGER,
    FAULTS,
    WarningCapture,
    apply_fault,
    is_export_logger,
    max_depths,
    queue_depths,
)
from otel_hakgal.testing.receiver import LoopbackServer

pytestmark = pytest.mark.slow

REQUESTS = 150
COMMAND = {"command": "ask Is Rome a city?"}
PROBE = SpanName.COMMAND.format(verb="status")  # the service only runs "ask": a probe span is unambiguous
SLOWEST_S = 2.0  # a request waiting on a 5 s receiver would take longer
LOG_CALL_LIMIT_S = 0.9  # below the exporter's first retry backoff (1 s)


@pytest.fixture(scope="module")
def service() -> Iterator[FlaskClient]:
    with LLMSimulator() as simulator:
        app = create_app(KAssistant.create(Endpoints.on(simulator.base_url), AssistantSettings()))
        yield app.test_client()


def ask(service: FlaskClient) -> float:
    started = time.perf_counter()
    response = service.post("/api/command", json=COMMAND)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.get_data(as_text=True)
    return elapsed


def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


def failed(log: DeliveryLog) -> bool:
    return bool(log.errors) or any(status >= 400 for status in log.statuses)


# --- push backends ------------------------------------------------------------------------


def _receiver(backend: str) -> LoopbackServer:
    return OtlpReceiver() if backend == "otlp" else SentryReceiver()


def _settings(backend: str, receiver: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"export.shutdown_timeout": 2.0}
    if backend == "otlp":
        settings |= {"otlp.endpoint": receiver.endpoint, "export.metric_interval": 0.25}
    else:
        settings[f"{backend}.dsn"] = receiver.dsn
    return settings


def _arrived(backend: str, receiver: Any, name: str) -> bool:
    if backend == "otlp":
        return any(span.name == name for span in receiver.spans())
    if backend == "sentry":
        return any(t.get("transaction") == name for t in receiver.transactions())
    return any(span.name == name for span in receiver.otlp_spans())


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("backend", ["otlp", "sentry", "sentry-otlp"])
def test_push_backend_outage_and_recovery(service: FlaskClient, backend: str, fault: str) -> None:
    receiver: Any = _receiver(backend)
    with receiver, WarningCapture() as warnings:
        handle = hg.setup(backends=[backend], settings=_settings(backend, receiver))
        delivery = handle.backend(backend).delivery
        try:
            ask(service)  # healthy first: the backend really delivers to this receiver
            handle.force_flush(5)
            until(lambda: delivery.ok, 10, f"a delivered send while healthy ({delivery.describe()})")
            log_limits.reset()
            warnings.clear()
            sent_before = receiver.request_count

            apply_fault(receiver, fault)
            samples = []
            slowest = 0.0
            for index in range(REQUESTS):
                slowest = max(slowest, ask(service))
                if index % 10 == 0:
                    samples.append(queue_depths(handle))
            # The fault really hit the exporter: a failed send, or one held by the delayed receiver.
            if fault == "delay-5s":
                until(lambda: receiver.request_count > sent_before, 10, "a send reached the delayed receiver")
            else:
                until(lambda: failed(delivery), 15, f"a failed send ({delivery.describe()})")
            samples.append(queue_depths(handle))

            assert slowest < SLOWEST_S, f"a request took {slowest:.2f} s: it waited for the receiver"
            worst = max_depths(samples)
            assert worst, "no export queue found to check"
            assert all(depth <= cap for depth, cap in worst.values()), worst
            assert warnings.export_warnings <= 1, warnings.records
            assert all(count <= 1 for count in warnings.by_logger().values()), warnings.records

            receiver.heal()
            handle.force_flush(10)  # the backlog first: a full queue drops new work, by design
            if fault == "http-429":
                time.sleep(1.1)  # the Retry-After the receiver sent: Sentry drops, not queues, until then
            receiver.clear()
            with hg.command("status"):
                pass
            handle.force_flush(10)
            until(lambda: _arrived(backend, receiver, PROBE), 20, f"{PROBE!r} at the receiver after recovery")
            if backend == "otlp":
                receiver.clear()
                receiver.wait_for_metric(Metric.COMMAND_DURATION, timeout_s=15)
        finally:
            handle.shutdown(timeout_s=2)


@pytest.mark.parametrize("fault", FAULTS)
def test_app_log_calls_are_not_held_by_an_otlp_outage_and_export_errors_are_not_exported(fault: str) -> None:
    app = logging.getLogger(APP_LOGGER)
    receiver = OtlpReceiver()
    with receiver, WarningCapture(ignore=(APP_LOGGER,)) as warnings:
        settings = _settings("otlp", receiver) | {"otlp.metrics": False}
        handle = hg.setup(backends=["otlp"], settings=settings)
        log_delivery = handle.backend("otlp").log_delivery
        try:
            with hg.command("status"):
                app.warning("healthy")
            handle.force_flush(5)
            until(lambda: log_delivery.ok, 10, f"a delivered log export while healthy ({log_delivery.describe()})")
            log_limits.reset()
            warnings.clear()
            sent_before = receiver.request_count

            apply_fault(receiver, fault)
            slowest = 0.0
            samples = []
            for index in range(REQUESTS):
                with hg.command("status"):
                    started = time.perf_counter()
                    app.warning("during the outage: %d", index)
                    slowest = max(slowest, time.perf_counter() - started)
                if index % 10 == 0:
                    samples.append(queue_depths(handle))
                    time.sleep(0.05)  # spread over a few batch intervals, within logs.max_per_second
            handle.force_flush(1)  # hand the queued records to the exporter (it fails, or waits)
            if fault == "delay-5s":
                until(lambda: receiver.request_count > sent_before, 10, "a send reached the delayed receiver")
            else:
                until(lambda: failed(log_delivery), 15, f"a failed log export ({log_delivery.describe()})")
            samples.append(queue_depths(handle))

            # A call that waited would take the receiver's 5 s, or the exporter's retry backoff (1 s and up);
            # a shared CI machine may pause any call for a tenth of a second.
            assert slowest < LOG_CALL_LIMIT_S, f"a log call took {slowest:.3f} s: it waited for the receiver"
            log_queue = {name: depth for name, depth in max_depths(samples).items() if "log" in name}
            assert log_queue and all(depth <= cap for depth, cap in log_queue.values()), log_queue
            assert warnings.export_warnings <= 1, warnings.records
            assert all(count <= 1 for count in warnings.by_logger().values()), warnings.records

            receiver.heal()
            handle.force_flush(10)  # the backlog: the app's lines, and nothing the failed exports logged
            with hg.command("status"):
                app.warning("after the outage")
            handle.force_flush(10)
            until(lambda: any(r.body == "after the outage" for r in receiver.logs()), 20, "a log record after recovery")
        finally:
            handle.shutdown(timeout_s=2)
    exported_errors = [(r.scope, r.body) for r in receiver.logs() if is_export_logger(r.scope)]
    assert exported_errors == [], exported_errors


# --- a receiver that does not take a signal (a traces-only consumer answers 405 on /v1/metrics) ----------

INTERVAL_S = 0.2  # the metric export interval; each phase below spans several


def _received(receiver: OtlpReceiver) -> dict[str, int]:
    """Items received so far, per signal: spans, points of one metric, the app's log records."""
    return {
        "traces": len(receiver.spans()),
        "metrics": len(receiver.metric_points(Metric.COMMAND_DURATION)),
        "logs": len([record for record in receiver.logs() if record.scope == APP_LOGGER]),
    }


def _traffic(seconds: float) -> None:
    app = logging.getLogger(APP_LOGGER)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with hg.command("status"):
            app.warning("a line of the app")
        time.sleep(0.05)


@pytest.mark.parametrize(("signal", "status"), [("metrics", 405), ("traces", 405), ("logs", 404)])
def test_a_signal_the_otlp_receiver_refuses_is_warned_about_once_and_stops_while_the_others_go_on(
    signal: str, status: int
) -> None:
    receiver = OtlpReceiver()
    receiver.refuse(signal, status)
    settings = {
        "otlp.endpoint": receiver.endpoint,
        "export.metric_interval": INTERVAL_S,
        "batch.schedule_delay": 0.1,
        "export.shutdown_timeout": 2.0,
    }
    others = [other for other in ("traces", "metrics", "logs") if other != signal]
    with receiver, WarningCapture(ignore=(APP_LOGGER,)) as warnings:
        handle = hg.setup(backends=["otlp"], settings=settings)
        try:
            _traffic(5 * INTERVAL_S)
            handle.force_flush(5)
            middle = _received(receiver)
            _traffic(10 * INTERVAL_S)  # ten more metric intervals, fifty more span batches
            handle.force_flush(5)
            end = _received(receiver)
            stats = handle.stats()["otlp"]
        finally:
            handle.shutdown(timeout_s=2)

        # Sent once, refused, then never again: no ERROR per export, one warning that says what to do.
        assert len(receiver.headers_for(signal)) == 1 and end[signal] == 0
        assert all(end[other] > middle[other] > 0 for other in others), (middle, end)  # the others go on
        url = f"{receiver.endpoint}/v1/{signal}"
        [(logger, message)] = warnings.records
        assert logger == SIGNAL_LOGGER, warnings.records
        assert f"{url} answered HTTP {status}" in message and f"otlp.{signal} = false" in message, message
        assert set(stats.signals_off) == {signal}
        off = stats.signals_off[signal]
        assert (off.refused, off.status, off.url) == (True, status, url) and off.unsent > 0
        assert stats.sends[f"HTTP {status}"] == 1

        # A later setup() starts fresh: the signal is tried again (and refused and warned about again).
        handle = hg.setup(backends=["otlp"], settings=settings | {"export.metric_interval": INTERVAL_S * 2})
        try:
            _traffic(3 * INTERVAL_S)
            handle.force_flush(5)
        finally:
            handle.shutdown(timeout_s=2)
        assert len(receiver.headers_for(signal)) == 2
        assert [logger for logger, _ in warnings.records] == [SIGNAL_LOGGER, SIGNAL_LOGGER]


def test_suppressed_warnings_are_counted_in_the_next_one() -> None:
    now = [0.0]
    limiter = log_limits.RateLimitFilter(log_limits.WarningBudget(60.0, clock=lambda: now[0]))
    records = [_record("opentelemetry.sdk._shared_internal", "Queue full, dropping %s.", ("Span",)) for _ in range(3)]
    other = _record("otel_hakgal.delivery", "Sentry answered HTTP %s; its events are dropped", (500,))
    assert [limiter.filter(r) for r in [*records[:2], other]] == [True, False, False]  # one budget for all
    now[0] = 61.0
    assert limiter.filter(records[2])
    assert records[2].getMessage() == "Queue full, dropping Span. (2 similar suppressed)"
    assert limiter.budget.suppressed == 2
    assert limiter.filter(_record("opentelemetry.sdk._shared_internal", "fine", (), level=20))  # below WARNING


def test_a_warning_that_sentry_sdk_drops_does_not_spend_the_budget() -> None:
    # A fresh process, where setup() installs the limits before it imports sentry-sdk.
    script = """
import logging
import otel_hakgal as hg
from otel_hakgal import log_limits
from otel_hakgal.testing.outages import WarningCapture
hg.setup(backends=["sentry"], settings={"sentry.dsn": "http://0123456789abcdef0123456789abcdef@127.0.0.1:9/1"})
import sentry_sdk.utils  # imported by setup(); its logger drops every record unless debug is on
with WarningCapture() as capture:
    sentry_sdk.utils.logger.warning("Rate-limited via 429")  # what its transport logs on a 429
    logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").warning("Transient error 429")
print(capture.records, log_limits.suppressed())
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    exporter = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    assert run.stdout.strip() == f"[('{exporter}', 'Transient error 429')] 0", run.stdout + run.stderr


def test_urllib3_is_limited_only_on_telemetry_threads() -> None:
    limiter = log_limits.RateLimitFilter(log_limits.WarningBudget(60.0))
    mine = [_record("urllib3.connectionpool", "Retrying", (), thread="MainThread") for _ in range(3)]
    sentry = [_record("urllib3.connectionpool", "Retrying", (), thread="sentry-sdk.BackgroundWorker") for _ in range(3)]
    assert all(limiter.filter(r) for r in mine)  # the app's own HTTP warnings are not ours to mute
    assert [limiter.filter(r) for r in sentry] == [True, False, False]


def test_setup_installs_the_limits_once() -> None:
    handle = hg.setup(backends=["none"])
    handle.shutdown()
    hg.setup(backends=["none"], service_name="again").shutdown()
    for name in log_limits.LIMITED_LOGGERS:
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, log_limits.RateLimitFilter)]
        assert len(filters) == 1, name


def _record(name: str, msg: str, args: tuple[Any, ...], level: int = 30, thread: str = "OtelBatch") -> Any:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    record.threadName = thread
    return record


# --- prometheus: pulled, so its faults are the scraper's ------------------------------------


def _scrape(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


def _duration_series() -> str:
    definition = metric_def(Metric.COMMAND_DURATION)
    return prometheus_name(definition.name, definition.unit, definition.instrument) + "_count"


def test_prometheus_never_scraped_then_scraped(service: FlaskClient) -> None:
    """Prometheus down: nothing queues (cumulative state, bounded by cardinality); the next scrape has it all."""
    handle = hg.setup(backends=["prometheus"], settings={"prometheus.port": 0, "prometheus.process_metrics": False})
    try:
        with WarningCapture() as warnings:
            slowest = max(ask(service) for _ in range(REQUESTS))
        assert slowest < SLOWEST_S
        assert warnings.records == []
        body = _scrape(handle.backend("prometheus").url)
        assert _duration_series() in body
    finally:
        handle.shutdown(timeout_s=2)


def test_prometheus_stalled_scrapers_do_not_block_requests_or_other_scrapes(service: FlaskClient) -> None:
    handle = hg.setup(backends=["prometheus"], settings={"prometheus.port": 0, "prometheus.process_metrics": False})
    port = handle.backend("prometheus").port
    stalled: list[socket.socket] = []
    try:
        for _ in range(5):  # each sends half a request and then nothing, holding a server thread
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            stalled.append(connection)
        with WarningCapture() as warnings:
            slowest = max(ask(service) for _ in range(REQUESTS))
            started = time.monotonic()
            body = _scrape(handle.backend("prometheus").url)
            scrape_s = time.monotonic() - started
        assert slowest < SLOWEST_S
        assert scrape_s < 2.0 and _duration_series() in body
        assert warnings.records == []
    finally:
        for connection in stalled:
            connection.close()
        handle.shutdown(timeout_s=2)


def test_prometheus_port_taken_warns_once_and_the_service_runs(service: FlaskClient) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with WarningCapture() as warnings:
            handle = hg.setup(backends=["prometheus"], settings={"prometheus.port": port})
            try:
                slowest = max(ask(service) for _ in range(REQUESTS))
            finally:
                handle.shutdown(timeout_s=2)
    assert slowest < SLOWEST_S
    assert handle.backend("prometheus").url is None
    [(name, message)] = warnings.records
    assert name == "otel_hakgal" and f"cannot listen on 127.0.0.1:{port}" in message
