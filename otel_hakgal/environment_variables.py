"""The layer's own environment variables, for the ``opentelemetry-instrument`` launcher.

The launcher turns every ``OTEL_*`` name here into a flag (``OTEL_HAKGAL_CONFIG``
becomes ``--hakgal_config``). It imports this module in its own process just
before it starts the program, which is the one moment to choose the distro
and configurator deterministically: with ``opentelemetry-distro`` also
installed, the launcher would otherwise pick whichever entry point comes
first. ``setdefault`` leaves an explicit user choice alone.
"""

from __future__ import annotations

import os

from otel_hakgal.config import BACKENDS_ENV, CONFIG_FILE_ENV, STRICT_ENV

OTEL_HAKGAL_CONFIG = CONFIG_FILE_ENV
OTEL_HAKGAL_BACKENDS = BACKENDS_ENV
OTEL_HAKGAL_STRICT = STRICT_ENV

LAUNCHER_ENTRY_POINT_NAME = "hakgal"

os.environ.setdefault("OTEL_PYTHON_DISTRO", LAUNCHER_ENTRY_POINT_NAME)
os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", LAUNCHER_ENTRY_POINT_NAME)
