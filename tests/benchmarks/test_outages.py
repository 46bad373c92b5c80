"""The outage benchmark measures what it claims: every backend x fault ran, met its fault, and was checked.

Guards correctness, not timing: the smallest configuration (a few requests per
phase) must still produce a row per backend and fault, with every request
answered, the fault really reaching the exporter (or the scraper), warnings
and queues recorded, and recovery checked against the real receiver.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.benchmarks import load_benchmark

pytestmark = [pytest.mark.system, pytest.mark.slow]

REQUESTS = 10


def _load() -> ModuleType:
    return load_benchmark("outages")


def test_smallest_run_measures_every_backend_and_fault(tmp_path: Path) -> None:
    outages = _load()
    output = tmp_path / "outages.json"
    report: dict[str, Any] = outages.run(True, list(outages.BACKENDS), None, REQUESTS, output)
    assert json.loads(output.read_text())["rows"] == report["rows"]

    expected = {(b, f) for b in outages.BACKENDS for f in ("healthy", *outages.faults_of(b))}
    assert {(row["backend"], row["fault"]) for row in report["rows"]} == expected
    for row in report["rows"]:
        assert row["requests"] == REQUESTS and row["answered"] == REQUESTS, row
        assert row["p50_ms"] > 0 and row["p50_ratio"] is not None, row
    for backend, phases in report["phases"].items():
        for fault, phase in phases.items():
            where = f"{backend} {fault}"
            if backend != "prometheus":
                assert phase["queues"], f"{where}: no export queue inspected"
                assert phase["recovered"] is True, f"{where}: the probe span never reached the receiver"
                assert phase.get("fault_hit", True), f"{where}: the fault never reached the exporter"
                if fault not in ("healthy", "delay-5s"):
                    assert phase["export_warnings"] == 1, f"{where}: {phase['warning_messages']}"
    prometheus = report["phases"]["prometheus"]
    assert prometheus["healthy"]["scrapes"] >= 1 and prometheus["healthy"]["failed"] == 0
    assert prometheus["delay-5s"]["scrapes"] >= 1 and prometheus["delay-5s"]["recovered"] is True
    assert prometheus["unreachable"]["recovered"] is True
    assert prometheus["port-taken"]["url"] is None
    assert any("cannot listen" in message for message in prometheus["port-taken"]["warning_messages"])
