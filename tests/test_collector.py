"""The collector tier for real: two HAK-GAL processes -> a gateway collector -> two sampling collectors -> a backend.

Process A delegates ``show``, ``ask`` and ``build_kb`` to process B (``HAKGAL_PEER_URL``), so one trace has
spans in both. Both send every span (no in-process tail sampling, head ratio 1.0) over OTLP to the gateway,
which load-balances by trace id to two sampling collectors running ``tail_sampling`` with the policies
``otel-hakgal collector-config`` made from the TOML; they export to a loopback OTLP receiver. Each process
also writes every span to a JSONL file: what was sent, to compare with what arrived.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_hakgal.backends.jsonl import from_otlp_json
from otel_hakgal.collector_config import CollectorOptions, generate, write
from otel_hakgal.config import load_config
from otel_hakgal.testing import OtlpReceiver
from otel_hakgal.testing.receiver import ReceivedSpan, decode_traces
from tests.support.collector import require_collector
from tests.support.processes import VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

KEEP_RATIO = 0.5
DECISION_WAIT_S = 2.0
PLAIN = 80  # `show` through A to B: no error anywhere
CALLEE_ERRORS = 8  # `ask` through A to B, B's first LLM provider failing (B falls back): an error in B only
BOTH_ERRORS = 6  # `build_kb damaged.hkb` through A to B: B's server fault, A's too (the peer answered 500)
CALLER_ERRORS = 6  # `explain` in A alone, A's first LLM provider failing: an error in A only

TOML = """
backends = ["otlp", "jsonl"]
[sampling]
sampler = "parentbased_always_on"
[sampling.tail]
enabled = false
keep_ratio = {keep_ratio}
keep_slower_than_s = 10.0
[[sampling.tail.rules]]
name = "prover-timeout"
attribute = "hakgal.prover.result"
equals = "timeout"
[[sampling.tail.rules]]
name = "marked"  # attribute present: an OTTL condition, which the real collector must compile
attribute = "hakgal.test.never_set"
[otlp]
endpoint = "{backend}"
metrics = false
[batch]
schedule_delay = 0.2
"""


def _sent_spans(path: Path) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    if not path.exists():
        return spans
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and "resourceSpans" in json.loads(line):
            spans.extend(decode_traces(from_otlp_json(line, ExportTraceServiceRequest()).SerializeToString()))
    return spans


def _by_trace(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    return traces


def _service(span: ReceivedSpan) -> str:
    return str(span.resource.get("service.name"))


def test_tail_sampling_in_the_collector_tier_keeps_whole_traces_across_processes(tmp_path: Path) -> None:
    binary = require_collector()
    gateway_port, sampler_ports = free_port(), (free_port(), free_port())
    port_a, port_b = free_port(), free_port()
    processes: list[ServerProcess] = []
    with OtlpReceiver() as backend:
        toml = tmp_path / "hakgal.toml"
        toml.write_text(TOML.format(keep_ratio=KEEP_RATIO, backend=backend.endpoint), encoding="utf-8")
        config = load_config(toml, environ={})
        samplers = tuple(f"127.0.0.1:{port}" for port in sampler_ports)
        configs: list[Path] = []
        for index, port in enumerate(sampler_ports):
            options = CollectorOptions(
                gateway_listen=f"127.0.0.1:{gateway_port}",
                samplers=samplers,
                sampler_listen=f"127.0.0.1:{port}",
                decision_wait_s=DECISION_WAIT_S,
            )
            gateway_yaml, sampler_yaml = write(generate(config, options), tmp_path / f"collector{index}")
            configs.append(sampler_yaml)
        configs.append(gateway_yaml)
        try:
            for path, port in zip(configs, [*sampler_ports, gateway_port], strict=True):
                processes.append(ServerProcess([binary, f"--config={path}"], clean_env(), port))
                processes[-1].wait_ready()

            def app(name: str, port: int, **extra: str) -> ServerProcess:
                env = clean_env(
                    OTEL_HAKGAL_CONFIG=str(toml),
                    OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{gateway_port}",
                    OTEL_SERVICE_NAME=name,
                    OTEL_HAKGAL_JSONL_PATH=str(tmp_path / f"{name}.jsonl"),
                    HAKGAL_SIM_FAULT="5xx",  # the first provider always fails; the chain falls back
                    HAKGAL_SIM_FAULT_PROVIDERS="deepseek",
                    **extra,
                )
                argv = [str(VENV_BIN / "python"), "-m", "otel_hakgal.demo.api", "--port", str(port)]
                server = ServerProcess(argv, env, port)
                processes.append(server)
                server.wait_ready()
                return server

            app("hakgal-b", port_b)
            peer = f"http://127.0.0.1:{port_b}"
            a = app("hakgal-a", port_a, HAKGAL_PEER_URL=peer, HAKGAL_PEER_VERBS="show,ask,build_kb")
            expected: Counter[int] = Counter()
            for index in range(max(PLAIN, CALLEE_ERRORS, BOTH_ERRORS, CALLER_ERRORS)):
                if index < PLAIN:
                    expected[a.post_command("show")[0]] += 1
                if index < CALLEE_ERRORS:
                    expected[a.post_command(f"ask Is Socrates{index} mortal?")[0]] += 1
                if index < BOTH_ERRORS:
                    expected[a.post_command("build_kb damaged.hkb")[0]] += 1
                if index < CALLER_ERRORS:
                    expected[a.post_command(f"explain Is Plato{index} mortal?")[0]] += 1
            assert expected == {200: PLAIN + CALLEE_ERRORS + CALLER_ERRORS, 500: BOTH_ERRORS}
            for server in processes[-2:]:  # the apps flush every span on SIGTERM
                server.stop()

            sent = _by_trace([*_sent_spans(tmp_path / "hakgal-a.jsonl"), *_sent_spans(tmp_path / "hakgal-b.jsonl")])
            errored = {trace for trace, spans in sent.items() if any(span.status_code == 2 for span in spans)}
            # Wait for the decisions: every errored trace, then no change for a while.
            deadline, last, stable_since = time.monotonic() + 60, -1, time.monotonic()
            while time.monotonic() < deadline:
                count = len(backend.spans())
                if count != last:
                    last, stable_since = count, time.monotonic()
                arrived = {span.trace_id for span in backend.spans()}
                if errored <= arrived and time.monotonic() - stable_since > DECISION_WAIT_S + 3:
                    break
                time.sleep(0.3)
        finally:
            outputs = [server.stop() for server in reversed(processes)]
        received = backend.spans()
        logs = backend.logs()

    assert received, "\n".join(output[-2000:] for output in outputs)
    # Nothing duplicated: every span id arrived at most once.
    duplicated = [span_id for span_id, n in Counter(span.span_id for span in received).items() if n > 1]
    assert not duplicated
    arrived = _by_trace(received)
    assert set(arrived) <= set(sent)

    # The traces the test drove, by kind (the command span in A names the verb).
    def kind(spans: list[ReceivedSpan]) -> str:
        verbs = {str(s.attributes.get("hakgal.command.name")) for s in spans if _service(s) == "hakgal-a"}
        return next((verb for verb in ("show", "ask", "build_kb", "explain") if verb in verbs), "other")

    kinds = Counter(kind(spans) for spans in sent.values())
    assert kinds["show"] == PLAIN and kinds["ask"] == CALLEE_ERRORS
    assert kinds["build_kb"] == BOTH_ERRORS and kinds["explain"] == CALLER_ERRORS
    for trace, spans in sent.items():
        services = {_service(span) for span in spans}
        error_in = {_service(span) for span in spans if span.status_code == 2}
        if kind(spans) in ("show", "ask", "build_kb"):
            assert services == {"hakgal-a", "hakgal-b"}, f"trace {trace} did not cross the processes"
        if kind(spans) == "ask":
            assert error_in == {"hakgal-b"}
        if kind(spans) == "build_kb":
            assert error_in == {"hakgal-a", "hakgal-b"}
        if kind(spans) == "explain":
            assert error_in == {"hakgal-a"}
        # Whole or not at all; an error anywhere: whole.
        got = {span.span_id for span in arrived.get(trace, [])}
        want = {span.span_id for span in spans}
        if trace in errored:
            assert got == want, f"errored trace {trace} ({kind(spans)}): {len(got)} of {len(want)} spans arrived"
        else:
            assert got in (set(), want), f"trace {trace} ({kind(spans)}) arrived in part: {len(got)} of {len(want)}"

    # Log records (the failed commands' WARNING lines) go through the gateway straight to the backend.
    assert any("failed" in str(record.body) for record in logs), [record.body for record in logs]

    # Plain traces kept at about keep_ratio: within 4.5 standard deviations of the binomial.
    plain = [trace for trace, spans in sent.items() if trace not in errored and kind(spans) == "show"]
    kept = sum(1 for trace in plain if trace in arrived)
    mean, sd = len(plain) * KEEP_RATIO, math.sqrt(len(plain) * KEEP_RATIO * (1 - KEEP_RATIO))
    print(f"plain traces kept: {kept} of {len(plain)}; errored traces: {len(errored)}, all whole")
    assert abs(kept - mean) <= 4.5 * sd, f"{kept} of {len(plain)} plain traces kept, expected about {mean:.0f}"
