"""Zero-code mode: real `opentelemetry-instrument` subprocesses against a loopback receiver."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from otel_hakgal.launcher import LOADER_LOGGER, SkippedConfiguratorFilter, _is_reloader_watcher
from otel_hakgal.testing import OtlpReceiver, ReceivedSpan, jsonl_spans
from tests.support.processes import ROOT, VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

APP = "otel_hakgal.demo.api"
INSTRUMENT = str(VENV_BIN / "opentelemetry-instrument")
SERVER_KIND = 2


def _forms(port: int) -> dict[str, list[str]]:
    return {
        "flask": [INSTRUMENT, str(VENV_BIN / "flask"), "--app", APP, "run", "--port", str(port)],
        "gunicorn": [INSTRUMENT, str(VENV_BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", f"{APP}:app"],
        "python -m": [INSTRUMENT, sys.executable, "-m", APP, "--port", str(port)],
    }


def _otlp_env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    settings = {
        "OTEL_HAKGAL_BACKENDS": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    return clean_env(**{**settings, **extra})


def _wait_for_spans(receiver: OtlpReceiver, count: int, output: str, timeout_s: float = 10.0) -> list[ReceivedSpan]:
    """``receiver.wait_for_spans``; on timeout the failure names the spans each process sent, and the output."""
    try:
        return receiver.wait_for_spans(count, timeout_s=timeout_s)
    except TimeoutError as error:
        by_process: dict[str, Counter[str]] = {}
        for span in receiver.spans():
            by_process.setdefault(str(span.resource.get("process.pid")), Counter())[span.name] += 1
        raise AssertionError(f"{error}; spans by process pid: {by_process}; server output:\n{output}") from None


def _assert_server_span_parents_command(spans: list[ReceivedSpan], verb: str) -> None:
    commands = [s for s in spans if s.name == f"hakgal.command {verb}"]
    assert commands, sorted({s.name for s in spans})
    by_id = {s.span_id: s for s in spans}
    for command in commands:
        parent = by_id.get(command.parent_span_id or "")
        assert parent is not None and parent.kind == SERVER_KIND, (command, parent)
        assert parent.trace_id == command.trace_id


def test_opentelemetry_distro_is_installed_beside_ours() -> None:
    # Every launcher test below runs with both distros installed: the hard case.
    assert importlib.util.find_spec("opentelemetry.distro") is not None


@pytest.mark.parametrize("form", ["flask", "gunicorn", "python -m"])
def test_each_launch_form_delivers_one_trace(form: str, otlp_receiver: OtlpReceiver) -> None:
    port = free_port()
    server = ServerProcess(_forms(port)[form], _otlp_env(otlp_receiver), port)
    try:
        server.wait_ready()
        for _ in range(3):
            status, body = server.post_command("status")
            assert status == 200 and body["status"] == "success"
    finally:
        output = server.stop()
    spans = otlp_receiver.wait_for_spans(6, timeout_s=15)
    _assert_server_span_parents_command(spans, "status")
    server_spans = [s for s in spans if s.kind == SERVER_KIND]
    assert len(server_spans) == 3, output  # one per request: no doubled provider or processor
    assert len([s for s in spans if s.name == "hakgal.command status"]) == 3
    assert "Traceback" not in output, output


def test_backends_swap_by_environment_only(otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    jsonl = tmp_path / "spans.jsonl"
    variants = {
        "jsonl via OTEL_HAKGAL_BACKENDS": clean_env(OTEL_HAKGAL_BACKENDS="jsonl", OTEL_HAKGAL_JSONL_PATH=str(jsonl)),
        "jsonl via OTEL_TRACES_EXPORTER": clean_env(OTEL_TRACES_EXPORTER="jsonl", OTEL_HAKGAL_JSONL_PATH=str(jsonl)),
        "otlp via a config file": clean_env(
            OTEL_HAKGAL_CONFIG=str(ROOT / "configs" / "otlp.toml"), OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint
        ),
    }
    for name, env in variants.items():
        jsonl.unlink(missing_ok=True)
        otlp_receiver.clear()
        port = free_port()
        server = ServerProcess(_forms(port)["python -m"], env, port)
        try:
            server.wait_ready()
            assert server.post_command("status")[0] == 200
        finally:
            output = server.stop()
        if "jsonl" in name:
            names = {span["name"] for span in jsonl_spans(jsonl)}
            assert "hakgal.command status" in names, (name, output)
        else:
            _assert_server_span_parents_command(otlp_receiver.wait_for_spans(2), "status")


def _assert_one_error_line_or_exit_2_when_strict(env: dict[str, str], port: int) -> str:
    """The app runs and logs one ERROR line, no traceback; with OTEL_HAKGAL_STRICT=1 it exits 2. Returns the line."""
    server = ServerProcess(_forms(port)["python -m"], env, port)
    try:
        server.wait_ready()
        assert server.post_command("status")[0] == 200
    finally:
        output = server.stop()
    errors = [line for line in output.splitlines() if "otel_hakgal ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    strict = ServerProcess(_forms(port)["python -m"], {**env, "OTEL_HAKGAL_STRICT": "1"}, port)
    strict_output = strict.finish(timeout_s=30)
    assert strict.process.returncode == 2 and "Traceback" not in strict_output, strict_output
    return errors[0]


def test_bad_configuration_logs_one_error_line_and_the_app_runs(otlp_receiver: OtlpReceiver) -> None:
    env = _otlp_env(otlp_receiver, OTEL_HAKGAL_BACKENDS="otlp,carrier-pigeon")
    error = _assert_one_error_line_or_exit_2_when_strict(env, free_port())
    assert "OTEL_HAKGAL_BACKENDS" in error and "carrier-pigeon" in error and "available:" in error
    time.sleep(0.5)
    assert otlp_receiver.spans() == []  # telemetry is off, not half on


@pytest.mark.parametrize("form", ["gunicorn", "python -m", "flask"])
def test_sigterm_flushes_every_finished_span(form: str, otlp_receiver: OtlpReceiver) -> None:
    port = free_port()
    # A long batch delay: nothing is exported before SIGTERM, so the flush does it all.
    env = _otlp_env(otlp_receiver, OTEL_BSP_SCHEDULE_DELAY="60000", OTEL_METRIC_EXPORT_INTERVAL="60000")
    server = ServerProcess(_forms(port)[form], env, port)
    requests = 20
    try:
        server.wait_ready()
        for _ in range(requests):
            assert server.post_command("status")[0] == 200
        time.sleep(0.3)
        assert otlp_receiver.spans() == []
    finally:
        output = server.stop()
    time.sleep(0.3)
    spans = otlp_receiver.spans()
    produced = 2 * requests  # one server span and one command span per request
    assert len(spans) == produced, output


def test_gunicorn_preload_delivers_from_both_workers(otlp_receiver: OtlpReceiver) -> None:
    port = free_port()
    argv = [
        INSTRUMENT,
        str(VENV_BIN / "gunicorn"),
        "--preload",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-",
        "--access-logformat",
        "pid=%(p)s %(U)s",
        f"{APP}:app",
    ]
    server = ServerProcess(argv, _otlp_env(otlp_receiver), port)
    requests = 40
    try:
        server.wait_ready()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda _: server.post_command("status")[0], range(requests)))
        assert statuses == [200] * requests
    finally:
        output = server.stop()
    pids = set(re.findall(r"pid=<(\d+)> /api/command", output))
    assert len(pids) == 2, output
    spans = _wait_for_spans(otlp_receiver, 2 * requests, output, timeout_s=15)
    assert len([s for s in spans if s.name == "hakgal.command status"]) == requests


def test_reloader_watcher_is_detected() -> None:
    flask = "/venv/bin/flask"
    assert _is_reloader_watcher([flask, "--app", "a", "run", "--debug"], {})
    assert _is_reloader_watcher([flask, "run"], {"FLASK_DEBUG": "1"})
    assert not _is_reloader_watcher([flask, "run", "--debug"], {"WERKZEUG_RUN_MAIN": "true"})  # the serving child
    assert not _is_reloader_watcher([flask, "run", "--debug", "--no-reload"], {})
    assert not _is_reloader_watcher([flask, "run"], {})
    assert not _is_reloader_watcher(["/venv/bin/gunicorn", "app:app"], {"FLASK_DEBUG": "1"})
    # Flask's own reading of its variable, never an error of ours (it was a traceback that left the app bare).
    assert _is_reloader_watcher([flask, "run"], {"FLASK_DEBUG": "maybe"})
    assert not _is_reloader_watcher([flask, "run"], {"FLASK_DEBUG": "No"})


def test_layer_settings_work_as_launcher_flags(tmp_path: Path) -> None:
    jsonl = tmp_path / "spans.jsonl"
    port = free_port()
    argv = [INSTRUMENT, "--hakgal_backends", "jsonl", sys.executable, "-m", APP, "--port", str(port)]
    server = ServerProcess(argv, clean_env(OTEL_HAKGAL_JSONL_PATH=str(jsonl)), port)
    try:
        server.wait_ready()
        assert server.post_command("status")[0] == 200
    finally:
        output = server.stop()
    assert "hakgal.command status" in jsonl.read_text(), output


def test_jsonl_exporter_entry_point_under_the_plain_sdk_configurator(tmp_path: Path) -> None:
    # opentelemetry-distro's own distro and configurator, choosing exporters by entry point name.
    jsonl = tmp_path / "spans.jsonl"
    port = free_port()
    env = clean_env(
        OTEL_PYTHON_DISTRO="distro",
        OTEL_PYTHON_CONFIGURATOR="configurator",
        OTEL_TRACES_EXPORTER="jsonl",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_HAKGAL_JSONL_PATH=str(jsonl),
        OTEL_HAKGAL_BACKENDS="none",  # the app's own setup() joins that provider and adds nothing
    )
    server = ServerProcess(_forms(port)["gunicorn"], env, port)
    try:
        server.wait_ready()
        assert server.post_command("status")[0] == 200
    finally:
        output = server.stop()
    assert "hakgal.command status" in jsonl.read_text(), output


def test_outgoing_calls_carry_the_trace_under_the_launcher(otlp_receiver: OtlpReceiver) -> None:
    from otel_hakgal.demo.simulator import LLMSimulator

    port = free_port()
    with LLMSimulator() as simulator:
        env = _otlp_env(otlp_receiver, HAKGAL_LLM_BASE_URL=simulator.base_url)
        server = ServerProcess(_forms(port)["gunicorn"], env, port)
        try:
            server.wait_ready()
            assert server.post_command("ask What is the capital of France?")[0] == 200
        finally:
            output = server.stop()
        seen = [r.traceparent for r in simulator.requests() if r.provider != "oracle"]
    spans = _wait_for_spans(otlp_receiver, 5, output)
    [server_span] = [s for s in spans if s.kind == SERVER_KIND]
    llm_span_ids = {s.span_id for s in spans if s.attributes.get("gen_ai.operation.name")}
    assert seen and all(tp is not None for tp in seen), output
    for traceparent in seen:
        _, trace_id, parent_id, _ = str(traceparent).split("-")
        assert trace_id == server_span.trace_id and parent_id in llm_span_ids


def test_sigterm_to_demo_serve_flushes_every_finished_span(otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    config = tmp_path / "demo.toml"
    # The console backend prints every span synchronously as its trace ends: the count produced.
    config.write_text(f'backends = ["console", "otlp"]\n[otlp]\nendpoint = "{otlp_receiver.endpoint}"\n')
    port = free_port()
    env = clean_env(OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_METRIC_EXPORT_INTERVAL="600000", PYTHONUNBUFFERED="1")
    argv = [str(VENV_BIN / "otel-hakgal"), "demo", "--serve", "--port", str(port), "--config", str(config)]
    server = ServerProcess(argv, env, port)
    try:
        server.wait_ready(timeout_s=60)
        server.wait_for_output("serving on")
    finally:
        output = server.stop()
    produced = len([line for line in output.splitlines() if re.search(r" ms  \+ *[\d.]+", line)])
    assert produced > 50, output[-3000:]
    time.sleep(0.5)
    assert len(otlp_receiver.spans()) == produced, output[-3000:]


LAUNCHER_FAILURES = {
    "two sentry backends": {"OTEL_HAKGAL_BACKENDS": "sentry,sentry-otlp"},
    "negative schedule delay": {"OTEL_BSP_SCHEDULE_DELAY": "-5"},
    "negative queue size": {"OTEL_BSP_MAX_QUEUE_SIZE": "-1"},
    "negative attribute length": {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-1"},
}


@pytest.mark.parametrize("case", sorted(LAUNCHER_FAILURES))
def test_what_setup_cannot_run_is_one_error_line_or_exit_2_when_strict(case: str, otlp_receiver: OtlpReceiver) -> None:
    port = free_port()
    env = _otlp_env(otlp_receiver, **LAUNCHER_FAILURES[case])
    _assert_one_error_line_or_exit_2_when_strict(env, port)


def test_strict_in_the_config_file_is_honoured(tmp_path: Path, otlp_receiver: OtlpReceiver) -> None:
    config = tmp_path / "strict.toml"
    config.write_text("strict = true\n[sampling]\nratio = 5\n")
    port = free_port()
    server = ServerProcess(_forms(port)["python -m"], _otlp_env(otlp_receiver, OTEL_HAKGAL_CONFIG=str(config)), port)
    output = server.finish(timeout_s=30)
    assert server.process.returncode == 2, output
    assert "sampling.ratio" in output


def test_a_backend_that_cannot_start_is_one_error_line_and_the_app_runs(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    from tests.support.plugins import EXPLODING, install_plugin

    plugins = install_plugin(tmp_path, "exploding", "exploding_backend:ExplodingBackend", EXPLODING)
    port = free_port()
    env = _otlp_env(otlp_receiver, OTEL_HAKGAL_BACKENDS="otlp,exploding", PYTHONPATH=str(plugins))
    error = _assert_one_error_line_or_exit_2_when_strict(env, port)
    assert "'exploding' failed to start" in error and "cannot open the loft" in error
    time.sleep(0.5)
    assert otlp_receiver.spans() == []  # the otlp backend that started was stopped again


# --- issue 14: secrets in error lines, booleans, unselected backends, jsonl, the loader's stray line ---

PROGRAM = "import otel_hakgal.pipeline as p; h = p.active_handle(); print('app ran', sorted(h.backends) if h else None)"


def _launch(env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """The real launcher around a one-line program that says which backends the layer started."""
    return subprocess.run(
        [INSTRUMENT, sys.executable, "-c", PROGRAM],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_error_lines_never_show_a_planted_secret() -> None:
    key, secret, token = secrets.token_hex(16), secrets.token_hex(16), "tok_" + secrets.token_urlsafe(24)
    cases = {
        "sentry.dsn": (
            {"OTEL_HAKGAL_BACKENDS": "sentry", "SENTRY_DSN": f"https://{key}:{secret}@o1.ingest.sentry.io/notanumber"},
            "'https://[REDACTED]@o1.ingest.sentry.io/notanumber' is not allowed; expected a Sentry DSN",
        ),
        "sentry-otlp.dsn": (
            {"OTEL_HAKGAL_BACKENDS": "sentry-otlp", "SENTRY_DSN": f"https:/{key}@o1.ingest.sentry.io/42"},
            "'https:/[REDACTED]@o1.ingest.sentry.io/42' is not allowed",
        ),
        "otlp.headers": (
            {"OTEL_HAKGAL_BACKENDS": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization: Bearer {token}"},
            "'Authorization: [REDACTED]' is not valid; expected comma-separated key=value pairs",
        ),
    }
    for setting, (extra, says) in cases.items():
        for strict in ("0", "1"):
            result = _launch(clean_env(OTEL_HAKGAL_STRICT=strict, **extra))
            output = result.stdout + result.stderr
            assert all(planted not in output for planted in (key, secret, token)), (setting, output)
            [line] = [line for line in output.splitlines() if line.startswith("otel_hakgal ERROR: ")]
            assert f"key '{setting}'" in line and says in line, line
            assert "Traceback" not in output, output
            if strict == "1":
                assert result.returncode == 2, output
            else:
                assert result.returncode == 0 and "app ran []" in result.stdout, output  # telemetry off


def test_strict_maybe_is_one_error_line_that_lists_the_accepted_words() -> None:
    result = _launch(clean_env(OTEL_HAKGAL_STRICT="maybe", OTEL_HAKGAL_BACKENDS="none"))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "app ran []" in result.stdout and "Traceback" not in output, output
    [line] = [line for line in output.splitlines() if "otel_hakgal ERROR" in line]
    assert "OTEL_HAKGAL_STRICT" in line and "'maybe' is not valid" in line and "'yes', 'no', 'on', 'off'" in line


def _extra_configurator(directory: Path) -> Path:
    """A third configurator entry point, found before ours (``PYTHONPATH`` comes first on ``sys.path``)."""
    (directory / "extra_configurator.py").write_text(
        "class ExtraConfigurator:\n"
        "    def configure(self, **kwargs):\n"
        "        raise RuntimeError('the extra configurator must not run')\n"
    )
    dist = directory / "extra_configurator-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-configurator\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[opentelemetry_configurator]\nextra = extra_configurator:ExtraConfigurator\n"
    )
    return directory


def test_no_stray_configurator_line_when_other_configurators_are_installed(tmp_path: Path) -> None:
    # opentelemetry-distro's configurator is installed (see the first test); one more comes before ours.
    extra = _extra_configurator(tmp_path)
    for env in (clean_env(OTEL_HAKGAL_BACKENDS="none"), clean_env(OTEL_HAKGAL_BACKENDS="none", PYTHONPATH=str(extra))):
        result = _launch(env)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "app ran ['none']" in result.stdout, output  # our configurator ran
        assert "not loaded" not in output and "Configuration of" not in output, output
        assert result.stderr == "", output


def test_the_filter_lets_every_other_loader_line_through() -> None:
    quiet = SkippedConfiguratorFilter()

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord(LOADER_LOGGER, logging.WARNING, __file__, 1, msg, args, None)

    assert not quiet.filter(record("Configuration of %s not loaded, %s already loaded", "configurator", "hakgal"))
    assert not quiet.filter(
        record("Configuration of %s not loaded because %s is set by %s", "x", "hakgal", "OTEL_PYTHON_CONFIGURATOR")
    )
    # Another configurator chosen, or any other message: shown.
    assert quiet.filter(record("Configuration of %s not loaded, %s already loaded", "hakgal", "configurator"))
    assert quiet.filter(record("Configuration of %s failed", "hakgal"))


def test_a_bad_sentry_dsn_without_a_sentry_backend_leaves_otlp_working(otlp_receiver: OtlpReceiver) -> None:
    dsn = f"https://{secrets.token_hex(16)}@o1.ingest.sentry.io/notanumber"
    config = str(ROOT / "configs" / "sentry+otlp.toml")  # has a [sentry] section: its variables are read
    env = _otlp_env(otlp_receiver, OTEL_HAKGAL_CONFIG=config, SENTRY_DSN=dsn)  # OTEL_HAKGAL_BACKENDS=otlp
    port = free_port()
    server = ServerProcess(_forms(port)["python -m"], env, port)
    try:
        server.wait_ready()
        assert server.post_command("status")[0] == 200
    finally:
        output = server.stop()
    _assert_server_span_parents_command(otlp_receiver.wait_for_spans(2), "status")
    assert "otel_hakgal ERROR" not in output and dsn not in output, output


def test_an_unwritable_jsonl_path_warns_at_start_and_otlp_keeps_working(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory\n")
    path = blocker / "out.jsonl"  # cannot be created, even by root
    env = _otlp_env(otlp_receiver, OTEL_HAKGAL_BACKENDS="jsonl,otlp", OTEL_HAKGAL_JSONL_PATH=str(path))
    port = free_port()
    server = ServerProcess(_forms(port)["python -m"], env, port)
    try:
        server.wait_ready()
        server.wait_for_output(f"jsonl backend cannot write {path}")
        assert server.post_command("status")[0] == 200
    finally:
        output = server.stop()
    _assert_server_span_parents_command(otlp_receiver.wait_for_spans(2), "status")
    assert "otel_hakgal ERROR" not in output and "Traceback" not in output, output


def test_an_app_that_never_calls_instrument_flask_names_404s_by_method(
    otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Zero code changes: the launcher's Flask instrumentation gets the layer's request hook."""
    (tmp_path / "bare_app.py").write_text(
        "from flask import Flask\n\napp = Flask(__name__)\n\n\n"
        "@app.get('/hello/<who>')\ndef hello(who: str) -> str:\n    return 'hi ' + who\n"
    )
    port = free_port()
    argv = [INSTRUMENT, str(VENV_BIN / "flask"), "--app", "bare_app", "run", "--port", str(port)]
    env = _otlp_env(otlp_receiver, PYTHONPATH=str(tmp_path))
    server = ServerProcess(argv, env, port, cwd=tmp_path)
    paths = ["/hello/ada", *(f"/.env.{secrets.token_hex(8)}" for _ in range(5)), "/wp-login.php?x=1"]
    try:
        server.wait_ready()
        for path in paths:
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).close()
    finally:
        output = server.stop()
    spans = [s for s in otlp_receiver.wait_for_spans(len(paths)) if s.kind == SERVER_KIND]
    assert sorted(s.name for s in spans) == ["GET"] * (len(paths) - 1) + ["GET /hello/<who>"], output
