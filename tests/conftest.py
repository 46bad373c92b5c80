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
def plugin_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registered third-party backends: ``exploding`` (its start() fails), ``broken`` (its processor raises),
    ``recording`` (keeps the spans its processor got and its batch processor exported)."""
    from otel_hakgal.backends import registry
    from tests.support.plugins import BROKEN, EXPLODING, RECORDING, install_plugin

    install_plugin(tmp_path, "exploding", "exploding_backend:ExplodingBackend", EXPLODING)
    install_plugin(tmp_path, "broken", "broken_backend:BrokenBackend", BROKEN)
    install_plugin(tmp_path, "recording", "recording_backend:RecordingBackend", RECORDING)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._targets.cache_clear()
    registry.backend_class.cache_clear()
    yield
    registry._targets.cache_clear()
    registry.backend_class.cache_clear()
