"""The main job: ``otel-hakgal demo`` runs the workload and prints waterfalls and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_hakgal.demo import run
from otel_hakgal.demo.commands import known_verbs
from otel_hakgal.demo.workload import WORKLOAD


def test_the_workload_covers_every_verb_and_the_failure_paths() -> None:
    verbs = {step.command.split()[0] for step in WORKLOAD}
    assert len(WORKLOAD) >= 20
    assert set(known_verbs()) <= verbs


def test_demo_prints_waterfalls_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--z3-timeout", "0.3"]) == 0

    out = capsys.readouterr().out
    assert out.count("\ntrace ") == len(WORKLOAD)
    assert "hakgal.command ask" in out and "hakgal.prover z3" in out
    assert "✗ timeout" in out  # the prover timeout
    assert "✗ 503" in out and "✗ malformed_response" in out  # the fallbacks (HTTP failures by status code)
    assert "✗ invalid_formula" in out
    assert "cache.hit=True" in out
    for section in ("Commands by outcome:", "Alert indicators", "Commands", "Provers", "LLM providers", "Caches"):
        assert f"\n{section}" in out
    for indicator in ("API error rate", "Average response time", "LLM provider failure rate", "Logic engine"):
        assert indicator in out
    assert "(UNEXPECTED)" not in out
    # Every request is a command, the unknown verb too (issue 14, item 13); client mistakes are not errors.
    assert f"(total {len(WORKLOAD)})" in out
    assert "rejected 2" in out and "error 1" in out
    assert "hakgal.command _OTHER" in out


def test_demo_with_a_config_sends_telemetry_to_its_backends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "telemetry.jsonl"
    config = tmp_path / "otel_hakgal.toml"
    config.write_text(f'backends = ["jsonl"]\n\n[jsonl]\npath = "{target}"\n', encoding="utf-8")

    assert run.main(["--config", str(config), "--z3-timeout", "0.3"]) == 0

    out = capsys.readouterr().out
    assert "telemetry sent to: jsonl" in out
    assert "\ntrace " not in out
    exported = target.read_text(encoding="utf-8")
    assert "hakgal.command ask" in exported
    assert all(json.loads(line) for line in exported.splitlines())


def test_workload_metrics_for_the_report_command() -> None:
    snapshot = run.workload_metrics(z3_timeout_s=0.3)
    assert snapshot.commands["ask"].count >= 10
    assert snapshot.provers["z3"].results["timeout"] == 1
    assert snapshot.providers["deepseek"].failures >= 1
    assert snapshot.caches["proof"].results["hit"] >= 1
