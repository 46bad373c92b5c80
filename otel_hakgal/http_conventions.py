"""Which HTTP semantic conventions the Flask (WSGI) instrumentation follows: the stable ones, by default.

``opentelemetry-instrumentation`` reads ``OTEL_SEMCONV_STABILITY_OPT_IN`` once per
process, when the first instrumentor instruments something
(``_OpenTelemetrySemanticConventionStability._initialize``). Unset, the Flask
instrumentation records the old HTTP names: ``http.method``, ``http.target``,
``http.status_code``, no ``error.type`` on a 5xx, and ``http.server.duration`` in
milliseconds. :func:`default_to_stable_http` sets it to ``http`` (the stable names:
``http.request.method``, ``url.path``, ``http.response.status_code``, ``error.type``,
``http.server.request.duration`` in seconds) before that first read, at each way in:
``setup()``, ``instrument_flask()`` and the launcher's distro. A value the user set
(``http/dup`` while dashboards migrate, or an empty one for the old names) is left alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

from otel_hakgal.conventions import HTTP_STABLE_OPT_IN, SEMCONV_STABILITY_OPT_IN_ENV

logger = logging.getLogger("otel_hakgal")

_warned = False


def conventions_already_chosen() -> bool:
    """True once the HTTP instrumentations have read the opt-in (it is read once per process)."""
    try:
        from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
    except ImportError:  # no instrumentation package installed: nothing can have read it
        return False
    return bool(getattr(_OpenTelemetrySemanticConventionStability, "_initialized", False))


def default_to_stable_http(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OTEL_SEMCONV_STABILITY_OPT_IN=http`` unless it is set already; True when it set it.

    When the instrumentations have already read the variable unset (something was
    instrumented before the layer's first entry point ran), setting it changes nothing
    in this process: that is logged once, as a warning.
    """
    global _warned
    environ = os.environ if environ is None else environ
    if SEMCONV_STABILITY_OPT_IN_ENV in environ:
        return False
    environ[SEMCONV_STABILITY_OPT_IN_ENV] = HTTP_STABLE_OPT_IN
    if environ is os.environ and conventions_already_chosen() and not _warned:
        _warned = True
        logger.warning(
            "otel_hakgal: an HTTP instrumentation was set up before otel_hakgal and records the old HTTP"
            " conventions (http.method, http.server.duration in ms); call otel_hakgal.setup() or"
            " instrument_flask() first, or set %s=%s",
            SEMCONV_STABILITY_OPT_IN_ENV,
            HTTP_STABLE_OPT_IN,
        )
    return True
