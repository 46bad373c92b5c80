"""``otel-hakgal report``: the seed guide's four alert indicators and a table by command, prover and provider.

The numbers come either from a Prometheus server that scrapes the
``prometheus`` backend (:func:`snapshot_from_prometheus`) or from in-process
metrics, e.g. the ``memory`` backend's (:func:`snapshot_from_metrics`). Each
source only turns its data into points (:class:`Point`); :func:`snapshot_from_points`
computes the :class:`Snapshot` from them, so the numbers are computed one way.

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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from otel_hakgal.backends.prometheus import label_name, series_names
from otel_hakgal.conventions import (
    DEFAULT_COST_CURRENCY,
    FAILED_OUTCOMES,
    FAILED_OUTCOMES_REGEX,
    Attr,
    Metric,
    ProverResult,
    SamplingDecision,
    SamplingReason,
    TokenType,
    metric_def,
)

# --- Prometheus names, derived from the conventions ------------------------


def _series(metric: str, suffix: str = "") -> str:
    definition = metric_def(metric)
    names = series_names(definition.name, definition.unit, definition.instrument)
    if not suffix:
        (only,) = names
        return only
    return next(n for n in names if n.endswith("_" + suffix))


# The series and labels the indicators use (the report's own reads come from READ below).
COMMAND_COUNT: Final = _series(Metric.COMMAND_DURATION, "count")
COMMAND_SUM: Final = _series(Metric.COMMAND_DURATION, "sum")
PROVER_RUNS: Final = _series(Metric.PROVER_RUNS)
LLM_COUNT: Final = _series(Metric.GEN_AI_OPERATION_DURATION, "count")
LLM_INFERENCE_COUNT: Final = _series(Metric.GEN_AI_INFERENCE_DURATION, "count")  # its coming name

L_OUTCOME: Final = label_name(Attr.COMMAND_OUTCOME)
L_PROVER: Final = label_name(Attr.PROVER_NAME)
L_RESULT: Final = label_name(Attr.PROVER_RESULT)
L_PROVIDER: Final = label_name(Attr.GEN_AI_PROVIDER_NAME)
L_ERROR_TYPE: Final = label_name(Attr.ERROR_TYPE)


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
    # The same selectors under the GenAI conventions' coming names: used where the current ones have no data.
    upcoming: tuple[str, str] | None = None

    def _sum(self, selector: str, window: str | None) -> str:
        inner = f"rate({selector}[{window}])" if window else selector
        return f"sum by ({self.by}) ({inner})" if self.by else f"sum({inner})"

    def _either(self, current: str, upcoming: str | None, window: str | None) -> str:
        if upcoming is None:
            return self._sum(current, window)
        return f"({self._sum(current, window)} or {self._sum(upcoming, window)})"

    def expr(self, window: str | None = None) -> str:
        """The indicator in PromQL: a rate ratio over ``window`` (lifetime ratio without one).

        A ratio of failures reads 0, not "no data", while nothing failed. With ``upcoming`` selectors,
        series under either name count (the current ones where both exist).
        """
        numerator_next, denominator_next = self.upcoming or (None, None)
        numerator = self._either(self.numerator, numerator_next, window)
        denominator = self._either(self.denominator, denominator_next, window)
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
    numerator=f'{COMMAND_COUNT}{{{L_OUTCOME}=~"{FAILED_OUTCOMES_REGEX}"}}',
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
    upcoming=(f'{LLM_INFERENCE_COUNT}{{{L_ERROR_TYPE}!=""}}', LLM_INFERENCE_COUNT),
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


@dataclass(frozen=True)
class Point:
    """One series of one metric as a source gives it: a counter's value, or a histogram's totals.

    Attribute values are strings as the Prometheus exporter renders them (``true``, not ``True``),
    so both sources group alike.
    """

    metric: str
    attributes: Mapping[str, str]
    value: float  # the counter's value, or the histogram's count
    sum: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)  # cumulative
    min: float | None = None  # the recorded extremes, when the source has them (Prometheus has not)
    max: float | None = None


# What the report reads: each metric and the attributes it groups that metric by.
READ: Final[Mapping[str, tuple[str, ...]]] = {
    Metric.COMMAND_DURATION: (Attr.COMMAND_NAME, Attr.COMMAND_OUTCOME),
    Metric.PROVER_RUNS: (Attr.PROVER_NAME, Attr.PROVER_RESULT),
    Metric.PROVER_DURATION: (Attr.PROVER_NAME,),
    Metric.GEN_AI_OPERATION_DURATION: (Attr.GEN_AI_PROVIDER_NAME, Attr.ERROR_TYPE),
    Metric.GEN_AI_TOKEN_USAGE: (Attr.GEN_AI_PROVIDER_NAME, Attr.GEN_AI_TOKEN_TYPE),
    Metric.LLM_COST: (Attr.GEN_AI_PROVIDER_NAME, Attr.LLM_COST_CURRENCY),
    Metric.CACHE_LOOKUPS: (Attr.CACHE_NAME, Attr.CACHE_HIT),
    Metric.SAMPLING_TRACES: (Attr.SAMPLING_DECISION, Attr.SAMPLING_REASON),
    Metric.SAMPLING_INCOMPLETE: (Attr.ERROR_TYPE,),
}


def _lower(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _higher(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class Group:
    """Totals of one command, prover or provider."""

    count: float = 0.0
    failures: float = 0.0
    duration_sum: float = 0.0
    buckets: Buckets = field(default_factory=dict)
    duration_min: float | None = None
    duration_max: float | None = None
    results: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add_durations(self, point: Point) -> None:
        for bound, count in point.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count
        self.duration_min = _lower(self.duration_min, point.min)
        self.duration_max = _higher(self.duration_max, point.max)

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.buckets, self.duration_min, self.duration_max)


@dataclass
class Snapshot:
    commands: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    provers: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    providers: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))
    caches: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))  # count = lookups, results["hit"]
    # Tail sampling: traces by (decision, reason), and traces let go incomplete by cause.
    sampling: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    sampling_incomplete: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    source: str = ""


def snapshot_from_points(points: Iterable[Point], source: str) -> Snapshot:
    """The snapshot of ``points``: the one place the report's numbers are computed, whatever the source."""
    snap = Snapshot(source=source)
    for point in points:
        _add(snap, point)
    return snap


def _add(snap: Snapshot, point: Point) -> None:
    attrs, name = point.attributes, point.metric
    if name == Metric.COMMAND_DURATION:
        group = snap.commands[attrs.get(Attr.COMMAND_NAME, "")]
        group.count += point.value
        group.duration_sum += point.sum
        if attrs.get(Attr.COMMAND_OUTCOME) in FAILED_OUTCOMES:
            group.failures += point.value
        group.add_durations(point)
    elif name == Metric.PROVER_RUNS:
        group = snap.provers[attrs.get(Attr.PROVER_NAME, "")]
        group.count += point.value
        group.results[attrs.get(Attr.PROVER_RESULT, "")] += point.value
    elif name == Metric.PROVER_DURATION:
        snap.provers[attrs.get(Attr.PROVER_NAME, "")].add_durations(point)
    elif name == Metric.GEN_AI_OPERATION_DURATION:
        group = snap.providers[attrs.get(Attr.GEN_AI_PROVIDER_NAME, "")]
        group.count += point.value
        group.duration_sum += point.sum
        if attrs.get(Attr.ERROR_TYPE):
            group.failures += point.value
        group.add_durations(point)
    elif name == Metric.GEN_AI_TOKEN_USAGE:
        group = snap.providers[attrs.get(Attr.GEN_AI_PROVIDER_NAME, "")]
        if attrs.get(Attr.GEN_AI_TOKEN_TYPE) == TokenType.INPUT:
            group.input_tokens += point.sum
        else:
            group.output_tokens += point.sum
    elif name == Metric.LLM_COST:
        group = snap.providers[attrs.get(Attr.GEN_AI_PROVIDER_NAME, "")]
        group.cost[attrs.get(Attr.LLM_COST_CURRENCY, DEFAULT_COST_CURRENCY)] += point.value
    elif name == Metric.CACHE_LOOKUPS:
        group = snap.caches[attrs.get(Attr.CACHE_NAME, "")]
        group.count += point.value
        if attrs.get(Attr.CACHE_HIT) == "true":
            group.results["hit"] += point.value
    elif name == Metric.SAMPLING_TRACES:
        snap.sampling[(attrs.get(Attr.SAMPLING_DECISION, ""), attrs.get(Attr.SAMPLING_REASON, ""))] += point.value
    elif name == Metric.SAMPLING_INCOMPLETE:
        snap.sampling_incomplete[attrs.get(Attr.ERROR_TYPE, "")] += point.value


def histogram_quantile(
    q: float, buckets: Mapping[float, float], lowest: float | None = None, highest: float | None = None
) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative buckets (linear within a bucket), kept within the data.

    ``lowest`` and ``highest`` are the recorded extremes: they narrow the bucket the rank falls in,
    so e.g. a p95 in the bucket (1, 2.5] of runs that took at most 1.01 s is at most 1.01 s. Without
    them (Prometheus has no min/max) the bounds are the lowest non-empty bucket's lower bound and the
    highest's upper bound (the last finite bound when that is +Inf), as far as buckets tell: the rank
    always falls in a non-empty bucket, so the estimate is then Prometheus's own.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    low_end, high_end = _occupied_range(bounds, buckets)
    low_end = low_end if lowest is None else lowest
    high_end = high_end if highest is None else highest

    def within(value: float) -> float:
        return min(max(value, low_end), high_end)

    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            low, high = within(lower_bound), within(bound)
            if count == lower_count:
                return high
            return low + (high - low) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return within(lower_bound)


def _occupied_range(bounds: list[float], buckets: Mapping[float, float]) -> tuple[float, float]:
    """The lowest non-empty bucket's lower bound and the highest's upper bound (+Inf: the last finite bound)."""
    low: float | None = None
    high = 0.0
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count > lower_count:
            if low is None:
                low = lower_bound
            high = lower_bound if math.isinf(bound) else bound
        lower_bound, lower_count = bound, count
    return (low or 0.0), high


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


# --- source 1: in-process metrics ----------------------------------------------


def _label_value(value: Any) -> str:
    # As the Prometheus exporter renders attribute values.
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _cumulative(point: HistogramDataPoint) -> Buckets:
    buckets: Buckets = {}
    running = 0.0
    bounds = [*point.explicit_bounds, math.inf]
    for bound, count in zip(bounds, point.bucket_counts, strict=False):
        running += count
        buckets[float(bound)] = running
    return buckets


def points_from_metrics(data: MetricsData | None) -> Iterator[Point]:
    """The points :data:`READ` names in an SDK collection (cumulative temporality, e.g. the ``memory`` backend's)."""
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name not in READ:
                    continue
                for point in metric.data.data_points:
                    attributes = {key: _label_value(value) for key, value in (point.attributes or {}).items()}
                    if isinstance(point, HistogramDataPoint):
                        # An empty point, or one without min/max recording, has inf/-inf.
                        known = point.count > 0 and math.isfinite(point.min) and math.isfinite(point.max)
                        yield Point(
                            metric.name,
                            attributes,
                            point.count,
                            point.sum,
                            _cumulative(point),
                            point.min if known else None,
                            point.max if known else None,
                        )
                    elif isinstance(point, NumberDataPoint):
                        yield Point(metric.name, attributes, point.value)


def snapshot_from_metrics(data: MetricsData | None, source: str = "in-process metrics") -> Snapshot:
    """The snapshot of an SDK collection (cumulative temporality, e.g. the ``memory`` backend's)."""
    return snapshot_from_points(points_from_metrics(data), source)


# --- source 2: Prometheus ---------------------------------------------------------


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


class _Queryable(Protocol):
    def query(self, promql: str) -> list[tuple[dict[str, str], float]]: ...


def _over(selector: str, window: str | None) -> str:
    return f"increase({selector}[{window}])" if window else selector


def points_from_prometheus(client: _Queryable, window: str | None = None) -> list[Point]:
    """The points :data:`READ` names, summed by its attributes: totals since start, or increases over ``window``."""
    points: list[Point] = []
    for metric, attributes in READ.items():
        points += _prometheus_points(client, metric, attributes, window)
    return points


def _prometheus_points(client: _Queryable, metric: str, attributes: tuple[str, ...], window: str | None) -> list[Point]:
    labels = [label_name(attribute) for attribute in attributes]

    def query(series: str, *extra: str) -> Iterator[tuple[tuple[str, ...], dict[str, str], float]]:
        promql = f"sum by ({', '.join([*labels, *extra])}) ({_over(series, window)})"
        for found, value in client.query(promql):
            if not math.isnan(value):
                yield tuple(found.get(label, "") for label in labels), found, value

    def attrs(key: tuple[str, ...]) -> dict[str, str]:
        # Prometheus leaves out empty labels, as the series that lack the attribute.
        return {attribute: value for attribute, value in zip(attributes, key, strict=True) if value}

    if metric_def(metric).instrument != "histogram":
        return [Point(metric, attrs(key), value) for key, _, value in query(_series(metric))]
    counts = {key: value for key, _, value in query(_series(metric, "count"))}
    sums = {key: value for key, _, value in query(_series(metric, "sum"))}
    buckets: dict[tuple[str, ...], Buckets] = defaultdict(dict)
    for key, found, value in query(_series(metric, "bucket"), "le"):
        buckets[key][float(found["le"])] = value
    return [
        Point(metric, attrs(key), counts.get(key, 0.0), sums.get(key, 0.0), buckets.get(key, {}))
        for key in sorted(counts.keys() | sums.keys() | buckets.keys())
    ]


def snapshot_from_prometheus(url: str, window: str | None = None) -> Snapshot:
    """The snapshot from Prometheus: totals since the processes started, or over ``window`` (e.g. ``1h``)."""
    client = PrometheusClient(url)
    source = f"Prometheus {client.url}" + (f", last {window}" if window else ", since start")
    return snapshot_from_points(points_from_prometheus(client, window), source)


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
    if snapshot.sampling:
        out += ["", render_sampling(snapshot)]
    return "\n".join(out) + "\n"


def render_sampling(snapshot: Snapshot) -> str:
    """One line: how many traces tail sampling kept, and why (``''`` when it decided none)."""
    decided = sum(snapshot.sampling.values())
    if not decided:
        return ""
    kept = {reason: n for (decision, reason), n in snapshot.sampling.items() if decision == SamplingDecision.KEPT}
    why = ", ".join(f"{reason} {_num(kept[reason])}" for reason in SamplingReason if kept.get(reason))
    line = f"Traces kept by tail sampling: {_num(sum(kept.values()))} of {_num(decided)} ({why or 'none'})"
    incomplete = ", ".join(f"{cause} {_num(n)}" for cause, n in sorted(snapshot.sampling_incomplete.items()) if n)
    return line + (f"; incomplete: {incomplete}" if incomplete else "")
