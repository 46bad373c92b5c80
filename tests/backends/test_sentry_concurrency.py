"""Sending several envelopes at once: delivery no longer bound by the round trip, still bounded, rate limits kept.

Sentry takes one transaction per request, and sentry-sdk's transport sends one request at a time: with a
100 ms round trip it delivered about 10 transactions a second. The layer's transport sends up to
``sentry.max_concurrent_requests`` at once over kept-alive connections, with sentry-sdk's own rate-limit and
client-report handling. Real sentry-sdk over HTTP to a loopback receiver that answers after 100 ms.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from opentelemetry import trace

import otel_hakgal as hg
from otel_hakgal.backends.sentry import _compat
from otel_hakgal.backends.sentry.worker import DEFAULT_SENDERS, SenderPool
from otel_hakgal.testing import SentryReceiver
from tests.backends.test_sentry import dsn

ROUND_TRIP_S = 0.1


class CountingReceiver(SentryReceiver):
    """A :class:`SentryReceiver` that counts the requests it holds at once and the connections opened to it."""

    def __init__(self) -> None:
        self._counts = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.connections = 0
        self.rate_limits: str | None = None  # an X-Sentry-Rate-Limits header for fault answers
        super().__init__()

    def _fault(self) -> int | None:  # runs in the handler, around the delay: one per request being answered
        with self._counts:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return super()._fault()
        finally:
            with self._counts:
                self.in_flight -= 1

    def _fault_headers(self, status: int) -> dict[str, str]:
        headers = super()._fault_headers(status)
        if self.rate_limits is not None:
            headers["X-Sentry-Rate-Limits"] = self.rate_limits
        return headers

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        base: Any = super()._handler_class()
        receiver = self

        class Counting(base):  # type: ignore[misc, valid-type]
            def setup(self) -> None:
                super().setup()
                with receiver._counts:
                    receiver.connections += 1

        return Counting

    def trace_ids(self) -> collections.Counter[str]:
        return collections.Counter(t["contexts"]["trace"]["trace_id"] for t in self.transactions())

    def discarded(self, reason: str, category: str) -> int:
        return sum(
            entry["quantity"]
            for item in self.items("client_report")
            for entry in (item.json or {}).get("discarded_events", [])
            if entry["reason"] == reason and entry["category"] == category
        )


@pytest.fixture
def receiver() -> Iterator[CountingReceiver]:
    with CountingReceiver() as counting:
        yield counting


def _trace() -> str:
    """One trace of the reference service's shape (command, query, prover); its trace id."""
    with hg.command("ask", text="Is Socrates mortal?"), hg.query("Is Socrates mortal?") as query:
        with hg.prover("z3") as prover:
            prover.set_result("proved")
        query.set_answer("yes")
        return f"{trace.get_current_span().get_span_context().trace_id:032x}"


def _produce(rate: float, seconds: float) -> list[str]:
    """``rate`` traces a second for ``seconds``, paced; their trace ids."""
    ids = []
    start = time.monotonic()
    for index in range(int(rate * seconds)):
        pause = start + index / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        ids.append(_trace())
    return ids


def _setup(receiver: SentryReceiver, **settings: Any) -> hg.Handle:
    return hg.setup(backends=["sentry"], settings={"sentry.dsn": dsn(receiver), **settings})


@pytest.mark.slow
def test_every_trace_arrives_once_through_a_100ms_round_trip(receiver: CountingReceiver) -> None:
    receiver.fail(None, delay_s=ROUND_TRIP_S)
    handle = _setup(receiver)
    try:
        produced = _produce(100, 4.0)  # before: about 10 a second arrived, the rest was lost at exit
        flushed_at = time.monotonic()
        assert handle.force_flush(10)
        flush_s = time.monotonic() - flushed_at
    finally:
        handle.shutdown()

    arrived = receiver.trace_ids()
    assert set(arrived) == set(produced) and len(produced) == 400
    assert max(arrived.values()) == 1, "a transaction arrived twice"
    assert flush_s < 3.0, f"flush took {flush_s:.1f} s: the senders fell behind"
    assert 1 < receiver.most_in_flight <= DEFAULT_SENDERS
    # Kept alive: a connection per sender, not per request.
    assert receiver.connections <= DEFAULT_SENDERS < receiver.request_count


@pytest.mark.slow
def test_at_most_the_configured_requests_are_in_flight(receiver: CountingReceiver) -> None:
    receiver.fail(None, delay_s=ROUND_TRIP_S)
    handle = _setup(receiver, **{"sentry.max_concurrent_requests": 4})
    try:
        produced = [_trace() for _ in range(60)]  # a burst: far more than 4 waiting at once
        assert handle.force_flush(10)
    finally:
        handle.shutdown()
    assert set(receiver.trace_ids()) == set(produced)
    assert receiver.most_in_flight == 4
    assert receiver.connections <= 4


@pytest.mark.slow
def test_a_429_with_retry_after_stops_every_sender_for_its_window_and_is_reported(
    receiver: CountingReceiver,
) -> None:
    receiver.retry_after = "3"
    receiver.fail(429, delay_s=ROUND_TRIP_S)
    handle = _setup(receiver)
    try:
        produced = [_trace() for _ in range(100)]
        _sent(handle)
        last_answer = time.monotonic()  # every 429 came back: Retry-After counts from the last one
        answered_429 = receiver.request_count
        # Only the wave already in flight when the first 429 came back reached the receiver.
        assert 1 <= answered_429 <= DEFAULT_SENDERS
        more = [_trace() for _ in range(20)]  # still within Retry-After: dropped without a request
        _sent(handle)
        assert receiver.request_count == answered_429
        assert time.monotonic() - last_answer < 3.0, "too slow to check within the window"

        receiver.heal()
        time.sleep(max(0.0, last_answer + 3.2 - time.monotonic()))
        after = _trace()
        assert handle.force_flush(10)
    finally:
        handle.shutdown()

    assert list(receiver.trace_ids()) == [after]
    # Every transaction not sent is in the client report sent after the window, as sentry-sdk's transport
    # records it. (A flush within the window would send the report then, and the 429 would drop it: so
    # does sentry-sdk's own transport.)
    assert receiver.discarded("ratelimit_backoff", "transaction") == len(produced) + len(more) - answered_429


def _sent(handle: hg.Handle) -> None:
    """Wait until every ended trace went through the transport, without a flush (which sends client reports)."""
    backend: Any = handle.backend("sentry")
    assert backend.processor.worker.drain(10)
    backend.client.client.transport._worker.flush(10)


@pytest.mark.slow
def test_x_sentry_rate_limits_stops_only_its_category(receiver: CountingReceiver) -> None:
    receiver.rate_limits = "60:transaction"
    receiver.fail(429)
    handle = _setup(receiver)
    try:
        _trace()
        assert handle.force_flush(10)
        receiver.heal()
        receiver.clear()
        requests = receiver.request_count
        [_trace() for _ in range(10)]
        hg.capture_message("errors still go")
        assert handle.force_flush(10)
        receiver.wait_for("event")
    finally:
        handle.shutdown()
    assert receiver.transactions() == []
    assert receiver.request_count - requests >= 1
    assert receiver.discarded("ratelimit_backoff", "transaction") == 10


@pytest.mark.slow
def test_shutdown_with_a_slow_receiver_returns_within_its_timeout(receiver: CountingReceiver) -> None:
    receiver.fail(None, delay_s=30.0)
    handle = _setup(receiver, **{"export.shutdown_timeout": 2.0})
    [_trace() for _ in range(200)]
    time.sleep(0.3)  # the senders are all waiting on the receiver
    started = time.monotonic()
    handle.shutdown(timeout_s=2.0)
    took = time.monotonic() - started
    receiver.heal()
    assert took < 2.0 + 1.0, f"shutdown took {took:.1f} s"
    assert receiver.most_in_flight <= DEFAULT_SENDERS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_over_its_own_connections(receiver: CountingReceiver) -> None:
    handle = _setup(receiver)
    try:
        _trace()
        assert handle.force_flush(10)  # the parent now holds a kept-alive connection and running senders
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                trace_id = _trace()
                ok = handle.force_flush(10)
                os.write(write, (trace_id if ok else "").encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        child_trace = os.read(read, 64).decode()
        os.close(read)
        parent_trace = _trace()
        assert handle.force_flush(10)
    finally:
        handle.shutdown()
    assert child_trace
    arrived = receiver.trace_ids()
    assert arrived[child_trace] == 1 and arrived[parent_trace] == 1 and len(arrived) == 3


# --- the pool of senders --------------------------------------------------------------------


def test_the_pool_runs_at_most_its_senders_at_once_and_flush_waits_for_them() -> None:
    pool = SenderPool(queue_size=100, senders=3)
    lock = threading.Lock()
    running = [0, 0]  # now, most
    done: list[int] = []

    def send(index: int) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
            done.append(index)

    for index in range(12):
        assert pool.submit(lambda index=index: send(index))  # type: ignore[misc]
    pool.flush(5.0)
    assert sorted(done) == list(range(12)) and running[1] == 3
    assert pool.depth() == (0, 100) and pool.in_flight == 0
    pool.kill()


def test_a_full_pool_refuses_without_waiting_and_a_killed_one_works_again() -> None:
    pool = SenderPool(queue_size=2, senders=1)
    release = threading.Event()
    assert pool.submit(lambda: release.wait(5.0))
    deadline = time.monotonic() + 5.0
    while pool.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.submit(lambda: None) and pool.submit(lambda: None)
    started = time.monotonic()
    assert not pool.submit(lambda: None) and pool.full()
    assert time.monotonic() - started < 0.1
    release.set()
    pool.flush(5.0)
    pool.kill()
    ran: list[int] = []
    assert pool.submit(lambda: ran.append(1))
    pool.flush(5.0)
    assert ran == [1]
    pool.kill()


def test_flush_gives_up_at_its_timeout() -> None:
    pool = SenderPool(queue_size=10, senders=2)
    release = threading.Event()
    pending: list[int] = []
    for _ in range(3):
        pool.submit(lambda: release.wait(5.0))
    started = time.monotonic()
    pool.flush(0.3, lambda count, _timeout: pending.append(count))
    assert 0.25 < time.monotonic() - started < 1.0
    assert pending == [3]
    release.set()
    pool.flush(5.0)
    pool.kill()


def test_client_reports_lose_nothing_to_concurrent_senders(receiver: CountingReceiver) -> None:
    handle = _setup(receiver)
    try:
        client = handle.backend("sentry").client
        assert client is not None
        transport = client.client.transport
        assert isinstance(transport, _compat.HookedHttpTransport)
        assert isinstance(transport._worker, SenderPool) and transport._worker.senders == DEFAULT_SENDERS
        fetched: list[Any] = []
        stop = threading.Event()

        def fetch() -> None:
            while not stop.is_set():
                report = transport._fetch_pending_client_report(force=True)
                if report is not None:
                    fetched.append(report)

        def record() -> None:
            for _ in range(5000):
                transport.record_lost_event("network_error", data_category="error")

        fetcher = threading.Thread(target=fetch)
        fetcher.start()
        recorders = [threading.Thread(target=record) for _ in range(4)]
        for thread in recorders:
            thread.start()
        for thread in recorders:
            thread.join()
        stop.set()
        fetcher.join()
        last = transport._fetch_pending_client_report(force=True)
    finally:
        handle.shutdown()
    reports = [*fetched, *([last] if last is not None else [])]
    total = sum(entry["quantity"] for report in reports for entry in report.payload.json["discarded_events"])
    assert total == 4 * 5000
