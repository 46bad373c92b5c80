"""The one running state of the layer: what the API reads on every operation.

A :class:`Runtime` is immutable. ``setup()`` builds a new one and replaces the
current one whole (one assignment), so an operation that read ``current`` once
sees one consistent configuration from start to end, even while another
thread reconfigures.

Before ``setup()``, and after the running setup was shut down, the runtime
uses the global OpenTelemetry API (a no-op unless something else configured
it), so the API is usable and cheap at any time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Tracer

from otel_hakgal.config import Config
from otel_hakgal.conventions import INSTRUMENTATION_SCOPE, SCHEMA_URL
from otel_hakgal.instruments import Instruments
from otel_hakgal.version import __version__

if TYPE_CHECKING:
    from otel_hakgal.backends.base import Backend
    from otel_hakgal.redaction import SecretScrubber


@dataclass(frozen=True, slots=True)
class Runtime:
    """The configuration in force and the objects built from it."""

    config: Config
    tracer: Tracer
    instruments: Instruments
    backends: tuple[Backend, ...] = ()
    # The one redaction policy (secrets, length cut) every backend shares; None when idle.
    scrubber: SecretScrubber | None = None

    @classmethod
    def idle(cls, instruments: Instruments | None = None, config: Config | None = None) -> Runtime:
        """The runtime when nothing is sent: the global OTel API, no backends (``config``: a disabled one)."""
        return cls(
            config=config or Config(backends=()),
            tracer=trace.get_tracer(INSTRUMENTATION_SCOPE, __version__, schema_url=SCHEMA_URL),
            instruments=instruments or Instruments.create(),
        )


current: Runtime = Runtime.idle()
"""The runtime in force. Read it once per operation; only :mod:`otel_hakgal.pipeline` assigns it."""
