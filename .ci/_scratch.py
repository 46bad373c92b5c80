"""What the install checks share: a throwaway copy of the checkout, a clean environment, logged commands.

Standard library only, like the scripts that import it (they run before, and apart from, the dev venv).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = "Scripts" if os.name == "nt" else "bin"
# Left out of the copy: environments, VCS data, earlier build output and a lock file uv may have left.
IGNORE = shutil.ignore_patterns(
    ".venv", "venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "uv.lock"
)
# Settings that would steer a check: telemetry, and which environment or Python an installer picks.
STEERING = ("OTEL_", "SENTRY_", "UV_", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")


def run(argv: Sequence[str], shown: Sequence[str] | None = None, **kwargs: object) -> None:
    """Run ``argv`` (raising on failure), logging it first as ``shown`` (default: ``argv``)."""
    print("+", " ".join(shown or argv), flush=True)
    subprocess.run(list(argv), check=True, **kwargs)  # type: ignore[call-overload]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without :data:`STEERING` settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(STEERING)}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


@contextlib.contextmanager
def scratch_checkout(name: str, keep: bool) -> Iterator[tuple[Path, Path]]:
    """A temporary directory and a copy of the checkout in it (installers build in the source tree):
    ``(work, source)``. Removed afterwards unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=f"otel_hakgal-{name}-"))
    try:
        source = work / "src"
        shutil.copytree(ROOT, source, ignore=IGNORE)
        yield work, source
    finally:
        if keep:
            print(f"{name}: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
