from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_hakgal.conventions import Attr
from otel_hakgal.render import group_by_trace, render_trace


def _spans() -> list:  # type: ignore[type-arg]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for _ in range(2):
        with tracer.start_as_current_span("root"):
            with tracer.start_as_current_span("child", attributes={Attr.PROVER_RESULT: "proved"}):
                pass
            with tracer.start_as_current_span("failing") as failing:
                failing.set_status(Status(StatusCode.ERROR))
                failing.set_attribute(Attr.ERROR_TYPE, "timeout")
    return list(exporter.get_finished_spans())


def test_waterfall_indents_children_in_start_order() -> None:
    traces = group_by_trace(_spans())
    assert len(traces) == 2
    lines = render_trace(traces[0]).splitlines()
    assert lines[0].startswith("trace ")
    assert lines[1].startswith("  root")
    assert lines[2].startswith("    child") and "prover.result=proved" in lines[2]
    assert lines[3].startswith("    failing") and lines[3].endswith("✗ timeout")
    assert " ms " in lines[1]


def test_empty_trace_renders_nothing() -> None:
    assert render_trace([]) == ""
