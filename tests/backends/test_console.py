import pytest

import otel_hakgal as hg
from otel_hakgal.conventions import ErrorType


def test_prints_each_trace_as_a_waterfall(capsys: pytest.CaptureFixture[str]) -> None:
    handle = hg.setup(backends=["console"], settings={"console.stream": "stdout", "console.metrics": True})
    try:
        with hg.command("ask") as cmd:
            with hg.query("q"), hg.prover("z3", order=0) as p:
                p.set_result("proved")
            cmd.fail(ErrorType.TIMEOUT)
    finally:
        handle.shutdown()
    out = capsys.readouterr().out
    lines = out.splitlines()
    trace_line = next(i for i, line in enumerate(lines) if line.startswith("trace "))
    assert lines[trace_line + 1].startswith("  hakgal.command ask")
    assert "✗ timeout" in lines[trace_line + 1]
    assert lines[trace_line + 2].startswith("    hakgal.query")
    assert lines[trace_line + 3].startswith("      hakgal.prover z3") and "result=proved" in lines[trace_line + 3]
    assert "metrics:" in out and "hakgal.prover.runs{" in out
