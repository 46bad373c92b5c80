"""The tail sampling benchmark measures what it claims: every section ran, exported and counted.

Guards correctness, not timing: the quick run (a few hundred traces per variant)
must produce the three sections complete, with every span the sampler kept at
the loopback receiver and about a tenth of them at ``keep_ratio = 0.1``, the
held traces really held (and let go), and no errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.benchmarks import load_benchmark

pytestmark = [pytest.mark.system, pytest.mark.slow]


def test_quick_run_measures_every_section(tmp_path: Path) -> None:
    bench = load_benchmark("tail_sampling")
    output = tmp_path / "tail_sampling.json"
    report: dict[str, Any] = bench.run(True, output)
    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    assert report["errors"] == []
    settings = report["settings"]
    traces = settings["rounds"] * settings["traces_per_round"]

    # 1. request thread: every variant, every trace's five spans, a CPU figure and its ratio to "off".
    request = report["request_thread"]
    assert set(request) == set(bench.VARIANTS)
    for variant, row in request.items():
        assert row["traces"] == traces and row["spans"] == traces * bench.SPANS_PER_TRACE, variant
        assert row["per_trace_s"]["median"] > 0 and row["per_span_s"] > 0, variant
        assert row["ratio_to_off"] > 0 and row["paired_ratio_to_off"]["median"] > 0, variant
    assert request["off"]["ratio_to_off"] == 1.0

    # 3. export: what the receiver got is what the sampler kept; at 0.1 well below 1.0.
    export = report["export"]
    assert set(export) == set(bench.VARIANTS)
    for variant, row in export.items():
        assert row["per_trace_s"]["median"] > 0, variant
        assert row["received_spans"] == row["expected_spans"] == row["kept_traces"] * bench.SPANS_PER_TRACE, variant
    full = traces * bench.SPANS_PER_TRACE
    assert export["off"]["received_spans"] == export["keep-1.0"]["received_spans"] == full
    assert 0 < export["keep-0.1"]["received_spans"] < 0.3 * full
    assert export["keep-0.1"]["received_ratio_to_keep_1"] < 0.3
    assert export["keep-0.1"]["cpu_ratio_to_keep_1"] > 0

    # 2. memory: the traces were held in the sampler, cost memory while held, and were let go.
    memory = report["memory"]
    held = settings["held_traces"]
    for variant in bench.MEMORY_VARIANTS:
        for how in ("tracemalloc", "rss"):
            measured = memory[variant][how]
            assert measured["still_open"] == 0, (variant, how)
            assert measured["open_traces"] == (held if variant != "off" else 0), (variant, how)
        assert memory[variant]["tracemalloc"]["growth_per_trace"] > 0, variant
    sampled = memory["keep-0.1"]["tracemalloc"]
    assert sampled["held_spans"] == held * bench.HELD_SPANS_PER_TRACE
    assert sampled["growth_per_held_span"] > 0
    assert memory["sampler"]["tracemalloc"]["per_trace"] > 0  # holding the children costs more than not
    assert sampled["residual_per_trace"] < 0.25 * sampled["growth_per_trace"]  # ended: the memory returned
    assert "regrowth_per_trace" in memory["keep-0.1"]["rss"]
