"""The backend interface: one destination for telemetry, with a lifecycle.

A backend goes through four steps, each with one job:

1. ``check(config, settings)`` (a classmethod, pure): the configuration
   problems only this backend knows about. :func:`~otel_hakgal.config.load_config`
   calls it, so ``otel-hakgal check-config`` rejects all that ``setup()`` would.
2. ``__init__(config, resource)``: keeps its configuration. No I/O, no threads.
3. ``start()``: does the I/O (threads, sockets, vendor SDK init) and returns
   the :class:`Parts` it contributes to the OTel pipeline.
4. ``force_flush()`` / ``shutdown()``: after its parts were flushed or shut down.

``stats()`` reports queue depths, drops and send outcomes at any time.
A backend's vendor SDK is imported in ``start()`` (or in modules only
``start()`` imports), so the class loads without its extra installed and
``check`` can say which extra is missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from otel_hakgal.delivery import DeliveryLog, SignalOff

if TYPE_CHECKING:
    from opentelemetry.context.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor

    from otel_hakgal.config import Config

PACKAGE = "otel_hakgal"


@dataclass(frozen=True)
class Parts:
    """What a started backend adds to the process's OTel pipeline."""

    span_processors: Sequence[SpanProcessor] = ()
    metric_readers: Sequence[MetricReader] = ()
    # Combined with W3C tracecontext and baggage, after them.
    propagators: Sequence[TextMapPropagator] = ()
    # Only when ``config.logs.enabled``: the core's fan-out hands them scrubbed, capped records.
    log_processors: Sequence[LogRecordProcessor] = ()


@dataclass(frozen=True)
class QueueStats:
    """One export queue: items waiting now, its capacity, items it lost since start."""

    queued: int
    capacity: int
    dropped: int = 0


@dataclass(frozen=True)
class BackendStats:
    """What a backend did so far: its queues and the outcome of its network sends."""

    queues: Mapping[str, QueueStats] = field(default_factory=dict)
    # "HTTP 200" / exception class name -> count; empty for in-process backends.
    sends: Mapping[str, int] = field(default_factory=dict)
    # Signal ("traces", "metrics", "logs") -> why the backend does not send it: its configuration turned it
    # off, or its receiver refused it (HTTP 404/405) and it stopped, counting what it did not send.
    signals_off: Mapping[str, SignalOff] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        """Items lost by all queues together."""
        return sum(queue.dropped for queue in self.queues.values())


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package of a dotted name is missing
        return False


class Backend:
    """One destination for spans and metrics. Subclasses override what they provide."""

    name: ClassVar[str]
    # The settings dataclass of the config section ``[<name>]`` (fields declared with ``config.setting``).
    Settings: ClassVar[type | None] = None
    # Sends over the network (``selftest`` then expects HTTP answers in ``delivery``).
    remote: ClassVar[bool] = False
    # Modules the backend needs beyond the base install, and the pip extra that installs them.
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None

    def __init__(self, config: Config, resource: Resource) -> None:
        self.config = config
        self.resource = resource
        self.settings: Any = config.settings_for(self.name)
        self.delivery = DeliveryLog()
        self.parts = Parts()

    # --- lifecycle -----------------------------------------------------------

    @classmethod
    def probe(cls, config: Config, settings: Any) -> list[str]:
        """For ``check-config`` only: what I/O finds wrong here (a path that cannot be written).

        May look at files and sockets but creates nothing; ``setup()`` never calls it.
        """
        return []

    @classmethod
    def check(cls, config: Config, settings: Any) -> list[str]:
        """Problems with this backend's configuration, one line each (empty: fine). Pure: no I/O.

        The base checks that the backend's extra is installed; override and call it.
        """
        missing = [module for module in cls.requires if not _installed(module)]
        if not missing:
            return []
        extra = cls.extra or cls.name
        return [
            config.problem(
                "backends",
                f"backend {cls.name!r} needs {', '.join(missing)}, which is not installed; "
                f"install it with: pip install '{PACKAGE}[{extra}]'",
            )
        ]

    def start(self) -> Parts:
        """Do the I/O and return the parts to install. Called once; remember them in ``self.parts``.

        If it raises, it releases what it acquired first: ``shutdown`` is not called then.
        """
        self.parts = self.create_parts()
        return self.parts

    def create_parts(self) -> Parts:
        """The parts this backend contributes (most backends only override this)."""
        return Parts()

    def stats(self) -> BackendStats:
        """Queues and sends so far (the base reports the batch span and log processors among its parts)."""
        from otel_hakgal.backends.batching import batch_queues

        return BackendStats(queues=batch_queues(self.parts), sends=self.delivery.counts())

    def capture_exception(self, error: BaseException, context: Context | None = None) -> None:
        """Report a handled error to an error-tracking backend (most backends: spans suffice)."""

    def capture_message(self, message: str, level: str) -> None:
        """Report a message to an error-tracking backend (most backends: the span event suffices)."""

    def force_flush(self, timeout_s: float) -> bool:
        """Send what the backend queues outside its span processors and metric readers."""
        return True

    def shutdown(self) -> None:
        """Release what ``start`` acquired beyond the processors and readers (called after those)."""
