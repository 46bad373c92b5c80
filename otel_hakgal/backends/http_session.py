"""The ``requests`` session the OTLP exporters send with, recording each send in a :class:`DeliveryLog`.

Apart from :mod:`otel_hakgal.delivery` so importing the package does not import ``requests``.
"""

from __future__ import annotations

from typing import Any

import requests

from otel_hakgal.delivery import DeliveryLog, SignalGate


class RecordingSession(requests.Session):
    """A ``requests`` session (as the OTLP exporters use) that logs each send's outcome.

    With a ``gate``, the session's one signal stops when the receiver refuses it (see :class:`SignalGate`).
    """

    def __init__(self, log: DeliveryLog, gate: SignalGate | None = None) -> None:
        super().__init__()
        self._log = log
        self._gate = gate

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        try:
            response = super().send(request, **kwargs)
        except Exception as error:
            self._log.record_error(error)
            raise
        self._log.record_status(response.status_code)
        if self._gate is not None:
            self._gate.answered(request.url or "", response.status_code, response.reason)
        return response
