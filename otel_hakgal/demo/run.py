"""The main job, ``otel-hakgal demo``: the reference service on loopback under a scripted workload.

Starts the LLM simulator and the API (127.0.0.1, free ports), sends the
workload over real HTTP, then prints every trace as a waterfall and a metrics
summary. ``--config FILE`` sends the telemetry to that config's backends
instead; ``--serve`` keeps the API up for curl afterwards.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from werkzeug.serving import BaseWSGIServer, make_server

import otel_hakgal as hg
from otel_hakgal.backends.memory import MemoryBackend
from otel_hakgal.demo.api import configure_logging, create_app
from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
from otel_hakgal.demo.providers import Endpoints
from otel_hakgal.demo.simulator import LLMSimulator
from otel_hakgal.demo.summary import render_summary, snapshot
from otel_hakgal.demo.workload import WORKLOAD, StepResult, run_workload
from otel_hakgal.render import group_by_trace, render_trace
from otel_hakgal.report import Snapshot
from otel_hakgal.tail_sampling import TALLY

DEMO_SERVICE_NAME = "hakgal-demo"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-hakgal demo",
        description="Run the HAK-GAL reference service on 127.0.0.1 with a scripted workload and show its telemetry.",
    )
    parser.add_argument("--config", metavar="FILE", help="send telemetry to this TOML config's backends instead")
    parser.add_argument("--serve", action="store_true", help="keep the API running after the workload (Ctrl-C stops)")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument(
        "--z3-timeout", type=float, default=1.0, metavar="SECONDS", help="Z3's timeout per check (default 1.0)"
    )
    parser.add_argument("--no-traces", action="store_true", help="print the summary only, no waterfalls")
    return parser


class _ApiServer:
    """The Flask app under werkzeug's threaded server, in a daemon thread."""

    def __init__(self, app: Any, port: int) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log between the demo's output
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="hakgal-api", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> _ApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _print_result(out: TextIO) -> Any:
    def show(number: int, result: StepResult) -> None:
        mark = "" if result.as_expected else "  (UNEXPECTED)"
        answer = str(result.body.get("chatResponse") or result.body.get("error") or "").splitlines()
        first_line = answer[0] if answer else ""
        if len(first_line) > 90:
            first_line = first_line[:89] + "…"
        print(f"{number:>3}. {result.step.command[:48]:<48} -> {result.status}{mark}", file=out)
        print(f"       {first_line}", file=out)
        if result.step.note:
            print(f"       ({result.step.note})", file=out)

    return show


def _decided_traces() -> int:
    """Traces tail sampling decided since the process started."""
    return sum(TALLY.decisions().values())


def _wait_for_server_spans(
    handle: hg.Handle, memory: MemoryBackend, expected: int, decided_before: int, timeout_s: float = 5.0
) -> list[ReadableSpan]:
    """The server span of a request ends just after the client has its answer: wait for the last ones.

    With tail sampling on, only kept traces reach the backend: wait until every request's trace was decided.
    """
    tail = handle.config.sampling_tail.enabled
    deadline = time.monotonic() + timeout_s
    while True:
        spans = memory.spans()
        if tail:
            settled = _decided_traces() - decided_before >= expected
        else:
            settled = sum(1 for s in spans if s.kind is SpanKind.SERVER) >= expected
        if settled or time.monotonic() > deadline:
            return spans
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout
    configure_logging(logging.ERROR)
    handle = hg.setup(config=args.config) if args.config else hg.setup(backends=["memory"])
    try:
        with LLMSimulator() as simulator, _service(simulator, args.z3_timeout, args.port) as api:
            print(f"HAK-GAL demo: API {api.base_url}, LLM simulator {simulator.base_url}", file=out)
            print(f"running {len(WORKLOAD)} commands over HTTP\n", file=out)
            decided_before = _decided_traces()
            results = run_workload(api.base_url, simulator, on_result=_print_result(out))
            _report(handle, results, decided_before, show_traces=not args.no_traces, out=out)
            if args.serve:
                _serve_until_interrupted(api.base_url, out)
    finally:
        handle.shutdown()
    return 0 if all(result.as_expected for result in results) else 1


def workload_metrics(z3_timeout_s: float = 1.0) -> Snapshot:
    """Run the workload silently with the ``memory`` backend; its metrics (for ``otel-hakgal report``)."""
    handle = hg.setup(backends=["memory"])
    try:
        with LLMSimulator() as simulator, _service(simulator, z3_timeout_s, 0) as api:
            decided_before = _decided_traces()
            results = run_workload(api.base_url, simulator)
            memory = handle.backend(MemoryBackend)
            _wait_for_server_spans(handle, memory, len(results), decided_before)
            return snapshot(memory.metrics())
    finally:
        handle.shutdown()


def _service(simulator: LLMSimulator, z3_timeout_s: float, port: int) -> _ApiServer:
    assistant = KAssistant.create(Endpoints.on(simulator.base_url), AssistantSettings(z3_timeout_s=z3_timeout_s))
    return _ApiServer(create_app(assistant), port)


def _report(
    handle: hg.Handle, results: Sequence[StepResult], decided_before: int, *, show_traces: bool, out: TextIO
) -> None:
    if "memory" not in handle.backends:
        handle.force_flush()
        print(f"\ntelemetry sent to: {', '.join(handle.backends) or 'no backend'}", file=out)
        return
    memory = handle.backend(MemoryBackend)
    spans = _wait_for_server_spans(handle, memory, len(results), decided_before)
    if show_traces:
        traces = group_by_trace(spans)
        print(f"\n== {len(traces)} traces ==", file=out)
        for trace_spans in traces:
            print("\n" + render_trace(trace_spans), file=out)
    print("\n" + render_summary(memory.metrics()), file=out)


def _serve_until_interrupted(base_url: str, out: TextIO) -> None:
    print(
        f"\nserving on {base_url}; try:\n"
        f"  curl -s {base_url}/api/test\n"
        f"  curl -s -X POST {base_url}/api/command -H 'Content-Type: application/json' "
        '-d \'{"command": "ask Is Rome a city?"}\'\n'
        "Ctrl-C stops.",
        file=out,
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping", file=out)


if __name__ == "__main__":
    sys.exit(main())
