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

import subprocess
import sys
import time
from pathlib import Path

from _scratch import BIN, clean_env, run, scratch_checkout

CHECK = Path(__file__).resolve().parent / "base_install_check.py"


def main(argv: list[str]) -> int:
    started = time.monotonic()
    try:
        with scratch_checkout("base-install", keep="--keep" in argv) as (work, source):
            venv = work / "venv"
            run([sys.executable, "-m", "venv", str(venv)])
            python = str(venv / BIN / "python")
            env = clean_env()
            run([python, "-m", "pip", "--version"], env=env)
            run([python, "-m", "pip", "install", "--quiet", str(source)], env=env)
            run([python, "-m", "pip", "list"], env=env)
            # -I: isolated from the environment and the working directory, so the installed package is what imports.
            print("+ python -I base_install_check.py", flush=True)
            result = subprocess.run([python, "-I", str(CHECK)], cwd=work, env=env, check=False)
    except subprocess.CalledProcessError as error:
        print(f"base install: FAILED: {error}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    verdict = "ok" if result.returncode == 0 else "FAILED"
    print(f"base install: {verdict} ({elapsed:.0f} s)", flush=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
