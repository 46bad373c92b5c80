"""The reference service wired as one overhead-benchmark variant, for a real WSGI server (gunicorn).

``gunicorn -c <config> --pythonpath benchmarks '_served:wsgi_app()'``: without ``--preload`` each
worker calls :func:`wsgi_app` after the fork, so every worker sets up its own telemetry, as a
deployed HAK-GAL does. The variant and its endpoints come from the environment:

- ``HAKGAL_BENCH_VARIANT``: ``otel-by-hand``, ``sentry-native-tree`` or a layer variant (see
  ``overhead.LAYER_BACKENDS``);
- ``HAKGAL_BENCH_OTLP`` / ``HAKGAL_BENCH_DSN``: the OTLP endpoint and the Sentry DSN;
- ``HAKGAL_LLM_BASE_URL``: the LLM simulator;
- ``HAKGAL_BENCH_DIR``: where each worker writes ``stats-<pid>.json`` when it exits (after a bounded
  flush): spans it produced and what its own queues dropped.

:data:`GUNICORN_CONFIG` is the gunicorn config file with that exit hook.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LAYER_BACKENDS: dict[str, tuple[str, ...]] = {
    "none": ("none",),
    "otlp": ("otlp",),
    "sentry": ("sentry",),
    "sentry-otlp": ("sentry-otlp",),
    "sentry+otlp": ("sentry", "otlp"),
}
EXIT_FLUSH_S = 10.0  # the bounded flush each worker does when it exits

GUNICORN_CONFIG = """
import _served

def worker_exit(server, worker):
    _served.worker_exit()
"""

_state: dict[str, Any] = {}


def layer_settings(variant: str, otlp_endpoint: str, dsn: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if otlp_endpoint:
        settings["otlp.endpoint"] = otlp_endpoint
    if dsn:
        section = "sentry-otlp" if "sentry-otlp" in LAYER_BACKENDS.get(variant, ()) else "sentry"
        settings[f"{section}.dsn"] = dsn
    return settings


def wsgi_app() -> Any:
    """The reference app for ``$HAKGAL_BENCH_VARIANT``, telemetry set up in this (worker) process."""
    import logging

    from otel_hakgal.demo.api import create_app

    logging.getLogger("otel_hakgal").setLevel(logging.ERROR)  # drop warnings would only flood the log
    variant = os.environ["HAKGAL_BENCH_VARIANT"]
    otlp_endpoint = os.environ.get("HAKGAL_BENCH_OTLP", "")
    dsn = os.environ.get("HAKGAL_BENCH_DSN", "")
    if variant == "otel-by-hand":
        from _anchors import OtelByHand, install

        anchor: Any = OtelByHand(otlp_endpoint)
        install(anchor.namespace)
        _state["anchor"] = anchor
    elif variant == "sentry-native-tree":
        from _anchors import SentryNativeTree, install

        anchor = SentryNativeTree(dsn)
        install(anchor.namespace)
        _state["anchor"] = anchor
    else:
        import otel_hakgal as hg

        _state["handle"] = hg.setup(
            backends=list(LAYER_BACKENDS[variant]), settings=layer_settings(variant, otlp_endpoint, dsn)
        )
    _state["variant"] = variant
    return create_app()  # the assistant on $HAKGAL_LLM_BASE_URL, built at the first request


def worker_exit() -> None:
    """Flush (bounded), then write what this worker produced and dropped."""
    stats: dict[str, Any] = {"variant": _state.get("variant"), "pid": os.getpid()}
    handle = _state.get("handle")
    anchor = _state.get("anchor")
    if handle is not None:
        handle.force_flush(EXIT_FLUSH_S)
        stats["spans_ended"] = handle.spans_ended
        stats["dropped"] = {name: s.dropped for name, s in handle.stats().items()}
    elif anchor is not None:
        anchor.flush(EXIT_FLUSH_S)
    directory = os.environ.get("HAKGAL_BENCH_DIR")
    if directory:
        Path(directory, f"stats-{os.getpid()}.json").write_text(json.dumps(stats))
