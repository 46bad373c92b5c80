"""The ``requests`` session of the ``sentry-otlp`` exporters: Sentry's endpoint and auth header, nothing else.

OTel's OTLP span and log exporters read their environment even when given
explicit arguments: they merge ``OTEL_EXPORTER_OTLP_HEADERS`` (or
``..._TRACES_HEADERS`` / ``..._LOGS_HEADERS``) into every request under the
headers they were given, and set their session's TLS files from
``OTEL_EXPORTER_OTLP_[TRACES_|LOGS_]CERTIFICATE`` / ``CLIENT_CERTIFICATE`` /
``CLIENT_KEY``. Those variables configure the ``otlp`` backend's collector
(``authorization: Bearer ...``, ``x-honeycomb-team: ...``): sent to Sentry they
would hand another vendor's credentials to Sentry. This session, given to the
exporter, sends only the protocol headers and Sentry's own, with requests' own
TLS defaults, whatever the environment says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import requests

from otel_hakgal.backends.http_session import RecordingSession
from otel_hakgal.delivery import DeliveryLog

# Headers that describe the request and carry no credential: set by requests and the OTLP exporter.
PROTOCOL_HEADERS: Final = frozenset(
    {"accept", "accept-encoding", "connection", "content-encoding", "content-length", "content-type", "user-agent"}
)


class OwnHeadersSession(RecordingSession):
    """A recording session that sends ``headers`` plus :data:`PROTOCOL_HEADERS`, and drops every other header."""

    def __init__(self, log: DeliveryLog, headers: Mapping[str, str]) -> None:
        super().__init__(log)
        self.own_headers = {name.lower(): value for name, value in headers.items()}

    # The exporter assigns these from another collector's OTEL_EXPORTER_OTLP_*CERTIFICATE / *CLIENT_KEY
    # variables: ignored, so Sentry is verified as requests verifies any host (REQUESTS_CA_BUNDLE or certifi).
    @property
    def verify(self) -> bool:
        return True

    @verify.setter
    def verify(self, value: object) -> None:
        pass

    @property
    def cert(self) -> None:
        return None

    @cert.setter
    def cert(self, value: object) -> None:
        pass

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        for name in list(request.headers):
            lowered = name.lower()
            if lowered not in PROTOCOL_HEADERS and lowered not in self.own_headers:
                del request.headers[name]
        request.headers.update(self.own_headers)
        return super().send(request, **kwargs)
