"""Issue 15, item 2: HTTP server spans and metrics follow the stable HTTP conventions by default.

Real servers in real processes, each exporting over OTLP/HTTP to a loopback receiver: the reference
service run in code (``python -m otel_hakgal.demo.api``: ``instrument_flask`` at import, then
``setup()``), under gunicorn and the ``opentelemetry-instrument`` launcher, and a plain Flask app
that only the launcher instruments. Each answers a 200, a 500 (a server fault) and a 404.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import otel_hakgal as hg
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.conventions import (
    HTTP_DUP_OPT_IN,
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
    HTTP_SERVER_METRICS,
    HTTP_STABLE_OPT_IN,
    INSTRUMENTATION_SCOPE,
    LEGACY_HTTP_SERVER_METRICS,
    SCHEMA_URL,
    SEMCONV_STABILITY_OPT_IN_ENV,
    URL_PATH,
    Attr,
)
from otel_hakgal.http_conventions import default_to_stable_http
from otel_hakgal.testing import OtlpReceiver, ReceivedPoint, ReceivedSpan
from otel_hakgal.testing.receiver import _wait
from tests.support.processes import VENV_BIN, ServerProcess, clean_env, free_port

APP = "otel_hakgal.demo.api"
INSTRUMENT = str(VENV_BIN / "opentelemetry-instrument")
SERVER_KIND = 2
STATUS_ERROR = 2
OLD_SPAN_ATTRIBUTES = ("http.method", "http.target", "http.status_code")
DURATION = HTTP_SERVER_METRICS[0]
OLD_DURATION = LEGACY_HTTP_SERVER_METRICS[0]

BARE_APP = """
from flask import Flask

app = Flask(__name__)


@app.get("/hello/<who>")
def hello(who: str) -> str:
    return "hi " + who


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("a fault of the server")
"""


def test_the_default_is_set_only_when_the_user_set_nothing() -> None:
    environ: dict[str, str] = {}
    assert default_to_stable_http(environ) is True
    assert environ == {SEMCONV_STABILITY_OPT_IN_ENV: HTTP_STABLE_OPT_IN}
    for chosen in (HTTP_DUP_OPT_IN, "", "database"):
        environ = {SEMCONV_STABILITY_OPT_IN_ENV: chosen}
        assert default_to_stable_http(environ) is False
        assert environ == {SEMCONV_STABILITY_OPT_IN_ENV: chosen}


def test_the_layers_tracer_and_meter_carry_the_schema_url() -> None:
    handle = hg.setup(backends=["memory"])
    try:
        with hg.command("status"):
            pass
        handle.force_flush()
        memory = handle.backend("memory")
        assert isinstance(memory, MemoryBackend)
        spans = [s for s in memory.spans() if s.name == "hakgal.command status"]
        assert spans and spans[0].instrumentation_scope is not None
        assert spans[0].instrumentation_scope.schema_url == SCHEMA_URL
        metrics = memory.metrics()
        assert metrics is not None
        scopes = {sm.scope.name: sm.scope.schema_url for rm in metrics.resource_metrics for sm in rm.scope_metrics}
        assert scopes[INSTRUMENTATION_SCOPE] == SCHEMA_URL
    finally:
        handle.shutdown()


# --- real servers -------------------------------------------------------------------------


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _serve(form: str, receiver: OtlpReceiver, tmp_path: Path, **extra_env: str) -> tuple[dict[int, str], str]:
    """Start ``form``, send a 200, a 500 and a 404; returns {status: path} and what the server printed."""
    port = free_port()
    env = clean_env(
        OTEL_HAKGAL_BACKENDS="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="500",
        **extra_env,
    )
    cwd: Path | None = None
    if form == "in code":
        argv = [sys.executable, "-m", APP, "--port", str(port)]
    elif form == "gunicorn":
        bind = f"127.0.0.1:{port}"
        argv = [INSTRUMENT, str(VENV_BIN / "gunicorn"), "-w", "2", "-k", "gthread", "-b", bind, f"{APP}:app"]
    else:  # a Flask app that never calls instrument_flask or setup(): only the launcher instruments it
        (tmp_path / "bare_app.py").write_text(BARE_APP)
        env["PYTHONPATH"] = str(tmp_path)
        cwd = tmp_path
        argv = [INSTRUMENT, str(VENV_BIN / "flask"), "--app", "bare_app", "run", "--port", str(port)]
    server = ServerProcess(argv, env, port, **({"cwd": cwd} if cwd else {}))
    try:
        server.wait_ready()
        if form == "launcher, plain Flask app":
            paths = {_get(port, "/hello/ada"): "/hello/ada", _get(port, "/boom"): "/boom"}
        else:
            assert server.post_command("status")[0] == 200
            assert server.post_command("build_kb damaged.hkb")[0] == 500  # a damaged data file on the server
            paths = {200: "/api/command", 500: "/api/command"}
        with contextlib.suppress(urllib.error.URLError):
            paths[_get(port, "/no/such/page")] = "/no/such/page"
        wanted = DURATION.name if not extra_env else OLD_DURATION.name
        try:
            receiver.wait_for_metric(wanted, timeout_s=20)
        except TimeoutError:
            got = sorted({point.metric for point in receiver.metric_points()})
            output = server.stop()
            raise AssertionError(f"no {wanted} in 20 s; metrics received: {got}; server output:\n{output}") from None
    finally:
        output = server.stop()
    assert sorted(paths) == [200, 404, 500], (paths, output)
    return paths, output


def _server_spans(receiver: OtlpReceiver, statuses: tuple[int, ...] = (200, 404, 500)) -> dict[int, ReceivedSpan]:
    """The server span of each of ``statuses``, once all have arrived (gunicorn's two workers export apart)."""

    def by_status() -> dict[int, ReceivedSpan] | None:
        found: dict[int, ReceivedSpan] = {}
        for span in receiver.spans():
            if span.kind == SERVER_KIND:
                status = span.attributes.get(HTTP_RESPONSE_STATUS_CODE, span.attributes.get("http.status_code"))
                found[int(status)] = span
        return found if set(statuses) <= set(found) else None

    try:
        return _wait(by_status, 20, f"server spans with statuses {statuses}")
    except TimeoutError:
        seen = sorted({(s.kind, s.name) for s in receiver.spans()})
        raise AssertionError(f"not every server span arrived in 20 s; spans received: {seen}") from None


def _duration_points(receiver: OtlpReceiver, name: str) -> list[ReceivedPoint]:
    return [p for p in receiver.metric_points(name) if p.count]


FORMS = ["in code", "gunicorn", "launcher, plain Flask app"]


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_server_spans_and_the_duration_metric_follow_the_stable_http_conventions(
    form: str, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    paths, output = _serve(form, otlp_receiver, tmp_path)
    spans = _server_spans(otlp_receiver)
    assert sorted(spans) == [200, 404, 500], output

    for status, span in spans.items():
        attributes = span.attributes
        assert attributes[HTTP_REQUEST_METHOD] in ("GET", "POST"), attributes
        assert attributes[URL_PATH] == paths[status], attributes
        assert attributes[HTTP_RESPONSE_STATUS_CODE] == status
        assert not set(OLD_SPAN_ATTRIBUTES) & set(attributes), attributes
    failed = spans[500]
    assert failed.attributes[Attr.ERROR_TYPE] == "500"
    assert failed.status_code == STATUS_ERROR
    assert failed.attributes[HTTP_ROUTE] == paths[500]
    assert Attr.ERROR_TYPE not in spans[200].attributes
    assert HTTP_ROUTE not in spans[404].attributes and spans[404].name == "GET"

    points = _duration_points(otlp_receiver, DURATION.name)
    assert points and {p.unit for p in points} == {"s"}, points
    assert DURATION.unit == "s"
    by_status = {p.attributes[HTTP_RESPONSE_STATUS_CODE]: p for p in points}
    assert by_status[500].attributes[Attr.ERROR_TYPE] == "500"
    assert by_status[500].attributes[HTTP_ROUTE] == paths[500]
    assert by_status[500].bounds == DURATION.buckets
    assert 0 < (by_status[200].sum or 0) < 30  # seconds, not milliseconds
    assert otlp_receiver.metric_points(OLD_DURATION.name) == []


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.parametrize("chosen", [HTTP_DUP_OPT_IN, ""], ids=["http/dup", "empty (old names)"])
def test_a_value_the_user_set_is_kept(chosen: str, otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    """Under the launcher (distro and configurator both run) and instrument_flask: nothing overrides it."""
    _serve("gunicorn", otlp_receiver, tmp_path, OTEL_SEMCONV_STABILITY_OPT_IN=chosen)
    failed = _server_spans(otlp_receiver, (500,))[500].attributes
    assert failed["http.status_code"] == 500 and failed["http.method"] == "POST"
    old_points = _duration_points(otlp_receiver, OLD_DURATION.name)
    assert old_points and {p.unit for p in old_points} == {"ms"}
    if chosen == HTTP_DUP_OPT_IN:  # both sets at once, for migrating dashboards
        assert failed[HTTP_RESPONSE_STATUS_CODE] == 500 and failed[Attr.ERROR_TYPE] == "500"
        otlp_receiver.wait_for_metric(DURATION.name)
        assert {p.unit for p in _duration_points(otlp_receiver, DURATION.name)} == {"s"}
    else:
        assert HTTP_RESPONSE_STATUS_CODE not in failed and Attr.ERROR_TYPE not in failed
        assert otlp_receiver.metric_points(DURATION.name) == []


_INSTRUMENTED_TOO_EARLY = """
from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor
import otel_hakgal as hg

app = Flask("early")
app.add_url_rule("/x", "x", lambda: "x")
FlaskInstrumentor().instrument_app(app)  # before the layer's first way in
handle = hg.setup(backends=["memory"])
hg.instrument_flask(app)
app.test_client().get("/x")
handle.force_flush()
[span] = [s for s in handle.backend("memory").spans() if s.kind.name == "SERVER"]
print(sorted(span.attributes))
handle.shutdown()
"""


@pytest.mark.system
def test_instrumenting_before_the_layer_keeps_the_old_names_and_says_so_once() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _INSTRUMENTED_TOO_EARLY],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "http.method" in result.stdout, result.stdout
    assert result.stderr.count(f"set {SEMCONV_STABILITY_OPT_IN_ENV}={HTTP_STABLE_OPT_IN}") == 1, result.stderr
