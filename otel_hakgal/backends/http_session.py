"""The ``requests`` session the OTLP exporters send with, recording each send in a :class:`DeliveryLog`.

Apart from :mod:`otel_hakgal.delivery` so importing the package does not import ``requests``.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from otel_hakgal.delivery import DeliveryLog, SignalGate
from otel_hakgal.fork_safety import EXPORTS_IN_FLIGHT


class RecordingSession(requests.Session):
    """A ``requests`` session (as the OTLP exporters use) that logs each send's outcome.

    With a ``gate``, the session's one signal stops when the receiver refuses it (see :class:`SignalGate`).
    In a forked child the first send drops the kept-alive connections inherited from the parent: their
    sockets are the parent's too, and two processes talking on one connection read each other's answers.
    """

    def __init__(self, log: DeliveryLog, gate: SignalGate | None = None) -> None:
        super().__init__()
        self._log = log
        self._gate = gate
        self._pid = os.getpid()

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        with EXPORTS_IN_FLIGHT.sending():  # a fork waits for it (see otel_hakgal.fork_safety)
            return super().request(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            for adapter in self.adapters.values():
                adapter.close()  # closes the child's copies of the sockets only; the parent's stay open
        try:
            response = super().send(request, **kwargs)
        except Exception as error:
            self._log.record_error(error)
            raise
        self._log.record_status(response.status_code)
        if self._gate is not None:
            self._gate.answered(request.url or "", response.status_code, response.reason)
        return response
