"""Issue 16, done when: the demo with ``[sampling.tail] enabled = true, keep_ratio = 0.0`` keeps exactly the
traces that hold an error or a slow root, whole, on every backend; metrics count every command as before.

The real demo (``otel-hakgal demo --config FILE``, in process) runs its workload over HTTP with every span
backend at once, over real loopback receivers: ``otlp`` (protobuf decoded), ``sentry`` (envelopes),
``jsonl`` (a file), ``console`` (captured stderr) and ``memory`` (metrics, and the demo's printed summary).
Three steps of the workload get simulator latency, so some commands are slow without an error (and one is slow
with an error). The ground truth is every span the process ended, recorded by a plain span processor on the
process's TracerProvider, next to the fan-out, before tail sampling holds anything.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

import otel_hakgal as hg
from otel_hakgal import tail_sampling
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.conventions import Attr, Metric, SamplingDecision, SamplingReason
from otel_hakgal.demo import run, workload
from otel_hakgal.demo.simulator import FaultKind, LLMSimulator
from otel_hakgal.demo.summary import commands_by_outcome
from otel_hakgal.demo.workload import WORKLOAD, StepResult, WorkloadStep
from otel_hakgal.testing import OtlpReceiver, SentryReceiver, jsonl_spans

pytestmark = [pytest.mark.system, pytest.mark.slow]

THRESHOLD_S = 0.4  # [sampling.tail] keep_slower_than_s
DELAY_S = 0.6  # simulator latency on the slowed steps: their roots take longer than the threshold, whatever the load
Z3_TIMEOUT_S = 0.3  # the prover timeout step fails fast, below the threshold: kept for its error only
SPAN_BACKENDS = ("otlp", "sentry", "jsonl", "console", "memory")
_ENV_PREFIXES = ("OTEL_", "SENTRY_", "HAKGAL_")


# --- the workload: the demo's own, three steps slowed by the simulator ------------------------


def _latency(provider: str) -> Callable[[LLMSimulator], None]:
    def inject(sim: LLMSimulator) -> None:
        sim.inject(provider, FaultKind.LATENCY, times=1, delay_s=DELAY_S)

    return inject


def _then(*hooks: Callable[[LLMSimulator], None] | None) -> Callable[[LLMSimulator], None]:
    def run_all(sim: LLMSimulator) -> None:
        for hook in hooks:
            if hook is not None:
                hook(sim)

    return run_all


# Step -> the provider made slow for it (once).
SLOWED = {
    "ask Does Tokyo have 37400000 inhabitants?": "oracle",  # slow, no error: kept as slow
    "build_kb corpus.txt": "gemini",  # slow, no error (the three providers run in parallel)
    "ask Is Berlin a city?": "mistral",  # DeepSeek's 503 and a slow fallback: kept for the error (it comes first)
}


def _slowed_workload() -> tuple[WorkloadStep, ...]:
    steps = []
    for step in WORKLOAD:
        provider = SLOWED.get(step.command)
        if provider is not None:
            step = dataclasses.replace(step, before=_then(step.before, _latency(provider)))
        steps.append(step)
    assert sum(step.command in SLOWED for step in steps) == len(SLOWED)
    return tuple(steps)


STEPS = _slowed_workload()


# --- ground truth: every span the process ended, before tail sampling ------------------------


class AllSpans(SpanProcessor):
    """Records every ended span while ``active`` (it stays on the process's provider; tests after this one
    switch it off, as a span processor cannot be removed)."""

    def __init__(self) -> None:
        self.active = True
        self._lock = threading.Lock()
        self._spans: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            with self._lock:
                self._spans.append(span)

    def spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)


def _is_local_root(span: ReadableSpan) -> bool:
    return span.parent is None or span.parent.is_remote


@dataclass(frozen=True)
class TruthTrace:
    trace_id: str  # 32 hex
    spans: tuple[ReadableSpan, ...]

    @property
    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.spans if _is_local_root(s)]

    @property
    def root(self) -> ReadableSpan:
        """The local root that ended last: the one whose end decides the trace."""
        return max(self.roots, key=lambda s: s.end_time or 0)

    @property
    def span_ids(self) -> Counter[str]:
        return Counter(format_span_id(s.context.span_id) for s in self.spans)

    @property
    def names(self) -> Counter[str]:
        return Counter(s.name for s in self.spans)

    @property
    def duration_s(self) -> float:
        root = self.root
        assert root.start_time is not None and root.end_time is not None
        return (root.end_time - root.start_time) / 1e9

    @property
    def has_error(self) -> bool:
        return any(s.status.status_code is StatusCode.ERROR for s in self.spans)

    @property
    def reason(self) -> SamplingReason | None:
        """Why tail sampling must keep it (None: it must drop it, keep_ratio being 0)."""
        if self.has_error:
            return SamplingReason.ERROR
        if self.duration_s > THRESHOLD_S:
            return SamplingReason.SLOW
        return None


def _truth_traces(spans: list[ReadableSpan]) -> list[TruthTrace]:
    """Spans by trace, in the order of their roots' start (the workload is sequential: the order of its steps)."""
    by_trace: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_trace.setdefault(format_trace_id(span.context.trace_id), []).append(span)
    traces = [TruthTrace(trace_id, tuple(group)) for trace_id, group in by_trace.items()]
    return sorted(traces, key=lambda t: min(r.start_time or 0 for r in t.roots) if t.roots else 0)


# --- what each backend received, as trace id -> span ids (hex) or span names -----------------


def _otlp_traces(receiver: OtlpReceiver) -> dict[str, list[str]]:
    traces: dict[str, list[str]] = {}
    for span in receiver.spans():
        traces.setdefault(span.trace_id, []).append(span.span_id)
    return traces


def _jsonl_traces(path: Path) -> dict[str, list[str]]:
    traces: dict[str, list[str]] = {}
    for span in jsonl_spans(path) if path.exists() else []:
        traces.setdefault(span["traceId"], []).append(span["spanId"])
    return traces


def _memory_traces(spans: list[ReadableSpan]) -> dict[str, list[str]]:
    traces: dict[str, list[str]] = {}
    for span in spans:
        traces.setdefault(format_trace_id(span.context.trace_id), []).append(format_span_id(span.context.span_id))
    return traces


def _sentry_traces(receiver: SentryReceiver) -> dict[str, list[str]]:
    """Per trace: each transaction's root span, its child spans and the ``gen_ai`` spans streamed beside it."""
    traces: dict[str, list[str]] = {}
    for transaction in receiver.transactions():
        context = transaction["contexts"]["trace"]
        ids = traces.setdefault(context["trace_id"], [])
        ids.append(context["span_id"])
        ids.extend(span["span_id"] for span in transaction["spans"])
    for span in receiver.streamed_spans():
        traces.setdefault(span["trace_id"], []).append(span["span_id"])
    return traces


_TRACE_LINE = re.compile(r"^trace ([0-9a-f]{32})$")
_SPAN_LINE = re.compile(r"^  +(?P<name>\S.*?)\s+-?\d+\.\d+ ms  \+")


def _console_traces(text: str) -> dict[str, list[str]]:
    """The waterfalls the console printed: trace id -> the names of its span lines (log lines left out)."""
    traces: dict[str, list[str]] = {}
    names: list[str] | None = None
    for line in text.splitlines():
        header = _TRACE_LINE.match(line)
        if header:
            names = traces.setdefault(header.group(1), [])
            continue
        if names is None or not line.startswith("  "):
            names = None  # the waterfall ended (a log line printed alone, other output)
            continue
        if line.lstrip().startswith("▸"):
            continue
        span = _SPAN_LINE.match(line)
        assert span, f"unreadable waterfall line: {line!r}"
        names.append(span.group("name"))
    return traces


def _wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


# --- metrics ----------------------------------------------------------------------------------


def _points(data: MetricsData | None, name: str) -> list[Any]:
    return [
        point
        for resource_metrics in (data.resource_metrics if data else ())
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def _command_count(data: MetricsData | None) -> int:
    return sum(p.count for p in _points(data, Metric.COMMAND_DURATION) if isinstance(p, HistogramDataPoint))


def _sampling_counts(data: MetricsData | None) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for point in _points(data, Metric.SAMPLING_TRACES):
        assert isinstance(point, NumberDataPoint)
        attrs = point.attributes or {}
        key = (str(attrs.get(Attr.SAMPLING_DECISION)), str(attrs.get(Attr.SAMPLING_REASON)))
        counts[key] = counts.get(key, 0) + point.value
    return {key: value for key, value in counts.items() if value}


# --- the run ----------------------------------------------------------------------------------


@dataclass
class DemoRun:
    exit_code: int
    stdout: str
    console: str  # the console backend's stream (stderr)
    truth: list[TruthTrace]
    results: list[StepResult]
    memory_spans: list[ReadableSpan]
    memory_metrics: MetricsData | None
    otlp: OtlpReceiver
    sentry: SentryReceiver
    jsonl_path: Path
    seconds: float


@pytest.fixture
def demo_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[DemoRun]:
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(key)
    jsonl_path = tmp_path / "telemetry.jsonl"
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        config = tmp_path / "otel_hakgal.toml"
        config.write_text(
            f"backends = {json.dumps(SPAN_BACKENDS)}\n"
            + "\n[sampling.tail]\nenabled = true\nkeep_ratio = 0.0\n"
            + f"keep_slower_than_s = {THRESHOLD_S}\n"
            + f'\n[otlp]\nendpoint = "{otlp.endpoint}"\n'
            + f'\n[sentry]\ndsn = "{sentry.dsn}"\n'
            + f'\n[jsonl]\npath = "{jsonl_path}"\n'
            + '\n[console]\nstream = "stderr"\nmetrics = false\n',
            encoding="utf-8",
        )
        # The demo's own setup() finds this configuration running and reuses it: the ground-truth processor
        # is on the provider before the first command.
        handle = hg.setup(config=str(config))
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        truth = AllSpans()
        provider.add_span_processor(truth)
        tail_sampling.TALLY.reset()  # the decision counts are the process's: count this run's only

        seen: dict[str, Any] = {}
        report = run._report

        def report_and_keep(h: hg.Handle, results: list[StepResult], *args: Any, **kwargs: Any) -> None:
            seen["handle"], seen["results"] = h, results
            report(h, results, *args, **kwargs)
            # Every root has ended (and so every trace is decided) once the ground truth holds it.
            _wait_until(lambda: sum(_is_local_root(s) for s in truth.spans()) >= len(results), 5.0)
            memory = h.backend(MemoryBackend)
            seen["memory_spans"], seen["memory_metrics"] = memory.spans(), memory.metrics()

        monkeypatch.setattr(run, "_report", report_and_keep)
        monkeypatch.setattr(run, "run_workload", functools.partial(workload.run_workload, steps=STEPS))
        capsys.readouterr()
        started = time.monotonic()
        try:
            exit_code = run.main(["--config", str(config), "--z3-timeout", str(Z3_TIMEOUT_S)])
        finally:
            truth.active = False
            handle.shutdown()
        seconds = time.monotonic() - started
        captured = capsys.readouterr()
        assert seen.get("handle") is handle, "the demo's setup() did not reuse the running configuration"
        yield DemoRun(
            exit_code=exit_code,
            stdout=captured.out,
            console=captured.err,
            truth=_truth_traces(truth.spans()),
            results=seen["results"],
            memory_spans=seen["memory_spans"],
            memory_metrics=seen["memory_metrics"],
            otlp=otlp,
            sentry=sentry,
            jsonl_path=jsonl_path,
            seconds=seconds,
        )


def test_demo_keeps_exactly_the_error_and_slow_traces_whole_on_every_backend(demo_run: DemoRun) -> None:
    assert demo_run.exit_code == 0, demo_run.stdout[-3000:]
    assert all(result.as_expected for result in demo_run.results)

    # The ground truth: one trace per command, each with one local root (the server span), in step order.
    truth = demo_run.truth
    assert len(truth) == len(STEPS), [t.root.name for t in truth]
    assert all(len(t.roots) == 1 for t in truth)
    by_step = dict(zip((step.command for step in STEPS), truth, strict=False))
    for command in SLOWED:
        assert by_step[command].duration_s > THRESHOLD_S, command
    assert by_step["ask Does Tokyo have 37400000 inhabitants?"].reason is SamplingReason.SLOW
    assert by_step["build_kb corpus.txt"].reason is SamplingReason.SLOW
    assert by_step["ask Is Berlin a city?"].reason is SamplingReason.ERROR  # slow too: the error comes first
    assert by_step["ask Is Adam an ancestor of Eva?"].reason is SamplingReason.ERROR  # the prover timeout
    assert by_step["build_kb damaged.hkb"].reason is SamplingReason.ERROR
    assert by_step["help"].reason is None

    expected = {t.trace_id: t for t in truth if t.reason is not None}
    reasons = Counter(t.reason for t in expected.values())
    dropped = len(truth) - len(expected)
    assert reasons[SamplingReason.ERROR] > 0 and reasons[SamplingReason.SLOW] > 0
    assert 0 < len(expected) < len(truth)

    # Every span backend got exactly the kept traces, each whole, no span twice.
    otlp_count = sum(sum(t.span_ids.values()) for t in expected.values())
    _wait_until(lambda: sum(map(len, _otlp_traces(demo_run.otlp).values())) >= otlp_count)
    _wait_until(lambda: len(demo_run.sentry.transactions()) >= len(expected))
    received = {
        "otlp": _otlp_traces(demo_run.otlp),
        "sentry": _sentry_traces(demo_run.sentry),
        "jsonl": _jsonl_traces(demo_run.jsonl_path),
        "memory": _memory_traces(demo_run.memory_spans),
    }
    for backend, traces in received.items():
        assert set(traces) == set(expected), (
            f"{backend}: missing {sorted(set(expected) - set(traces))}, extra {sorted(set(traces) - set(expected))}"
        )
        for trace_id, span_ids in traces.items():
            assert len(span_ids) == len(set(span_ids)), f"{backend}: a span twice in trace {trace_id}"
            assert Counter(span_ids) == expected[trace_id].span_ids, f"{backend}: trace {trace_id} is not whole"
    console = _console_traces(demo_run.console)
    assert set(console) == set(expected), demo_run.console[-3000:]
    for trace_id, names in console.items():
        assert Counter(names) == expected[trace_id].names, f"console: trace {trace_id} is not whole"

    # Sentry: one transaction per kept local root, carrying why it was kept; errors only of kept traces.
    transactions = demo_run.sentry.transactions()
    assert sorted(tx["contexts"]["trace"]["span_id"] for tx in transactions) == sorted(
        format_span_id(t.root.context.span_id) for t in expected.values()
    )
    for tx in transactions:
        attributes = tx["contexts"]["otel"]["attributes"]
        assert attributes[Attr.SAMPLING_REASON] == expected[tx["contexts"]["trace"]["trace_id"]].reason
        assert attributes[Attr.SAMPLING_RATE] == 1.0
    assert demo_run.sentry.errors(), "the failing build_kb reports an error"
    for event in demo_run.sentry.errors():
        assert event["contexts"]["trace"]["trace_id"] in expected

    # The kept local roots carry why and at what rate (OTLP), other spans do not.
    for span in demo_run.otlp.spans():
        root = expected[span.trace_id].root
        if span.span_id == format_span_id(root.context.span_id):
            assert span.attributes[Attr.SAMPLING_REASON] == expected[span.trace_id].reason
            assert span.attributes[Attr.SAMPLING_RATE] == 1.0
        else:
            assert Attr.SAMPLING_REASON not in span.attributes

    # Metrics are never sampled: every command counted, kept or dropped; the decisions counted.
    metrics = demo_run.memory_metrics
    assert _command_count(metrics) == len(STEPS)
    assert sum(commands_by_outcome(metrics).values()) == len(STEPS)
    expected_decisions = {
        (SamplingDecision.KEPT.value, SamplingReason.ERROR.value): reasons[SamplingReason.ERROR],
        (SamplingDecision.KEPT.value, SamplingReason.SLOW.value): reasons[SamplingReason.SLOW],
        (SamplingDecision.DROPPED.value, SamplingReason.RATIO.value): dropped,
    }
    assert _sampling_counts(metrics) == expected_decisions
    assert not [p for p in _points(metrics, Metric.SAMPLING_INCOMPLETE) if p.value]
    otlp_commands = {
        tuple(sorted(p.attributes.items())): p.count or 0 for p in demo_run.otlp.metric_points(Metric.COMMAND_DURATION)
    }
    assert sum(otlp_commands.values()) == len(STEPS)

    # The demo's printed summary: every command, and what tail sampling kept.
    out = demo_run.stdout
    assert f"running {len(STEPS)} commands over HTTP" in out
    assert f"(total {len(STEPS)})" in out
    assert f"== {len(expected)} traces ==" in out and out.count("\ntrace ") == len(expected)
    why = f"error {reasons[SamplingReason.ERROR]}, slow {reasons[SamplingReason.SLOW]}"
    assert f"Traces kept by tail sampling: {len(expected)} of {len(truth)} ({why})" in out, out[-2000:]

    print(
        f"\n{len(truth)} traces, {len(expected)} kept ({why}), {dropped} dropped;"
        f" spans: {sum(sum(t.span_ids.values()) for t in truth)} ended, {otlp_count} kept;"
        f" per backend: "
        + ", ".join(f"{b} {sum(map(len, traces.values()))}" for b, traces in received.items())
        + f", console {sum(map(len, console.values()))}; sentry transactions {len(transactions)},"
        f" streamed spans {len(demo_run.sentry.streamed_spans())}; demo ran {demo_run.seconds:.1f} s"
    )
