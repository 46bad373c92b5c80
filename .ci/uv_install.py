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

import subprocess
import sys
import time

from _scratch import BIN, clean_env, run, scratch_checkout

UV = "uv==0.13.8"
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


def main(argv: list[str]) -> int:
    started = time.monotonic()
    try:
        with scratch_checkout("uv-install", keep="--keep" in argv) as (work, source):
            env = clean_env(
                UV_CACHE_DIR=str(work / "uv-cache"),  # throwaway: nothing is left behind
                UV_PYTHON_DOWNLOADS="never",  # the Python running this script, never a downloaded one
                UV_NO_PROGRESS="1",
            )
            tool = work / "uv-tool"
            run([sys.executable, "-m", "venv", str(tool)])
            run([str(tool / BIN / "python"), "-m", "pip", "install", "--quiet", UV], env=env)
            uv = str(tool / BIN / "uv")
            run([uv, "--version"], env=env)
            run([uv, "venv", "--python", sys.executable], cwd=source, env=env)
            run([uv, "pip", "install", "--quiet", "-e", ".[dev]"], cwd=source, env=env)
            check = [uv, "run", "python", "-c", IMPORT_CHECK, str(source)]
            run(check, [*check[:4], "<import check>", str(source)], cwd=source, env=env)
            run([uv, "run", "otel-hakgal", "check-config", "configs/console.toml"], cwd=source, env=env)
            run([uv, "run", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_config.py"], cwd=source, env=env)
    except subprocess.CalledProcessError as error:
        print(f"uv install: FAILED ({time.monotonic() - started:.0f} s): {error}", file=sys.stderr, flush=True)
        return 1
    print(f"uv install: ok ({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
