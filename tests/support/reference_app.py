"""The reference service on a loopback port, with the LLM simulator, served from a thread of the test process."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from werkzeug.serving import make_server

from otel_hakgal.demo.api import create_app
from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
from otel_hakgal.demo.providers import Endpoints
from otel_hakgal.demo.simulator import LLMSimulator
from tests.support.processes import ROOT, clean_env


@contextmanager
def serve_reference_app(z3_timeout_s: float) -> Iterator[str]:
    """Serve the reference app (threaded) until the block ends; yields its base URL."""
    with LLMSimulator() as simulator:
        assistant = KAssistant.create(Endpoints.on(simulator.base_url), AssistantSettings(z3_timeout_s=z3_timeout_s))
        server = make_server("127.0.0.1", 0, create_app(assistant), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()


def run_demo_against_sentry(dsn: str) -> None:
    """``otel-hakgal demo --config configs/sentry.toml`` in a subprocess, sending to ``dsn``; fails if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "otel_hakgal.cli", "demo", "--config", "configs/sentry.toml"],
        env=clean_env(SENTRY_DSN=dsn),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
