"""The ``requests`` session the OTLP exporters send with, recording each send in a :class:`DeliveryLog`.

Apart from :mod:`otel_hakgal.delivery` so importing the package does not import ``requests``.
"""

from __future__ import annotations

from typing import Any

import requests

from otel_hakgal.delivery import DeliveryLog


class RecordingSession(requests.Session):
    """A ``requests`` session (as the OTLP exporters use) that logs each send's outcome."""

    def __init__(self, log: DeliveryLog) -> None:
        super().__init__()
        self._log = log

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        try:
            response = super().send(request, **kwargs)
        except Exception as error:
            self._log.record_error(error)
            raise
        self._log.record_status(response.status_code)
        return response
