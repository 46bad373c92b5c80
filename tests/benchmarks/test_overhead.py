"""The overhead benchmark measures what it claims, against anchors that do the layer's work.

Guards correctness, not timing (no thresholds on figures): one quick run of the whole
benchmark must produce every variant, every target row and every gunicorn case with sane
figures, every exporting variant's telemetry must arrive where the benchmark counts it, and
the anchors (``otel-by-hand``, ``sentry-native-tree``) must record what the layer records.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.benchmarks import load_benchmark, run_benchmark_child

pytestmark = [pytest.mark.system, pytest.mark.slow]

TARGET_PREFIXES = ("1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. ", "8. ")


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    return load_benchmark("overhead")


@pytest.fixture(scope="module")
def report(overhead: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = Path(tmp_path_factory.mktemp("overhead"), "overhead.json")
    result: dict[str, Any] = overhead.run(True, list(overhead.VARIANTS), output)
    assert json.loads(output.read_text())["targets"] == result["targets"]  # what it prints, it writes
    return result


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_parity_the_anchors_do_the_layers_work(overhead: ModuleType) -> None:
    """Same span names and attribute keys per trace, same metric names, data points and records."""
    summaries = {name: run_benchmark_child("overhead", "--parity", name) for name in overhead.PARITY_VARIANTS}
    layer, by_hand, native = (summaries[name] for name in overhead.PARITY_VARIANTS)
    # otel-by-hand records exactly what the layer records.
    assert by_hand["traces"] == layer["traces"]
    assert by_hand["metric_points"] == layer["metric_points"]
    assert by_hand["histogram_records"] == layer["histogram_records"]
    # What is compared is the real work: about a dozen spans a request, the layer's metrics.
    assert all(len(trace) >= 11 for trace in layer["traces"])
    assert {"hakgal.command.duration", "gen_ai.client.token.usage", "hakgal.llm.cost", "hakgal.cache.lookups"} <= set(
        layer["metric_points"]
    )
    # sentry-native-tree: a transaction per request, with the layer's spans below its root and their keys as data.
    assert len(native["transactions"]) == len(layer["traces"])
    comparison = overhead.compare_parity(layer, by_hand, native)
    assert comparison["ok"], comparison["problems"]


def test_every_variant_and_target_row(overhead: ModuleType, report: dict[str, Any]) -> None:
    assert report["parity"]["ok"], report["parity"]["problems"]
    assert list(report["variants"]) == list(overhead.VARIANTS)
    for variant, row in report["variants"].items():
        for key in ("p50_s", "p99_s", "request_path_s", "total_s"):
            assert _finite(row[key]) and row[key] > 0, (variant, key, row[key])
        # The request path is part of the whole process's CPU.
        assert row["request_path_s"] <= row["total_s"] * 1.05, variant
        for key in ("added_request_path_s", "added_total_s"):
            assert _finite(row[key]), (variant, key)
    names = [target["target"] for target in report["targets"]]
    for prefix in TARGET_PREFIXES:
        assert any(name.startswith(prefix) for name in names), prefix
    for backend in overhead.LAYER_TARGETED:
        assert f"1. {backend}: request-path CPU / otel-by-hand" in names
    for target in report["targets"]:
        assert _finite(target["value"]), target  # every target was measured
        assert isinstance(target["met"], bool)
        spread = target["spread"]
        if spread is not None:  # a CPU ratio: its per-round ratios, of every round
            low, high = spread["min_max"]
            assert low <= spread["quartiles"][0] <= spread["quartiles"][1] <= high, target
            assert 1 <= spread["rounds"] <= report["settings"]["cpu_rounds"], target


def test_every_exporting_variant_delivers_what_it_produced(overhead: ModuleType, report: dict[str, Any]) -> None:
    rows = report["variants"]
    for variant in overhead.EXPORTING:
        throughput = rows[variant]["throughput"]
        assert throughput["received"] == throughput["expected"] > 0, variant  # every span arrived
        assert throughput["dropped"] == 0 and throughput["dropped_in_process"] == 0, variant
        assert throughput["spans_per_s"] > 0 and throughput["delivered_spans_per_cpu_s"] > 0
    # The request phases' telemetry arrived where the benchmark counts it.
    assert rows["otlp"]["received"]["otlp_spans"] > 0
    assert rows["otel-by-hand"]["received"]["otlp_spans"] > 0
    for variant in ("sentry", "sentry+otlp", "sentry-native-tree"):
        received = rows[variant]["received"]
        assert received["transactions"] > 0 and received["transaction_spans"] > received["transactions"], variant
    assert rows["sentry-otlp"]["received"]["sentry_otlp_spans"] > 0
    for variant in ("bare", "none", "otel-flask"):
        assert not rows[variant]["received"]  # no receiver: they send nowhere


def test_gunicorn_cases(overhead: ModuleType, report: dict[str, Any]) -> None:
    saturation = report["saturation"]
    assert set(saturation) == set(overhead.SATURATION_VARIANTS)
    for variant, case in saturation.items():
        assert case["saturation_rate"] > 0, variant
        assert case["workers_reporting"] == overhead.GUNICORN_WORKERS, variant  # each worker flushed and reported
        for phase in ("at_saturation", "at_1.5x"):
            assert case[phase]["answered"] > 0 and case[phase]["statuses"].get("200", 0) > 0, (variant, phase)
        assert 0 <= case["received_after_exit"] <= case["produced_traces"], variant
        if variant in overhead.LAYER_BACKENDS:
            assert case["spans_ended"] >= case["produced_traces"] * 10, variant  # about a dozen spans a request
    round_trip = report["round_trip"]
    assert {case["variant"] for case in round_trip} == set(overhead.ROUND_TRIP_VARIANTS)
    assert [case["variant"] for case in round_trip if case["rate"] != overhead.ROUND_TRIP_RATE] == ["sentry"]
    for case in round_trip:
        assert case["produced"] > 0 and 0 <= case["delivered"] <= case["received_after_exit"] <= case["produced"]
