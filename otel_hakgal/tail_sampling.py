"""Tail sampling in the process: hold a trace's spans until its local root ends, then keep all or none.

The head sampler still decides what is recorded (a caller's explicit "not
sampled" is honoured there); with ``[sampling.tail] enabled``, every recorded
span then waits here. When the last open local root of a trace ends (usually
the server span of the request), the trace is decided once:

1. kept if one of its spans has status ERROR (:attr:`SamplingReason.ERROR`);
2. kept if the local root took longer than ``keep_slower_than_s`` (``SLOW``);
3. kept if a rule matches a span, with the rule's ``keep_ratio`` (``RULE``);
4. else kept with probability ``keep_ratio`` (``RATIO``), decided by the trace
   id as OTel's ``TraceIdRatioBased`` does, so every process agrees.

A kept trace goes whole to every backend (:meth:`TailSampler.on_end` hands the
spans to ``keep``); a dropped one goes to ``discard`` as unsampled copies, which
every span processor treats as "not exported" while releasing what it held for
the trace (Sentry's open transaction, the console's waterfall). Spans of a
trace that end after its decision follow it.

Memory is bounded: at most ``max_spans_per_trace`` spans held per trace (the
rest dropped and counted), ``max_open_traces`` traces (past it the oldest is
decided early), and a trace whose root is open longer than
``max_trace_age_s`` is decided on what it holds. Early decisions mark the
trace's spans ``otel_hakgal.sampling.partial``. The counts feed the metrics
``otel_hakgal.sampling.traces`` and ``otel_hakgal.sampling.incomplete``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from otel_hakgal.config import TailRule, TailSamplingSettings
from otel_hakgal.conventions import Attr, SamplingDecision, SamplingReason, TailSamplingLoss
from otel_hakgal.log_limits import count_value

# Traces whose decision is remembered after it was made, for spans that end later (a detached thread's).
DECIDED_MEMORY: Final = 10_000
SWEEP_INTERVAL_S: Final = 1.0  # how often on_end looks for traces past max_trace_age_s
_UNSAMPLED: Final = TraceFlags(TraceFlags.DEFAULT)

SpanSink = Callable[[ReadableSpan], None]


@dataclass(frozen=True)
class Decision:
    """One trace's fate: kept or not, why, with what probability, and whether it was decided early."""

    kept: bool
    reason: SamplingReason
    rate: float
    partial: bool = False


# What a decision sends: the spans, the decision, the local root that ended (None: decided early).
_Settled = tuple[Sequence[ReadableSpan], "Decision", ReadableSpan | None]


class _Trace:
    """The spans of one trace held until its decision."""

    __slots__ = ("born", "open_roots", "overflow", "spans")

    def __init__(self, born: float) -> None:
        self.born = born
        self.open_roots = 0
        self.overflow = False
        self.spans: list[ReadableSpan] = []


def ratio_keeps(trace_id: int, ratio: float) -> bool:
    """Whether ``ratio`` keeps ``trace_id``: the lower 64 bits against the rate's bound, as ``TraceIdRatioBased``."""
    if ratio >= 1.0:
        return True
    return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < TraceIdRatioBased.get_bound_for_rate(ratio)


def _matches(rule: TailRule, span: ReadableSpan) -> bool:
    attributes = span.attributes
    if not attributes or rule.attribute not in attributes:
        return False
    if rule.equals is None:
        return True
    value: AttributeValue = attributes[rule.attribute]
    if isinstance(rule.equals, bool) or isinstance(value, bool):
        return value is rule.equals
    return bool(value == rule.equals)


def decide(settings: TailSamplingSettings, trace_id: int, spans: Sequence[ReadableSpan], duration_s: float) -> Decision:
    """The decision for a trace holding ``spans`` whose local root took (or has been open) ``duration_s``."""
    if any(span.status.status_code is StatusCode.ERROR for span in spans):
        return Decision(True, SamplingReason.ERROR, 1.0)
    if duration_s > settings.keep_slower_than_s:
        return Decision(True, SamplingReason.SLOW, 1.0)
    for rule in settings.rules:
        if any(_matches(rule, span) for span in spans) and ratio_keeps(trace_id, rule.keep_ratio):
            return Decision(True, SamplingReason.RULE, rule.keep_ratio)
    ratio = settings.keep_ratio
    return Decision(ratio_keeps(trace_id, ratio), SamplingReason.RATIO, ratio)


class TailTally:
    """Traces decided and traces let go incomplete since the process started (threads share it)."""

    def __init__(self) -> None:
        self._decided: dict[tuple[SamplingDecision, SamplingReason], itertools.count[int]] = {}
        self._incomplete: dict[TailSamplingLoss, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def decided(self, decision: Decision) -> None:
        key = (SamplingDecision.KEPT if decision.kept else SamplingDecision.DROPPED, decision.reason)
        counter = self._decided.get(key)
        if counter is None:
            with self._lock:
                counter = self._decided.setdefault(key, itertools.count())
        next(counter)

    def incomplete(self, loss: TailSamplingLoss) -> None:
        counter = self._incomplete.get(loss)
        if counter is None:
            with self._lock:
                counter = self._incomplete.setdefault(loss, itertools.count())
        next(counter)

    def decisions(self) -> dict[tuple[SamplingDecision, SamplingReason], int]:
        return {key: count_value(counter) for key, counter in list(self._decided.items())}

    def losses(self) -> dict[TailSamplingLoss, int]:
        return {loss: count_value(counter) for loss, counter in list(self._incomplete.items())}

    def reset(self) -> None:
        """Forget the counts (for tests and benchmarks)."""
        with self._lock:
            self._decided = {}
            self._incomplete = {}


TALLY: Final = TailTally()


# Every (decision, reason) a trace can get: observed from 0 while tail sampling is on, so that
# Prometheus's increase() sees the first of each.
OUTCOMES: Final = (
    *((SamplingDecision.KEPT, reason) for reason in SamplingReason),
    (SamplingDecision.DROPPED, SamplingReason.RATIO),
)


def _tail_sampling_on() -> bool:
    from otel_hakgal import runtime  # the runtime imports the API, which must not import this module's users

    return runtime.current.config.sampling_tail.enabled


def observe_decisions(options: CallbackOptions) -> Iterable[Observation]:
    """``otel_hakgal.sampling.traces``."""
    counts = TALLY.decisions()
    keys = [*OUTCOMES, *(key for key in counts if key not in OUTCOMES)] if _tail_sampling_on() else list(counts)
    for decision, reason in keys:
        attributes = {Attr.SAMPLING_DECISION: decision.value, Attr.SAMPLING_REASON: reason.value}
        yield Observation(counts.get((decision, reason), 0), attributes)


def observe_losses(options: CallbackOptions) -> Iterable[Observation]:
    """``otel_hakgal.sampling.incomplete``."""
    counts = TALLY.losses()
    for loss in list(TailSamplingLoss) if _tail_sampling_on() else list(counts):
        yield Observation(counts.get(loss, 0), {Attr.ERROR_TYPE: loss.value})


def _is_local_root(span: ReadableSpan) -> bool:
    parent = span.parent
    return parent is None or parent.is_remote


def _copy(span: ReadableSpan, context: SpanContext, extra: dict[str, AttributeValue] | None) -> ReadableSpan:
    attributes = span.attributes if not extra else {**(span.attributes or {}), **extra}
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def unsampled(span: ReadableSpan) -> ReadableSpan:
    """``span`` marked not sampled: processors release it and export nothing (as for a RECORD_ONLY span)."""
    context = span.context
    flags = TraceFlags(context.trace_flags & ~TraceFlags.SAMPLED)
    # Only what a processor reads to let a span go: its identity, parent, name, kind and times.
    return ReadableSpan(
        name=span.name,
        context=SpanContext(context.trace_id, context.span_id, False, flags, context.trace_state),
        parent=span.parent,
        resource=span.resource,
        kind=span.kind,
        start_time=span.start_time,
        end_time=span.end_time,
    )


class TailSampler:
    """Holds recorded spans per trace and hands each trace, once decided, to ``keep`` or ``discard``.

    ``keep`` gets every span of a kept trace (the local root last, carrying why
    and with what probability it was kept); ``discard`` (if given) gets unsampled
    copies of a dropped trace's spans. Both are called outside the lock, on the
    thread whose span ended the trace.
    """

    def __init__(
        self,
        settings: TailSamplingSettings,
        keep: SpanSink,
        discard: SpanSink | None,
        tally: TailTally = TALLY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._keep = keep
        self._discard = discard
        self._tally = tally
        self._clock = clock
        self._lock = threading.Lock()
        self._traces: dict[int, _Trace] = {}  # insertion order: oldest first
        self._decided: OrderedDict[int, Decision] = OrderedDict()
        self._next_sweep = clock() + SWEEP_INTERVAL_S

    @property
    def open_traces(self) -> int:
        """Traces held awaiting their decision."""
        return len(self._traces)

    @property
    def held_spans(self) -> int:
        """Spans held awaiting their trace's decision."""
        return sum(len(trace.spans) for trace in list(self._traces.values()))

    def on_start(self, span: Span) -> None:
        if not _is_local_root(span):
            return
        trace_id = span.context.trace_id
        early: list[_Settled] = []
        with self._lock:
            if trace_id in self._decided:
                return
            trace = self._traces.get(trace_id)
            if trace is None:
                trace = self._traces[trace_id] = _Trace(self._clock())
                if len(self._traces) > self.settings.max_open_traces:
                    oldest = next(iter(self._traces))
                    early.append(self._settle(oldest, self._traces.pop(oldest), None, TailSamplingLoss.TOO_MANY_TRACES))
            trace.open_roots += 1
        for settled in early:
            self._emit(*settled)

    def on_end(self, span: ReadableSpan) -> None:
        trace_id = span.context.trace_id
        ready: list[_Settled] = []
        with self._lock:
            trace = self._traces.get(trace_id)
            if trace is None:
                late = self._decided.get(trace_id)
                if late is not None:
                    ready.append(([span], late, span if _is_local_root(span) else None))
                else:  # its root started before tail sampling was on, or was forgotten
                    trace = self._traces[trace_id] = _Trace(self._clock())
            if trace is not None:
                if len(trace.spans) < self.settings.max_spans_per_trace:
                    trace.spans.append(span)
                else:
                    trace.overflow = True
                if _is_local_root(span):
                    trace.open_roots -= 1
                    if trace.open_roots <= 0:
                        del self._traces[trace_id]
                        ready.append(self._settle(trace_id, trace, span, None))
            now = self._clock()
            if now >= self._next_sweep:
                self._next_sweep = now + SWEEP_INTERVAL_S
                ready.extend(self._aged(now))
        for settled in ready:
            self._emit(*settled)

    def _aged(self, now: float) -> list[_Settled]:
        """Decide the traces past ``max_trace_age_s`` (the lock is held)."""
        limit = now - self.settings.max_trace_age_s
        old = []
        for trace_id, trace in self._traces.items():
            if trace.born > limit:
                break  # insertion order: the rest are younger
            old.append(trace_id)
        return [self._settle(i, self._traces.pop(i), None, TailSamplingLoss.TOO_OLD) for i in old]

    def _settle(
        self, trace_id: int, trace: _Trace, root: ReadableSpan | None, loss: TailSamplingLoss | None
    ) -> _Settled:
        """Decide ``trace`` and remember it (the lock is held); ``root``: its local root that just ended,
        None when decided early, for ``loss``. Returns what :meth:`_emit` sends, outside the lock."""
        if root is not None and root.end_time is not None and root.start_time is not None:
            duration_s = (root.end_time - root.start_time) / 1e9
        else:
            duration_s = self._clock() - trace.born
        decision = decide(self.settings, trace_id, trace.spans, duration_s)
        if loss is not None:
            decision = Decision(decision.kept, decision.reason, decision.rate, partial=True)
            self._tally.incomplete(loss)
        if trace.overflow:
            self._tally.incomplete(TailSamplingLoss.TRACE_FULL)
        self._tally.decided(decision)
        self._decided[trace_id] = decision
        if len(self._decided) > DECIDED_MEMORY:
            self._decided.popitem(last=False)
        return trace.spans, decision, root

    def _emit(self, spans: Sequence[ReadableSpan], decision: Decision, root: ReadableSpan | None) -> None:
        if not decision.kept:
            discard = self._discard
            if discard is not None:
                for span in spans:
                    discard(unsampled(span))
            return
        for span in spans:
            extra: dict[str, AttributeValue] = {}
            if span is root:
                extra = {Attr.SAMPLING_REASON: decision.reason.value, Attr.SAMPLING_RATE: decision.rate}
            if decision.partial:
                extra[Attr.SAMPLING_PARTIAL] = True
            self._keep(_copy(span, span.context, extra) if extra else span)

    def flush_open(self, loss: TailSamplingLoss = TailSamplingLoss.SHUTDOWN) -> None:
        """Decide every trace still held, as partial (at shutdown, or when tail sampling is switched off)."""
        with self._lock:
            settled = [self._settle(i, trace, None, loss) for i, trace in self._traces.items()]
            self._traces.clear()
        for one in settled:
            self._emit(*one)
