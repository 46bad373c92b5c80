"""The Sentry backends, ``sentry`` and ``sentry-otlp``: one concern per module.

- :mod:`.settings`: the ``[sentry]`` section and the config checks (no sentry-sdk);
- :mod:`.vocabulary`: Sentry's side of the names: ops, tags, error context, measurements, log levels
  (no sentry-sdk);
- :mod:`.common`, :mod:`.backend`, :mod:`.otlp_backend`: the backend classes (import without sentry-sdk;
  ``start()`` imports the rest);
- :mod:`.client`: the only code touching sentry-sdk's global client (init, transport, scrub hooks, close);
- :mod:`.errors`: errors linked to OTel spans; :mod:`.propagator`: ``sentry-trace`` and the DSC;
- :mod:`.transactions`: spans to transactions; :mod:`.worker`: the background FIFO that sends them;
- :mod:`.logs`: log records to Sentry Logs (backend ``sentry``; ``sentry-otlp`` exports them over OTLP);
- :mod:`._compat`: every sentry-sdk name outside its documented API, and nowhere else.
"""

from otel_hakgal.backends.sentry.backend import SentryBackend
from otel_hakgal.backends.sentry.otlp_backend import SentryOtlpBackend
from otel_hakgal.backends.sentry.settings import SentrySettings

__all__ = ["SentryBackend", "SentryOtlpBackend", "SentrySettings"]
