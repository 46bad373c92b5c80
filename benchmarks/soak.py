"""Soak: many mixed commands against gunicorn, Sentry and OTLP at once, with LLM faults.

Run: ``.venv/bin/python benchmarks/soak.py`` (50,000 commands, concurrency 8,
10% LLM faults; ``--commands 2000`` for a short run).

The reference service runs under gunicorn (two workers, four threads each)
and the ``opentelemetry-instrument`` launcher, configured through
``$OTEL_HAKGAL_CONFIG`` with the backends ``sentry`` and ``otlp``. This process hosts the LLM simulator (a tenth of the
calls to every provider fail: HTTP 503, HTTP 401, a truncated body or prose
instead of logic, in equal shares) and both loopback receivers, which count
what arrives and keep nothing else. Each worker reports how many spans it
handed to its backends (``Handle.spans_ended``) when it exits; gunicorn is
stopped with SIGTERM, so every worker flushes first.

Reports: spans produced against spans received per backend (target: zero
lost), WARNING/ERROR lines and tracebacks in the server's log, and the
workers' RSS over time (target: flat after warm-up, growth from the first to
the last quarter of the run under 10 MB). Writes ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_hakgal.demo.providers import DEMO_API_KEY
from otel_hakgal.demo.simulator import LLM_PROVIDERS, FaultKind, LLMSimulator
from otel_hakgal.demo.workload import WORKLOAD
from otel_hakgal.testing import OtlpReceiver, SentryReceiver

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
BIN = Path(sys.executable).parent
RSS_GROWTH_LIMIT_MB = 10.0
BACKENDS = ("sentry", "otlp")
# The LLM faults that answer at once (a timeout would only make the soak slower).
FAULT_KINDS = (FaultKind.SERVER_ERROR, FaultKind.AUTH, FaultKind.MALFORMED, FaultKind.GARBAGE)
# The workload's commands that need no fault set up around them and end quickly.
COMMANDS: tuple[str, ...] = tuple(
    step.command
    for step in WORKLOAD
    if step.before is None and step.after is None and "timeout" not in step.note and "build_kb" not in step.command
)
# Worker hook: report the spans each worker handed to its backends, at exit.
GUNICORN_CONFIG = """
import os
from otel_hakgal.pipeline import active_handle

def worker_exit(server, worker):
    handle = active_handle()
    if handle is not None:
        with open(os.path.join({directory!r}, f"produced-{{os.getpid()}}"), "w") as out:
            out.write(str(handle.spans_ended))
"""
# The providers' API key, which the simulator's 401 echoes in its error message: no payload may carry it.
SECRET = DEMO_API_KEY.encode()
KEY_ERROR = b"Incorrect API key provided"
LOG_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")


class CountingOtlpReceiver(OtlpReceiver):
    """Counts spans and keeps none, so a long soak does not grow this process."""

    span_total = 0
    secret_leaks = 0
    key_errors = 0  # payloads with a 401's message: the secret check saw what it guards

    def _record(self, path: str, body: bytes) -> tuple[int, bytes]:
        answer = super()._record(path, body)
        with self._lock:
            self.secret_leaks += SECRET in body
            self.key_errors += KEY_ERROR in body
            self.span_total += len(self._spans)
            self._spans.clear()
            self._points.clear()
        return answer


class CountingSentryReceiver(SentryReceiver):
    """Counts spans (transactions, their children and streamed ``span`` items) and error events."""

    span_total = 0
    error_total = 0
    secret_leaks = 0
    key_errors = 0  # payloads with a 401's message: the secret check saw what it guards

    def __init__(self) -> None:
        super().__init__()
        self.discarded: dict[str, int] = {}

    def _record(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        answer = super()._record(path, body, headers)
        with self._lock:
            self.secret_leaks += SECRET in body
            self.key_errors += KEY_ERROR in body
            for envelope in self._envelopes:
                for item in envelope.items:
                    if item.type == "transaction":
                        self.span_total += 1 + len(item.json.get("spans") or [])
                    elif item.type == "span":  # Sentry sends gen_ai.* spans apart, as v2 span items
                        self.span_total += len((item.json or {}).get("items", []))
                    elif item.type == "event":
                        self.error_total += 1
                    elif item.type == "client_report":  # what the SDK dropped, and why
                        for discarded in item.json.get("discarded_events") or []:
                            reason = f"{discarded.get('reason')}/{discarded.get('category')}"
                            self.discarded[reason] = self.discarded.get(reason, 0) + int(discarded.get("quantity", 0))
            self._envelopes.clear()
        return answer


@dataclass
class Soak:
    commands: int
    concurrency: int
    fault_rate: float
    statuses: dict[int, int] = field(default_factory=dict)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB of all workers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(port: int, command: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/command",
        data=json.dumps({"command": command}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0  # no answer at all


def _workers(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return []
    return [int(pid) for pid in children]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"gunicorn not listening on {port}")


def run(
    commands: int,
    concurrency: int,
    fault_rate: float,
    workers: int = 2,
    backends: tuple[str, ...] = BACKENDS,
) -> dict[str, Any]:
    """Soak gunicorn sending to ``backends`` (``("none",)``: the app's own memory, for comparison)."""
    soak = Soak(commands, concurrency, fault_rate)
    with (
        tempfile.TemporaryDirectory() as directory,
        LLMSimulator() as simulator,
        CountingOtlpReceiver() as otlp,
        CountingSentryReceiver() as sentry,
    ):
        for provider in LLM_PROVIDERS:
            simulator.inject_mix(provider, FAULT_KINDS, fault_rate)
        config = Path(directory, "soak.toml")
        config.write_text(
            f"backends = {json.dumps(list(backends))}\n"
            f'[sentry]\ndsn = "{sentry.dsn}"\ntraces_sample_rate = 1.0\n'
            f'[otlp]\nendpoint = "{otlp.endpoint}"\n'
        )
        Path(directory, "gunicorn.conf.py").write_text(GUNICORN_CONFIG.format(directory=directory))
        port = _free_port()
        log_path = Path(directory, "server.log")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_", "HAKGAL_"))},
            "OTEL_HAKGAL_CONFIG": str(config),
            "HAKGAL_LLM_BASE_URL": simulator.base_url,
        }
        argv = [
            str(BIN / "opentelemetry-instrument"),  # zero-code: the launcher runs setup() from the config
            str(BIN / "gunicorn"),
            *("-c", str(Path(directory, "gunicorn.conf.py"))),
            *("-w", str(workers), "--threads", "4", "-b", f"127.0.0.1:{port}"),
            "otel_hakgal.demo.api:app",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_listening(port, process)
                started = time.monotonic()
                done = threading.Event()

                def sample_rss() -> None:
                    while not done.wait(1.0):
                        total = sum(_rss_mb(pid) for pid in _workers(process.pid))
                        soak.rss_mb.append((round(time.monotonic() - started, 1), round(total, 1)))

                sampler = threading.Thread(target=sample_rss, daemon=True)
                sampler.start()
                mix = itertools.cycle(COMMANDS)
                with ThreadPoolExecutor(concurrency) as pool:
                    for status in pool.map(lambda command: _post(port, command), (next(mix) for _ in range(commands))):
                        soak.statuses[status] = soak.statuses.get(status, 0) + 1
                elapsed = time.monotonic() - started
                done.set()
                sampler.join()
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        produced = sum(int(p.read_text()) for p in Path(directory).glob("produced-*"))
        reports = len(list(Path(directory).glob("produced-*")))
        time.sleep(0.5)  # the last requests' handler threads finish counting
        log_lines = log_path.read_text(errors="replace").splitlines()
    problems = [line for line in log_lines if LOG_LINE.search(line)]
    received = {
        name: count for name, count in (("otlp", otlp.span_total), ("sentry", sentry.span_total)) if name in backends
    }
    return {
        "commands": commands,
        "concurrency": concurrency,
        "fault_rate": fault_rate,
        "elapsed_s": round(elapsed, 1),
        "statuses": soak.statuses,
        "workers_reporting": reports,
        "workers": workers,
        "spans_produced": produced,
        "backends": list(backends),
        "received": received,
        "lost": {backend: produced - count for backend, count in received.items()},
        "fault_kinds": [str(kind) for kind in FAULT_KINDS],
        "secret_leaks": {"otlp": otlp.secret_leaks, "sentry": sentry.secret_leaks},
        "key_error_payloads": {"otlp": otlp.key_errors, "sentry": sentry.key_errors},
        "sentry_error_events": sentry.error_total,
        "sentry_discarded": sentry.discarded,
        "log_problems": len(problems),
        "tracebacks": sum("Traceback" in line for line in problems),
        "log_samples": problems[:10],
        "rss_mb": soak.rss_mb,
        "rss_growth_mb": _growth(soak.rss_mb),
    }


def _growth(series: list[tuple[float, float]]) -> float | None:
    """Mean RSS of the last quarter minus that of the first quarter after warm-up (the first 10%)."""
    values = [mb for _, mb in series[len(series) // 10 :] if mb > 0]
    if len(values) < 4:
        return None
    quarter = len(values) // 4
    return round(sum(values[-quarter:]) / quarter - sum(values[:quarter]) / quarter, 1)


def print_report(report: dict[str, Any]) -> None:
    lost = report["lost"]
    growth = report["rss_growth_mb"]
    print(
        f"soak: {report['commands']:,} commands, concurrency {report['concurrency']}, "
        f"{report['fault_rate']:.0%} LLM faults ({', '.join(report['fault_kinds'])}), "
        f"{report['elapsed_s']} s, statuses {report['statuses']}"
    )
    print(f"  spans produced {report['spans_produced']:,} by {report['workers_reporting']}/{report['workers']} workers")
    for backend, received in report["received"].items():
        verdict = "met" if lost[backend] == 0 else "NOT met"
        print(f"  {backend:7s} received {received:,}  lost {lost[backend]:,}  (target 0: {verdict})")
    print(f"  Sentry error events {report['sentry_error_events']:,}, discarded by the SDK {report['sentry_discarded']}")
    leaks = report["secret_leaks"]
    verdict = "met" if not any(leaks.values()) else "NOT met"
    print(
        f"  payloads with a 401 message {report['key_error_payloads']}; "
        f"payloads carrying the API key {leaks} (target 0: {verdict})"
    )
    print(f"  log WARNING/ERROR lines {report['log_problems']}, tracebacks {report['tracebacks']}")
    series = report["rss_mb"]
    step = max(1, len(series) // 8)
    print("  workers' RSS MB over time: " + ", ".join(f"{t:.0f}s {mb:.0f}" for t, mb in series[::step]))
    verdict = "met" if growth is not None and growth < RSS_GROWTH_LIMIT_MB else "NOT met"
    print(f"  RSS growth after warm-up {growth} MB (target < {RSS_GROWTH_LIMIT_MB:g}: {verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma list; 'none' measures the app's memory without the layer"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    backends = tuple(name.strip() for name in args.backends.split(",") if name.strip())
    report = run(args.commands, args.concurrency, args.fault_rate, backends=backends)
    print_report(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    growth = report["rss_growth_mb"]
    met = (
        not any(report["lost"].values())
        and not any(report["secret_leaks"].values())
        and growth is not None
        and growth < RSS_GROWTH_LIMIT_MB
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
