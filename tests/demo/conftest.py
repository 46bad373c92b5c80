"""Fixtures for the reference service: a real simulator, a real assistant, a real HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from werkzeug.serving import make_server

from otel_hakgal.demo.api import create_app
from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
from otel_hakgal.demo.providers import Endpoints
from otel_hakgal.demo.simulator import LLMSimulator
from otel_hakgal.testing import TelemetryRecorder

# Short timeouts keep the failure paths fast; the code paths are the same as with the defaults.
FAST_SETTINGS = AssistantSettings(z3_timeout_s=0.3, provider_timeout_s=1.0, oracle_timeout_s=1.0)


@pytest.fixture
def simulator() -> Iterator[LLMSimulator]:
    with LLMSimulator() as sim:
        yield sim


@pytest.fixture
def assistant(hakgal_telemetry: TelemetryRecorder, simulator: LLMSimulator) -> KAssistant:
    return KAssistant.create(Endpoints.on(simulator.base_url), FAST_SETTINGS)


def serve(app: object) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app on a free loopback port in a thread; returns (base URL, stop)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_port}", stop


@pytest.fixture
def api_url(assistant: KAssistant) -> Iterator[str]:
    """The API over real HTTP around ``assistant``."""
    base_url, stop = serve(create_app(assistant))
    yield base_url
    stop()


def wait_for(recorder: TelemetryRecorder, check: Callable[[list[ReadableSpan]], bool], timeout_s: float = 5.0) -> None:
    """Server spans end just after the client has its answer: wait until ``check`` holds."""
    deadline = time.monotonic() + timeout_s
    while not check(recorder.spans()):
        assert time.monotonic() < deadline, f"spans never matched; have {sorted(s.name for s in recorder.spans())}"
        time.sleep(0.01)
