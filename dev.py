#!/usr/bin/env python3
"""Run the project from a fresh clone with nothing but python3.

    python3 dev.py demo [ARGS]   the main job: the HAK-GAL demo with telemetry
    python3 dev.py test [ARGS]   the whole test suite (pytest ARGS), e.g. the fast loop:
                                 python3 dev.py test -m "not slow and not system"
    python3 dev.py lint          ruff (package, tests, benchmarks, tooling), mypy (package)

The first run creates ``.venv`` and installs the package editable with its
``dev`` extra (every other extra, the test and lint tools); later runs
reinstall only when what the install reads from ``pyproject.toml`` changed
(``[build-system]``, ``[project]``, ``[tool.setuptools]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".otel_hakgal-installed"
# What ruff checks (mypy checks the package only: see [tool.mypy] in pyproject.toml).
LINTED = ("otel_hakgal", "tests", "benchmarks", "dev.py", ".ci")


def _install_digest() -> str:
    """A hash of what the install depends on in ``pyproject.toml``: not the tool settings (pytest, ruff, mypy)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    relevant = {
        "build-system": pyproject.get("build-system"),
        "project": pyproject.get("project"),
        "setuptools": pyproject.get("tool", {}).get("setuptools"),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _ensure_env() -> None:
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = _install_digest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("dev.py: installing otel_hakgal[dev] into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def _lint(python: str) -> int:
    """Run every linter, even after one fails, and name the ones that failed."""
    linters = {
        "ruff": [python, "-m", "ruff", "check", *LINTED],
        "mypy": [python, "-m", "mypy"],  # the files and options are in pyproject.toml
    }
    failed = [name for name, argv in linters.items() if subprocess.call(argv, cwd=ROOT) != 0]
    if failed:
        print(f"dev.py lint: {' and '.join(failed)} failed", file=sys.stderr)
        return 1
    return 0


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
        return _lint(python)
    return subprocess.call([python, "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
