"""``otel-hakgal report``: the seed guide's four alert indicators and a table by command, prover and provider.

The numbers come either from a Prometheus server that scrapes the
``prometheus`` backend (:func:`snapshot_from_prometheus`) or from in-process
metrics, e.g. the ``memory`` backend's (:func:`snapshot_from_metrics`). Both
fill the same :class:`Snapshot`, so the indicators are computed one way.

:data:`INDICATORS` is also the source of the alert rules' expressions:
``configs/alerts/hakgal.rules.yml`` uses :meth:`Indicator.alert_expr` verbatim
(a test checks it). This module never imports the demo.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from otel_hakgal.backends.prometheus import label_name, series_names
from otel_hakgal.conventions import Attr, Metric, Outcome, ProverResult, TokenType, metric_def

# --- Prometheus names, derived from the conventions ------------------------


def _series(metric: str, suffix: str = "") -> str:
    definition = metric_def(metric)
    names = series_names(definition.name, definition.unit, definition.instrument)
    if not suffix:
        (only,) = names
        return only
    return next(n for n in names if n.endswith("_" + suffix))


COMMAND_COUNT: Final = _series(Metric.COMMAND_DURATION, "count")
COMMAND_SUM: Final = _series(Metric.COMMAND_DURATION, "sum")
COMMAND_BUCKET: Final = _series(Metric.COMMAND_DURATION, "bucket")
PROVER_RUNS: Final = _series(Metric.PROVER_RUNS)
PROVER_BUCKET: Final = _series(Metric.PROVER_DURATION, "bucket")
LLM_COUNT: Final = _series(Metric.GEN_AI_OPERATION_DURATION, "count")
LLM_SUM: Final = _series(Metric.GEN_AI_OPERATION_DURATION, "sum")
LLM_BUCKET: Final = _series(Metric.GEN_AI_OPERATION_DURATION, "bucket")
TOKEN_SUM: Final = _series(Metric.GEN_AI_TOKEN_USAGE, "sum")
LLM_COST: Final = _series(Metric.LLM_COST)
CACHE_LOOKUPS: Final = _series(Metric.CACHE_LOOKUPS)

L_COMMAND: Final = label_name(Attr.COMMAND_NAME)
L_OUTCOME: Final = label_name(Attr.COMMAND_OUTCOME)
L_PROVER: Final = label_name(Attr.PROVER_NAME)
L_RESULT: Final = label_name(Attr.PROVER_RESULT)
L_PROVIDER: Final = label_name(Attr.GEN_AI_PROVIDER_NAME)
L_ERROR_TYPE: Final = label_name(Attr.ERROR_TYPE)
L_TOKEN_TYPE: Final = label_name(Attr.GEN_AI_TOKEN_TYPE)
L_CURRENCY: Final = label_name(Attr.LLM_COST_CURRENCY)
L_CACHE: Final = label_name(Attr.CACHE_NAME)
L_HIT: Final = label_name(Attr.CACHE_HIT)


# --- the four indicators -----------------------------------------------------


@dataclass(frozen=True)
class Indicator:
    """One of the seed guide's alert indicators: ``numerator / denominator`` per ``by``, against a threshold."""

    key: str
    title: str
    alert: str  # the alert rule's name
    numerator: str  # PromQL series selector
    denominator: str
    threshold: float
    window: str  # the alert rule's rate window
    unit: str  # "ratio" or "s"
    by: str | None = None

    def _sum(self, selector: str, window: str | None) -> str:
        inner = f"rate({selector}[{window}])" if window else selector
        return f"sum by ({self.by}) ({inner})" if self.by else f"sum({inner})"

    def expr(self, window: str | None = None) -> str:
        """The indicator in PromQL: a rate ratio over ``window`` (lifetime ratio without one).

        A ratio of failures reads 0, not "no data", while nothing failed.
        """
        numerator = self._sum(self.numerator, window)
        denominator = self._sum(self.denominator, window)
        if self.unit == "ratio":
            numerator = f"({numerator} or {denominator} * 0)"
        return f"{numerator} / {denominator}"

    def alert_expr(self) -> str:
        """The alert rule's ``expr``."""
        return f"{self.expr(self.window)} > {self.threshold:g}"

    def format(self, value: float) -> str:
        return _percent(value) if self.unit == "ratio" else f"{value:.2f} s"

    def format_threshold(self) -> str:
        return f"> {_percent(self.threshold)}" if self.unit == "ratio" else f"> {self.threshold:g} s"


API_ERROR_RATE: Final = Indicator(
    key="api_error_rate",
    title="API error rate",
    alert="HakgalApiErrorRateHigh",
    numerator=f'{COMMAND_COUNT}{{{L_OUTCOME}!="{Outcome.SUCCESS}"}}',
    denominator=COMMAND_COUNT,
    threshold=0.05,
    window="5m",
    unit="ratio",
)
AVERAGE_RESPONSE_TIME: Final = Indicator(
    key="average_response_time",
    title="Average response time",
    alert="HakgalResponseTimeHigh",
    numerator=COMMAND_SUM,
    denominator=COMMAND_COUNT,
    threshold=10.0,
    window="5m",
    unit="s",
)
LLM_FAILURE_RATE: Final = Indicator(
    key="llm_failure_rate",
    title="LLM provider failure rate",
    alert="HakgalLlmProviderFailing",
    numerator=f'{LLM_COUNT}{{{L_ERROR_TYPE}!=""}}',
    denominator=LLM_COUNT,
    threshold=0.20,
    window="5m",
    unit="ratio",
    by=L_PROVIDER,
)
PROVER_ERROR_RATE: Final = Indicator(
    key="prover_error_rate",
    title="Logic engine (prover) error rate",
    alert="HakgalProverErrors",
    numerator=f'{PROVER_RUNS}{{{L_RESULT}="{ProverResult.ERROR}"}}',
    denominator=PROVER_RUNS,
    threshold=0.10,
    window="10m",
    unit="ratio",
    by=L_PROVER,
)
INDICATORS: Final = (API_ERROR_RATE, AVERAGE_RESPONSE_TIME, LLM_FAILURE_RATE, PROVER_ERROR_RATE)


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


# --- the snapshot: what the report shows, from either source -----------------


Buckets = dict[float, float]  # upper bound (inf for +Inf) -> cumulative count


@dataclass
class Group:
    """Totals of one command, prover or provider."""

    count: float = 0.0
    failures: float = 0.0
    duration_sum: float = 0.0
    buckets: Buckets = field(default_factory=dict)
    results: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.buckets)


@dataclass
class Snapshot:
    commands: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    provers: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    providers: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    caches: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))  # count = lookups, results["hit"]
    source: str = ""


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative buckets (linear within a bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bound: the best known value
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def indicator_values(snapshot: Snapshot) -> list[tuple[Indicator, str | None, float | None]]:
    """(indicator, per-label key or None, value) for each indicator; value None without data."""

    def ratio(numerator: float, denominator: float) -> float | None:
        return numerator / denominator if denominator > 0 else None

    commands = snapshot.commands.values()
    total = sum(g.count for g in commands)
    rows: list[tuple[Indicator, str | None, float | None]] = [
        (API_ERROR_RATE, None, ratio(sum(g.failures for g in commands), total)),
        (AVERAGE_RESPONSE_TIME, None, ratio(sum(g.duration_sum for g in commands), total)),
    ]
    for provider, group in sorted(snapshot.providers.items()):
        rows.append((LLM_FAILURE_RATE, provider, ratio(group.failures, group.count)))
    if not snapshot.providers:
        rows.append((LLM_FAILURE_RATE, None, None))
    for prover, group in sorted(snapshot.provers.items()):
        rows.append((PROVER_ERROR_RATE, prover, ratio(group.results.get(ProverResult.ERROR, 0.0), group.count)))
    if not snapshot.provers:
        rows.append((PROVER_ERROR_RATE, None, None))
    return rows


# --- from in-process metrics --------------------------------------------------


def _cumulative(point: HistogramDataPoint) -> Buckets:
    buckets: Buckets = {}
    running = 0.0
    bounds = [*point.explicit_bounds, math.inf]
    for bound, count in zip(bounds, point.bucket_counts, strict=False):
        running += count
        buckets[float(bound)] = running
    return buckets


def _add_buckets(target: Buckets, extra: Mapping[float, float]) -> None:
    for bound, count in extra.items():
        target[bound] = target.get(bound, 0.0) + count


def snapshot_from_metrics(data: MetricsData | None, source: str = "in-process metrics") -> Snapshot:
    """Fill a snapshot from an SDK collection (cumulative temporality, e.g. the ``memory`` backend's)."""
    snap = Snapshot(source=source)
    if data is None:
        return snap
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    _add_point(snap, metric.name, point)
    return snap


def _add_point(snap: Snapshot, name: str, point: Any) -> None:
    attrs: Mapping[str, Any] = point.attributes or {}
    if name == Metric.COMMAND_DURATION and isinstance(point, HistogramDataPoint):
        group = snap.commands[str(attrs.get(Attr.COMMAND_NAME, ""))]
        group.count += point.count
        group.duration_sum += point.sum
        if attrs.get(Attr.COMMAND_OUTCOME) != Outcome.SUCCESS:
            group.failures += point.count
        _add_buckets(group.buckets, _cumulative(point))
    elif name == Metric.PROVER_RUNS and isinstance(point, NumberDataPoint):
        group = snap.provers[str(attrs.get(Attr.PROVER_NAME, ""))]
        group.count += point.value
        group.results[str(attrs.get(Attr.PROVER_RESULT, ""))] += point.value
    elif name == Metric.PROVER_DURATION and isinstance(point, HistogramDataPoint):
        _add_buckets(snap.provers[str(attrs.get(Attr.PROVER_NAME, ""))].buckets, _cumulative(point))
    elif name == Metric.GEN_AI_OPERATION_DURATION and isinstance(point, HistogramDataPoint):
        group = snap.providers[str(attrs.get(Attr.GEN_AI_PROVIDER_NAME, ""))]
        group.count += point.count
        group.duration_sum += point.sum
        if attrs.get(Attr.ERROR_TYPE):
            group.failures += point.count
        _add_buckets(group.buckets, _cumulative(point))
    elif name == Metric.GEN_AI_TOKEN_USAGE and isinstance(point, HistogramDataPoint):
        group = snap.providers[str(attrs.get(Attr.GEN_AI_PROVIDER_NAME, ""))]
        if attrs.get(Attr.GEN_AI_TOKEN_TYPE) == TokenType.INPUT:
            group.input_tokens += point.sum
        else:
            group.output_tokens += point.sum
    elif name == Metric.LLM_COST and isinstance(point, NumberDataPoint):
        group = snap.providers[str(attrs.get(Attr.GEN_AI_PROVIDER_NAME, ""))]
        group.cost[str(attrs.get(Attr.LLM_COST_CURRENCY, "USD"))] += point.value
    elif name == Metric.CACHE_LOOKUPS and isinstance(point, NumberDataPoint):
        group = snap.caches[str(attrs.get(Attr.CACHE_NAME, ""))]
        group.count += point.value
        if attrs.get(Attr.CACHE_HIT) is True:
            group.results["hit"] += point.value


# --- from Prometheus ------------------------------------------------------------


class PrometheusQueryError(RuntimeError):
    """Prometheus could not be reached or rejected a query."""


class PrometheusClient:
    """The few calls of Prometheus's HTTP API the report and the tests need."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=self.timeout_s) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise PrometheusQueryError(f"{self.url}{path}: HTTP {error.code}: {detail}") from None
        except (OSError, ValueError) as error:
            raise PrometheusQueryError(f"cannot read {self.url}{path}: {error}") from None
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{self.url}{path}: {body.get('error', body)}")
        return body["data"]

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series of the resulting vector."""
        data = self.get("/api/v1/query", query=promql)
        if data.get("resultType") != "vector":
            raise PrometheusQueryError(f"{promql!r} returned a {data.get('resultType')}, not a vector")
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]


def _over(selector: str, window: str | None) -> str:
    return f"increase({selector}[{window}])" if window else selector


def snapshot_from_prometheus(url: str, window: str | None = None) -> Snapshot:
    """Fill a snapshot from Prometheus: totals since the processes started, or over ``window`` (e.g. ``1h``)."""
    client = PrometheusClient(url)
    snap = Snapshot(source=f"Prometheus {client.url}" + (f", last {window}" if window else ", since start"))

    def query(by: str, selector: str) -> list[tuple[dict[str, str], float]]:
        result = client.query(f"sum by ({by}) ({_over(selector, window)})")
        return [(labels, value) for labels, value in result if not math.isnan(value)]

    for labels, value in query(f"{L_COMMAND}, {L_OUTCOME}", COMMAND_COUNT):
        group = snap.commands[labels.get(L_COMMAND, "")]
        group.count += value
        if labels.get(L_OUTCOME) != Outcome.SUCCESS:
            group.failures += value
    for labels, value in query(L_COMMAND, COMMAND_SUM):
        snap.commands[labels.get(L_COMMAND, "")].duration_sum += value
    for labels, value in query(f"{L_COMMAND}, le", COMMAND_BUCKET):
        snap.commands[labels.get(L_COMMAND, "")].buckets[float(labels["le"])] = value
    for labels, value in query(f"{L_PROVER}, {L_RESULT}", PROVER_RUNS):
        group = snap.provers[labels.get(L_PROVER, "")]
        group.count += value
        group.results[labels.get(L_RESULT, "")] += value
    for labels, value in query(f"{L_PROVER}, le", PROVER_BUCKET):
        snap.provers[labels.get(L_PROVER, "")].buckets[float(labels["le"])] = value
    for labels, value in query(f"{L_PROVIDER}, {L_ERROR_TYPE}", LLM_COUNT):
        group = snap.providers[labels.get(L_PROVIDER, "")]
        group.count += value
        if labels.get(L_ERROR_TYPE):
            group.failures += value
    for labels, value in query(L_PROVIDER, LLM_SUM):
        snap.providers[labels.get(L_PROVIDER, "")].duration_sum += value
    for labels, value in query(f"{L_PROVIDER}, le", LLM_BUCKET):
        snap.providers[labels.get(L_PROVIDER, "")].buckets[float(labels["le"])] = value
    for labels, value in query(f"{L_PROVIDER}, {L_TOKEN_TYPE}", TOKEN_SUM):
        group = snap.providers[labels.get(L_PROVIDER, "")]
        if labels.get(L_TOKEN_TYPE) == TokenType.INPUT:
            group.input_tokens += value
        else:
            group.output_tokens += value
    for labels, value in query(f"{L_PROVIDER}, {L_CURRENCY}", LLM_COST):
        snap.providers[labels.get(L_PROVIDER, "")].cost[labels.get(L_CURRENCY, "USD")] += value
    for labels, value in query(f"{L_CACHE}, {L_HIT}", CACHE_LOOKUPS):
        group = snap.caches[labels.get(L_CACHE, "")]
        group.count += value
        if labels.get(L_HIT) == "true":
            group.results["hit"] += value
    return snap


# --- rendering -------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    body = [header, *rows]
    widths = [max(len(row[i]) for row in body) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in pairs]
        return "  ".join(cells).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in body[1:])]


def _num(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _share(numerator: float, denominator: float) -> str:
    return _percent(numerator / denominator) if denominator > 0 else "-"


def render(snapshot: Snapshot) -> str:
    """The report as text."""
    out = [f"HAK-GAL report ({snapshot.source})", "", "Alert indicators"]
    rows = []
    for indicator, key, value in indicator_values(snapshot):
        title = f"{indicator.title} [{key}]" if key else indicator.title
        if value is None:
            status, shown = "no data", "-"
        else:
            status = "ALERT" if value > indicator.threshold else "ok"
            shown = indicator.format(value)
        rows.append((title, shown, indicator.format_threshold(), status))
    out += _table(("indicator", "value", "threshold", "status"), rows)

    out += ["", "Commands"]
    out += _table(
        ("command", "count", "errors", "error rate", "avg", "p50", "p95"),
        [
            (
                name,
                _num(g.count),
                _num(g.failures),
                _share(g.failures, g.count),
                _seconds(g.duration_sum / g.count if g.count else None),
                _seconds(g.quantile(0.5)),
                _seconds(g.quantile(0.95)),
            )
            for name, g in sorted(snapshot.commands.items())
        ],
    )
    results = [r.value for r in ProverResult]
    out += ["", "Provers"]
    out += _table(
        ("prover", "runs", *results, "error rate", "p50", "p95"),
        [
            (
                name,
                _num(g.count),
                *(_num(g.results.get(r, 0.0)) for r in results),
                _share(g.results.get(ProverResult.ERROR, 0.0), g.count),
                _seconds(g.quantile(0.5)),
                _seconds(g.quantile(0.95)),
            )
            for name, g in sorted(snapshot.provers.items())
        ],
    )
    out += ["", "LLM providers"]
    out += _table(
        ("provider", "calls", "failures", "failure rate", "p50", "p95", "input tokens", "output tokens", "cost"),
        [
            (
                name,
                _num(g.count),
                _num(g.failures),
                _share(g.failures, g.count),
                _seconds(g.quantile(0.5)),
                _seconds(g.quantile(0.95)),
                _num(g.input_tokens),
                _num(g.output_tokens),
                ", ".join(f"{amount:.6f} {currency}" for currency, amount in sorted(g.cost.items())) or "-",
            )
            for name, g in sorted(snapshot.providers.items())
        ],
    )
    if snapshot.caches:
        out += ["", "Caches"]
        out += _table(
            ("cache", "lookups", "hits", "hit rate"),
            [
                (name, _num(g.count), _num(g.results.get("hit", 0.0)), _share(g.results.get("hit", 0.0), g.count))
                for name, g in sorted(snapshot.caches.items())
            ],
        )
    return "\n".join(out) + "\n"
