"""Metric and label names in PromQL, checked against the conventions module.

The Prometheus name of each metric comes from its OTel name, unit and instrument
(``otel_hakgal.backends.prometheus.series_names``; tests/backends/test_prometheus.py
checks that function against the exporter's real output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otel_hakgal.backends.prometheus import label_name, series_names
from otel_hakgal.conventions import HTTP_SERVER_METRICS, METRICS, PROCESS_METRICS

# Labels Prometheus adds to every scraped series, and the exporter's scope labels.
COMMON_LABELS = frozenset({"job", "instance", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"})
_PREFIXES = ("hakgal_", "gen_ai_", "process_", "http_")
_SELECTOR_NAME = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*\b")


@dataclass(frozen=True)
class Known:
    series: dict[str, frozenset[str]]  # Prometheus series name -> labels it may carry
    labels: frozenset[str]


def known_names() -> Known:
    series: dict[str, frozenset[str]] = {}
    for definition in (*METRICS, *HTTP_SERVER_METRICS, *PROCESS_METRICS):
        labels = frozenset(label_name(a) for a in definition.attributes) | COMMON_LABELS
        for name in series_names(definition.name, definition.unit, definition.instrument):
            series[name] = labels | ({"le"} if name.endswith("_bucket") else frozenset())
    series["target_info"] = COMMON_LABELS
    all_labels = frozenset().union(*series.values())
    return Known(series, all_labels)


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def problems(expr: str, known: Known) -> list[str]:
    """What in ``expr`` is not a conventions metric or one of its labels."""
    found: list[str] = []
    bare = _strip_strings(expr)
    names = set(_SELECTOR_NAME.findall(bare)) - {"by", "without", "on", "ignoring", "group_left", "group_right"}
    names = {n for n in names if not re.fullmatch(r"[a-z_]+", n) or n.startswith(_PREFIXES) or n in known.series}
    for name in sorted(names):
        if name not in known.series:
            found.append(f"unknown metric {name!r}")
    allowed = frozenset().union(*(known.series.get(n, frozenset()) for n in names)) or known.labels
    labels = set(_MATCHER_LABEL.findall(expr))
    for group in _GROUPING.findall(bare):
        labels.update(part.strip() for part in group.split(",") if part.strip())
    for label in sorted(labels):
        if label not in allowed:
            found.append(f"label {label!r} is not on {sorted(names)}")
    # any other identifier that looks like one of our metrics must be known (catches typos outside selectors)
    for word in set(_IDENTIFIER.findall(bare)):
        if word.startswith(_PREFIXES) and word not in known.series and word not in known.labels:
            found.append(f"unknown name {word!r}")
    return found


def metric_names(expr: str) -> set[str]:
    return {n for n in _SELECTOR_NAME.findall(_strip_strings(expr)) if n.startswith(_PREFIXES)}
