"""What a user's type checker sees: ``mypy --strict`` on a user file that uses the public API."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

USER_FILE = """\
import otel_hakgal as hg
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.conventions import Attr, CacheName, ProverResult, SpanName

with hg.command("ask", text="ask What is the capital of France?", timeout_s=45) as command:
    reveal_type(command)  # command
with hg.query("What is the capital of France?", query_type="ask") as query:
    reveal_type(query)  # query
with hg.prover("z3", order=1, timeout_s=5) as prover:
    reveal_type(prover)  # prover
    prover.set_result(ProverResult.PROVED, reason="unsat")
with hg.llm_call("deepseek", "deepseek-chat") as call:
    reveal_type(call)  # llm_call
    call.record_usage(120, 30, finish_reasons=["stop"])
with hg.cache_lookup(CacheName.PROMPT) as cache:
    reveal_type(cache)  # cache_lookup
    cache.hit()
with hg.step(SpanName.RAG_RETRIEVE, attributes={Attr.RAG_CHUNK_COUNT: 3}) as step:
    reveal_type(step)  # step


@hg.prover("pattern")
def match(fact: str) -> bool:
    return fact.endswith(".")


@hg.step(SpanName.RAG_EXTRACT)
async def extract(chunks: list[str]) -> int:
    return len(chunks)


reveal_type(match)  # sync decorator
reveal_type(extract)  # async decorator
reveal_type(hg.current())  # current

handle = hg.setup(backends=["memory"])
reveal_type(handle.backend(MemoryBackend))  # backend by class

hg.prover("z3", 1)  # error: optional arguments are keyword-only
hg.step(SpanName.PARSE, rows=3)  # error: attributes are a mapping
"""

EXPECTED = {
    "command": "otel_hakgal.api.CommandOp",
    "query": "otel_hakgal.api.QueryOp",
    "prover": "otel_hakgal.api.ProverOp",
    "llm_call": "otel_hakgal.api.LLMCallOp",
    "cache_lookup": "otel_hakgal.api.CacheOp",
    "step": "otel_hakgal.api.StepOp",
    "current": "otel_hakgal.api.Operation | None",
    "backend by class": "otel_hakgal.backends.memory.MemoryBackend",
}


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """mypy's messages on the user file, by line number."""
    work = tmp_path_factory.mktemp("typing")
    (work / "user.py").write_text(USER_FILE, encoding="utf-8")
    # The editable install is an import hook mypy cannot follow: the package is found through MYPYPATH.
    # follow-imports=silent: the package's own strictness is `dev.py lint`'s business, not this test's.
    command = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary"]
    result = subprocess.run(
        [*command, "--cache-dir", str(work / ".cache"), "user.py"],
        cwd=work,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    messages: dict[int, list[str]] = {}
    for line in result.stdout.splitlines():
        found = re.match(r"user\.py:(\d+): (.*)", line)
        assert found, f"unexpected mypy output: {line}\n{result.stdout}"
        messages.setdefault(int(found[1]), []).append(found[2])
    return messages


def _line(marker: str) -> int:
    [number] = [i for i, line in enumerate(USER_FILE.splitlines(), 1) if line.endswith(f"# {marker}")]
    return number


def _revealed(messages: dict[int, list[str]], marker: str) -> str:
    notes = [m for m in messages.get(_line(marker), []) if m.startswith("note: Revealed type is ")]
    assert len(notes) == 1, messages
    return notes[0].removeprefix("note: Revealed type is ").strip('"')


@pytest.mark.parametrize("marker", EXPECTED)
def test_with_types_the_operation(mypy_output: dict[int, list[str]], marker: str) -> None:
    assert _revealed(mypy_output, marker) == EXPECTED[marker]


def test_decorators_keep_the_signature(mypy_output: dict[int, list[str]]) -> None:
    assert re.fullmatch(
        r"def \(fact: (builtins\.)?str\) -> (builtins\.)?bool", _revealed(mypy_output, "sync decorator")
    )
    assert re.fullmatch(
        r"def \(chunks: (builtins\.)?list\[(builtins\.)?str\]\) -> typing\.Coroutine\[Any, Any, (builtins\.)?int\]",
        _revealed(mypy_output, "async decorator"),
    )


def test_misuse_is_a_type_error_and_nothing_else_is(mypy_output: dict[int, list[str]]) -> None:
    errors = {line: [m for m in found if m.startswith("error:")] for line, found in mypy_output.items()}
    errors = {line: found for line, found in errors.items() if found}
    keyword_only, mapping = (
        _line("error: optional arguments are keyword-only"),
        _line("error: attributes are a mapping"),
    )
    assert set(errors) == {keyword_only, mapping}, mypy_output
    assert "Too many positional arguments" in errors[keyword_only][0]
    assert 'Unexpected keyword argument "rows"' in errors[mapping][0]
