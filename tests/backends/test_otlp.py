import logging
import time

import pytest

import otel_hakgal as hg
from otel_hakgal.backends.batching import DROPS
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.conventions import GEN_AI_TOKEN_BUCKETS, Attr, Metric, ProverResult, SpanName
from otel_hakgal.testing import OtlpReceiver


@pytest.fixture
def otlp_handle(otlp_receiver: OtlpReceiver):  # type: ignore[no-untyped-def]
    handle = hg.setup(backends=["otlp"], settings={"otlp.endpoint": otlp_receiver.endpoint, "otlp.compression": "gzip"})
    yield handle
    handle.shutdown()


def test_spans_arrive_with_names_structure_and_attributes(otlp_receiver: OtlpReceiver, otlp_handle: hg.Handle) -> None:
    with hg.command("ask", text="ask Ist Rom die Hauptstadt von Italien?"):
        with hg.query("Ist Rom die Hauptstadt von Italien?") as q:
            q.set_formula("Hauptstadt(Italien, Rom).")
            with hg.llm_call("deepseek", "deepseek-chat", server_address="127.0.0.1") as call:
                call.record_usage(64, 9, finish_reasons=["stop"])
            for order, name in enumerate(("functional", "z3")):
                with hg.prover(name, order=order) as p:
                    p.set_result(ProverResult.UNKNOWN if order == 0 else ProverResult.PROVED)
    otlp_handle.force_flush(10)
    spans = {s.name: s for s in otlp_receiver.wait_for_spans(5)}
    command, query = spans["hakgal.command ask"], spans[SpanName.QUERY]
    llm, z3 = spans["chat deepseek-chat"], spans["hakgal.prover z3"]
    assert len({s.trace_id for s in spans.values()}) == 1
    assert command.parent_span_id is None
    assert query.parent_span_id == command.span_id
    assert llm.parent_span_id == query.span_id and z3.parent_span_id == query.span_id
    assert spans["hakgal.prover functional"].start_ns < z3.start_ns
    assert llm.kind == 3  # SPAN_KIND_CLIENT
    assert llm.attributes[Attr.GEN_AI_USAGE_INPUT_TOKENS] == 64
    assert llm.attributes[Attr.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert query.attributes[Attr.QUERY_FORMULA] == "Hauptstadt(Italien, Rom)."
    assert z3.attributes[Attr.PROVER_RESULT] == "proved"
    assert command.resource["service.name"]
    assert command.scope == "otel_hakgal"


def test_metric_data_points_arrive(otlp_receiver: OtlpReceiver, otlp_handle: hg.Handle) -> None:
    for result in ("proved", "proved", "refuted"):
        with hg.prover("z3") as p:
            p.set_result(result)
    with hg.llm_call("mistral_ai", "mistral-large-latest") as call:
        call.record_usage(1000, 100)
    otlp_handle.force_flush(10)
    runs = {p.attributes[Attr.PROVER_RESULT]: p.value for p in otlp_receiver.wait_for_metric(Metric.PROVER_RUNS)}
    assert runs == {"proved": 2, "refuted": 1}
    [duration] = [
        p for p in otlp_receiver.metric_points(Metric.PROVER_DURATION) if p.attributes[Attr.PROVER_RESULT] == "refuted"
    ]
    assert duration.count == 1 and duration.unit == "s"
    tokens = otlp_receiver.metric_points(Metric.GEN_AI_TOKEN_USAGE)
    assert {p.attributes[Attr.GEN_AI_TOKEN_TYPE]: p.sum for p in tokens} == {"input": 1000, "output": 100}
    assert tokens[0].bounds == tuple(float(b) for b in GEN_AI_TOKEN_BUCKETS)
    [cost] = otlp_receiver.metric_points(Metric.LLM_COST)
    assert cost.value == pytest.approx((1000 * 2.0 + 100 * 6.0) / 1e6)


def test_spans_beyond_the_batch_queue_are_counted_in_the_drop_metric_and_reported_once(
    otlp_receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    DROPS.reset()
    monkeypatch.setattr(DROPS, "settle_s", 0.5)
    caplog.set_level(logging.WARNING, logger="otel_hakgal.export")
    otlp_receiver.fail(delay_s=0.5)  # a slow collector: the first export holds the worker while the queue fills
    settings = {
        "otlp.endpoint": otlp_receiver.endpoint,
        "otlp.metrics": False,
        "batch.max_queue_size": 4,
        "batch.max_export_batch_size": 4,
    }
    handle = hg.setup(backends=["otlp", "memory"], settings=settings)
    try:
        for _ in range(50):
            with hg.command("status"):
                pass
        assert handle.force_flush(10)
        queue = handle.stats()["otlp"].queues["batch span processor 0"]
        metric = handle.backend(MemoryBackend).metrics()
        deadline = time.monotonic() + 5
        while not [r for r in caplog.records if r.name == "otel_hakgal.export"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        handle.shutdown()
        DROPS.reset()

    # the count races the batch worker by a span or so: it reads the SDK's queue before the SDK appends
    assert queue.dropped > 0 and abs(50 - len(otlp_receiver.spans()) - queue.dropped) <= 2
    assert metric is not None
    [point] = [
        p
        for rm in metric.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == Metric.EXPORT_DROPPED
        for p in m.data.data_points
        if p.attributes[Attr.EXPORT_BACKEND] == "otlp"
    ]
    assert point.attributes[Attr.ERROR_TYPE] == "queue_full" and point.value == queue.dropped
    [warning] = [r for r in caplog.records if r.name == "otel_hakgal.export"]
    assert f"otlp: {queue.dropped} queue_full" in warning.getMessage()
