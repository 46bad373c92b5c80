from pathlib import Path

import pytest

import otel_hakgal as hg
from otel_hakgal.conventions import Metric
from otel_hakgal.testing import jsonl_metric_names, jsonl_spans


def test_writes_otlp_json_lines_with_hex_ids(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    handle = hg.setup(backends=["jsonl"], settings={"jsonl.path": str(path)})
    with hg.command("status") as cmd, hg.cache_lookup("proof"):
        span_context = cmd.span.get_span_context()
    handle.shutdown()
    spans = jsonl_spans(path)
    by_name = {s["name"]: s for s in spans}
    command = by_name["hakgal.command status"]
    assert command["traceId"] == f"{span_context.trace_id:032x}"
    assert command["spanId"] == f"{span_context.span_id:016x}"
    assert by_name["hakgal.cache proof"]["parentSpanId"] == command["spanId"]
    assert {"key": "hakgal.command.name", "value": {"stringValue": "status"}} in command["attributes"]
    metric_names = jsonl_metric_names(path)
    assert Metric.CACHE_LOOKUPS in metric_names


def test_unwritable_path_loses_only_what_it_cannot_write(tmp_path: Path, export_log: pytest.LogCaptureFixture) -> None:
    # The batch thread would swallow an exception: observe the file and the log instead.
    path = tmp_path / "later" / "telemetry.jsonl"
    handle = hg.setup(backends=["jsonl"], settings={"jsonl.path": str(path)})
    try:
        with hg.command("status"):
            pass
        handle.force_flush(5)  # this export fails: the directory does not exist
        assert not path.exists()
        path.parent.mkdir()
        with hg.command("ask"):
            pass
        handle.force_flush(5)  # the next one is written: the backend did not give up
        # The first flush's two writes failed (its spans and its metrics), and were counted.
        assert handle.stats()["jsonl"].sends == {"FileNotFoundError": 2}
    finally:
        handle.shutdown()
    assert [span["name"] for span in jsonl_spans(path)] == ["hakgal.command ask"]
    warnings = [r.getMessage() for r in export_log.records if r.name == "otel_hakgal.delivery"]
    assert len(warnings) == 2 and all(str(path) in w and "dropped" in w for w in warnings), warnings
    # The exporter returned a failure; an exception would have reached the SDK, which logs a traceback.
    assert [r for r in export_log.records if r.exc_info] == [], export_log.text
