"""Run by ``.ci/base_install.py`` inside a venv holding ``pip install otel_hakgal`` with no extras.

Standard library and otel_hakgal only (the test dependencies are not installed).
Every check runs and reports; the exit status is 1 if any failed.
"""

from __future__ import annotations

import http.server
import importlib.util
import sys
import threading
import time
import traceback
from collections.abc import Callable

VENDOR_MODULES = ("sentry_sdk", "prometheus_client", "flask", "psutil")
PIP_HINT = "pip install 'otel_hakgal[sentry]'"

checks: list[tuple[str, Callable[[], None]]] = []


def check(function: Callable[[], None]) -> Callable[[], None]:
    checks.append(((function.__doc__ or function.__name__).strip(), function))
    return function


@check
def no_vendor_sdk_is_installed() -> None:
    """the base install brings no vendor SDK (sentry_sdk, prometheus_client, flask, psutil)"""
    present = [name for name in VENDOR_MODULES if importlib.util.find_spec(name) is not None]
    assert not present, f"installed by the base install: {present}"


@check
def the_installed_package_is_imported() -> None:
    """otel_hakgal is imported from the venv, not from a source tree"""
    import otel_hakgal

    assert "site-packages" in (otel_hakgal.__file__ or ""), otel_hakgal.__file__


@check
def a_config_without_vendor_backends_imports_no_vendor_sdk() -> None:
    """load_config(backends=["none"]) imports none of the vendor SDKs"""
    import otel_hakgal

    otel_hakgal.load_config(overrides={"backends": ["none"]})
    loaded = [name for name in VENDOR_MODULES if name in sys.modules]
    assert not loaded, f"imported: {loaded}"


@check
def a_missing_extra_names_the_pip_command() -> None:
    """load_config(backends=["sentry"]) is a ConfigError naming the pip command"""
    import otel_hakgal

    try:
        otel_hakgal.load_config(overrides={"backends": ["sentry"]})
    except otel_hakgal.ConfigError as error:
        assert PIP_HINT in str(error), f"{PIP_HINT!r} not in:\n{error}"
    else:
        raise AssertionError("no ConfigError")


class _Receiver(http.server.ThreadingHTTPServer):
    """A loopback OTLP/HTTP receiver that records the paths of the POSTs it answers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.paths: list[str] = []
        self.arrived = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.paths.append(self.path)
        self.server.arrived.set()

    def log_message(self, format: str, *args: object) -> None:
        pass


@check
def otlp_delivers_a_trace() -> None:
    """setup(backends=["otlp"]) sends an operation's span to a loopback receiver"""
    import otel_hakgal

    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        handle = otel_hakgal.setup(backends=["otlp"], settings={"otlp.endpoint": receiver.url})
        try:
            with otel_hakgal.command("ask"):
                pass
            handle.force_flush()
            deadline = time.monotonic() + 10
            while "/v1/traces" not in receiver.paths and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            handle.shutdown()
        assert "/v1/traces" in receiver.paths, f"POSTs received: {receiver.paths}"
    finally:
        receiver.shutdown()
        receiver.server_close()


def main() -> int:
    print(f"python {sys.version.split()[0]} at {sys.prefix}")
    failed = 0
    for description, function in checks:
        try:
            function()
        except BaseException:
            failed += 1
            print(f"FAIL  {description}\n{traceback.format_exc()}", flush=True)
        else:
            print(f"ok    {description}", flush=True)
    print(f"{len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
