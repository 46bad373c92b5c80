"""Load a script of ``benchmarks/`` as a module, for the tests that guard it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_benchmark_child(name: str, *args: str) -> Any:
    """Run ``benchmarks/<name>.py args`` as the benchmark runs its children; the first line it answers (JSON)."""
    load_benchmark(name)  # its sibling helpers importable here too
    from _line_protocol import Child

    child = Child(str(BENCHMARKS / f"{name}.py"), *args, exit_timeout_s=30)
    try:
        return child.ready
    finally:
        child.close()


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (its sibling helper modules importable, as when run)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"hakgal_{name}_benchmark", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
