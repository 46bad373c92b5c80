"""The alert rules in configs/alerts: structure, their tie to the report's indicators, promtool unit tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_hakgal.report import INDICATORS
from otel_hakgal.testing.prometheus import require_binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "configs" / "alerts" / "hakgal.rules.yml"
UNIT_TESTS = Path(__file__).resolve().parent / "promtool" / "hakgal_rules_test.yml"


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_one_rule_per_seed_alert_with_window_for_severity_and_summary() -> None:
    rules = _rules()
    assert [r["alert"] for r in rules] == [i.alert for i in INDICATORS]
    for rule in rules:
        assert re.search(r"\[\d+m\]", rule["expr"]), f"{rule['alert']}: no rate window"
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]


def test_rule_expressions_are_the_report_indicators() -> None:
    by_name = {rule["alert"]: rule for rule in _rules()}
    for indicator in INDICATORS:
        assert by_name[indicator.alert]["expr"] == indicator.alert_expr(), indicator.alert
        assert f"[{indicator.window}]" in by_name[indicator.alert]["expr"]


def test_thresholds_are_the_seed_guides() -> None:
    thresholds = {i.key: i.threshold for i in INDICATORS}
    assert thresholds == {
        "api_error_rate": 0.05,
        "average_response_time": 10.0,
        "llm_failure_rate": 0.20,
        "prover_error_rate": 0.10,
    }
    per_label = {i.key: i.by for i in INDICATORS}
    assert per_label["llm_failure_rate"] == "gen_ai_provider_name"
    assert per_label["prover_error_rate"] == "hakgal_prover_name"


@pytest.mark.system
def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


@pytest.mark.system
def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {i.alert for i in INDICATORS}
    assert fired == names
    assert quiet == names


@pytest.mark.system
@pytest.mark.parametrize("indicator", INDICATORS, ids=lambda i: i.key)
@pytest.mark.parametrize("factor", [0.9, 1.1], ids=["threshold-lowered", "threshold-raised"])
def test_unit_tests_are_tight_around_each_threshold(indicator: Any, factor: float, tmp_path: Path) -> None:
    """Moving one threshold by 10% either way must break the unit tests: they sit just above and below it."""
    text = RULES.read_text()
    expr = indicator.alert_expr()
    assert expr in text
    moved = expr.rsplit(" > ", 1)[0] + f" > {indicator.threshold * factor:g}"
    (tmp_path / "rules.yml").write_text(text.replace(expr, moved))
    unit_tests = UNIT_TESTS.read_text().replace("../../../configs/alerts/hakgal.rules.yml", "rules.yml")
    (tmp_path / "test.yml").write_text(unit_tests)
    result = _promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"{indicator.alert} with threshold x{factor}: the unit tests still pass"
    assert indicator.alert in result.stdout + result.stderr
