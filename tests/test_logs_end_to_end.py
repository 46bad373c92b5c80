"""Log records end to end: the reference service under the real `opentelemetry-instrument` launcher logs a
warning while serving a request, and a loopback collector receives it at `/v1/logs` in that request's trace."""

from __future__ import annotations

import sys

import pytest

from otel_hakgal.testing import OtlpReceiver
from tests.support.processes import VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

SERVER_KIND = 2
COMMANDS_LOGGER = "otel_hakgal.demo.commands"


def test_a_failed_commands_warning_reaches_v1_logs_in_the_trace_of_its_request(otlp_receiver: OtlpReceiver) -> None:
    port = free_port()
    argv = [
        str(VENV_BIN / "opentelemetry-instrument"),
        sys.executable,
        "-m",
        "otel_hakgal.demo.api",
        "--port",
        str(port),
    ]
    env = clean_env(
        OTEL_HAKGAL_BACKENDS="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
        OTEL_SERVICE_NAME="hak-gal-logs-e2e",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
    )
    server = ServerProcess(argv, env, port)
    try:
        server.wait_ready()
        status, _ = server.post_command("build_kb damaged.hkb")  # a data file the server cannot read: HTTP 500
        assert status == 500
    finally:
        output = server.stop()  # SIGTERM: exits through atexit, which flushes spans and log records
    spans = otlp_receiver.wait_for_spans(2, timeout_s=15)
    [server_span] = [s for s in spans if s.kind == SERVER_KIND]
    logs = otlp_receiver.wait_for_logs(1, timeout_s=15)
    [warning] = [r for r in logs if r.scope == COMMANDS_LOGGER]  # once: no duplicate of the launcher's own handler
    assert str(warning.body).startswith("command build_kb failed"), warning
    assert warning.severity_text == "WARN"
    # Logged after the command span ended, while the request was still being served: in the server span.
    assert (warning.trace_id, warning.span_id) == (server_span.trace_id, server_span.span_id), output
    assert warning.resource["service.name"] == "hak-gal-logs-e2e" == server_span.resource["service.name"]
    assert "Traceback" not in output, output
