#!/usr/bin/env python3
"""Build the HAK-GAL OpenTelemetry Collector once and cache it outside the clone.

    python3 tests/support/collector_build.py     builds if needed, prints the binary's path

The manifest is ``configs/collector/builder.yaml`` (the OpenTelemetry Collector
Builder's); the builder's own version is the one its header names
(``go.opentelemetry.io/collector/cmd/builder@vX``). The binary is kept at
``${XDG_CACHE_HOME:-~/.cache}/otel_hakgal/otelcol-<hash>/otelcol-hakgal``,
``<hash>`` a hash of the manifest: a changed manifest builds a new binary, an
unchanged one is reused. Go's own module and build caches stay where Go keeps
them. Needs Go (``go`` on PATH or ``/usr/local/go/bin/go``) and the Go module proxy.

Standard library only, and safe to import: the tests use :func:`binary_path`,
:func:`find_go` and :func:`build` from here, so the path logic is one piece of code.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "configs" / "collector" / "builder.yaml"
BINARY_NAME = "otelcol-hakgal"
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"
_BUILDER_PIN = re.compile(re.escape(BUILDER_MODULE) + r"@(v[0-9]+\.[0-9]+\.[0-9]+)")
_OUTPUT_PATH = re.compile(r"^(\s*output_path:).*$", re.MULTILINE)


class BuildError(RuntimeError):
    """The collector could not be built (no Go, a module the proxy refuses, a compile error)."""


def manifest_hash(manifest: Path = MANIFEST) -> str:
    """The first 16 hex digits of the manifest's SHA-256: what the cached binary's folder is stamped with."""
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]


def builder_version(manifest: Path = MANIFEST) -> str:
    """The builder release the manifest's header pins (``...cmd/builder@v0.160.0`` -> ``v0.160.0``)."""
    found = _BUILDER_PIN.search(manifest.read_text(encoding="utf-8"))
    if found is None:
        raise BuildError(f"{manifest} names no {BUILDER_MODULE}@<version> in its header")
    return found.group(1)


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/otel_hakgal``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "otel_hakgal"


def binary_path(manifest: Path = MANIFEST) -> Path:
    """Where the binary built from ``manifest`` is (or will be) cached."""
    return cache_root() / f"otelcol-{manifest_hash(manifest)}" / BINARY_NAME


def find_go() -> str | None:
    """The ``go`` executable: on PATH, else Go's default install location; None when there is none."""
    found = shutil.which("go")
    if found:
        return found
    default = Path("/usr/local/go/bin/go")
    return str(default) if default.is_file() and os.access(default, os.X_OK) else None


def _run(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise BuildError(f"{' '.join(argv)} exited with {result.returncode}; the end of {log}:\n{tail}")


def build(manifest: Path = MANIFEST, *, quiet: bool = False) -> Path:
    """The cached binary for ``manifest``, built first when it is not there yet.

    Concurrent callers wait on a lock file: one builds, the others reuse. The
    binary appears at its final path only when the build succeeded.
    """
    target = binary_path(manifest)
    if target.is_file():
        return target
    go = find_go()
    if go is None:
        raise BuildError("Go is not installed (no `go` on PATH nor /usr/local/go/bin/go)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another process built it while this one waited
            return target
        version = builder_version(manifest)
        env = {**os.environ, "PATH": f"{Path(go).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        tools = cache_root() / f"builder-{version}"
        builder = tools / "builder"
        work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
        log = target.parent / "build.log"
        log.write_text("", encoding="utf-8")
        started = time.monotonic()
        if not quiet:
            print(f"collector_build: building {BINARY_NAME} from {manifest} (first time: minutes); log: {log}",
                  file=sys.stderr, flush=True)
        try:
            if not builder.is_file():
                _run([go, "install", f"{BUILDER_MODULE}@{version}"], {**env, "GOBIN": str(tools)}, work, log)
            # The manifest as it is, but building into the scratch folder.
            text = _OUTPUT_PATH.sub(lambda m: f"{m.group(1)} {work / 'src'}", manifest.read_text(encoding="utf-8"))
            (work / "builder.yaml").write_text(text, encoding="utf-8")
            _run([str(builder), "--config", str(work / "builder.yaml")], env, work, log)
            built = work / "src" / BINARY_NAME
            if not built.is_file():
                raise BuildError(f"the builder finished but made no {built}; see {log}")
            os.replace(built, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if not quiet:
            size_mib = target.stat().st_size / 2**20
            print(f"collector_build: built {target} in {time.monotonic() - started:.0f} s ({size_mib:.1f} MiB)",
                  file=sys.stderr, flush=True)
        return target


def main() -> int:
    try:
        path = build()
    except BuildError as error:
        print(f"collector_build: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
