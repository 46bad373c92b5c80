"""A real Prometheus scraping the reference service: every dashboard query and alert expression has data,
and with every LLM call failing the LLM-provider alert fires.

The service runs as in production, zero-code: ``opentelemetry-instrument python -m otel_hakgal.demo.api``
with the ``prometheus`` backend chosen by environment variables. Prometheus scrapes it every second and
evaluates the shipped rules every second.

The shipped ``HakgalLlmProviderFailing`` rule waits ``for: 5m``, too long for a test. The firing test loads
the shipped rules file unchanged (its alert must reach ``pending`` with the failing provider's label) plus a
test-only copy of that one rule, with the expression copied verbatim from the shipped file and only ``for``
shortened to 1s and an ``override`` label added; that copy must reach ``firing``. So the expression that
fires is byte for byte the shipped one, and the shipped ``for`` is the only thing not exercised live
(``promtool test rules`` covers it).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_hakgal import cli
from otel_hakgal.backends.prometheus import label_name, series_names
from otel_hakgal.conventions import HTTP_RESPONSE_STATUS_CODE, SCHEMA_URL, Metric, metric_def
from otel_hakgal.demo.simulator import FaultKind, LLMSimulator
from otel_hakgal.report import LLM_FAILURE_RATE
from otel_hakgal.testing.prometheus import PrometheusServer, require_binary, wait_for
from tests.configs.test_dashboards import RULES, panel_queries, rule_expressions
from tests.support.processes import VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

APP = "otel_hakgal.demo.api"

WORKLOAD = (
    "ask What is the capital of France?",
    "ask What is the capital of France?",  # cache hits
    "clearcache",  # so every round reaches the provers, not only the proof cache
    "ask Does Tokyo have 37400000 inhabitants?",  # the oracle and its cache
    "ask Is Rome the capital of Italy?",
    "explain Is Rome the capital of Italy?",
    "what_is Socrates",
    "search capital",
    "show",
    "status",
    "parse IsCapital(Paris, France).",
    "parse IsCapital(Paris,",  # invalid formula
    "add_raw IsCapital(Berlin, Germany).",
    "ask Is Berlin the capital of Germany?",
    "retract IsCapital(Berlin, Germany).",
    "learn The Seine flows through Paris.",
    "help",
    "clearcache",
    "ask What is the capital of France?",
)


def _substitute(expr: str) -> str:
    """A dashboard query as Grafana would send it, for all jobs."""
    return expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace('"$job"', '".+"')


def _ratio_part(rule_expr: str) -> str:
    """An alert expression without its threshold comparison: the indicator itself."""
    head, _, threshold = rule_expr.rpartition(" > ")
    assert re.fullmatch(r"[0-9.]+", threshold), rule_expr
    return head


class Service:
    """The reference service under opentelemetry-instrument, served metrics on its own scrape port."""

    def __init__(self, **extra_env: str) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        env = clean_env(
            OTEL_HAKGAL_BACKENDS="prometheus",
            OTEL_EXPORTER_PROMETHEUS_PORT=str(self.metrics_port),
            **extra_env,
        )
        python = str(VENV_BIN / "python")
        argv = [str(VENV_BIN / "opentelemetry-instrument"), python, "-m", APP, "--port", str(self.port)]
        self.process = ServerProcess(argv, env, self.port)
        self.process.wait_ready()
        self.target = f"127.0.0.1:{self.metrics_port}"

    def stop(self) -> str:
        return self.process.stop()


class Workload:
    """Sends ``commands`` round after round, paced, until stopped: Prometheus must see counters grow
    between scrapes (a series' first sample is not an increase), so the load spans many scrapes."""

    def __init__(self, service: Service, commands: tuple[str, ...], pause_s: float = 0.05) -> None:
        self.service, self.commands, self.pause_s = service, commands, pause_s
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for command in self.commands:
                self.statuses.append(self.service.process.post_command(command)[0])
                if self._stop.wait(self.pause_s):
                    return

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return require_binary("prometheus")


@pytest.fixture(scope="module")
def normal(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus with the shipped rules, scraping the service while the workload runs.

    The service emits the GenAI conventions' coming names as well, so that the queries can be checked
    against those alone (see :func:`test_llm_queries_work_on_the_coming_genai_names_alone`).
    """
    service = Service(OTEL_HAKGAL_GENAI_UPCOMING_NAMES="true")
    try:
        with PrometheusServer(
            tmp_path_factory.mktemp("prometheus"), [service.target], rule_files=[RULES], binary=prometheus_binary
        ) as server:
            wait_for(server.targets_up, 20, "the service's scrape target to be up")
            with Workload(service, WORKLOAD) as workload:
                wait_for(lambda: len(workload.statuses) >= 2 * len(WORKLOAD), 60, "two rounds of the workload")
                yield server
            assert 200 in workload.statuses
    finally:
        service.stop()


@pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=[t for t, _ in panel_queries()])
def test_every_dashboard_query_returns_data(normal: PrometheusServer, title: str, expr: str) -> None:
    query = _substitute(expr)

    def numbers() -> list[Any] | None:
        # A ratio of rates is NaN in a window without new events: wait for one that has them.
        result = normal.client.query(query)
        return result if any(value == value for _, value in result) else None

    assert wait_for(numbers, 20, f"a number (not NaN) for panel {title!r}: {query}")


def _without_current_genai_names(expr: str) -> str:
    """``expr`` as a Prometheus that only has the coming GenAI names would answer it."""
    for metric in (Metric.GEN_AI_OPERATION_DURATION, Metric.GEN_AI_TOKEN_USAGE):
        definition = metric_def(metric)
        for name in series_names(definition.name, definition.unit, definition.instrument):
            expr = expr.replace(name + "{", "hakgal_no_such_series{").replace(name + "[", "hakgal_no_such_series[")
    return expr


LLM_QUERIES = [
    *((title, expr) for title, expr in panel_queries() if "gen_ai_client_" in expr),
    *((alert, _ratio_part(expr)) for alert, expr in rule_expressions() if "gen_ai_client_" in expr),
]


@pytest.mark.parametrize(("title", "expr"), LLM_QUERIES, ids=[t for t, _ in LLM_QUERIES])
def test_llm_queries_work_on_the_coming_genai_names_alone(normal: PrometheusServer, title: str, expr: str) -> None:
    both = _substitute(expr)
    alone = _without_current_genai_names(both)
    assert "gen_ai_client_operation_duration" not in alone and "gen_ai_client_token_usage" not in alone

    def at(query: str, when: str) -> dict[tuple[tuple[str, str], ...], float]:
        data = normal.client.get("/api/v1/query", query=query, time=when)
        return {tuple(sorted(item["metric"].items())): float(item["value"][1]) for item in data["result"]}

    def same() -> bool | None:
        # Both names carry the same data, so the answers agree, asked for the same instant.
        when = f"{time.time() - 1:.3f}"
        full, only = at(both, when), at(alone, when)
        numbers = {k: v for k, v in full.items() if v == v}
        return bool(numbers) and all(abs(only.get(k, -1.0) - v) <= 1e-9 * max(1.0, abs(v)) for k, v in numbers.items())

    assert wait_for(same, 20, f"{title!r} to answer the same on the coming names alone: {alone}")


@pytest.mark.parametrize(("alert", "expr"), rule_expressions(), ids=[a for a, _ in rule_expressions()])
def test_every_alert_expression_returns_data(normal: PrometheusServer, alert: str, expr: str) -> None:
    indicator = _ratio_part(expr)
    result = wait_for(lambda: normal.client.query(indicator), 15, f"data for alert {alert}")
    assert result, alert
    wait_for(lambda: normal.rule_health().get(alert) == "ok", 10, f"rule {alert} evaluated without error")


def test_promtool_check_metrics_passes_on_the_live_scrape(normal: PrometheusServer) -> None:
    """The service's endpoint, fetched from the URL Prometheus scrapes, passes promtool's lint."""
    [target] = normal.client.get("/api/v1/targets")["activeTargets"]
    with urllib.request.urlopen(target["scrapeUrl"], timeout=10) as response:
        scrape = response.read().decode()
    assert "process_threads" in scrape and "http_server_request_duration_seconds_count" in scrape
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=scrape,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_http_series_carry_the_stable_conventions_and_the_layer_its_schema_url(normal: PrometheusServer) -> None:
    status = label_name(HTTP_RESPONSE_STATUS_CODE)
    requests = wait_for(
        lambda: normal.client.query(f"sum by ({status}, http_route) (http_server_request_duration_seconds_count)"),
        15,
        "HTTP request durations in seconds",
    )
    assert any(labels == {status: "200", "http_route": "/api/command"} and value > 0 for labels, value in requests)
    assert normal.client.query("http_server_duration_milliseconds_count") == []  # the old HTTP conventions
    schemas = normal.client.query("count by (otel_scope_schema_url) (hakgal_command_duration_seconds_count)")
    assert [labels["otel_scope_schema_url"] for labels, _ in schemas] == [SCHEMA_URL]


def test_the_normal_workload_fires_nothing(normal: PrometheusServer) -> None:
    firing = [a for a in normal.alerts() if a["state"] == "firing"]
    assert firing == []


def _override_rules(tmp_path: Path) -> Path:
    """The shipped LLM-provider rule, expression verbatim, with ``for: 1s`` and an ``override`` label."""
    shipped = yaml.safe_load(RULES.read_text())
    rule: dict[str, Any] = next(
        r for g in shipped["groups"] for r in g["rules"] if r["alert"] == LLM_FAILURE_RATE.alert
    )
    copy = {**rule, "for": "1s", "labels": {**rule["labels"], "override": "for-1s"}}
    path = tmp_path / "override.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "test-override", "rules": [copy]}]}, sort_keys=False))
    return path


def _llm_alerts(server: PrometheusServer) -> list[dict[str, Any]]:
    return [a for a in server.alerts() if a["labels"]["alertname"] == LLM_FAILURE_RATE.alert]


def test_llm_provider_alert_fires_when_every_llm_call_fails(prometheus_binary: str, tmp_path: Path) -> None:
    # The service's LLM providers point at a simulator in this process, told to fail every call.
    simulator = LLMSimulator().start()
    for provider in ("deepseek", "mistral", "gemini"):
        simulator.inject(provider, FaultKind.SERVER_ERROR, times=None)
    service = Service(HAKGAL_LLM_BASE_URL=simulator.base_url)
    try:
        with PrometheusServer(
            tmp_path, [service.target], rule_files=[RULES, _override_rules(tmp_path)], binary=prometheus_binary
        ) as server:
            wait_for(server.targets_up, 20, "the service's scrape target to be up")
            asks = ("ask What is the capital of France?", "ask Is Rome the capital of Italy?")
            with Workload(service, asks):
                fired = wait_for(
                    lambda: [a for a in _llm_alerts(server) if a["state"] == "firing"],
                    40,
                    f"{LLM_FAILURE_RATE.alert} to fire",
                )
                shipped = [a for a in _llm_alerts(server) if "override" not in a["labels"]]
    finally:
        output = service.stop()
        simulator.stop()
    for alert in fired:
        assert alert["labels"]["override"] == "for-1s", alert
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["gen_ai_provider_name"]
        assert float(alert["value"]) > LLM_FAILURE_RATE.threshold
        assert alert["annotations"]["summary"].startswith("LLM provider "), alert
    # The shipped rule, unchanged (for: 5m), sees the same providers failing: pending, not yet firing.
    providers = {a["labels"]["gen_ai_provider_name"] for a in fired}
    assert {a["labels"]["gen_ai_provider_name"] for a in shipped} >= providers, output
    assert {a["state"] for a in shipped} == {"pending"}


def test_report_reads_the_live_prometheus(normal: PrometheusServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "--prometheus", normal.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"HAK-GAL report (Prometheus {normal.url}, since start)"
    indicators = lines[lines.index("Alert indicators") + 3 : lines.index("Commands") - 1]
    assert indicators and not any(line.endswith("no data") for line in indicators), indicators
    commands = lines[lines.index("Commands") + 3 : lines.index("Provers") - 1]
    assert {line.split()[0] for line in commands} >= {"ask", "status", "show"}
    assert lines[lines.index("LLM providers") + 3 :]  # at least one provider row
