"""Start a real server process on loopback, talk to it over HTTP, stop it with a signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no inherited OTEL_* or SENTRY_* settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SENTRY_", "HAKGAL_", "PYTEST_")) and key != "PYTHONPATH"
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


class ServerProcess:
    """A server started with ``argv``; ``wait_ready`` polls until its port accepts connections.

    A thread collects everything it prints (stdout and stderr), so the pipe never fills up.
    """

    def __init__(
        self, argv: list[str], env: dict[str, str], port: int, cwd: Path = ROOT, stderr: Any = subprocess.STDOUT
    ) -> None:
        """``stderr``: where the server's stderr goes (default: into ``output``, with stdout)."""
        self.port = port
        self.process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.finish()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"server not listening on {self.port} after {timeout_s} s:\n{self.stop()}")

    def wait_for_output(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise TimeoutError(f"never printed {text!r}:\n{self.output[-3000:]}")
            time.sleep(0.1)

    def post_command(self, command: str, timeout_s: float = 30.0) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/command",
            data=json.dumps({"command": command}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout_s: float = 20.0) -> str:
        """Wait for the process to exit; return everything it printed."""
        self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return self.output

    def stop(self) -> str:
        """SIGTERM, then SIGKILL the whole process group if it lingers."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return self.finish(timeout_s=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.finish()
