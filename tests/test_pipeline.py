import logging
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import otel_hakgal as hg
from otel_hakgal import runtime
from otel_hakgal.backends.batching import CountingBatchSpanProcessor, ReadsOnlySpanContext
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.config import Config
from otel_hakgal.conventions import Attr, Metric, SpanName
from otel_hakgal.pipeline import FanOutSpanProcessor
from otel_hakgal.redaction import SecretScrubber
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


# --- secrets never leave unscrubbed, wherever the scrubbing runs (issue 19) ---

_KEY = "sk-Q7rT2xLm9PzW4vKs8NdY"  # an OpenAI-style key: found by its format
_PASSWORD = "hunter2hunter2"
_TOKEN = "Zx9Qw8Er7Ty6Ui5"
_QUERY_KEY = "abcdefgh12345678"
_PLANTED = ("Q7rT2xLm9PzW4vKs8NdY", _PASSWORD, _TOKEN, _QUERY_KEY)


def _secret_trace() -> None:
    """A root and a child from a plain tracer, a secret in each name, attribute, event and status."""
    tracer = trace.get_tracer("someone.else")
    with tracer.start_as_current_span(f"handle {_KEY}", attributes={"note": f"auth Bearer {_TOKEN}"}) as root:
        with tracer.start_as_current_span(f"lookup password={_PASSWORD}") as child:
            child.set_attribute("url.query", f"api_key={_QUERY_KEY}&page=2")
            child.set_attribute("hakgal.custom", _KEY)
            child.add_event(f"retry {_KEY}", {"detail": f"password={_PASSWORD}"})
            child.record_exception(RuntimeError(f"login failed for password={_PASSWORD}"))
            child.set_status(trace.Status(trace.StatusCode.ERROR, f"denied for {_KEY}"))
        root.set_status(trace.Status(trace.StatusCode.ERROR, f"upstream said Bearer {_TOKEN}"))


def _span_text(spans: object) -> str:
    """Every string of SDK spans: names, attributes, events, links, status descriptions."""
    parts: list[str] = []
    for span in spans:  # type: ignore[attr-defined]
        parts += [span.name, repr(dict(span.attributes or {})), span.status.description or ""]
        parts += [f"{e.name} {dict(e.attributes or {})!r}" for e in span.events]
        parts += [repr(dict(link.attributes or {})) for link in span.links]
    return "\n".join(parts)


@pytest.mark.parametrize("backend", ["memory", "otlp", "otlp+tail", "jsonl", "console", "sentry", "sentry-otlp"])
def test_every_backend_type_receives_only_scrubbed_spans(
    backend: str,
    otlp_receiver: OtlpReceiver,
    sentry_receiver: SentryReceiver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Batch processors and the Sentry worker scrub on their own threads, the others on the fan-out's: either
    way each backend's output holds no planted secret, and shows where one was replaced."""
    jsonl_path = tmp_path / "out.jsonl"
    otlp_receiver.bodies = []
    sentry_receiver.bodies = []
    settings: dict[str, object] = {
        "otlp.endpoint": otlp_receiver.endpoint,
        "jsonl.path": str(jsonl_path),
        "console.stream": "stdout",
        "console.metrics": False,
        "sentry.dsn": sentry_receiver.dsn,
        "sentry-otlp.dsn": sentry_receiver.dsn,
        "logs.enabled": False,
    }
    if backend == "otlp+tail":
        settings.update({"sampling.tail.enabled": True, "sampling.tail.keep_ratio": 1.0})
    handle = hg.setup(backends=[backend.partition("+")[0]], settings=settings)
    try:
        _secret_trace()
        assert handle.force_flush(10)
        if backend == "memory":
            received = _span_text(handle.backend("memory").spans())
        elif backend.startswith("otlp"):
            otlp_receiver.wait_for_spans(2)
            received = b"".join(otlp_receiver.bodies).decode("utf-8", "replace")
        elif backend == "jsonl":
            received = jsonl_path.read_text()
        elif backend == "console":
            received = capsys.readouterr().out
        else:
            sentry_receiver.wait_for("transaction" if backend == "sentry" else "otlp", 1)
            received = b"".join(sentry_receiver.bodies).decode("utf-8", "replace")
    finally:
        handle.shutdown()
    assert "[REDACTED]" in received
    assert [secret for secret in _PLANTED if secret in received] == []


def test_third_party_processors_get_scrubbed_spans_and_the_layers_batch_processor_scrubs_on_export(
    plugin_backends: None,
) -> None:
    """A processor the layer does not know gets each span scrubbed; a plugin's own CountingBatchSpanProcessor
    gets it unscrubbed and exports it scrubbed."""
    handle = hg.setup(backends=["recording"], settings={"logs.enabled": False})
    try:
        _secret_trace()
        assert handle.force_flush(10)
        plugin: Any = handle.backend("recording")
        processor_got = _span_text(plugin.processor.ended)
        exported = _span_text(plugin.exporter.get_finished_spans())
    finally:
        handle.shutdown()
    for received in (processor_got, exported):
        assert "[REDACTED]" in received
        assert [secret for secret in _PLANTED if secret in received] == []


def test_the_fan_out_leaves_scrubbing_to_processors_that_scrub_on_export_with_its_scrubber() -> None:
    """The request thread scrubs only for processors that do not scrub on export with the fan-out's scrubber."""

    class Keep(SpanExporter):
        def __init__(self) -> None:
            self.spans: list[ReadableSpan] = []

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.spans += spans
            return SpanExportResult.SUCCESS

    class Spy(CountingBatchSpanProcessor):
        def __init__(self, exporter: Keep) -> None:
            super().__init__(exporter, Config())
            self.given: list[ReadableSpan] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.given.append(span)
            super().on_end(span)

    class Seen(SpanProcessor):
        def __init__(self) -> None:
            self.given: list[ReadableSpan] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.given.append(span)

    class Ids(ReadsOnlySpanContext, Seen):
        pass

    scrubber = SecretScrubber()
    bound, foreign, unbound = (Spy(Keep()) for _ in range(3))
    bound.scrub_with(scrubber)
    foreign.scrub_with(SecretScrubber())  # another configuration's scrubber: the fan-out scrubs for it
    seen, ids = Seen(), Ids()
    fan_out = FanOutSpanProcessor()
    fan_out.switch([bound, foreign, unbound, seen, ids], scrubber)
    provider = TracerProvider()
    provider.add_span_processor(fan_out)
    try:
        with provider.get_tracer("t").start_as_current_span("s") as span:
            span.set_attribute("url.query", f"api_key={_QUERY_KEY}")
        assert fan_out.force_flush()
    finally:
        provider.shutdown()

    def query(spans: list[ReadableSpan]) -> object:
        (only,) = spans
        return (only.attributes or {})["url.query"]

    assert query(bound.given) == f"api_key={_QUERY_KEY}"  # as it ended: scrubbed on the export thread
    assert ids.given[0] is bound.given[0]  # reads only the span's ids: nothing to scrub for it
    for processor in (foreign, unbound, seen):
        assert query(processor.given) == "api_key=[REDACTED]"
    assert foreign.given[0] is unbound.given[0] is seen.given[0]  # scrubbed once for all of them
    for processor in (bound, foreign, unbound):
        assert isinstance(processor.exporter, Keep)
        assert query(processor.exporter.spans) == "api_key=[REDACTED]"
