import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry import trace

import otel_hakgal as hg
from otel_hakgal import runtime
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.conventions import Attr, Metric, SpanName
from otel_hakgal.testing import OtlpReceiver, SentryReceiver, jsonl_metric_names, jsonl_spans


def _workload() -> None:
    with hg.command("ask", text="ask Was ist die Hauptstadt von Frankreich?"):
        with hg.query("Was ist die Hauptstadt von Frankreich?"), hg.llm_call("deepseek", "deepseek-chat") as call:
            call.record_usage(40, 8)


def test_every_configured_backend_gets_spans_and_metrics(otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    jsonl_path = tmp_path / "out.jsonl"
    handle = hg.setup(
        backends=["memory", "otlp", "jsonl", "console"],
        settings={"otlp.endpoint": otlp_receiver.endpoint, "jsonl.path": str(jsonl_path), "console.stream": "stdout"},
    )
    try:
        _workload()
        assert handle.force_flush(10)
    finally:
        handle.shutdown()
    names = {"hakgal.command ask", SpanName.QUERY, "chat deepseek-chat"}
    assert {s.name for s in handle.backend("memory").spans()} == names
    assert {s.name for s in otlp_receiver.wait_for_spans(3)} == names
    assert {s["name"] for s in jsonl_spans(jsonl_path)} == names
    jsonl_metrics = jsonl_metric_names(jsonl_path)
    assert {Metric.COMMAND_DURATION, Metric.GEN_AI_TOKEN_USAGE} <= jsonl_metrics
    assert otlp_receiver.metric_points(Metric.COMMAND_DURATION)


def test_setup_twice_does_not_double_providers_processors_or_spans(otlp_receiver: OtlpReceiver) -> None:
    settings = {"otlp.endpoint": otlp_receiver.endpoint}
    first = hg.setup(backends=["otlp"], settings=settings)
    provider = trace.get_tracer_provider()
    again = hg.setup(backends=["otlp"], settings=settings)
    assert again is first  # same configuration: the running handle
    second = hg.setup(backends=["otlp", "memory"], settings=settings)
    assert second is not first and not first.active
    assert trace.get_tracer_provider() is provider
    try:
        _workload()
        second.force_flush(10)
        assert len(second.backend("memory").spans()) == 3
        time.sleep(0.2)
        assert len(otlp_receiver.wait_for_spans(3)) == 3
        assert len(otlp_receiver.spans()) == 3  # not 6
    finally:
        second.shutdown()


def test_shutdown_is_bounded_when_the_backend_is_down() -> None:
    with OtlpReceiver() as receiver:
        receiver.fault_delay_s = 30  # answers only after 30 s
        handle = hg.setup(
            backends=["otlp"],
            settings={"otlp.endpoint": receiver.endpoint, "export.shutdown_timeout": 1.0, "otlp.timeout": 20},
        )
        _workload()
        started = time.monotonic()
        finished = handle.shutdown()
        elapsed = time.monotonic() - started
        receiver.fault_delay_s = 0
    assert finished is False
    assert elapsed < 3.0


def test_unreachable_backend_never_breaks_the_app(export_log: pytest.LogCaptureFixture) -> None:
    # The batch thread would swallow an exception: observe what a user sees, the app's thread and the log.
    handle = hg.setup(backends=["otlp"], settings={"otlp.endpoint": "http://127.0.0.1:9", "otlp.timeout": 0.5})
    export_log.clear()
    try:
        for _ in range(50):
            _workload()
        # Nothing was exported, nor failed, on the app's thread.
        app_thread = threading.get_ident()
        assert [r for r in export_log.records if r.thread == app_thread] == [], export_log.text
    finally:
        started = time.monotonic()
        handle.shutdown(timeout_s=2)
        elapsed = time.monotonic() - started
    assert elapsed < 3.0
    # The span exporter reports the failure in the log; no exception reached the SDK (it would log a traceback).
    failed = [r for r in export_log.records if r.name == "opentelemetry.exporter.otlp.proto.http.trace_exporter"]
    assert any("Failed to export spans" in r.getMessage() for r in failed), export_log.text
    assert [r for r in export_log.records if r.exc_info] == [], export_log.text


def test_disabled_sends_nothing(otlp_receiver: OtlpReceiver) -> None:
    handle = hg.setup(backends=["otlp"], settings={"otlp.endpoint": otlp_receiver.endpoint, "disabled": True})
    _workload()
    handle.shutdown()
    time.sleep(0.2)
    assert otlp_receiver.spans() == [] and handle.backends == {}


def test_sampler_from_config_applies(otlp_receiver: OtlpReceiver) -> None:
    handle = hg.setup(backends=["memory"], settings={"sampling.sampler": "always_off"})
    try:
        _workload()
        assert handle.backend("memory").spans() == []
        # metrics are recorded regardless of sampling
        points = handle.backend("memory").metrics().resource_metrics[0].scope_metrics[0].metrics
        assert Metric.COMMAND_DURATION in {m.name for m in points}
    finally:
        handle.shutdown()


def test_resource_carries_service_identity() -> None:
    handle = hg.setup(backends=["memory"], service_name="hak-gal-test", settings={"service.environment": "ci"})
    try:
        _workload()
        span = handle.backend("memory").spans()[0]
    finally:
        handle.shutdown()
    # The TracerProvider's resource is fixed at the first setup() in a process,
    # so assert only what every test run shares.
    assert span.resource.attributes["telemetry.distro.name"] == "otel_hakgal"


def test_resource_in_a_fresh_process(otlp_receiver: OtlpReceiver) -> None:
    code = f"""
import otel_hakgal as hg
h = hg.setup(backends=["otlp"], service_name="hak-gal-api", settings={{"otlp.endpoint": "{otlp_receiver.endpoint}"}})
with hg.command("status"):
    pass
h.shutdown()
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "SENTRY_ENVIRONMENT": "staging",
        "SENTRY_RELEASE": "1.0.0",
        "OTEL_RESOURCE_ATTRIBUTES": "team=reasoning",
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [span] = otlp_receiver.wait_for_spans(1)
    assert span.resource["service.name"] == "hak-gal-api"
    assert span.resource["deployment.environment.name"] == "staging"
    assert span.resource["service.version"] == "1.0.0"
    assert span.resource["team"] == "reasoning"
    assert span.attributes[Attr.COMMAND_NAME] == "status"


@pytest.mark.parametrize("bad", [{"backends": ["nope"]}, {"sampling.ratio": 2}])
def test_setup_rejects_bad_configuration(bad: dict[str, object]) -> None:
    with pytest.raises(hg.ConfigError):
        hg.setup(settings=bad)


def test_a_failing_span_processor_never_reaches_the_app_or_the_other_backends(plugin_backends: None) -> None:
    handle = hg.setup(backends=["broken", "memory"])
    try:
        _workload()
        assert len(handle.backend(MemoryBackend).spans()) == 3
    finally:
        handle.shutdown()


def test_every_span_is_scrubbed_and_cut_before_any_backend(otlp_receiver: OtlpReceiver) -> None:
    """Spans from any tracer (not only the layer's API) pass the one redaction policy."""
    handle = hg.setup(
        backends=["memory", "otlp"],
        settings={"otlp.endpoint": otlp_receiver.endpoint, "redaction.max_attribute_length": 40},
    )
    try:
        tracer = trace.get_tracer("someone.else")
        with tracer.start_as_current_span("third-party") as span:
            span.set_attribute("url.query", "api_key=abcdefgh12345678&page=2")
            span.set_attribute("long", "é" * 100)
            span.set_attribute("broken", "half a pair \ud800 of surrogates")
            span.record_exception(RuntimeError("login failed for password=hunter2hunter2"))
        assert handle.force_flush(10)
    finally:
        handle.shutdown()
    assert handle.spans_ended >= 1
    (received,) = otlp_receiver.wait_for_spans(1)
    (kept,) = handle.backend("memory").spans()
    for attributes in (received.attributes, dict(kept.attributes or {})):
        assert attributes["url.query"] == "api_key=[REDACTED]&page=2"
        assert attributes["long"] == "é" * 40
        assert attributes["broken"].encode("utf-8")  # repaired, so OTLP could encode it
    assert "hunter2hunter2" not in repr([dict(e.attributes or {}) for e in kept.events])


def test_scrubbing_can_be_turned_off_but_the_cut_stays() -> None:
    handle = hg.setup(
        backends=["memory"], settings={"redaction.scrub_secrets": False, "redaction.max_attribute_length": 30}
    )
    try:
        with trace.get_tracer("x").start_as_current_span("s") as span:
            span.set_attribute("url.query", "api_key=abcdefgh12345678")
            span.set_attribute("long", "x" * 100)
    finally:
        handle.shutdown()
    (kept,) = handle.backend("memory").spans()
    assert kept.attributes is not None
    assert kept.attributes["url.query"] == "api_key=abcdefgh12345678"
    assert kept.attributes["long"] == "x" * 30


def test_a_backend_that_fails_to_start_leaves_the_previous_setup_running(
    plugin_backends: None, otlp_receiver: OtlpReceiver
) -> None:
    from otel_hakgal.pipeline import active_handle

    first = hg.setup(backends=["memory"])
    try:
        with pytest.raises(hg.BackendStartError, match="'exploding' failed to start: OSError: cannot open the loft"):
            hg.setup(backends=["otlp", "exploding"], settings={"otlp.endpoint": otlp_receiver.endpoint})
        assert active_handle() is first and first.active
        with hg.command("status"):
            pass
        assert [s.name for s in first.backend(MemoryBackend).spans()] == ["hakgal.command status"]
        logging.getLogger("tests.pipeline").warning("still exported")  # the log handler stayed too
        assert [r.log_record.body for r in first.backend(MemoryBackend).logs()] == ["still exported"]
        # The otlp backend that had started was stopped again: nothing reaches its receiver.
        time.sleep(0.3)
        assert otlp_receiver.spans() == []
        assert otlp_receiver.logs() == []
    finally:
        first.shutdown()


def test_reconfiguring_starts_the_new_backends_before_the_old_ones_stop(tmp_path: Path) -> None:
    """Spans ended during a reconfiguration are not lost: the switch is one step."""
    first = hg.setup(backends=["memory"])
    second = hg.setup(backends=["memory"], settings={"redaction.text_mode": "omit"})
    try:
        assert not first.active and second.active
        with hg.command("status", text="status please"):
            logging.getLogger("tests.pipeline").warning("logged during status please")
        assert first.backend(MemoryBackend).spans() == [] and first.backend(MemoryBackend).logs() == []
        [span] = second.backend(MemoryBackend).spans()
        assert Attr.COMMAND_TEXT not in (span.attributes or {})  # the new configuration's policy
        [record] = second.backend(MemoryBackend).logs()
        assert record.log_record.body == "logged during [TEXT]"  # the same policy for log records
        assert record.log_record.span_id == span.context.span_id
        assert runtime.current.config is second.config
    finally:
        second.shutdown()
    assert runtime.current.config.backends == () and runtime.current.backends == ()


def test_shutdown_returns_the_api_to_the_idle_runtime() -> None:
    handle = hg.setup(backends=["memory"], settings={"redaction.text_mode": "omit"})
    assert runtime.current.scrubber is not None and runtime.current.config.redaction.text_mode == "omit"
    handle.shutdown()
    assert runtime.current.scrubber is None and runtime.current.config.redaction.text_mode == "truncate"
    with hg.command("status", text="after shutdown"):  # still usable, sends nothing
        pass


def test_handle_backend_by_name_or_class_and_public_stats(otlp_receiver: OtlpReceiver) -> None:
    from otel_hakgal.backends.otlp import OtlpBackend

    handle = hg.setup(
        backends=["otlp"],
        settings={
            "otlp.endpoint": otlp_receiver.endpoint,
            "batch.max_queue_size": 4,
            "batch.max_export_batch_size": 4,
            "batch.schedule_delay": 60,
        },
    )
    try:
        assert handle.backend(OtlpBackend) is handle.backend("otlp")
        with pytest.raises(KeyError, match="'sentry' is not active; active: otlp"):
            handle.backend("sentry")
        otlp_receiver.go_down()
        for _ in range(10):
            with hg.step("hakgal.parse"):
                pass
        queues = handle.stats()["otlp"].queues
        queue = queues["batch span processor 0"]
        assert queue.capacity == 4 and queue.queued <= 4 and queue.dropped >= 1
        assert handle.stats()["otlp"].dropped == sum(q.dropped for q in queues.values())
    finally:
        otlp_receiver.heal()
        handle.shutdown(timeout_s=2)


def test_a_disabled_setup_keeps_its_configuration_and_records_nothing() -> None:
    config = hg.load_config(overrides={"disabled": True, "export.shutdown_timeout": 1.0}, environ={})
    handle = hg.setup(config)
    try:
        assert handle.config is config and hg.setup(config) is handle  # the same config: the running handle
        with hg.command("status") as op:
            assert not op.span.is_recording()
    finally:
        handle.shutdown()


def test_after_shutdown_nothing_is_recorded_and_no_vendor_header_goes_out(sentry_receiver: SentryReceiver) -> None:
    handle = hg.setup(backends=["sentry"], settings={"sentry.dsn": sentry_receiver.dsn})
    with hg.command("status"):
        assert "sentry-trace" in hg.propagation_headers()
    handle.shutdown()
    with hg.command("status") as op:
        assert not op.span.is_recording()
        assert "sentry-trace" not in hg.propagation_headers()


def test_a_backend_that_cannot_be_loaded_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_hakgal.backends import registry

    dist = tmp_path / "ghost-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[otel_hakgal.backends]\nghost = ghost_module:GhostBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._targets.cache_clear()
    registry.backend_class.cache_clear()
    try:
        with pytest.raises(hg.ConfigError) as caught:
            hg.load_config(overrides={"backends": ["ghost"]}, environ={})
        [problem] = caught.value.problems
        assert problem.startswith("setup() argument: key 'backends': backend 'ghost' (ghost_module:GhostBackend)")
        assert "cannot be loaded: No module named 'ghost_module'" in problem
    finally:
        registry._targets.cache_clear()
        registry.backend_class.cache_clear()
