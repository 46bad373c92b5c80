#!/usr/bin/env python3
"""CI: the project installs and runs with uv as well as with pip.

uv (pinned, from PyPI) goes into a throwaway venv made by ``python3 -m venv``.
Then, in a copy of the checkout, as the README's uv steps do: ``uv venv``,
``uv pip install -e .[dev]`` and ``uv run``: the package is imported from the
copy (editable) in the project's ``.venv``, ``otel-hakgal check-config`` passes
on ``configs/console.toml``, and ``tests/test_config.py`` passes under
``uv run pytest``. The project keeps no lock file: ``uv run`` writes one into
the copy, which goes away with it.

Standard library only: it runs before, and apart from, the dev venv. uv's cache
is throwaway too, so nothing is left on the machine.

    python3 .ci/uv_install.py [--keep]   (--keep: leave the temporary directory for a look)
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
UV = "uv==0.13.8"
# Left out of the copy: environments, VCS data, earlier build output and a lock file uv may have left.
IGNORE = shutil.ignore_patterns(
    ".venv", "venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "uv.lock"
)
BIN = "Scripts" if os.name == "nt" else "bin"
# Run by `uv run python -c`: the package comes from the copy, in its .venv, with its dev tools.
IMPORT_CHECK = """
import importlib.metadata, importlib.util, json, pathlib, sys, sysconfig
import otel_hakgal
source, prefix = pathlib.Path(sys.argv[1]), pathlib.Path(sys.prefix)
assert pathlib.Path(otel_hakgal.__file__).is_relative_to(source), otel_hakgal.__file__
assert prefix == source / ".venv", prefix
# The installed distribution, not the build's egg-info in the source tree (the working directory).
site = sysconfig.get_paths()["purelib"]
[dist] = importlib.metadata.distributions(name="otel_hakgal", path=[site])
direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
assert direct_url.get("dir_info", {}).get("editable"), f"not an editable install: {direct_url}"
missing = [m for m in ("sentry_sdk", "flask", "prometheus_client", "pytest", "z3") if not importlib.util.find_spec(m)]
assert not missing, f"the dev extra is not installed: {missing}"
print(f"otel_hakgal {otel_hakgal.__version__} from {otel_hakgal.__file__} in {prefix}")
"""


def _run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join("<import check>" if arg == IMPORT_CHECK else arg for arg in argv), flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def _clean_env(work: Path) -> dict[str, str]:
    """The caller's environment without telemetry or uv settings that would steer the check."""
    prefixes = ("OTEL_", "SENTRY_", "UV_", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env |= {
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_CACHE_DIR": str(work / "uv-cache"),  # throwaway: nothing is left behind
        "UV_PYTHON_DOWNLOADS": "never",  # the Python running this script, never a downloaded one
        "UV_NO_PROGRESS": "1",
    }
    return env


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    work = Path(tempfile.mkdtemp(prefix="otel_hakgal-uv-install-"))
    started = time.monotonic()
    try:
        source = work / "src"
        shutil.copytree(ROOT, source, ignore=IGNORE)
        env = _clean_env(work)
        tool = work / "uv-tool"
        _run([sys.executable, "-m", "venv", str(tool)])
        _run([str(tool / BIN / "python"), "-m", "pip", "install", "--quiet", UV], env=env)
        uv = str(tool / BIN / "uv")
        _run([uv, "--version"], env=env)
        _run([uv, "venv", "--python", sys.executable], cwd=source, env=env)
        _run([uv, "pip", "install", "--quiet", "-e", ".[dev]"], cwd=source, env=env)
        _run([uv, "run", "python", "-c", IMPORT_CHECK, str(source)], cwd=source, env=env)
        _run([uv, "run", "otel-hakgal", "check-config", "configs/console.toml"], cwd=source, env=env)
        _run([uv, "run", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_config.py"], cwd=source, env=env)
    except subprocess.CalledProcessError as error:
        print(f"uv install: FAILED ({time.monotonic() - started:.0f} s): {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        if keep:
            print(f"uv install: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"uv install: ok ({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
