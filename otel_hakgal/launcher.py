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
from typing import Any, Final

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_hakgal.config import MASK, Config, ConfigError, load_config, mask_credentials, secret_values
from otel_hakgal.environment_variables import LAUNCHER_ENTRY_POINT_NAME
from otel_hakgal.http_conventions import default_to_stable_http
from otel_hakgal.pipeline import BackendStartError, Handle, setup

logger = logging.getLogger("otel_hakgal")

EXIT_BAD_CONFIG = 2

# The launcher's loader, and its two WARNINGs about a configurator it skips.
LOADER_LOGGER: Final = "opentelemetry.instrumentation.auto_instrumentation._load"
SKIPPED_CONFIGURATOR_MESSAGES: Final = (
    "Configuration of %s not loaded, %s already loaded",
    "Configuration of %s not loaded because %s is set by %s",
)


class SkippedConfiguratorFilter(logging.Filter):
    """Drops the loader's warning that it skipped another configurator because ``hakgal`` was chosen.

    With ``opentelemetry-distro`` installed beside us there are two configurators,
    and the loader warns about the one it skips at every start, whatever
    ``OTEL_PYTHON_CONFIGURATOR`` says. Skipping it is the intended outcome, so
    the line is noise; any other loader message passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        ours_chosen = isinstance(args, tuple) and len(args) >= 2 and args[1] == LAUNCHER_ENTRY_POINT_NAME
        return not (ours_chosen and record.msg in SKIPPED_CONFIGURATOR_MESSAGES)


def quiet_skipped_configurators() -> None:
    """Put :class:`SkippedConfiguratorFilter` on the loader's logger, once."""
    loader = logging.getLogger(LOADER_LOGGER)
    if not any(isinstance(f, SkippedConfiguratorFilter) for f in loader.filters):
        loader.addFilter(SkippedConfiguratorFilter())


class HakgalDistro(BaseDistro):  # type: ignore[misc]
    """Makes sure the launcher uses the ``hakgal`` configurator."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", LAUNCHER_ENTRY_POINT_NAME)
        # The stable HTTP conventions for the Flask instrumentation the launcher loads after us, unless the
        # user set OTEL_SEMCONV_STABILITY_OPT_IN (the configurator's setup() does the same under another distro).
        default_to_stable_http()
        # Before the loader goes through the configurators: it may warn about one listed before ours.
        if os.environ["OTEL_PYTHON_CONFIGURATOR"] == LAUNCHER_ENTRY_POINT_NAME:
            quiet_skipped_configurators()

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        # Apps that never call instrument_flask: a request no route matched is named by its method
        # alone, so 404 scans cannot create a span name per path.
        if entry_point.name == "flask":
            from otel_hakgal.context import flask_request_hook

            kwargs.setdefault("request_hook", flask_request_hook)
        super().load_instrumentor(entry_point, **kwargs)


class HakgalConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        # Also when another distro ran (OTEL_PYTHON_DISTRO=distro): configurators after ours are still to come.
        quiet_skipped_configurators()
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
    # Read as Flask reads it (any value but 0/false/no is on), never refused: it is Flask's variable.
    flask_debug = environ.get("FLASK_DEBUG", "")
    debug = "--debug" in argv or flask_debug.lower() not in ("", "0", "false", "no")
    return debug or "--reload" in argv


_MIN_SECRET_LENGTH: Final = 8  # shorter setting values ('1', 'gzip') would mask ordinary words


def _without_secrets(line: str, config: Config | None) -> str:
    """``line`` with the values of secret settings masked: a backend's start error may quote its DSN."""
    if config is not None:
        for value in sorted(secret_values(config), key=len, reverse=True):
            if len(value) >= _MIN_SECRET_LENGTH:
                line = line.replace(value, MASK)
    return mask_credentials(line)


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
    config: Config | None = None
    try:
        config = load_config(environ=environ)
        strict = config.strict
        return setup(config)
    except ConfigError as error:  # its problem lines show secrets masked
        strict, line = error.strict, "; ".join(error.problems)
    except BackendStartError as error:
        line = _without_secrets(str(error), config)
    if strict:
        print(f"otel_hakgal ERROR: {line} (strict is set: not starting)", file=sys.stderr, flush=True)
        # SystemExit from the launcher's sitecustomize becomes a fatal-error dump
        # with exit status 1; the app has not started yet, so leave directly.
        os._exit(EXIT_BAD_CONFIG)
    print(f"otel_hakgal ERROR: {line}; telemetry is off", file=sys.stderr, flush=True)
    return setup(Config(backends=(), disabled=True))
