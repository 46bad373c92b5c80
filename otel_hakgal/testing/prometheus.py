"""A real Prometheus server on loopback, for tests of the ``prometheus`` backend, rules and dashboards.

Uses the ``prometheus`` and ``promtool`` binaries (Debian package ``prometheus``).
:func:`require_binary` skips a test when one is missing, except under CI
(``CI=true``), where a missing binary fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from otel_hakgal.report import PrometheusClient

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of ``name`` on PATH; a missing binary skips the test, or fails it under CI."""
    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH (Debian: apt-get install prometheus)"
        if in_ci():
            pytest.fail(message + "; CI must have it", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy (a non-empty query result); TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as error:
            last_error = error
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
        time.sleep(interval_s)


def _yaml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"


class PrometheusServer:
    """A Prometheus process on 127.0.0.1 scraping ``targets`` (``host:port``) every ``scrape_interval``.

    Use as a context manager; ``client`` queries its HTTP API. ``rule_files``
    are loaded and evaluated every ``evaluation_interval``.
    """

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        job: str = "hak-gal",
        binary: str = "prometheus",
    ) -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = PrometheusClient(self.url)
        self.binary = binary
        self.config_path = self.workdir / "prometheus.yml"
        rules = _yaml_list([str(Path(p).resolve()) for p in rule_files])
        self.config_path.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {evaluation_interval}\n"
            f"rule_files: {rules}\n"
            "scrape_configs:\n"
            f"  - job_name: '{job}'\n"
            f"    scrape_timeout: {scrape_interval}\n"
            "    static_configs:\n"
            f"      - targets: {_yaml_list(targets)}\n"
        )
        self.log_path = self.workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> PrometheusServer:
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_for(self._ready, timeout_s, "Prometheus to be ready")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"Prometheus did not start; its log:\n{self.log()}") from None
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"Prometheus exited with {self._process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- queries -----------------------------------------------------------------

    def targets_up(self) -> bool:
        """True when every scrape target is up."""
        data = self.client.get("/api/v1/targets")
        active = data.get("activeTargets", [])
        return bool(active) and all(target.get("health") == "up" for target in active)

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) from ``/api/v1/alerts``."""
        return list(self.client.get("/api/v1/alerts").get("alerts", []))

    def rule_health(self) -> dict[str, str]:
        """Alert or recording rule name -> its evaluation health (``ok``, ``err``, ``unknown``)."""
        groups = self.client.get("/api/v1/rules").get("groups", [])
        return {rule["name"]: rule.get("health", "") for group in groups for rule in group.get("rules", [])}
