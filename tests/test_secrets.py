"""No secret reaches any backend: secrets planted in questions, provider error messages,
request headers and environment variables, the workload run against every backend at once,
and every byte each receiver got searched (decompressed and decoded first)."""

from __future__ import annotations

import json
import secrets
import string
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_hakgal.demo.simulator import PROVIDERS, FaultKind, LLMSimulator
from otel_hakgal.demo.workload import WORKLOAD, run_workload
from otel_hakgal.redaction import REDACTED
from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from tests.support.processes import ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]


def _token(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class PlantedSecrets:
    # in questions
    question_api_key: str = "sk-" + _token(32)
    question_password: str = _token(20)
    question_dsn_key: str = _token(32, "0123456789abcdef")
    question_bearer: str = _token(40)
    # in request headers
    header_bearer: str = _token(40)
    header_api_key: str = _token(32)
    header_cookie: str = _token(24)
    # in environment variables (the providers' keys also come back in their error messages)
    env_deepseek_key: str = "sk-" + _token(40)
    env_mistral_key: str = _token(32)  # no recognisable shape: only the environment gives it away
    env_gemini_key: str = "AIza" + _token(35)
    env_db_password: str = _token(24)

    def all(self) -> dict[str, str]:
        return dict(vars(self))

    def environment(self) -> dict[str, str]:
        return {
            "DEEPSEEK_API_KEY": self.env_deepseek_key,
            "MISTRAL_API_KEY": self.env_mistral_key,
            "GEMINI_API_KEY": self.env_gemini_key,
            "HAKGAL_DB_PASSWORD": self.env_db_password,
        }

    def questions(self) -> list[str]:
        return [
            f"ask Is my key {self.question_api_key} a city?",
            f"ask password={self.question_password} Is Berlin a city?",
            f"ask Does https://{self.question_dsn_key}@o1.ingest.example/5 know Rome?",
            f"ask Authorization: Bearer {self.question_bearer}",
        ]

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.header_bearer}",
            "X-Api-Key": self.header_api_key,
            "Cookie": f"session={self.header_cookie}",
        }


def _post(port: int, command: str, headers: dict[str, str], query: str = "") -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/command{query}",
        data=json.dumps({"command": command}).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return bytes(response.read())


@dataclass
class Received:
    """Everything each receiver got, decompressed, by backend."""

    blobs: dict[str, bytes]
    sentry_errors: int
    otlp_spans: int


@pytest.fixture(params=["sentry", "sentry-otlp"])
def received(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[PlantedSecrets, Received]]:
    """The workload and the planted secrets, once against a Sentry mode + otlp, jsonl, console, prometheus."""
    planted = PlantedSecrets()
    sentry_backend = request.param
    jsonl_path = tmp_path / "spans.jsonl"
    metrics_port, app_port = free_port(), free_port()
    with LLMSimulator() as simulator, OtlpReceiver() as otlp, SentryReceiver() as sentry:
        otlp.bodies, sentry.bodies = [], []
        config = tmp_path / "all.toml"
        config.write_text(
            f'backends = ["{sentry_backend}", "otlp", "jsonl", "console", "prometheus"]\n'
            f'[{sentry_backend}]\ndsn = "{sentry.dsn}"\ntraces_sample_rate = 1.0\n'
            f'[otlp]\nendpoint = "{otlp.endpoint}"\ncompression = "gzip"\n'
            f'[jsonl]\npath = "{jsonl_path}"\n'
            f'[console]\nstream = "stdout"\n'
            f"[prometheus]\nport = {metrics_port}\n"
            f"[export]\nmetric_interval = 0.5\n"
        )
        env = clean_env(
            OTEL_HAKGAL_CONFIG=str(config),
            HAKGAL_PORT=str(app_port),
            HAKGAL_LLM_BASE_URL=simulator.base_url,
            # A user who turns on header capture must not leak credentials either.
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST="authorization,x-api-key,cookie",
            **planted.environment(),
        )
        # stdout is the console backend's; the app's own logs (stderr) are not telemetry.
        app_log = (tmp_path / "app.log").open("w")
        server = ServerProcess([sys.executable, "-m", "otel_hakgal.demo.api"], env, app_port, stderr=app_log)
        try:
            server.wait_ready()
            run_workload(f"http://127.0.0.1:{app_port}", simulator, WORKLOAD)
            for question in planted.questions():
                _post(app_port, question, planted.headers(), query=f"?api_key={planted.header_api_key}")
            # Every provider rejects its key and echoes it back, as real providers do.
            for provider in PROVIDERS:
                simulator.inject(provider, FaultKind.AUTH, times=None)
            _post(app_port, "ask Is Paris a city?", planted.headers())
            _post(app_port, "explain Is Rome a city?", planted.headers())
            simulator.clear_faults()
            prometheus_text = _scrape(metrics_port)
        finally:
            output = server.stop()
            app_log.close()
        sentry_errors = len(sentry.errors())
        blobs = {
            "otlp": b"".join(otlp.bodies),
            sentry_backend: b"".join(sentry.bodies),
            "jsonl": jsonl_path.read_bytes() if jsonl_path.exists() else b"",
            "console": output.encode("utf-8", "surrogateescape"),
            "prometheus": prometheus_text,
        }
        yield planted, Received(blobs, sentry_errors, len(otlp.spans()))


def _around(blob: bytes, needle: bytes, width: int = 60) -> bytes:
    at = blob.find(needle)
    return blob[max(0, at - width) : at + len(needle) + width]


def test_no_planted_secret_reaches_any_backend(received: tuple[PlantedSecrets, Received]) -> None:
    planted, got = received
    leaks = [
        f"{where}: {name} in ...{_around(blob, secret.encode())!r}..."
        for where, blob in got.blobs.items()
        for name, secret in planted.all().items()
        if secret.encode() in blob
    ]
    assert not leaks, f"secrets reached the backends: {leaks}"


def test_the_secrets_really_flowed_and_were_redacted(received: tuple[PlantedSecrets, Received]) -> None:
    """The check above could pass vacuously; show the planted data reached every receiver, redacted."""
    _, got = received
    assert got.otlp_spans > 0 and got.sentry_errors > 0
    for where, blob in got.blobs.items():
        assert blob, f"{where} received nothing"
        if where != "prometheus":  # metrics carry no free text
            assert REDACTED.encode() in blob, f"{where} received no redacted value"
    otlp = got.blobs["otlp"]
    assert b"Incorrect API key provided: " + REDACTED.encode() in otlp  # a provider error message
    assert b"http.request.header.authorization" in otlp  # the captured header, value redacted
