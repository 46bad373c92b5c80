"""Backends: where telemetry goes. One module per backend behind one small interface.

A backend is a :class:`Backend` subclass (see :mod:`otel_hakgal.backends.base`
for its lifecycle) registered by name in :mod:`otel_hakgal.backends.registry`.
Its optional ``Settings`` dataclass (fields declared with
:func:`otel_hakgal.config.setting`) becomes the config section ``[<name>]``.
Adding a backend is one new module plus one registry line, or an entry point
in the ``otel_hakgal.backends`` group for a backend in another package.
"""

from otel_hakgal.backends.base import Backend, BackendStats, Parts, QueueStats
from otel_hakgal.backends.registry import backend_class, backend_names

__all__ = ["Backend", "BackendStats", "Parts", "QueueStats", "backend_class", "backend_names"]
