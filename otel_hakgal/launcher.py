"""Zero-code mode: the distro and configurator that ``opentelemetry-instrument`` loads.

``opentelemetry-instrument <program>`` runs :class:`HakgalDistro`, then
:class:`HakgalConfigurator`, which calls :func:`start_from_environment`:
the same ``setup()`` as in code, configured from ``OTEL_HAKGAL_CONFIG`` and
the ``OTEL_*`` variables. The launcher swallows exceptions from configurators
and then silently skips all instrumentation, so this module never raises
unless ``OTEL_HAKGAL_STRICT`` asks it to stop the program.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_hakgal.config import Config, ConfigError, load_config, parse_bool
from otel_hakgal.environment_variables import LAUNCHER_ENTRY_POINT_NAME
from otel_hakgal.pipeline import BackendStartError, Handle, setup

logger = logging.getLogger("otel_hakgal")

EXIT_BAD_CONFIG = 2


class HakgalDistro(BaseDistro):  # type: ignore[misc]
    """Makes sure the launcher uses the ``hakgal`` configurator."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", LAUNCHER_ENTRY_POINT_NAME)


class HakgalConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        start_from_environment()


def _is_reloader_watcher(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> bool:
    """True in the parent process of ``flask run --debug``, which only watches files.

    Its child (``WERKZEUG_RUN_MAIN=true``) serves requests; starting vendor SDKs
    in both would report everything twice.
    """
    if environ.get("WERKZEUG_RUN_MAIN") or not argv or os.path.basename(argv[0]) != "flask" or "run" not in argv:
        return False
    if "--no-reload" in argv:
        return False
    debug = "--debug" in argv or parse_bool(environ.get("FLASK_DEBUG", "") or "0")
    return debug or "--reload" in argv


def start_from_environment(environ: dict[str, str] | os._Environ[str] | None = None) -> Handle | None:
    """Configure telemetry from the environment, as the launcher does.

    A bad configuration, or a backend that cannot start, prints one ERROR line
    and leaves telemetry off, so the app still runs; with ``strict`` (e.g.
    ``OTEL_HAKGAL_STRICT=1``) the program exits with 2 instead.
    """
    environ = os.environ if environ is None else environ
    if _is_reloader_watcher(sys.argv, environ):
        return None
    strict = False
    try:
        config = load_config(environ=environ)
        strict = config.strict
        return setup(config)
    except ConfigError as error:
        strict, line = error.strict, "; ".join(error.problems)
    except BackendStartError as error:
        line = str(error)
    if strict:
        print(f"otel_hakgal ERROR: {line} (strict is set: not starting)", file=sys.stderr, flush=True)
        # SystemExit from the launcher's sitecustomize becomes a fatal-error dump
        # with exit status 1; the app has not started yet, so leave directly.
        os._exit(EXIT_BAD_CONFIG)
    print(f"otel_hakgal ERROR: {line}; telemetry is off", file=sys.stderr, flush=True)
    return setup(Config(backends=(), disabled=True))
