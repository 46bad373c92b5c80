"""The generated tables of ``instrumentation.md``, from the conventions and config schema.

``python -m otel_hakgal.reference instrumentation.md`` rewrites the generated
blocks in place; a test fails when the file and the code disagree.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from otel_hakgal.config import ROOT_SETTINGS, all_sections, environment_variables, spec_of
from otel_hakgal.conventions import (
    ATTRIBUTES,
    HTTP_SERVER_METRICS,
    METRICS,
    PROCESS_METRICS,
    SCHEMA_URL,
    SPANS,
)

_BLOCK = re.compile(r"(<!-- generated:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    return f"`{text}`"


def _scope_line() -> str:
    """The line under each table of the layer's names: the schema URL its instrumentation scope carries."""
    return f"\nThe `otel_hakgal` instrumentation scope carries the schema URL `{SCHEMA_URL}`.\n"


def spans_table() -> str:
    rows = [
        (_code(s.name), s.kind, s.description, ", ".join(_code(a) for a in s.attributes), s.convention) for s in SPANS
    ]
    return _table(("span name", "kind", "meaning", "attributes", "convention"), rows) + _scope_line()


def attributes_table() -> str:
    rows = [
        (_code(a.key), a.type, a.description, ", ".join(_code(v) for v in a.values), a.convention) for a in ATTRIBUTES
    ]
    return _table(("attribute", "type", "meaning", "values", "convention"), rows) + _scope_line()


def metrics_table() -> str:
    rows = [
        (
            _code(m.name),
            m.instrument,
            _code(m.unit),
            m.description,
            ", ".join(_code(a) for a in m.attributes),
            ", ".join(f"{b:g}" for b in m.buckets) or "-",
            m.convention,
        )
        for m in METRICS
    ]
    header = ("metric", "instrument", "unit", "meaning", "attributes", "bucket boundaries", "convention")
    return _table(header, rows) + _scope_line()


def instrumentation_metrics_table() -> str:
    """The HTTP server and process metrics other instrumentations record, as the layer serves them."""
    rows = [
        (
            _code(m.name) + (f" (recorded as {_code(m.recorded_as)})" if m.recorded_as else ""),
            m.instrument,
            _code(m.unit) if m.unit else "-",
            m.description,
            ", ".join(_code(a) for a in m.attributes),
            m.source,
            m.convention,
        )
        for m in (*HTTP_SERVER_METRICS, *PROCESS_METRICS)
    ]
    return _table(("metric", "instrument", "unit", "meaning", "attributes", "recorded by", "convention"), rows)


def config_table() -> str:
    rows: list[tuple[str, ...]] = [
        (_code(key), "-", spec.doc, ", ".join(_code(e) for e in spec.env)) for key, spec in ROOT_SETTINGS.items()
    ]
    for section, cls in all_sections().items():
        for f in dataclasses.fields(cls):
            spec = spec_of(f)
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            rows.append(
                (_code(f"{section}.{f.name}"), _code(repr(default)), spec.doc, ", ".join(_code(e) for e in spec.env))
            )
    return _table(("key", "default", "meaning", "environment variable"), rows)


def env_table() -> str:
    rows = [(_code(env), ", ".join(map(_code, keys))) for env, keys in sorted(environment_variables().items())]
    return _table(("environment variable", "config keys"), rows)


BLOCKS = {
    "spans": spans_table,
    "attributes": attributes_table,
    "metrics": metrics_table,
    "instrumentation-metrics": instrumentation_metrics_table,
    "config": config_table,
    "env": env_table,
}


def generated_blocks(text: str) -> dict[str, str]:
    """The generated blocks found in a document, by name."""
    return {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}


def regenerate(text: str) -> str:
    """``text`` with every generated block replaced by the current tables."""
    return _BLOCK.sub(lambda m: m.group(1) + BLOCKS[m.group("name")]() + m.group(4), text)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "instrumentation.md")
    path.write_text(regenerate(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {path}")
