"""The OpenTelemetry Collector in tests: the cached ``otelcol-hakgal`` binary, or a skip (a failure under CI)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

from otel_hakgal.testing.prometheus import in_ci
from tests.support import collector_build


@functools.cache
def _build() -> str:
    return str(collector_build.build())


def require_collector() -> str:
    """Path of the collector built from ``configs/collector/builder.yaml``, building it (minutes) when Go is here.

    Without Go the test skips; under ``CI=true`` it fails: CI must run the collector tests.
    """
    path = collector_build.binary_path()
    if path.is_file():
        return str(path)
    if collector_build.find_go() is None:
        message = (
            "Go is not installed: the collector tests need otelcol-hakgal, built with Go by"
            " python3 tests/support/collector_build.py"
        )
        if in_ci():
            pytest.fail(message + "; CI must have it", pytrace=False)
        pytest.skip(message)
    try:
        return _build()
    except collector_build.BuildError as error:
        pytest.fail(f"building the collector failed: {error}", pytrace=False)


def validate(binary: str, config: Path) -> subprocess.CompletedProcess[str]:
    """``otelcol-hakgal validate --config FILE``: the collector's own check (unknown keys are errors)."""
    return subprocess.run(
        [binary, "validate", f"--config={config}"], capture_output=True, text=True, timeout=60, check=False
    )
