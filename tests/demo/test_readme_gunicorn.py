"""The README's gunicorn command keeps answering while clients hold half-sent requests (issue 14, item 13).

With ``gunicorn -w 2`` (sync workers) four idle partial connections took
both workers: nothing was answered until gunicorn's 30 s worker timeout.
The command is read from the README itself, so the two cannot drift; it only
gets a bind to a free port. The old command is run too, as the control that
shows the check can fail.
"""

from __future__ import annotations

import re
import shlex
import socket
import time
import urllib.error
from collections.abc import Iterator

import pytest

from otel_hakgal.testing import OtlpReceiver
from tests.support.processes import ROOT, VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

PARTIAL_CONNECTIONS = 4
ANSWER_WITHIN_S = 2.0
OLD_COMMAND = (
    "OTEL_HAKGAL_CONFIG=configs/otlp.toml .venv/bin/opentelemetry-instrument gunicorn -w 2 otel_hakgal.demo.api:app"
)
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def readme_gunicorn_command() -> str:
    """The one shell line of the README that starts gunicorn."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if re.search(r"\bgunicorn -", line)]
    assert len(lines) == 1, lines
    return lines[0].strip()


def argv_and_env(command: str, port: int) -> tuple[list[str], dict[str, str]]:
    """``VAR=value ... program args`` -> argv with a bind to ``port`` before the app, and the variables."""
    words = shlex.split(command)
    assignments = [w for w in words if _ASSIGNMENT.match(w)]
    argv = words[len(assignments) :]
    assert words[: len(assignments)] == assignments, "variables come first"
    if argv[0].startswith(".venv/bin/"):
        argv[0] = str(VENV_BIN / argv[0].removeprefix(".venv/bin/"))
    argv[-1:-1] = ["--bind", f"127.0.0.1:{port}"]
    return argv, dict(a.split("=", 1) for a in assignments)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


def answers_despite_partial_connections(command: str, receiver: OtlpReceiver) -> tuple[bool, float]:
    """Start ``command``, hold PARTIAL_CONNECTIONS half-sent requests, then ask: (answered in time, seconds)."""
    port = free_port()
    argv, variables = argv_and_env(command, port)
    env = clean_env(**variables, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    server = ServerProcess(argv, env, port)
    partials: list[socket.socket] = []
    try:
        server.wait_ready()
        assert server.post_command("status")[0] == 200, server.output  # both workers have their assistant
        for _ in range(PARTIAL_CONNECTIONS):
            partials.append(socket.create_connection(("127.0.0.1", port)))
            partials[-1].sendall(b"POST /api/command HTT")  # half a request line, then silence
        time.sleep(0.5)  # the workers have picked them up
        started = time.monotonic()
        try:
            status, body = server.post_command("status", timeout_s=ANSWER_WITHIN_S)
        except (TimeoutError, urllib.error.URLError):
            return False, time.monotonic() - started
        assert status == 200 and body["status"] == "success", body
        return True, time.monotonic() - started
    finally:
        for partial in partials:  # first: a sync worker blocked on one would delay the stop
            partial.close()
        server.stop()


def test_the_readme_gunicorn_command_answers_while_four_requests_are_half_sent(receiver: OtlpReceiver) -> None:
    command = readme_gunicorn_command()
    assert command != OLD_COMMAND

    answered, seconds = answers_despite_partial_connections(command, receiver)

    assert answered, f"{command!r} did not answer within {ANSWER_WITHIN_S} s"
    assert seconds < ANSWER_WITHIN_S
    deadline = time.monotonic() + 10
    while len([s for s in receiver.spans() if s.name == "hakgal.command status"]) < 2:
        assert time.monotonic() < deadline, "the telemetry of both requests arrives, under the launcher"
        time.sleep(0.05)


def test_the_old_command_stalls_the_control(receiver: OtlpReceiver) -> None:
    answered, _ = answers_despite_partial_connections(OLD_COMMAND, receiver)
    assert not answered, "sync workers wait on half-sent requests: the check above can fail"
