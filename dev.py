#!/usr/bin/env python3
"""Run the project from a fresh clone with nothing but python3.

    python3 dev.py demo [ARGS]   the main job: the HAK-GAL demo with telemetry
    python3 dev.py test [ARGS]   the whole test suite (pytest ARGS)
    python3 dev.py lint          ruff and mypy

The first run creates ``.venv`` and installs the package with its ``dev``
extra; later runs reinstall only when ``pyproject.toml`` changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".otel_hakgal-installed"


def _ensure_env() -> None:
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("dev.py: installing otel_hakgal[dev] into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "lint"):
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    _ensure_env()
    python = str(BIN / "python")
    if command == "demo":
        return subprocess.call([str(BIN / "otel-hakgal"), "demo", *rest], cwd=ROOT)
    if command == "lint":
        ruff = subprocess.call([python, "-m", "ruff", "check", "otel_hakgal", "tests"], cwd=ROOT)
        mypy = subprocess.call([python, "-m", "mypy"], cwd=ROOT)
        return ruff or mypy
    return subprocess.call([python, "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
