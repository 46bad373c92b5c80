"""Backends: where telemetry goes. One module per backend, one small interface.

A backend module in this package defines a subclass of :class:`Backend` named
in ``BACKEND`` (module-level). Its ``name`` is what users put in
``backends = [...]``; its optional ``Settings`` dataclass (fields declared with
:func:`otel_hakgal.config.setting`) becomes the config section ``[<name>]``.
Adding a backend is adding one file here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from otel_hakgal.delivery import DeliveryLog

if TYPE_CHECKING:
    from opentelemetry.context.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor

    from otel_hakgal.config import Config


class Backend:
    """One destination for spans and metrics.

    Subclasses override what they provide; everything defaults to nothing.
    ``start`` is called once before the parts are installed, ``shutdown``
    once after the processors and readers were shut down.
    """

    name: ClassVar[str]
    Settings: ClassVar[type | None] = None
    # Sends over the network (``selftest`` then expects HTTP answers in ``delivery``).
    remote: ClassVar[bool] = False

    def __init__(self, config: Config, resource: Resource) -> None:
        self.config = config
        self.resource = resource
        self.settings: Any = config.settings_for(self.name)
        self.delivery = DeliveryLog()

    def span_processors(self) -> Sequence[SpanProcessor]:
        return ()

    def metric_readers(self) -> Sequence[MetricReader]:
        return ()

    def propagators(self) -> Sequence[TextMapPropagator]:
        """Extra propagators, combined with W3C tracecontext and baggage."""
        return ()

    def capture_exception(self, error: BaseException, context: Context | None = None) -> None:
        """Report a handled error to an error-tracking backend (most backends: spans suffice)."""

    def capture_message(self, message: str, level: str) -> None:
        """Report a message to an error-tracking backend (most backends: the span event suffices)."""

    def force_flush(self, timeout_s: float) -> bool:
        """Send what the backend queues outside its span processors and metric readers."""
        return True

    def shutdown(self) -> None:
        """Release what the backend holds beyond its processors and readers."""


def _module_name(backend: str) -> str:
    return f"{__name__}.{backend.replace('-', '_')}"


@functools.cache
def available_backends() -> tuple[str, ...]:
    """Names of the backends shipped in this package, sorted."""
    names = []
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            names.append(backend_class(module.name.replace("_", "-")).name)
    return tuple(sorted(names))


@functools.cache
def backend_class(name: str) -> type[Backend]:
    """The :class:`Backend` subclass registered under ``name``."""
    try:
        module = importlib.import_module(_module_name(name))
    except ModuleNotFoundError as exc:
        if exc.name == _module_name(name):
            raise KeyError(name) from None
        raise
    cls = module.BACKEND
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{module.__name__}.BACKEND must be a Backend subclass")
    return cls


def settings_sections() -> dict[str, type]:
    """Config section name -> settings dataclass, for every backend that has settings."""
    sections: dict[str, type] = {}
    for name in available_backends():
        settings = backend_class(name).Settings
        if settings is not None:
            sections[name] = settings
    return sections
