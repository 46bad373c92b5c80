"""Third-party backends for tests: a module plus a ``dist-info`` whose entry point registers it."""

from __future__ import annotations

import textwrap
from pathlib import Path

EXPLODING = '''
from otel_hakgal.backends import Backend


class ExplodingBackend(Backend):
    """Starts like a backend whose collector socket cannot be opened."""

    name = "exploding"

    def create_parts(self):
        raise OSError("cannot open the loft: permission denied")
'''

BROKEN = '''
from opentelemetry.sdk.trace import SpanProcessor

from otel_hakgal.backends import Backend, Parts


class _Broken(SpanProcessor):
    def on_start(self, span, parent_context=None):
        raise RuntimeError("broken on_start")

    def on_end(self, span):
        raise RuntimeError("broken on_end")


class BrokenBackend(Backend):
    """Starts fine; its span processor raises on every span."""

    name = "broken"

    def create_parts(self):
        return Parts(span_processors=(_Broken(),))
'''


def install_plugin(directory: Path, name: str, target: str, code: str) -> Path:
    """Write ``code`` as module ``<module of target>`` registered as backend ``name``; returns ``directory``.

    Put ``directory`` on ``sys.path`` (or ``PYTHONPATH``) to make the backend visible.
    """
    module = target.partition(":")[0]
    (directory / f"{module}.py").write_text(textwrap.dedent(code))
    dist = directory / f"{module}-1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[otel_hakgal.backends]\n{name} = {target}\n")
    return directory

RECORDING = '''
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_hakgal.backends import Backend, Parts
from otel_hakgal.backends.batching import CountingBatchSpanProcessor


class _Recording(SpanProcessor):
    def __init__(self):
        self.ended = []

    def on_end(self, span):
        self.ended.append(span)


class RecordingBackend(Backend):
    """Keeps what its own span processor got, and what its batch processor (the layer's) exported."""

    name = "recording"

    def create_parts(self):
        self.processor = _Recording()
        self.exporter = InMemorySpanExporter()
        return Parts(span_processors=(self.processor, CountingBatchSpanProcessor(self.exporter, self.config)))
'''
