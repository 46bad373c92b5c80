"""Backend names to backend classes, importing only the backends asked for.

The built-in backends are listed here; other packages add theirs through the
entry-point group ``otel_hakgal.backends`` (name = ``"module:Class"``, the
class a :class:`~otel_hakgal.backends.base.Backend` subclass)::

    [project.entry-points.otel_hakgal.backends]
    honeycomb = "my_package.honeycomb:HoneycombBackend"
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Final

from otel_hakgal.backends.base import Backend

ENTRY_POINT_GROUP: Final = "otel_hakgal.backends"

BUILTIN: Final[dict[str, str]] = {
    "console": "otel_hakgal.backends.console:ConsoleBackend",
    "jsonl": "otel_hakgal.backends.jsonl:JsonlBackend",
    "memory": "otel_hakgal.backends.memory:MemoryBackend",
    "none": "otel_hakgal.backends.none:NoneBackend",
    "otlp": "otel_hakgal.backends.otlp:OtlpBackend",
    "prometheus": "otel_hakgal.backends.prometheus:PrometheusBackend",
    "sentry": "otel_hakgal.backends.sentry.backend:SentryBackend",
    "sentry-otlp": "otel_hakgal.backends.sentry.otlp_backend:SentryOtlpBackend",
}


@functools.cache
def _targets() -> dict[str, str]:
    """Every registered backend's ``module:Class``; built-ins win over entry points of the same name."""
    targets = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**targets, **BUILTIN}


def backend_names() -> tuple[str, ...]:
    """Names of all registered backends, sorted (imports none of them)."""
    return tuple(sorted(_targets()))


def is_backend(name: str) -> bool:
    return name in BUILTIN or name in _targets()


def target(name: str) -> str | None:
    """Where backend ``name`` is defined (``"module:Class"``), if it is registered."""
    return BUILTIN.get(name) or _targets().get(name)


@functools.cache
def backend_class(name: str) -> type[Backend]:
    """The :class:`Backend` subclass registered under ``name``; ``KeyError`` if none is."""
    where = target(name)
    if where is None:
        raise KeyError(name)
    module_name, _, class_name = where.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{where} is not a otel_hakgal.backends.Backend subclass")
    if getattr(cls, "name", None) != name:
        raise TypeError(f"{where} is registered as {name!r} but its name is {getattr(cls, 'name', None)!r}")
    return cls
