"""The backend registry: built-ins by name, third-party backends by entry point, only what is asked for imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_hakgal.backends import Backend, backend_class, backend_names
from otel_hakgal.backends.registry import BUILTIN
from otel_hakgal.config import ConfigError, all_sections, load_config


def _run(code: str, *, path: Path | None = None) -> str:
    """Run ``code`` in a fresh interpreter (a clean ``sys.modules``); return its stdout."""
    env_path = [str(path)] if path else []
    prelude = f"import sys; sys.path[:0] = {env_path!r}\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_builtin_is_a_backend_under_its_own_name() -> None:
    assert set(BUILTIN) <= set(backend_names())
    for name in BUILTIN:
        cls = backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name


def test_backend_sections_come_from_the_backends() -> None:
    assert {"otlp", "jsonl", "console", "sentry", "prometheus"} <= set(all_sections())


def test_unknown_backend_is_a_key_error_and_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(KeyError):
        backend_class("pigeon")
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"backends": ["otpl"]}, environ={})
    assert "unknown backend 'otpl' (did you mean 'otlp'?)" in str(caught.value)


def test_loading_a_config_imports_only_the_backends_it_names() -> None:
    out = _run(
        """
        import json, sys
        from otel_hakgal.config import load_config
        load_config(overrides={"backends": ["none"]}, environ={})
        vendors = ["sentry_sdk", "prometheus_client", "opentelemetry.exporter.prometheus", "flask"]
        ours = sorted(m for m in sys.modules if m.startswith("otel_hakgal.backends."))
        print(json.dumps({"vendors": [m for m in vendors if m in sys.modules], "backends": ours}))
        """
    )
    loaded = json.loads(out)
    assert loaded["vendors"] == []
    assert "otel_hakgal.backends.none" in loaded["backends"]
    assert not any(
        m.startswith(("otel_hakgal.backends.sentry", "otel_hakgal.backends.otlp")) for m in loaded["backends"]
    )


def test_a_missing_extra_is_a_config_error_that_names_the_pip_command() -> None:
    out = _run(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if the [prometheus] extra were not installed
        from otel_hakgal.config import ConfigError, load_config
        try:
            load_config(overrides={"backends": ["prometheus"]}, environ={})
        except ConfigError as error:
            print(error)
        """
    )
    assert "backend 'prometheus' needs prometheus_client" in out
    assert "pip install 'otel_hakgal[prometheus]'" in out


PLUGIN = """
from dataclasses import dataclass

from otel_hakgal.backends import Backend, Parts
from otel_hakgal.config import setting
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass(frozen=True)
class PigeonSettings:
    loft: str = setting("roof", "Where the pigeons live.")


class PigeonBackend(Backend):
    name = "pigeon"
    Settings = PigeonSettings

    def create_parts(self):
        self.exporter = InMemorySpanExporter()
        return Parts(span_processors=(SimpleSpanProcessor(self.exporter),))
"""


def test_a_third_party_backend_registers_through_an_entry_point(tmp_path: Path) -> None:
    (tmp_path / "pigeon_backend.py").write_text(PLUGIN)
    dist = tmp_path / "pigeon_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[otel_hakgal.backends]\npigeon = pigeon_backend:PigeonBackend\n")
    out = _run(
        """
        import otel_hakgal as hg
        handle = hg.setup(backends=["pigeon"], settings={"pigeon.loft": "tower"})
        with hg.command("ask"):
            pass
        backend = handle.backend("pigeon")
        print(backend.settings.loft, [span.name for span in backend.exporter.get_finished_spans()])
        handle.shutdown()
        """,
        path=tmp_path,
    )
    assert out.split() == ["tower", "['hakgal.command", "ask']"]
