"""The Grafana dashboard in configs/dashboards: the seed's four dashboards, tokens and cost, valid names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_hakgal.backends.prometheus import label_name, series_names
from otel_hakgal.conventions import (
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_SERVER_METRICS,
    LEGACY_HTTP_SERVER_METRICS,
    Metric,
    metric_def,
)
from tests.configs.promql import known_names, metric_names, problems

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "configs" / "dashboards" / "hakgal.json"
RULES = ROOT / "configs" / "alerts" / "hakgal.rules.yml"

SEED_ROWS = (
    "Query performance by type",
    "LLM provider response times",
    "Cache hit rates",
    "Resource usage trends",
)


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def rows() -> dict[str, list[dict[str, Any]]]:
    """Row title -> the panels below it, in order."""
    result: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            current = result.setdefault(panel["title"], [])
        else:
            current.append(panel)
    return result


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def rule_expressions() -> list[tuple[str, str]]:
    data = yaml.safe_load(RULES.read_text())
    return [(rule["alert"], rule["expr"]) for group in data["groups"] for rule in group["rules"]]


def test_dashboard_has_the_seed_dashboards_as_rows() -> None:
    by_row = rows()
    for title in SEED_ROWS:
        assert by_row.get(title), f"no panels in row {title!r}"
    assert by_row.get("LLM tokens and cost")


def _row_exprs(title: str) -> str:
    return "\n".join(t["expr"] for p in rows()[title] for t in p["targets"])


def test_query_performance_has_p50_and_p95_by_command() -> None:
    exprs = _row_exprs("Query performance by type")
    for quantile in ("0.5", "0.95"):
        assert f"histogram_quantile({quantile}, sum by (le, hakgal_command_name)" in exprs


def test_llm_row_has_p50_p95_by_provider_and_failure_rate() -> None:
    exprs = _row_exprs("LLM provider response times")
    for quantile in ("0.5", "0.95"):
        assert f"histogram_quantile({quantile}, (sum by (le, gen_ai_provider_name)" in exprs
    assert 'error_type!=""' in exprs


def test_llm_panels_read_the_current_genai_names_or_else_their_coming_ones() -> None:
    current = {
        Metric.GEN_AI_OPERATION_DURATION: (Metric.GEN_AI_INFERENCE_DURATION,),
        Metric.GEN_AI_TOKEN_USAGE: (Metric.GEN_AI_INFERENCE_INPUT_TOKENS, Metric.GEN_AI_INFERENCE_OUTPUT_TOKENS),
    }
    checked = 0
    for title, expr in panel_queries():
        for metric, upcoming in current.items():
            definition = metric_def(metric)
            prefix = series_names(definition.name, definition.unit, definition.instrument)[0].rsplit("_", 1)[0]
            if prefix + "_" not in expr:
                continue
            for name in upcoming:
                coming = metric_def(name)
                coming_prefix = series_names(coming.name, coming.unit, coming.instrument)[0].rsplit("_", 1)[0]
                assert coming_prefix + "_" in expr, f"{title}: no fallback to {coming.name}"
            checked += 1
    assert checked >= 7


def test_cache_row_has_proof_prompt_and_oracle() -> None:
    exprs = _row_exprs("Cache hit rates")
    for cache in ("proof", "prompt", "oracle"):
        assert f'hakgal_cache_name="{cache}"' in exprs


def test_resource_row_has_cpu_memory_threads_and_file_descriptors() -> None:
    names = metric_names(_row_exprs("Resource usage trends"))
    expected = {"process_cpu_time_seconds_total", "process_memory_usage_bytes", "process_threads", "process_open_fds"}
    assert expected <= names


def _http_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row" and "HTTP" in p["title"]]


def test_http_panels_use_the_stable_http_conventions() -> None:
    """``http.server.request.duration`` in seconds by ``http.response.status_code``, never the old names."""
    duration = next(m for m in HTTP_SERVER_METRICS if m.name == "http.server.request.duration")
    assert duration.unit == "s"
    panels = _http_panels()
    exprs = "\n".join(t["expr"] for p in panels for t in p["targets"])
    assert set(series_names(duration.name, duration.unit, duration.instrument)) & metric_names(exprs)
    assert f"sum by ({label_name(HTTP_RESPONSE_STATUS_CODE)})" in exprs
    stable = {name for m in HTTP_SERVER_METRICS for name in series_names(m.name, m.unit, m.instrument)}
    legacy = {name for m in LEGACY_HTTP_SERVER_METRICS for name in series_names(m.name, m.unit, m.instrument)}
    assert legacy - stable and not (legacy - stable) & metric_names(exprs)
    assert "http_status_code" not in exprs and "http_method" not in exprs
    p95 = next(p for p in panels if "duration" in p["title"])
    assert p95["fieldConfig"]["defaults"]["unit"] == "s"


def test_token_and_cost_panels_use_the_token_and_cost_metrics() -> None:
    names = metric_names(_row_exprs("LLM tokens and cost"))
    token = metric_def(Metric.GEN_AI_TOKEN_USAGE)
    cost = metric_def(Metric.LLM_COST)
    assert set(series_names(token.name, token.unit, token.instrument)) & names
    assert set(series_names(cost.name, cost.unit, cost.instrument)) <= names


def test_requires_lists_what_the_dashboard_uses_and_no_input_goes_unused() -> None:
    """Grafana's import checks ``__requires``; an ``__inputs`` entry nothing references only asks a question."""
    data = dashboard()
    required = {(item["type"], item["id"]) for item in data["__requires"]}
    panel_types = {panel["type"] for panel in data["panels"]} - {"row"}
    expected = {("panel", kind) for kind in panel_types} | {("grafana", "grafana"), ("datasource", "prometheus")}
    assert expected == required
    text = DASHBOARD.read_text()
    for item in data.get("__inputs", []):
        assert "${" + item["name"] + "}" in text, f"__inputs {item['name']} is never used"


def test_panels_are_well_formed() -> None:
    data = dashboard()
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    assert data["uid"] and data["schemaVersion"] >= 36
    assert {v["name"] for v in data["templating"]["list"]} == {"datasource", "job"}
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            for name in metric_names(target["expr"]):
                assert f'{name}{{job=~"$job"' in target["expr"], f"{panel['title']}: {name} without the job filter"


@pytest.mark.parametrize(("title", "expr"), panel_queries() + rule_expressions())
def test_names_in_dashboards_and_rules_are_from_the_conventions(title: str, expr: str) -> None:
    known = known_names()
    assert metric_names(expr), f"{title}: no metric"
    assert problems(expr, known) == [], title


def test_the_name_check_catches_mistakes() -> None:
    known = known_names()
    assert problems("rate(hakgal_command_duration_bucket[5m])", known)  # unit suffix missing
    assert problems("rate(hakgal_prover_runs[5m])", known)  # _total missing
    assert problems('sum by (hakgal_command_name) (hakgal_prover_runs_total{hakgal_prover_name="z3"})', known)
    assert problems('hakgal_cache_lookups_total{cache="proof"}', known)
    assert problems("process_cpu_seconds_total", known)  # prometheus_client's name, not the OTel one
    assert not problems('sum by (le) (rate(hakgal_command_duration_seconds_bucket{job=~"$job"}[5m]))', known)
