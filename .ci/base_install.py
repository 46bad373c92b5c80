#!/usr/bin/env python3
"""CI: the base install works on its own.

A fresh venv from ``python3 -m venv`` with the pip that ships with Python
(not upgraded), ``pip install <repo>`` with no extras and not editable, then
``.ci/base_install_check.py`` runs in that venv: no vendor SDK installed,
``setup(backends=["otlp"])`` delivers a trace to a loopback receiver, a
backend whose extra is missing is a config error naming the pip command.

Standard library only: it runs before, and apart from, the dev venv.

    python3 .ci/base_install.py [--keep]   (--keep: leave the temporary venv for a look)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).resolve().parent / "base_install_check.py"
# Left out of the copy that pip builds from: environments, VCS data and earlier build output.
IGNORE = shutil.ignore_patterns(".venv", "venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")


def _run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def _clean_env() -> dict[str, str]:
    """The caller's environment without telemetry settings that would steer the check."""
    prefixes = ("OTEL_", "SENTRY_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    work = Path(tempfile.mkdtemp(prefix="otel_hakgal-base-install-"))
    started = time.monotonic()
    try:
        # pip builds in the source tree: build from a copy, so the checkout gets no build/ or egg-info.
        source = work / "src"
        shutil.copytree(ROOT, source, ignore=IGNORE)
        venv = work / "venv"
        _run([sys.executable, "-m", "venv", str(venv)])
        python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
        env = _clean_env()
        _run([python, "-m", "pip", "--version"], env=env)
        _run([python, "-m", "pip", "install", "--quiet", str(source)], env=env)
        _run([python, "-m", "pip", "list"], env=env)
        # -I: isolated from the environment and the working directory, so the installed package is what imports.
        print("+ python -I base_install_check.py", flush=True)
        result = subprocess.run([python, "-I", str(CHECK)], cwd=work, env=env, check=False)
    except subprocess.CalledProcessError as error:
        print(f"base install: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if keep:
            print(f"base install: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    verdict = "ok" if result.returncode == 0 else "FAILED"
    print(f"base install: {verdict} ({elapsed:.0f} s)", flush=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
