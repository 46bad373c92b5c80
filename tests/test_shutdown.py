"""SIGTERM to the reference service, for every backend and the fan-out, in each way of running it.

Ways of running: gunicorn with two forked workers under the ``opentelemetry-instrument``
launcher (zero code), and ``python -m otel_hakgal.demo.api``, which calls ``setup()``
itself. (``flask run`` and ``python -m`` under the launcher are covered for OTLP in
``test_launcher.py``.) Healthy backends: every finished span is delivered after SIGTERM,
with batch delays so long that nothing left before it. Backends that answer only after
30 s: the process still ends within ``export.shutdown_timeout`` plus a margin.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_hakgal.conventions import SpanName
from otel_hakgal.testing import OtlpReceiver, SentryReceiver, jsonl_spans
from tests.support.processes import VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

APP = "otel_hakgal.demo.api"
REQUESTS = 6
SPANS_PER_REQUEST = 2  # the server span and the command span of `status`
SHUTDOWN_TIMEOUT_S = 2.0
EXIT_MARGIN_S = 8.0
# gunicorn exits 0; a plain process exits as SIGTERM's default would report it (128 + 15), after flushing.
EXIT_CODES = (0, 128 + signal.SIGTERM)  # process start-up of the flush thread, gunicorn's own shutdown


def _argv(form: str, port: int) -> list[str]:
    if form == "gunicorn under the launcher":
        gunicorn = [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", f"{APP}:app"]
        return [str(VENV_BIN / "opentelemetry-instrument"), *gunicorn]
    return [sys.executable, "-m", APP, "--port", str(port)]  # setup() in code


FORMS = ("gunicorn under the launcher", "setup() in code")


@dataclass
class Backends:
    """The config for one backend set, and how to count the spans that reached it."""

    config: str
    delivered: dict[str, Callable[[], int]]
    make_slow: Callable[[], None]


@pytest.fixture
def receivers() -> Iterator[tuple[OtlpReceiver, SentryReceiver]]:
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        yield otlp, sentry


def _sentry_spans(receiver: SentryReceiver) -> int:
    return sum(1 + len(t.get("spans") or []) for t in receiver.transactions()) + len(receiver.streamed_spans())


def _backends(name: str, otlp: OtlpReceiver, sentry: SentryReceiver, tmp_path: Path) -> Backends:
    jsonl = tmp_path / "spans.jsonl"
    sections = {
        "otlp": f'[otlp]\nendpoint = "{otlp.endpoint}"\nmetrics = false\n',
        "sentry": f'[sentry]\ndsn = "{sentry.dsn}"\ntraces_sample_rate = 1.0\n',
        "sentry-otlp": f'[sentry-otlp]\ndsn = "{sentry.dsn}"\n',
        "jsonl": f'[jsonl]\npath = "{jsonl}"\n',
        "prometheus": f"[prometheus]\nport = {free_port()}\n",
    }
    counters: dict[str, Callable[[], int]] = {
        "otlp": lambda: len(otlp.spans()),
        "sentry": lambda: _sentry_spans(sentry),
        "sentry-otlp": lambda: len(sentry.otlp_spans()),
        "jsonl": lambda: len(jsonl_spans(jsonl)) if jsonl.exists() else 0,
    }
    names = name.split("+")
    config = (
        f"backends = {names!r}\n".replace("'", '"')
        + f"[export]\nshutdown_timeout = {SHUTDOWN_TIMEOUT_S}\nmetric_interval = 60.0\n"
        + "".join(sections[n] for n in names)
    )

    def make_slow() -> None:
        otlp.fail(delay_s=30.0)
        sentry.fail(delay_s=30.0)

    return Backends(config, {n: counters[n] for n in names if n in counters}, make_slow)


def _run(form: str, backends: Backends, tmp_path: Path) -> tuple[float, str, int]:
    """Serve REQUESTS commands, SIGTERM, wait for the exit: (seconds from SIGTERM to exit, output, code)."""
    config = tmp_path / "backends.toml"
    config.write_text(backends.config)
    port = free_port()
    # Batches only every minute: what arrives after SIGTERM came from the exit-time flush.
    env = clean_env(OTEL_HAKGAL_CONFIG=str(config), HAKGAL_PORT=str(port), OTEL_BSP_SCHEDULE_DELAY="60000")
    server = ServerProcess(_argv(form, port), env, port)
    try:
        server.wait_ready()
        for _ in range(REQUESTS):
            assert server.post_command("status")[0] == 200
        time.sleep(0.3)  # the server spans end after the answer was sent
        stopped_at = time.monotonic()
        server.signal()
        output = server.finish(timeout_s=60)
        return time.monotonic() - stopped_at, output, server.process.returncode
    finally:
        server.stop()


HEALTHY = ("otlp", "sentry", "sentry-otlp", "jsonl", "prometheus", "sentry+otlp", "sentry-otlp+jsonl")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend_set", HEALTHY)
def test_sigterm_delivers_every_finished_span(
    form: str, backend_set: str, receivers: tuple[OtlpReceiver, SentryReceiver], tmp_path: Path
) -> None:
    backends = _backends(backend_set, *receivers, tmp_path)
    _, output, code = _run(form, backends, tmp_path)
    assert code in EXIT_CODES, output
    expected = REQUESTS * SPANS_PER_REQUEST
    deadline = time.monotonic() + 5
    while any(count() < expected for count in backends.delivered.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    delivered = {name: count() for name, count in backends.delivered.items()}
    assert delivered == dict.fromkeys(backends.delivered, expected), output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend_set", ["otlp", "sentry", "sentry-otlp", "sentry+otlp"])
def test_sigterm_ends_within_the_flush_timeout_when_backends_hang(
    form: str, backend_set: str, receivers: tuple[OtlpReceiver, SentryReceiver], tmp_path: Path
) -> None:
    backends = _backends(backend_set, *receivers, tmp_path)
    backends.make_slow()
    try:
        seconds, output, code = _run(form, backends, tmp_path)
    finally:
        for receiver in receivers:
            receiver.heal()
    assert seconds < SHUTDOWN_TIMEOUT_S + EXIT_MARGIN_S, output[-3000:]
    assert code in EXIT_CODES, output[-3000:]


def test_span_names_used_here_are_the_conventions() -> None:
    assert SpanName.COMMAND.format(verb="status") == "hakgal.command status"
