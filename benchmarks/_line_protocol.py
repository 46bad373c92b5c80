"""The line protocol between a benchmark script and the subprocesses it runs of itself.

The parent writes one JSON command per line to the child's stdin; the child
answers each with one JSON line on stdout (its first line says it is ready).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any


def reply(payload: Any) -> None:
    """Child side: answer one command."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class Child:
    """Parent side: ``script`` run with ``args`` in a subprocess, answering one JSON line per command."""

    def __init__(
        self, script: str, *args: str, env: Mapping[str, str] | None = None, exit_timeout_s: float = 20
    ) -> None:
        self.exit_timeout_s = exit_timeout_s
        self.process = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.ready = self._read()

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark child {self.process.args} exited with {self.process.wait()}")
        return json.loads(line)

    def ask(self, command: str, **arguments: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"command": command, **arguments}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self.ask("exit")
        try:
            self.process.wait(self.exit_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
