import logging

import pytest
from opentelemetry import trace

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


def test_log_lines_print_under_their_span_and_alone_outside_any(capsys: pytest.CaptureFixture[str]) -> None:
    app = logging.getLogger("hakgal.tests.console")
    handle = hg.setup(backends=["console"], settings={"console.stream": "stdout", "console.metrics": False})
    try:
        app.warning("before any operation")
        with hg.command("ask"), hg.query("q"):
            with hg.prover("functional", order=0) as p:
                p.set_result("unknown")
            app.warning("provider %s unavailable; falling back", "deepseek")
            with hg.prover("z3", order=1) as p:
                p.set_result("proved")
        app.info("below the export level")
    finally:
        handle.shutdown()
    lines = capsys.readouterr().out.splitlines()
    assert "log WARN hakgal.tests.console: before any operation" in lines
    start = next(i for i, line in enumerate(lines) if line.startswith("trace "))
    waterfall = lines[start + 1 : start + 6]
    assert waterfall[0].startswith("  hakgal.command ask")
    assert waterfall[1].startswith("    hakgal.query")
    assert waterfall[2].startswith("      hakgal.prover functional")
    # Under the query, between the two provers: where and when it was logged.
    assert waterfall[3] == "      ▸ WARN hakgal.tests.console: provider deepseek unavailable; falling back"
    assert waterfall[4].startswith("      hakgal.prover z3")
    assert not any("below the export level" in line for line in lines)


def test_a_trace_shows_its_first_log_lines_and_late_ones_print_alone(capsys: pytest.CaptureFixture[str]) -> None:
    app = logging.getLogger("hakgal.tests.console")
    settings = {"console.stream": "stdout", "console.metrics": False, "logs.max_per_second": 10_000}
    handle = hg.setup(backends=["console"], settings=settings)
    try:
        with hg.command("ask") as cmd:
            for index in range(205):
                app.warning("line %d", index)
        with trace.use_span(cmd.span):  # a worker that outlived its command logs in the command's context
            app.warning("late")
    finally:
        handle.shutdown()
    lines = capsys.readouterr().out.splitlines()
    logged = [line for line in lines if line.startswith("    ▸ WARN hakgal.tests.console: line ")]
    assert len(logged) == 200 and logged[-1].endswith("line 199")
    assert "  ▸ 5 more log lines not shown" in lines
    context = cmd.span.get_span_context()
    late = f"log WARN hakgal.tests.console: late  (trace {context.trace_id:032x} span {context.span_id:016x})"
    assert lines[-1] == late
