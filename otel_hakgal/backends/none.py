"""Backend ``none``: sends nothing. The API still works and costs little."""

from __future__ import annotations

from otel_hakgal.backends.base import Backend


class NoneBackend(Backend):
    name = "none"
