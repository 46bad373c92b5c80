"""Tail sampling in the process: what is kept, whole, on every backend, within bounds.

The decision rules and bounds run on a real SDK TracerProvider feeding a
:class:`TailSampler`; the end-to-end cases run ``setup()`` with the real
exporters to loopback receivers (OTLP protobuf, Sentry envelopes, a jsonl file)
and check what each received against what the app did.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode, format_trace_id

import otel_hakgal as hg
from otel_hakgal.config import TailRule, TailSamplingSettings
from otel_hakgal.conventions import Attr, Metric, ProverResult, SamplingDecision, SamplingReason, TailSamplingLoss
from otel_hakgal.report import snapshot_from_metrics
from otel_hakgal.tail_sampling import TailSampler, TailTally, decide, ratio_keeps
from otel_hakgal.testing import OtlpReceiver, SentryReceiver, jsonl_spans
from tests.backends.test_sentry import PUBLIC_KEY, dsn

# --- the sampler on a real TracerProvider ----------------------------------------------------


class _Feed(SpanProcessor):
    """Feeds a provider's spans to the sampler under test, as the layer's fan-out does."""

    def __init__(self, sampler: TailSampler) -> None:
        self.sampler = sampler

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.sampler.on_start(span)

    def on_end(self, span: ReadableSpan) -> None:
        self.sampler.on_end(span)


class Rig:
    """A TracerProvider whose spans pass a :class:`TailSampler`; records what it kept and discarded."""

    def __init__(self, **settings: Any) -> None:
        self.now = 0.0
        self.kept: list[ReadableSpan] = []
        self.discarded: list[ReadableSpan] = []
        self.tally = TailTally()
        self.sampler = TailSampler(
            TailSamplingSettings(enabled=True, **settings),
            keep=self.kept.append,
            discard=self.discarded.append,
            tally=self.tally,
            clock=lambda: self.now,
        )
        provider = TracerProvider()
        provider.add_span_processor(_Feed(self.sampler))
        self.tracer = provider.get_tracer("test")

    def trace(self, children: int = 2, error: bool = False, **attributes: Any) -> int:
        """One trace: a root with ``children`` children, the last one failing with ``error``."""
        with self.tracer.start_as_current_span("root") as root:
            for index in range(children):
                with self.tracer.start_as_current_span(f"child {index}") as child:
                    child.set_attributes(attributes)
                    if error and index == children - 1:
                        child.set_status(Status(StatusCode.ERROR, "boom"))
            return int(root.get_span_context().trace_id)

    def kept_traces(self) -> dict[int, list[ReadableSpan]]:
        traces: dict[int, list[ReadableSpan]] = defaultdict(list)
        for span in self.kept:
            traces[span.context.trace_id].append(span)
        return dict(traces)


def test_the_ratio_keeps_what_the_sdk_ratio_sampler_keeps() -> None:
    rng = random.Random(7)
    sdk = TraceIdRatioBased(0.3)
    ids = [rng.getrandbits(128) for _ in range(3000)]
    assert [ratio_keeps(i, 0.3) for i in ids] == [sdk.should_sample(None, i, "x").decision.is_sampled() for i in ids]
    kept = sum(ratio_keeps(i, 0.3) for i in ids)
    assert 800 < kept < 1000  # about 30 %


def test_a_trace_with_an_error_is_kept_whole_with_its_root_last_and_marked() -> None:
    rig = Rig(keep_ratio=0.0)
    failed = rig.trace(children=3, error=True)
    rig.trace(children=3)

    assert list(rig.kept_traces()) == [failed]
    spans = rig.kept_traces()[failed]
    assert [s.name for s in spans] == ["child 0", "child 1", "child 2", "root"]
    root = spans[-1]
    assert root.attributes is not None
    assert root.attributes[Attr.SAMPLING_REASON] == SamplingReason.ERROR
    assert root.attributes[Attr.SAMPLING_RATE] == 1.0
    assert all(Attr.SAMPLING_REASON not in (s.attributes or {}) for s in spans[:-1])
    # The dropped trace reached the processors as unsampled copies only: released, never exported.
    assert len(rig.discarded) == 4 and not any(s.context.trace_flags.sampled for s in rig.discarded)
    assert rig.tally.decisions() == {
        (SamplingDecision.KEPT, SamplingReason.ERROR): 1,
        (SamplingDecision.DROPPED, SamplingReason.RATIO): 1,
    }


def test_slow_roots_rules_and_the_ratio_keep_traces_for_their_reason() -> None:
    rig = Rig(
        keep_ratio=0.0,
        keep_slower_than_s=0.05,
        rules=(
            TailRule("hakgal.prover.result", equals="timeout", name="prover-timeout"),
            TailRule("error.type"),  # present
            TailRule("hakgal.cache.hit", equals=True),
            TailRule("gen_ai.usage.input_tokens", equals=42),
        ),
    )
    timeout = rig.trace(**{Attr.PROVER_RESULT: ProverResult.TIMEOUT})
    proved = rig.trace(**{Attr.PROVER_RESULT: ProverResult.PROVED})
    typed = rig.trace(**{Attr.ERROR_TYPE: "503"})
    hit = rig.trace(**{Attr.CACHE_HIT: True})
    missed = rig.trace(**{Attr.CACHE_HIT: False})
    tokens = rig.trace(**{Attr.GEN_AI_USAGE_INPUT_TOKENS: 42})
    with rig.tracer.start_as_current_span("slow root") as root:
        root.end(end_time=(root.start_time or 0) + 60_000_000)  # 60 ms
        slow = int(root.get_span_context().trace_id)

    kept = rig.kept_traces()
    assert set(kept) == {timeout, typed, hit, tokens, slow}
    assert proved not in kept and missed not in kept
    assert kept[slow][-1].attributes[Attr.SAMPLING_REASON] == SamplingReason.SLOW  # type: ignore[index]
    assert kept[timeout][-1].attributes[Attr.SAMPLING_REASON] == SamplingReason.RULE  # type: ignore[index]


def test_a_rule_keeps_its_share_and_says_so_in_the_rate() -> None:
    rig = Rig(keep_ratio=0.0, rules=(TailRule("hakgal.prover.result", equals="timeout", keep_ratio=0.5),))
    ids = [rig.trace(**{Attr.PROVER_RESULT: "timeout"}) for _ in range(400)]
    kept = rig.kept_traces()
    assert set(kept) == {i for i in ids if ratio_keeps(i, 0.5)}
    assert 140 < len(kept) < 260
    assert {spans[-1].attributes[Attr.SAMPLING_RATE] for spans in kept.values()} == {0.5}  # type: ignore[index]


def test_decide_takes_the_first_reason_in_order() -> None:
    settings = TailSamplingSettings(enabled=True, keep_ratio=1.0, keep_slower_than_s=1.0)
    rig = Rig()
    rig.trace(error=True)
    failing = rig.kept[:3]
    assert decide(settings, 1, failing, duration_s=5.0).reason is SamplingReason.ERROR
    assert decide(settings, 1, failing[:1], duration_s=5.0).reason is SamplingReason.SLOW
    assert decide(settings, 1, failing[:1], duration_s=0.5).reason is SamplingReason.RATIO


def test_spans_that_end_after_the_decision_follow_it() -> None:
    rig = Rig(keep_ratio=0.0)
    with rig.tracer.start_as_current_span("root") as root:
        straggler = rig.tracer.start_span("detached")
        root.set_status(Status(StatusCode.ERROR))
    straggler.end()  # after the root: the trace was kept, so is this span
    with rig.tracer.start_as_current_span("plain"):
        late = rig.tracer.start_span("late")
    late.end()

    assert [s.name for s in rig.kept] == ["root", "detached"]
    assert [s.name for s in rig.discarded] == ["plain", "late"]


def test_past_max_spans_per_trace_spans_are_dropped_and_the_trace_counted() -> None:
    rig = Rig(keep_ratio=1.0, max_spans_per_trace=5)
    rig.trace(children=9)
    assert len(rig.kept) == 5 and rig.kept[-1].name == "child 4"  # the root did not fit either
    assert rig.tally.losses() == {TailSamplingLoss.TRACE_FULL: 1}


def test_past_max_open_traces_the_oldest_is_decided_early_and_marked_partial() -> None:
    rig = Rig(keep_ratio=1.0, max_open_traces=2)
    roots = [rig.tracer.start_span(f"root {i}") for i in range(3)]
    assert rig.sampler.open_traces == 2
    for root in roots:
        root.end()
    assert [s.name for s in rig.kept] == ["root 0", "root 1", "root 2"]
    assert rig.kept[0].attributes[Attr.SAMPLING_PARTIAL] is True  # type: ignore[index]
    assert Attr.SAMPLING_PARTIAL not in (rig.kept[1].attributes or {})
    assert rig.tally.losses() == {TailSamplingLoss.TOO_MANY_TRACES: 1}


def test_a_root_open_past_max_trace_age_is_decided_on_what_it_holds() -> None:
    rig = Rig(keep_ratio=0.0, max_trace_age_s=30.0, keep_slower_than_s=100.0)
    root = rig.tracer.start_span("long root")
    with otel_context_of(root):
        with rig.tracer.start_as_current_span("failed child") as child:
            child.set_status(Status(StatusCode.ERROR))
    assert rig.kept == [] and rig.sampler.held_spans == 1
    rig.now = 31.0
    rig.trace(children=0)  # any later span lets the sampler look for old traces
    assert [s.name for s in rig.kept] == ["failed child"]
    assert rig.kept[0].attributes[Attr.SAMPLING_PARTIAL] is True  # type: ignore[index]
    root.end()  # follows the decision, marked too
    assert [s.name for s in rig.kept] == ["failed child", "long root"]
    assert rig.kept[1].attributes[Attr.SAMPLING_PARTIAL] is True  # type: ignore[index]
    assert rig.tally.losses() == {TailSamplingLoss.TOO_OLD: 1}


def test_flush_open_decides_every_held_trace() -> None:
    rig = Rig(keep_ratio=1.0)
    rig.tracer.start_span("never ends")
    rig.sampler.flush_open()
    assert [s.name for s in rig.kept] == [] and rig.sampler.open_traces == 0
    assert rig.tally.losses() == {TailSamplingLoss.SHUTDOWN: 1}


def otel_context_of(span: Any) -> Any:
    from opentelemetry import trace

    return trace.use_span(span, end_on_exit=False)


# --- end to end: every backend receives the same whole traces ---------------------------------


@pytest.fixture
def reset_tally() -> Iterator[None]:
    from otel_hakgal.tail_sampling import TALLY

    TALLY.reset()
    yield
    TALLY.reset()


def _workload() -> tuple[set[str], set[str], int]:
    """30 commands: every 7th fails, every 5th has a refuting prover. Returns (failed, refuted, total)."""
    failed: set[str] = set()
    timed_out: set[str] = set()
    for index in range(30):
        try:
            with hg.command(f"ask question {index}") as command:
                with hg.query("Is Rome a city?"), hg.prover("z3") as prover:
                    prover.set_result(ProverResult.REFUTED if index % 5 == 0 else ProverResult.PROVED)
                trace_id = format_trace_id(command.span.get_span_context().trace_id)
                if index % 5 == 0:
                    timed_out.add(trace_id)
                if index % 7 == 0:
                    failed.add(trace_id)
                    raise RuntimeError("the knowledge base is damaged")
        except RuntimeError:
            pass
    return failed, timed_out, 30


def test_every_backend_receives_exactly_the_kept_traces_whole(
    tmp_path: Path, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver, reset_tally: None
) -> None:
    jsonl = tmp_path / "spans.jsonl"
    handle = hg.setup(
        backends=["otlp", "sentry", "jsonl", "memory"],
        settings={
            "otlp.endpoint": otlp_receiver.endpoint,
            "sentry.dsn": dsn(sentry_receiver),
            "jsonl.path": str(jsonl),
            "sampling.tail": {
                "enabled": True,
                "keep_ratio": 0.0,
                "rules": [{"name": "refuted", "attribute": "hakgal.prover.result", "equals": "refuted"}],
            },
        },
    )
    try:
        failed, timed_out, total = _workload()
        handle.force_flush(10)
        expected = failed | timed_out
        assert 0 < len(expected) < total

        otlp = defaultdict(list)
        for span in otlp_receiver.wait_for_spans(3 * len(expected)):
            otlp[span.trace_id].append(span.name)
        transactions = {t["contexts"]["trace"]["trace_id"]: t for t in sentry_receiver.wait_for("transaction", 9)}
        jsonl_traces = defaultdict(list)
        for record in jsonl_spans(jsonl):
            jsonl_traces[record["traceId"]].append(record)
        metrics = handle.backend("memory").metrics()  # type: ignore[attr-defined]
        memory = {format_trace_id(s.context.trace_id) for s in handle.backend("memory").spans()}  # type: ignore[attr-defined]
    finally:
        handle.shutdown()

    assert set(otlp) == expected
    assert all(len(names) == 3 and names[-1].startswith("hakgal.command ask") for names in otlp.values()), otlp
    assert set(transactions) == expected == set(jsonl_traces) == memory
    assert all(len(t["spans"]) == 2 for t in transactions.values())
    assert all(len(spans) == 3 for spans in jsonl_traces.values())
    # Metrics are never sampled: every command is counted, kept or not.
    snapshot = snapshot_from_metrics(metrics)
    assert sum(group.count for group in snapshot.commands.values()) == total
    assert {key: count for key, count in snapshot.sampling.items() if count} == {
        (SamplingDecision.KEPT, SamplingReason.ERROR): len(failed),
        (SamplingDecision.KEPT, SamplingReason.RULE): len(timed_out - failed),
        (SamplingDecision.DROPPED, SamplingReason.RATIO): total - len(expected),
    }
    names = {metric.name for r in metrics.resource_metrics for s in r.scope_metrics for metric in s.metrics}
    assert Metric.SAMPLING_TRACES in names


def test_sentry_transactions_carry_the_rate_they_were_kept_at_and_the_dsc_stays_the_heads(
    sentry_receiver: SentryReceiver, reset_tally: None
) -> None:
    handle = hg.setup(
        backends=["sentry"],
        settings={"sentry.dsn": dsn(sentry_receiver), "sampling.tail": {"enabled": True, "keep_ratio": 0.5}},
    )
    propagated: dict[str, dict[str, str]] = {}
    try:
        for index in range(40):
            try:
                with hg.command("ask") as command:
                    trace_id = format_trace_id(command.span.get_span_context().trace_id)
                    propagated[trace_id] = hg.propagation_headers()
                    if index % 10 == 0:
                        raise RuntimeError("boom")
            except RuntimeError:
                pass
        handle.force_flush(10)
        kept = {trace_id for trace_id in propagated if ratio_keeps(int(trace_id, 16), 0.5)}
        failed = {trace_id for index, trace_id in enumerate(propagated) if index % 10 == 0}
        envelopes = _transaction_envelopes(sentry_receiver, len(kept | failed))
    finally:
        handle.shutdown()

    assert set(envelopes) == kept | failed
    for trace_id, dsc in envelopes.items():
        assert dsc["sample_rate"] == ("1.0" if trace_id in failed else "0.5"), (trace_id, dsc)
        # Everything but the rate is what went downstream during the request.
        downstream = _baggage(propagated[trace_id]["baggage"])
        assert downstream["sentry-sampled"] == "true" and downstream["sentry-sample_rate"] == "1.0"
        assert downstream["sentry-trace_id"] == dsc["trace_id"] == trace_id
        assert downstream["sentry-public_key"] == dsc["public_key"] == PUBLIC_KEY
        assert propagated[trace_id]["sentry-trace"].endswith("-1")


def _transaction_envelopes(receiver: SentryReceiver, count: int) -> dict[str, dict[str, str]]:
    receiver.wait_for("transaction", count)
    return {
        e.headers["trace"]["trace_id"]: e.headers["trace"]
        for e in receiver.envelopes()
        if e.items and e.items[0].type == "transaction"
    }


def _baggage(header: str) -> dict[str, str]:
    return dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)


def test_an_error_reported_in_a_dropped_trace_still_reaches_sentry_linked_to_it(
    sentry_receiver: SentryReceiver, reset_tally: None
) -> None:
    handle = hg.setup(
        backends=["sentry"],
        settings={"sentry.dsn": dsn(sentry_receiver), "sampling.tail": {"enabled": True, "keep_ratio": 0.0}},
    )
    try:
        with hg.command("ask") as command:
            hg.capture_exception(ValueError("the oracle answered nonsense"))  # handled: the command succeeds
            trace_id = format_trace_id(command.span.get_span_context().trace_id)
        handle.force_flush(10)
        [error] = sentry_receiver.wait_for("event", 1)
    finally:
        handle.shutdown()
    assert error["contexts"]["trace"]["trace_id"] == trace_id
    assert sentry_receiver.transactions() == []


def test_a_callers_not_sampled_is_honoured_and_metrics_still_count(
    otlp_receiver: OtlpReceiver, reset_tally: None
) -> None:
    handle = hg.setup(
        backends=["otlp", "memory"],
        settings={"otlp.endpoint": otlp_receiver.endpoint, "sampling.tail": {"enabled": True, "keep_ratio": 1.0}},
    )
    caller = propagate.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
    try:
        token = otel_context.attach(caller)
        try:
            with pytest.raises(RuntimeError), hg.command("ask"):
                raise RuntimeError("even an error")
        finally:
            otel_context.detach(token)
        with hg.command("status"):
            pass
        handle.force_flush(10)
        received = otlp_receiver.wait_for_spans(1)
        snapshot = snapshot_from_metrics(handle.backend("memory").metrics())  # type: ignore[attr-defined]
    finally:
        handle.shutdown()
    assert [span.name for span in received] == ["hakgal.command status"]
    assert sum(group.count for group in snapshot.commands.values()) == 2


def test_the_console_prints_kept_traces_only(capsys: pytest.CaptureFixture[str], reset_tally: None) -> None:
    handle = hg.setup(backends=["console"], settings={"sampling.tail": {"enabled": True, "keep_ratio": 0.0}})
    try:
        with hg.command("status"):
            pass
        with pytest.raises(RuntimeError), hg.command("build_kb"):
            raise RuntimeError("damaged")
        handle.force_flush(5)
    finally:
        handle.shutdown()
    printed = capsys.readouterr().err
    assert "hakgal.command build_kb" in printed and "hakgal.command status" not in printed


def test_a_new_setup_hands_held_traces_to_the_backends_they_started_in(
    otlp_receiver: OtlpReceiver, reset_tally: None
) -> None:
    settings = {"otlp.endpoint": otlp_receiver.endpoint, "sampling.tail": {"enabled": True, "keep_ratio": 1.0}}
    first = hg.setup(backends=["otlp"], settings=settings)
    command = hg.command("ask")
    command.__enter__()
    with hg.query("held"):
        pass
    second = hg.setup(backends=["otlp"], settings={**settings, "service.name": "again"})
    try:
        first.shutdown()
        received = otlp_receiver.wait_for_spans(1)
        assert [(s.name, s.attributes.get(Attr.SAMPLING_PARTIAL)) for s in received] == [("hakgal.query", True)]
        assert received[0].resource["service.name"] != "again"
    finally:
        command.__exit__(None, None, None)
        second.shutdown()
