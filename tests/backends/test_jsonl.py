import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

import otel_hakgal as hg
from otel_hakgal.backends.jsonl import JsonlBackend, JsonlFileSpanExporter, from_otlp_json, to_otlp_json
from otel_hakgal.config import load_config, probe_config
from otel_hakgal.conventions import Metric
from otel_hakgal.testing import jsonl_logs, jsonl_metric_names, jsonl_spans


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
    blocker = tmp_path / "later"
    blocker.write_text("a file where the directory belongs\n")
    path = blocker / "telemetry.jsonl"
    handle = hg.setup(backends=["jsonl"], settings={"jsonl.path": str(path)})
    try:
        with hg.command("status"):
            pass
        assert not handle.force_flush(5)  # this export fails: 'later' is no directory
        assert not path.exists()
        blocker.unlink()
        blocker.mkdir()
        with hg.command("ask"):
            pass
        assert handle.force_flush(5)  # the next one is written: the backend did not give up
        # The first flush's two writes failed (its spans and its metrics), and were counted.
        assert handle.stats()["jsonl"].sends == {"NotADirectoryError": 2}
    finally:
        handle.shutdown()
    assert [span["name"] for span in jsonl_spans(path)] == ["hakgal.command ask"]
    warnings = [r.getMessage() for r in export_log.records if r.name == "otel_hakgal.delivery"]
    assert len(warnings) == 2 and all(str(path) in w and "dropped" in w for w in warnings), warnings
    # The exporter returned a failure; an exception would have reached the SDK, which logs a traceback.
    assert [r for r in export_log.records if r.exc_info] == [], export_log.text


# --- a path that cannot be written is reported at setup (issue 14, item 13) ----------------------


def _unwritable(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A jsonl path that cannot be written, and what check-config says about it."""
    if case == "under a regular file":  # fails even for root
        blocker = tmp_path / "file.txt"
        blocker.write_text("not a directory\n")
        return blocker / "deeper" / "out.jsonl", f"{str(blocker)!r} is not a directory"
    if case == "a directory":
        return tmp_path, "it is a directory"
    assert case == "in a read-only directory"
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    return read_only / "sub" / "out.jsonl", f"no permission to create files in {str(read_only)!r}"


UNWRITABLE = [
    "under a regular file",
    "a directory",
    pytest.param(
        "in a read-only directory",
        marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories"),
    ),
]


@pytest.mark.parametrize("case", UNWRITABLE)
def test_an_unwritable_path_warns_at_setup_and_fails_the_flush_while_other_backends_work(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = _unwritable(tmp_path, case)
    caplog.set_level(logging.WARNING, logger="otel_hakgal")
    handle = hg.setup(backends=["jsonl", "memory"], settings={"jsonl.path": str(path)})
    try:
        [warning] = [r.getMessage() for r in caplog.records if r.name == "otel_hakgal"]
        assert f"jsonl backend cannot write {path}" in warning and "dropped" in warning, warning
        with hg.command("status"):
            pass
        assert not handle.force_flush(5)
        assert not handle.force_flush(5)  # still unwritable, even with nothing new to write
        memory = handle.backend("memory")
        assert [s.name for s in memory.spans()] == ["hakgal.command status"]  # the other backend works
    finally:
        handle.shutdown()
    assert not path.is_file()


@pytest.mark.parametrize("case", UNWRITABLE)
def test_check_config_names_an_unwritable_path_without_creating_anything(tmp_path: Path, case: str) -> None:
    path, reason = _unwritable(tmp_path, case)
    before = sorted(tmp_path.rglob("*"))
    config = load_config(overrides={"backends": ["jsonl"], "jsonl.path": str(path)}, environ={})  # valid
    [problem] = probe_config(config)
    assert problem == (
        f"setup() argument: key 'jsonl.path': {str(path)!r} cannot be written: {reason}; "
        "the jsonl backend would drop everything"
    )
    assert sorted(tmp_path.rglob("*")) == before


def test_missing_directories_are_created_at_start(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "out.jsonl"
    config = load_config(overrides={"backends": ["jsonl"], "jsonl.path": str(path)}, environ={})
    assert probe_config(config) == []  # creatable: fine
    assert JsonlBackend.probe(config, config.settings_for("jsonl")) == []
    handle = hg.setup(config)
    try:
        assert path.is_file()  # made at start, before any export
        with hg.command("status"):
            pass
        assert handle.force_flush(5)
    finally:
        handle.shutdown()
    assert "hakgal.command status" in {span["name"] for span in jsonl_spans(path)}


def test_the_plain_sdk_exporter_warns_once_when_it_is_first_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = _unwritable(tmp_path, "under a regular file")
    caplog.set_level(logging.WARNING, logger="otel_hakgal")
    exporter = JsonlFileSpanExporter(str(path))
    assert caplog.records == []  # made without I/O: nothing probed, nothing to say yet
    exporter.export([])
    exporter.export([])
    # On the layer's own logger, once; each failed write goes to otel_hakgal.delivery besides.
    own = [record.getMessage() for record in caplog.records if record.name == "otel_hakgal"]
    assert [f"jsonl backend cannot write {path}" in message for message in own] == [True]


def test_the_plain_sdk_exporter_creates_nothing_until_it_is_first_used(tmp_path: Path) -> None:
    path = tmp_path / "new" / "out.jsonl"
    exporter = JsonlFileSpanExporter(str(path))
    assert not path.parent.exists()
    exporter.export([])
    assert path.is_file()


# --- log records (issue 17) ----------------------------------------------------------------------------------


def test_log_records_are_otlp_json_lines_in_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    app = logging.getLogger("hakgal.tests.jsonl")
    handle = hg.setup(backends=["jsonl"], settings={"jsonl.path": str(path), "jsonl.metrics": False})
    try:
        with hg.command("status") as cmd:
            app.warning("inside %s", "status")
            span_context = cmd.span.get_span_context()
        app.error("outside")
    finally:
        handle.shutdown()
    records = {record["body"]["stringValue"]: record for record in jsonl_logs(path)}
    inside = records["inside status"]
    assert inside["traceId"] == f"{span_context.trace_id:032x}" and inside["spanId"] == f"{span_context.span_id:016x}"
    assert (inside["severityText"], inside["severityNumber"]) == ("WARN", 13)
    assert "traceId" not in records["outside"]  # no span: no ids (empty bytes are left out)
    [command] = jsonl_spans(path)
    assert command["traceId"] == inside["traceId"]

    # Each line parses back into the OTLP request it was written from, with the ids as bytes again.
    log_lines = [line for line in path.read_text(encoding="utf-8").splitlines() if '"resourceLogs"' in line]
    assert log_lines and all(set(json.loads(line)) == {"resourceLogs"} for line in log_lines)
    requests = [from_otlp_json(line, ExportLogsServiceRequest()) for line in log_lines]
    parsed = [
        record
        for request in requests
        for resource_logs in request.resource_logs
        if dict(_resource(resource_logs))["service.name"] == "hak-gal"
        for scope_logs in resource_logs.scope_logs
        if scope_logs.scope.name == app.name
        for record in scope_logs.log_records
    ]
    [parsed_inside] = [record for record in parsed if record.body.string_value == "inside status"]
    assert parsed_inside.trace_id == span_context.trace_id.to_bytes(16, "big")
    assert parsed_inside.span_id == span_context.span_id.to_bytes(8, "big")
    assert to_otlp_json(requests[0]) == log_lines[0]  # and back to the same line


def _resource(resource_logs: Any) -> list[tuple[str, str]]:
    return [(pair.key, pair.value.string_value) for pair in resource_logs.resource.attributes]


def test_log_records_are_not_written_with_logs_off(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    handle = hg.setup(backends=["jsonl"], settings={"jsonl.path": str(path), "logs.enabled": False})
    try:
        with hg.command("status"):
            logging.getLogger("hakgal.tests.jsonl").warning("not written")
    finally:
        handle.shutdown()
    assert jsonl_spans(path) and jsonl_logs(path) == []
