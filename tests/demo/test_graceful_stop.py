"""SIGTERM to ``python -m otel_hakgal.demo.api`` (issue 14, item 11): stop accepting, drain, then flush.

The service runs as a real process, exports OTLP to a loopback receiver, and
talks to an LLM simulator in this process that answers late, so requests are
in flight when the signal arrives. Batches leave only every minute: what the
receiver has came from the flush after the drain.
"""

from __future__ import annotations

import http.client
import signal
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_hakgal.demo.simulator import FaultKind, LLMSimulator
from otel_hakgal.testing import OtlpReceiver
from tests.support.processes import ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

IN_FLIGHT = 20
LLM_DELAY_S = 1.5  # each LLM call of an `ask`: the requests are still running when SIGTERM arrives
SERVER_KIND = 2


@dataclass
class Service:
    process: ServerProcess
    receiver: OtlpReceiver
    simulator: LLMSimulator

    @property
    def port(self) -> int:
        return self.process.port

    def asks_in_flight(self) -> int:
        """Distinct traces that reached the LLM: requests the service is working on."""
        return len({r.traceparent.split("-")[1] for r in self.simulator.requests("deepseek") if r.traceparent})

    def server_spans(self) -> list[object]:
        return [s for s in self.receiver.spans() if s.kind == SERVER_KIND]


def start_service(tmp_path: Path, receiver: OtlpReceiver, simulator: LLMSimulator, *args: str) -> ServerProcess:
    config = tmp_path / "otlp.toml"
    config.write_text(f'backends = ["otlp"]\n\n[otlp]\nendpoint = "{receiver.endpoint}"\nmetrics = false\n')
    port = free_port()
    env = clean_env(
        OTEL_HAKGAL_CONFIG=str(config),
        HAKGAL_LLM_BASE_URL=simulator.base_url,
        OTEL_BSP_SCHEDULE_DELAY="60000",  # nothing leaves before the exit-time flush
    )
    process = ServerProcess([sys.executable, "-m", "otel_hakgal.demo.api", "--port", str(port), *args], env, port)
    process.wait_ready()
    assert process.post_command("status")[0] == 200, process.output  # warm: the assistant is built
    return process


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with OtlpReceiver() as receiver, LLMSimulator() as simulator:
        simulator.inject("deepseek", FaultKind.LATENCY, times=None, delay_s=LLM_DELAY_S)
        process = start_service(tmp_path, receiver, simulator)
        try:
            yield Service(process, receiver, simulator)
        finally:
            process.stop()


def ask(port: int, number: int) -> tuple[int, bytes] | BaseException:
    """One `ask` on its own connection; the answer, or what went wrong (e.g. RemoteDisconnected)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = f'{{"command": "ask Is Testcity{number} a city?"}}'
        connection.request("POST", "/api/command", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return error
    finally:
        connection.close()


def send_in_flight(service: Service, pool: ThreadPoolExecutor) -> list[Future[tuple[int, bytes] | BaseException]]:
    futures = [pool.submit(ask, service.port, n) for n in range(IN_FLIGHT)]
    deadline = time.monotonic() + 20
    while service.asks_in_flight() < IN_FLIGHT:
        assert time.monotonic() < deadline, f"only {service.asks_in_flight()} requests reached the LLM"
        time.sleep(0.02)
    assert not any(f.done() for f in futures), "all of them are still running"
    return futures


def connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_answers_every_request_in_flight_and_delivers_their_spans(service: Service) -> None:
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        futures = send_in_flight(service, pool)
        service.process.signal(signal.SIGTERM)
        time.sleep(0.5)
        refused_while_draining = connection_refused(service.port)
        answers = [future.result(timeout=60) for future in futures]
        output = service.process.finish(timeout_s=30)

    assert service.process.process.returncode == 0, output[-3000:]
    assert refused_while_draining, "no new connections once SIGTERM arrived"
    assert [a if isinstance(a, BaseException) else a[0] for a in answers] == [200] * IN_FLIGHT
    assert all(b'"status":"success"' in a[1] for a in answers if not isinstance(a, BaseException))
    # Every answered request's spans were flushed after the drain: the warm-up `status` and the 20 asks.
    assert len(service.server_spans()) == IN_FLIGHT + 1, output[-3000:]
    commands = [s for s in service.receiver.spans() if s.name == "hakgal.command ask"]
    assert len(commands) == IN_FLIGHT
    assert "Traceback" not in output, output[-3000:]


def test_idle_and_half_sent_connections_do_not_hold_up_the_stop(service: Service) -> None:
    idle = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(3)]
    half = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(3)]
    for sock in half:
        sock.sendall(b"POST /api/comm")  # half a request line, then nothing
    time.sleep(0.3)  # accepted: each holds a handler thread
    try:
        stopped_at = time.monotonic()
        service.process.signal(signal.SIGTERM)
        output = service.process.finish(timeout_s=30)
        took = time.monotonic() - stopped_at
    finally:
        for sock in idle + half:
            sock.close()
    assert service.process.process.returncode == 0, output[-3000:]
    assert took < 5, f"the drain waited {took:.1f} s for connections that sent no request"
    assert len(service.server_spans()) == 1  # the warm-up request's, flushed at exit


def test_the_drain_is_bounded_by_drain_timeout(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver, LLMSimulator() as simulator:
        simulator.inject("deepseek", FaultKind.LATENCY, times=None, delay_s=20.0)  # longer than any drain
        process = start_service(tmp_path, receiver, simulator, "--drain-timeout", "1")
        service = Service(process, receiver, simulator)
        try:
            with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
                futures = send_in_flight(service, pool)
                stopped_at = time.monotonic()
                process.signal(signal.SIGTERM)
                output = process.finish(timeout_s=30)
                took = time.monotonic() - stopped_at
                answers = [future.result(timeout=60) for future in futures]
        finally:
            process.stop()
    assert process.process.returncode == 0, output[-3000:]
    assert 1 <= took < 6, took  # the drain's second, then the flush
    assert f"stopped with {IN_FLIGHT} requests unanswered" in output
    assert all(isinstance(a, BaseException) for a in answers), "cut off when the process ended"
    assert len(service.server_spans()) == 1, "the answered warm-up request's span still arrived"
