import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_hakgal import log_limits

pytest_plugins = ["otel_hakgal.testing"]


@pytest.fixture
def export_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """``caplog`` at WARNING with every export warning let through.

    Export runs on the SDK's threads, which catch and log whatever goes wrong:
    the log is where a failure is observable. ``setup()`` limits export
    warnings to one a minute per process (:mod:`otel_hakgal.log_limits`), so a
    test would otherwise see only what earlier tests left of that budget.
    """
    monkeypatch.setattr(log_limits.install(), "interval_s", 0.0)
    log_limits.reset()  # forget a minute's budget an earlier test has begun
    caplog.set_level(logging.WARNING)
    return caplog


@pytest.fixture
def exploding_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A registered third-party backend (entry point ``exploding``) whose start() fails."""
    from otel_hakgal.backends import registry
    from tests.support.plugins import EXPLODING, install_plugin

    monkeypatch.syspath_prepend(
        str(install_plugin(tmp_path, "exploding", "exploding_backend:ExplodingBackend", EXPLODING))
    )
    registry._targets.cache_clear()
    registry.backend_class.cache_clear()
    yield
    registry._targets.cache_clear()
    registry.backend_class.cache_clear()
