"""The demo's metrics summary, read from the metrics the layer recorded (never from the app's own counters)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from otel_hakgal.conventions import Attr, Metric, Outcome, ProverResult, TokenType

# The seed guide's alert rules.
API_ERROR_RATE_THRESHOLD = 0.05
AVG_RESPONSE_TIME_THRESHOLD_S = 10.0
LLM_FAILURE_RATE_THRESHOLD = 0.20
LOGIC_ENGINE_ERROR_RATE_THRESHOLD = 0.10


@dataclass(frozen=True)
class AlertIndicator:
    name: str
    value: float
    threshold: float
    unit: str  # "%" or "s"

    @property
    def firing(self) -> bool:
        return self.value > self.threshold

    def render(self) -> str:
        if self.unit == "%":
            value, threshold = f"{100 * self.value:.1f} %", f"{100 * self.threshold:.0f} %"
        else:
            value, threshold = f"{self.value:.3f} s", f"{self.threshold:.0f} s"
        state = "ALERT" if self.firing else "ok"
        return f"{self.name:<30} {value:>10}   threshold > {threshold:<6} {state}"


@dataclass
class WorkloadSummary:
    commands: Counter[tuple[str, str]] = field(default_factory=Counter)  # (verb, outcome) -> count
    command_seconds: float = 0.0
    prover_runs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (prover, result) -> runs
    cache_lookups: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (cache, hit) -> lookups
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)  # (provider, token type) -> tokens
    cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # provider -> USD
    llm_calls: Counter[str] = field(default_factory=Counter)  # provider -> calls
    llm_failures: Counter[str] = field(default_factory=Counter)  # provider -> failed calls

    # --- derived ---

    @property
    def command_count(self) -> int:
        return sum(self.commands.values())

    def commands_by_outcome(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (_, outcome), count in self.commands.items():
            totals[outcome] += count
        return dict(totals)

    def cache_hit_rate(self, cache: str) -> float:
        hits, misses = self.cache_lookups[(cache, True)], self.cache_lookups[(cache, False)]
        return hits / (hits + misses) if hits + misses else 0.0

    def alerts(self) -> list[AlertIndicator]:
        total = self.command_count
        failed = total - self.commands_by_outcome().get(Outcome.SUCCESS.value, 0)
        llm_total, llm_failed = sum(self.llm_calls.values()), sum(self.llm_failures.values())
        prover_total = sum(self.prover_runs.values())
        prover_failed = sum(
            n for (_, result), n in self.prover_runs.items() if result in (ProverResult.ERROR, ProverResult.TIMEOUT)
        )
        return [
            AlertIndicator("API error rate", _ratio(failed, total), API_ERROR_RATE_THRESHOLD, "%"),
            AlertIndicator(
                "average response time", _ratio(self.command_seconds, total), AVG_RESPONSE_TIME_THRESHOLD_S, "s"
            ),
            AlertIndicator("LLM provider failure rate", _ratio(llm_failed, llm_total), LLM_FAILURE_RATE_THRESHOLD, "%"),
            AlertIndicator(
                "logic engine error rate", _ratio(prover_failed, prover_total), LOGIC_ENGINE_ERROR_RATE_THRESHOLD, "%"
            ),
        ]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _points(data: MetricsData | None, name: str) -> Iterator[tuple[dict[str, Any], Any]]:
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        yield dict(point.attributes or {}), point


def summarize(data: MetricsData | None) -> WorkloadSummary:
    """Fold the layer's cumulative metrics into the numbers the summary shows."""
    summary = WorkloadSummary()
    for attrs, point in _points(data, Metric.COMMAND_DURATION):
        if isinstance(point, HistogramDataPoint):
            summary.commands[(str(attrs.get(Attr.COMMAND_NAME)), str(attrs.get(Attr.COMMAND_OUTCOME)))] += point.count
            summary.command_seconds += point.sum
    for attrs, point in _points(data, Metric.PROVER_RUNS):
        if isinstance(point, NumberDataPoint):
            key = (str(attrs.get(Attr.PROVER_NAME)), str(attrs.get(Attr.PROVER_RESULT)))
            summary.prover_runs[key] += int(point.value)
    for attrs, point in _points(data, Metric.CACHE_LOOKUPS):
        if isinstance(point, NumberDataPoint):
            summary.cache_lookups[(str(attrs.get(Attr.CACHE_NAME)), bool(attrs.get(Attr.CACHE_HIT)))] += int(
                point.value
            )
    for attrs, point in _points(data, Metric.GEN_AI_TOKEN_USAGE):
        if isinstance(point, HistogramDataPoint):
            key = (str(attrs.get(Attr.GEN_AI_PROVIDER_NAME)), str(attrs.get(Attr.GEN_AI_TOKEN_TYPE)))
            summary.tokens[key] += int(point.sum)
    for attrs, point in _points(data, Metric.LLM_COST):
        if isinstance(point, NumberDataPoint):
            summary.cost[str(attrs.get(Attr.GEN_AI_PROVIDER_NAME))] += float(point.value)
    for attrs, point in _points(data, Metric.GEN_AI_OPERATION_DURATION):
        if isinstance(point, HistogramDataPoint):
            provider = str(attrs.get(Attr.GEN_AI_PROVIDER_NAME))
            summary.llm_calls[provider] += point.count
            if Attr.ERROR_TYPE in attrs:
                summary.llm_failures[provider] += point.count
    return summary


def render_summary(summary: WorkloadSummary) -> str:
    lines = ["== metrics summary ==", "", f"commands: {summary.command_count}"]
    lines += [f"  {outcome:<10} {count}" for outcome, count in sorted(summary.commands_by_outcome().items())]
    lines += ["", "commands by verb and outcome:"]
    lines += [f"  {verb:<12} {outcome:<10} {n}" for (verb, outcome), n in sorted(summary.commands.items())]
    lines += ["", "prover results:"]
    lines += [f"  {prover:<12} {result:<10} {n}" for (prover, result), n in sorted(summary.prover_runs.items())]
    lines += ["", "cache hit rates:"]
    for cache in sorted({cache for cache, _ in summary.cache_lookups}):
        hits = summary.cache_lookups[(cache, True)]
        total = hits + summary.cache_lookups[(cache, False)]
        lines.append(f"  {cache:<8} {hits}/{total} hits ({100 * summary.cache_hit_rate(cache):.0f} %)")
    lines += ["", "LLM calls, tokens and cost by provider:"]
    for provider in sorted(summary.llm_calls):
        tokens_in = summary.tokens[(provider, TokenType.INPUT.value)]
        tokens_out = summary.tokens[(provider, TokenType.OUTPUT.value)]
        cost = summary.cost.get(provider)
        cost_text = f"${cost:.6f}" if cost is not None else "unknown"
        lines.append(
            f"  {provider:<12} calls={summary.llm_calls[provider]:<3} failed={summary.llm_failures[provider]:<3} "
            f"tokens in={tokens_in:<6} out={tokens_out:<6} cost={cost_text}"
        )
    lines += ["", "alert indicators (seed guide):"]
    lines += [f"  {indicator.render()}" for indicator in summary.alerts()]
    return "\n".join(lines)
