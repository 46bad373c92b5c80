"""The demo's metrics summary, read from the metrics the layer recorded (never from the app's own counters).

The alert indicators and the tables come from :mod:`otel_hakgal.report`, the
same definitions the Prometheus alert rules use; this module adds the
command outcomes.
"""

from __future__ import annotations

from collections import Counter

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData

from otel_hakgal.conventions import Attr, Metric
from otel_hakgal.report import Snapshot, render, snapshot_from_metrics

SOURCE = "demo workload, memory backend"


def commands_by_outcome(data: MetricsData | None) -> dict[str, int]:
    """Commands per outcome (success, error, timeout, rejected) from the command-duration histogram."""
    totals: Counter[str] = Counter()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name != Metric.COMMAND_DURATION:
                    continue
                for point in metric.data.data_points:
                    if isinstance(point, HistogramDataPoint):
                        totals[str((point.attributes or {}).get(Attr.COMMAND_OUTCOME))] += point.count
    return dict(totals)


def snapshot(data: MetricsData | None) -> Snapshot:
    return snapshot_from_metrics(data, source=SOURCE)


def render_summary(data: MetricsData | None) -> str:
    outcomes = commands_by_outcome(data)
    line = ", ".join(f"{outcome} {count}" for outcome, count in sorted(outcomes.items()))
    return f"Commands by outcome: {line or 'none'} (total {sum(outcomes.values())})\n\n" + render(snapshot(data))
