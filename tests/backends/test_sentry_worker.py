"""The Sentry backend's background worker: order, bounded queue, drain, stop and fork."""

from __future__ import annotations

import os
import threading

import pytest

from otel_hakgal.backends.sentry.worker import FifoWorker


def test_runs_work_off_the_caller_thread_in_submission_order() -> None:
    worker = FifoWorker(delay_s=0.0)
    seen: list[tuple[int, str]] = []
    for i in range(200):
        assert worker.submit(lambda i=i: seen.append((i, threading.current_thread().name)))  # type: ignore[misc]
    assert worker.drain(5.0)
    assert [i for i, _ in seen] == list(range(200))
    assert {name for _, name in seen} == {worker.name}
    worker.stop(5.0)


def test_full_queue_drops_and_counts_without_blocking() -> None:
    worker = FifoWorker(max_queue_size=2, delay_s=0.0)
    release = threading.Event()
    ran: list[int] = []

    def blocked() -> None:
        release.wait(5.0)
        ran.append(0)

    assert worker.submit(blocked)
    assert worker.submit(lambda: ran.append(1))
    assert not worker.submit(lambda: ran.append(2))  # full: dropped at once
    assert worker.dropped == 1
    release.set()
    assert worker.drain(5.0)
    assert ran == [0, 1]
    worker.stop(5.0)


def test_a_failing_item_does_not_stop_the_worker() -> None:
    worker = FifoWorker(delay_s=0.0)
    ran: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    worker.submit(fail)
    worker.submit(lambda: ran.append(1))
    assert worker.drain(5.0) and ran == [1]
    worker.stop(5.0)


def test_after_stop_work_runs_inline() -> None:
    worker = FifoWorker()
    worker.stop(5.0)
    ran: list[str] = []
    worker.submit(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_running_worker() -> None:
    worker = FifoWorker(delay_s=0.0)
    worker.submit(lambda: None)
    assert worker.drain(5.0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's thread is gone; a new one must start and drain
        try:
            done: list[int] = []
            worker.submit(lambda: done.append(1))
            ok = worker.drain(5.0) and done == [1]
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0
    os.close(read)
    worker.stop(5.0)
