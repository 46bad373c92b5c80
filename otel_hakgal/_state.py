"""What the API reads on every call: the active tracer, instruments and config.

Before ``setup()`` these come from the global OpenTelemetry API (no-op unless
something else configured it), so the API is usable and cheap at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Tracer

from otel_hakgal import __version__
from otel_hakgal.config import Config
from otel_hakgal.conventions import INSTRUMENTATION_SCOPE
from otel_hakgal.instruments import Instruments

if TYPE_CHECKING:
    from otel_hakgal.backends import Backend
    from otel_hakgal.redaction import SecretScrubber


@dataclass
class State:
    tracer: Tracer
    instruments: Instruments
    config: Config
    backends: tuple[Backend, ...] = field(default_factory=tuple)
    # The one secret-scrubbing policy every backend shares (None: scrubbing is off).
    scrubber: SecretScrubber | None = None


def _initial() -> State:
    return State(
        tracer=trace.get_tracer(INSTRUMENTATION_SCOPE, __version__),
        instruments=Instruments.create(),
        config=Config(backends=()),
    )


state = _initial()
