"""A shortened soak (2,000 commands): every span reaches both backends, the log stays clean, no secret leaks.

The full soak (``benchmarks/soak.py``, 50,000 commands) is run by hand; this
checks the same things on a short run, not timing or memory flatness.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.support.benchmarks import load_benchmark

pytestmark = [pytest.mark.system, pytest.mark.slow]

COMMANDS = 2000


def _load() -> ModuleType:
    return load_benchmark("soak")


def test_a_short_soak_loses_no_span_and_logs_no_error() -> None:
    soak = _load()
    report = soak.run(COMMANDS, concurrency=8, fault_rate=0.1)
    assert report["statuses"] == {200: COMMANDS}
    assert report["workers_reporting"] == report["workers"]
    assert report["spans_produced"] > COMMANDS * 3  # several spans per command
    assert report["lost"] == {"otlp": 0, "sentry": 0}, report["received"]
    assert report["secret_leaks"] == {"otlp": 0, "sentry": 0}  # the 401 faults echo the API key
    # ... and their scrubbed messages did arrive (in OTLP span events; Sentry spans carry no exception text,
    # and handled provider failures are not Sentry errors since Sentry's auto-enabled openai integration is off)
    assert report["key_error_payloads"]["otlp"] > 0
    assert report["sentry_discarded"] == {}
    assert report["log_problems"] == 0, report["log_samples"]
    assert len(report["rss_mb"]) >= 3 and all(mb > 0 for _, mb in report["rss_mb"])
