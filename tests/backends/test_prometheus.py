"""Backend ``prometheus``: the scrape endpoint, what it serves, and the OTel -> Prometheus name mapping."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import otel_hakgal as hg
from otel_hakgal.backends.prometheus import PrometheusBackend, label_name, prometheus_name, series_names
from otel_hakgal.config import ConfigError, load_config
from otel_hakgal.conventions import (
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
    HTTP_SERVER_METRICS,
    INSTRUMENTATION_SCOPE,
    METRICS,
    PROCESS_METRICS,
    SCHEMA_URL,
    Attr,
    ProverResult,
)
from otel_hakgal.testing.prometheus import require_binary
from tests.support.processes import free_port


def scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def names(samples: list[Sample]) -> set[str]:
    return {s.name for s in samples}


@pytest.fixture
def prom() -> Iterator[hg.Handle]:
    handle = hg.setup(backends=["prometheus"], settings={"prometheus.port": 0})
    yield handle
    handle.shutdown()


def _backend(handle: hg.Handle) -> PrometheusBackend:
    backend = handle.backend("prometheus")
    assert isinstance(backend, PrometheusBackend)
    return backend


def _record_every_layer_metric() -> None:
    with hg.command("ask", text="ask Ist Rom die Hauptstadt von Italien?"):
        with hg.query("Ist Rom die Hauptstadt von Italien?"):
            with hg.cache_lookup("prompt") as cache:
                cache.miss()
            with hg.llm_call("deepseek", "deepseek-chat", server_address="127.0.0.1") as call:
                call.record_usage(64, 9)
            with hg.prover("z3") as prover:
                prover.set_result(ProverResult.ERROR)


def test_settings_defaults_and_validation() -> None:
    settings = load_config(overrides={"backends": ["prometheus"]}, environ={}).settings_for("prometheus")
    assert (settings.host, settings.port, settings.process_metrics) == ("127.0.0.1", 9464, True)
    environ = {"OTEL_EXPORTER_PROMETHEUS_PORT": "9999", "OTEL_EXPORTER_PROMETHEUS_HOST": "::1"}
    env = load_config(overrides={"backends": ["prometheus"]}, environ=environ)
    assert (env.settings_for("prometheus").port, env.settings_for("prometheus").host) == (9999, "::1")
    with pytest.raises(ConfigError, match=r"prometheus\.port.*70000"):
        load_config(overrides={"prometheus.port": 70000}, environ={})
    with pytest.raises(ConfigError, match=r"prometheus\.port.*an integer"):
        load_config(overrides={"prometheus.port": "http"}, environ={})


def test_serves_layer_metrics_under_their_prometheus_names(prom: hg.Handle) -> None:
    backend = _backend(prom)
    assert backend.url == f"http://127.0.0.1:{backend.port}/metrics"
    _record_every_layer_metric()
    samples = scrape(backend.url)
    served = names(samples)
    assert {"hakgal_command_duration_seconds_bucket", "hakgal_prover_runs_total", "hakgal_llm_cost_total"} <= served
    runs = [s for s in samples if s.name == "hakgal_prover_runs_total"]
    assert runs[0].labels[label_name(Attr.PROVER_NAME)] == "z3"
    assert runs[0].labels["hakgal_prover_result"] == "error" and runs[0].value == 1
    assert any(s.name == "target_info" and s.labels["service_name"] == "hak-gal" for s in samples)


def test_mapping_matches_the_exporters_output_for_every_conventions_metric() -> None:
    """series_names() is what dashboards and rules are checked with: it must be the exporter's real mapping."""
    # With a span backend and tail sampling, so that the sampling metrics are recorded too.
    settings = {"prometheus.port": 0, "sampling.tail.enabled": True, "genai.emit_upcoming_names": True}
    prom = hg.setup(backends=["prometheus", "memory"], settings=settings)
    try:
        _record_every_layer_metric()
        with hg.query("what", query_type="explain"):
            pass
        served = names(scrape(_backend(prom).url or ""))
    finally:
        prom.shutdown()
    for definition in (*METRICS, *PROCESS_METRICS):
        expected = set(series_names(definition.name, definition.unit, definition.instrument))
        assert expected <= served, f"{definition.name} ({definition.unit}): expected {expected}"


def test_name_mapping_rules() -> None:
    assert prometheus_name("hakgal.command.duration", "s", "histogram") == "hakgal_command_duration_seconds"
    assert series_names("hakgal.command.duration", "s", "histogram") == (
        "hakgal_command_duration_seconds_bucket",
        "hakgal_command_duration_seconds_sum",
        "hakgal_command_duration_seconds_count",
    )
    assert series_names("hakgal.llm.cost", "{USD}", "counter") == ("hakgal_llm_cost_total",)
    assert series_names("gen_ai.client.token.usage", "{token}", "histogram")[0] == "gen_ai_client_token_usage_bucket"
    assert series_names("process.memory.usage", "By", "observable_up_down_counter") == ("process_memory_usage_bytes",)
    assert series_names("http.server.active_requests", "requests", "up_down_counter") == (
        "http_server_active_requests",
    )
    assert label_name("gen_ai.provider.name") == "gen_ai_provider_name"


def test_gauges_are_never_served_with_a_count_suffix() -> None:
    from otel_hakgal.backends._prometheus_endpoint import gauge_name

    assert gauge_name("process_thread_count") == "process_threads"
    assert gauge_name("process_open_file_descriptor_count") == "process_open_fds"
    assert gauge_name("system_thread_count") == "system_threads"
    assert gauge_name("system_process_count") == "system_processes"
    assert gauge_name("process_memory_usage_bytes") == "process_memory_usage_bytes"
    served = {d.name: d for d in PROCESS_METRICS}
    threads = served["process.threads"]
    assert threads.recorded_as == "process.thread.count"
    assert prometheus_name(threads.name, threads.unit, threads.instrument) == "process_threads"


def test_serves_process_resource_usage(prom: hg.Handle) -> None:
    with hg.command("status"):
        pass
    samples = scrape(_backend(prom).url or "")
    by_name = {s.name: s for s in samples}
    assert by_name["process_memory_usage_bytes"].value > 1_000_000
    assert by_name["process_threads"].value >= 2  # main thread and the endpoint's
    assert by_name["process_open_fds"].value >= 3
    assert not {"process_thread_count", "process_open_file_descriptor_count"} & set(by_name)
    assert {s.labels["type"] for s in samples if s.name == "process_cpu_time_seconds_total"} == {"user", "system"}
    assert sum(1 for s in samples if s.name == "target_info") == 1  # the process metrics add none


def test_process_metrics_can_be_turned_off() -> None:
    handle = hg.setup(backends=["prometheus"], settings={"prometheus.port": 0, "prometheus.process_metrics": False})
    try:
        served = names(scrape(_backend(handle).url or ""))
        assert not any(name.startswith("process_") for name in served)
    finally:
        handle.shutdown()


# A fresh process, as in production: setup() makes the layer's MeterProvider the global one,
# which the Flask instrumentation records to, and chooses the HTTP conventions before anything
# is instrumented. (In this test process an earlier test's provider already holds that global slot.)
# The app is the reference service's; ``build_kb damaged.hkb`` is a server fault (500).
_FLASK_APP = """
import sys, urllib.request
import otel_hakgal as hg

handle = hg.setup(backends=["prometheus"], settings={"prometheus.port": 0})
from otel_hakgal.demo.api import create_app

client = create_app().test_client()
for _ in range(3):
    assert client.post("/api/command", json={"command": "status"}).status_code == 200
assert client.post("/api/command", json={"command": "build_kb damaged.hkb"}).status_code == 500
url = handle.backend("prometheus").url
sys.stdout.write(urllib.request.urlopen(url, timeout=5).read().decode())
handle.shutdown()
"""


@pytest.fixture(scope="module")
def flask_app_scrape() -> str:
    """A scrape of the prometheus backend of a process that served the reference app."""
    result = subprocess.run([sys.executable, "-c", _FLASK_APP], capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_serves_flask_http_server_metrics_under_their_prometheus_names(flask_app_scrape: str) -> None:
    samples = [s for family in text_string_to_metric_families(flask_app_scrape) for s in family.samples]
    for definition in HTTP_SERVER_METRICS:
        expected = set(series_names(definition.name, definition.unit, definition.instrument))
        assert expected <= names(samples), f"{definition.name} ({definition.unit}): expected {expected}"
    status, route, error = (label_name(a) for a in (HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, Attr.ERROR_TYPE))
    counts = {
        (s.labels[route], s.labels[status], s.labels.get(error) or None): s.value
        for s in samples
        if s.name == "http_server_request_duration_seconds_count"
    }
    assert counts[("/api/command", "200", None)] == 3
    assert counts[("/api/command", "500", "500")] == 1
    assert not any(s.name.startswith("http_server_duration") for s in samples)  # the old, millisecond metric


def test_the_scrape_names_the_semconv_schema_of_each_scope(flask_app_scrape: str) -> None:
    samples = [s for family in text_string_to_metric_families(flask_app_scrape) for s in family.samples]
    layer = [s for s in samples if s.labels.get("otel_scope_name") == INSTRUMENTATION_SCOPE]
    assert layer and {s.labels["otel_scope_schema_url"] for s in layer} == {SCHEMA_URL}


def test_promtool_check_metrics_passes_on_the_scrape(flask_app_scrape: str) -> None:
    """Every family of a real scrape: layer, GenAI, HTTP (stable conventions) and process metrics."""
    families = {family.name for family in text_string_to_metric_families(flask_app_scrape)}
    assert {"process_threads", "process_open_fds", "http_server_request_duration_seconds"} <= families
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=flask_app_scrape,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_reconfiguring_moves_the_endpoint_and_frees_the_old_port() -> None:
    first = hg.setup(backends=["prometheus"], settings={"prometheus.port": 0})
    old_url = _backend(first).url or ""
    old_port = _backend(first).port
    second = hg.setup(backends=["prometheus", "memory"], settings={"prometheus.port": 0})
    try:
        assert not first.active
        with pytest.raises(urllib.error.URLError):
            scrape(old_url)
        with socket.socket() as sock:  # the old port is free again
            sock.bind(("127.0.0.1", old_port or 0))
        hg.capture_message("x")
        with hg.command("status"):
            pass
        assert "hakgal_command_duration_seconds_count" in names(scrape(_backend(second).url or ""))
        served = names(scrape(_backend(second).url or ""))
        assert "process_threads" in served  # process metrics restarted with the new endpoint
    finally:
        second.shutdown()


def test_a_busy_port_is_logged_and_the_app_runs_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="otel_hakgal"):
            handle = hg.setup(backends=["prometheus"], settings={"prometheus.port": port})
        try:
            backend = _backend(handle)
            assert backend.url is None
            assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
            with hg.command("status"):  # telemetry keeps working
                pass
        finally:
            handle.shutdown()


def test_a_failed_reconfiguration_keeps_the_running_endpoint(plugin_backends: None) -> None:
    port = free_port()
    first = hg.setup(backends=["prometheus"], settings={"prometheus.port": port})
    try:
        with pytest.raises(hg.BackendStartError):
            hg.setup(backends=["prometheus", "exploding"], settings={"prometheus.port": port})
        with hg.command("status"):
            pass
        assert "hakgal_command_duration_seconds_count" in names(scrape(_backend(first).url or ""))
    finally:
        first.shutdown()
