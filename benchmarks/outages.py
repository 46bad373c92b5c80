"""Backend outages under load: HAK-GAL keeps answering, as fast, in bounded memory, quietly, and recovers.

Run: ``.venv/bin/python benchmarks/outages.py`` (``--quick`` for a short smoke run).

Per backend, one *service* process (a child of this script) runs the reference
app in-process (Flask test client, ``POST /api/command``) through phases:
``healthy`` first, then each fault of the backend's receiver, each followed by
a recovery check without restarting anything. This process hosts the LLM
simulator and the receivers, switches their faults, and checks recovery.

Faults of the push backends' receivers (``otlp``, ``sentry``, ``sentry-otlp``):
``unreachable`` (port closed), ``http-500``, ``http-429`` (``Retry-After: 1``),
``delay-5s``. ``prometheus`` is pulled: ``unreachable`` means nobody scrapes,
``delay-5s`` five scraper connections that stall (while a scraper keeps
scraping every second, as in ``healthy``), ``port-taken`` the metrics port
already in use when the backend starts (no endpoint; nothing to recover).

Each request also logs one app warning (``hakgal.outage.app``, from an
``after_request`` hook, so in the request's span): far beyond
``logs.max_per_second``, so the log records a backend exports meet its fault
too, and the rate cap drops the rest; the log call's time is in the request's.

Per phase: requests answered, p50 against the same process's healthy phase
(target <= 1.2), RSS growth over the phase (target < 50 MB), warnings
(target: at most one export warning, and one per logger, per started minute;
the app's own warnings are not counted), deepest export queue (spans and log
records) against its cap, and whether telemetry arrived again after the fault
was cleared (for ``otlp``: a span and a log record). Prints a table with each target met / NOT met and writes
``benchmarks/results/outages.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import socket
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from _line_protocol import Child, reply

BACKENDS: tuple[str, ...] = ("otlp", "sentry", "sentry-otlp", "prometheus")
PUSH_FAULTS: tuple[str, ...] = ("unreachable", "http-500", "http-429", "delay-5s")
PULL_FAULTS: tuple[str, ...] = ("unreachable", "delay-5s", "port-taken")
COMMAND = {"command": "ask Is Rome a city?"}
RESULTS = Path(__file__).resolve().parent / "results" / "outages.json"
P50_RATIO_LIMIT = 1.2
RSS_LIMIT_MB = 50.0
STALLED_SCRAPERS = 5
RECOVERY_TIMEOUT_S = 30.0
WARNING_TIMEOUT_S = 8.0  # a batch processor exports every 5 s


def faults_of(backend: str) -> tuple[str, ...]:
    return PULL_FAULTS if backend == "prometheus" else PUSH_FAULTS


# --- line protocol ------------------------------------------------------------------


def _spawn(*args: str) -> Child:
    """The service process of one backend (this script with ``args``)."""
    # Batches every 0.5 s instead of 5 s: exports meet the fault early, also in short phases.
    return Child(__file__, *args, env={"OTEL_BSP_SCHEDULE_DELAY": "500"})


# --- the service process ----------------------------------------------------------------


class Service:
    """The reference app with one backend, measured phase by phase."""

    def __init__(self, backend: str, llm: str, target: str) -> None:
        import otel_hakgal as hg
        from otel_hakgal.demo.api import create_app
        from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
        from otel_hakgal.demo.providers import Endpoints
        from otel_hakgal.testing.outages import APP_LOGGER, WarningCapture

        self.backend = backend
        self.target = target
        self.handle = hg.setup(backends=[backend], settings=self._settings(0))
        self.app = create_app(KAssistant.create(Endpoints.on(llm), AssistantSettings()))
        self.app_log = logging.getLogger(APP_LOGGER)
        self.app.after_request(self._log_answer)
        self.client = self.app.test_client()
        self.warnings = WarningCapture(ignore=(APP_LOGGER,)).__enter__()

    def _log_answer(self, response: Any) -> Any:
        """The app's own warning per request, inside the request's span: log records for the backend."""
        self.app_log.warning("answered with HTTP %d", response.status_code)
        return response

    def _settings(self, port: int) -> dict[str, Any]:
        settings: dict[str, Any] = {"export.shutdown_timeout": 2.0}
        if self.backend == "otlp":
            settings |= {"otlp.endpoint": self.target, "export.metric_interval": 1.0}
        elif self.backend == "prometheus":
            settings |= {"prometheus.port": port}
        else:
            settings[f"{self.backend}.dsn"] = self.target
        return settings

    def url(self) -> str | None:
        if self.backend != "prometheus":
            return None
        url: str | None = self.handle.backend("prometheus").url
        return url

    def reconfigure(self, port: int) -> str | None:
        """setup() again, in place (the prometheus ``port-taken`` phase; its warnings count in the next phase)."""
        import otel_hakgal as hg
        from otel_hakgal import log_limits

        log_limits.reset()
        self.warnings.clear()
        self.handle = hg.setup(backends=[self.backend], settings=self._settings(port))
        return self.url()

    def phase(self, requests: int, fresh: bool = True) -> dict[str, Any]:
        """Serve ``requests`` requests; ``fresh=False`` keeps the warnings logged since the last reconfigure."""
        import psutil

        from otel_hakgal import log_limits
        from otel_hakgal.testing.outages import max_depths, queue_depths

        if fresh:
            log_limits.reset()
            self.warnings.clear()
        process = psutil.Process()
        gc.collect()
        rss_start = process.memory_info().rss
        latencies: list[float] = []
        answered = 0
        samples = []
        started = time.perf_counter()
        for index in range(requests):
            begin = time.perf_counter()
            response = self.client.post("/api/command", json=COMMAND)
            latencies.append(time.perf_counter() - begin)
            answered += response.status_code == 200
            if index % 100 == 0:
                samples.append(queue_depths(self.handle))
        elapsed = time.perf_counter() - started
        samples.append(queue_depths(self.handle))
        gc.collect()
        rss_end = process.memory_info().rss
        ordered = sorted(latencies)
        return {
            "requests": requests,
            "answered": answered,
            "p50_s": statistics.median(latencies),
            "p99_s": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
            "elapsed_s": elapsed,
            "rss_start": rss_start,
            "rss_end": rss_end,
            "rss_growth_mb": (rss_end - rss_start) / 2**20,
            **self.warnings_so_far(),
            "queues": max_depths(samples),
        }

    def warnings_so_far(self) -> dict[str, Any]:
        """Warnings and suppressions since the phase began, also those logged after its last request."""
        from otel_hakgal import log_limits

        return {
            "warnings_by_logger": self.warnings.by_logger(),
            "export_warnings": self.warnings.export_warnings,
            "warning_messages": [message for _, message in self.warnings.records][:10],
            "suppressed": log_limits.suppressed(),
        }

    def failed_sends(self) -> int:
        """Sends of the backend that failed so far (refused, timed out, or answered >= 400)."""
        log = self.handle.backend(self.backend).delivery
        return sum(log.errors.values()) + sum(n for status, n in log.statuses.items() if status >= 400)

    def probe(self) -> None:
        """After the fault is cleared: drain the backlog, then end one span the receiver can be asked for."""
        import otel_hakgal as hg

        self.handle.force_flush(15)
        time.sleep(1.0)  # a second's worth of the log rate cap again, which the phase spent
        with hg.command("status"):
            self.app_log.warning("probe")
        self.handle.force_flush(15)

    def close(self) -> None:
        self.warnings.__exit__()
        self.handle.shutdown(timeout_s=3)


def serve(backend: str, llm: str, target: str) -> None:
    service = Service(backend, llm, target)
    reply({"pid": os.getpid(), "url": service.url()})
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        command = message["command"]
        if command == "phase":
            reply(service.phase(message["requests"], message.get("fresh", True)))
        elif command == "warnings":
            reply(service.warnings_so_far())
        elif command == "failed_sends":
            reply(service.failed_sends())
        elif command == "probe":
            service.probe()
            reply({})
        elif command == "reconfigure":
            reply({"url": service.reconfigure(message["port"])})
        elif command == "exit":
            service.close()
            reply("bye")
            break


# --- this process: receivers, faults, recovery -----------------------------------------------


def _probe_arrived(backend: str, receiver: Any) -> bool:
    from otel_hakgal.conventions import SpanName

    probe = SpanName.COMMAND.format(verb="status")
    if backend == "otlp":
        spans = any(span.name == probe for span in receiver.spans())
        return spans and any(record.body == "probe" for record in receiver.logs())
    if backend == "sentry":
        return any(t.get("transaction") == probe for t in receiver.transactions())
    return any(span.name == probe for span in receiver.otlp_spans())


def _wait(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def _scrape_ok(url: str | None) -> bool:
    from otel_hakgal.backends.prometheus import prometheus_name
    from otel_hakgal.conventions import Metric, metric_def

    if url is None:
        return False
    definition = metric_def(Metric.COMMAND_DURATION)
    series = prometheus_name(definition.name, definition.unit, definition.instrument) + "_count"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return series in response.read().decode()
    except OSError:
        return False


class Scraper:
    """Scrapes ``url`` every ``interval_s`` in a thread, as a Prometheus server would."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.scrapes = 0
        self.failures = 0
        self.slowest_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:  # the first scrape at once: even a short phase is scraped
            started = time.monotonic()
            ok = _scrape_ok(self.url)
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            self.scrapes += 1
            self.failures += not ok
            if self._stop.wait(self.interval_s):
                return

    @contextlib.contextmanager
    def running(self) -> Iterator[Scraper]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)


@contextlib.contextmanager
def stalled_connections(url: str, count: int) -> Iterator[None]:
    """Scraper connections that send half a request and then nothing."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sockets = []
    try:
        for _ in range(count):
            connection = socket.create_connection((host, int(port)), timeout=5)
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: " + host.encode() + b"\r\n")
            sockets.append(connection)
        yield
    finally:
        for connection in sockets:
            connection.close()


def run_push(backend: str, llm: str, requests: int, warmup: int, faults: tuple[str, ...]) -> dict[str, Any]:
    from otel_hakgal.testing import OtlpReceiver, SentryReceiver
    from otel_hakgal.testing.outages import apply_fault

    receiver: Any = OtlpReceiver() if backend == "otlp" else SentryReceiver()
    phases: dict[str, Any] = {}
    with receiver:
        target = receiver.endpoint if backend == "otlp" else receiver.dsn
        child = _spawn("--serve", backend, "--llm", llm, "--target", target)
        try:
            child.ask("phase", requests=warmup)
            phases["healthy"] = child.ask("phase", requests=requests)
            child.ask("probe")
            phases["healthy"]["recovered"] = _wait(lambda: _probe_arrived(backend, receiver), RECOVERY_TIMEOUT_S)
            for fault in faults:
                sent_before, failed_before = receiver.request_count, child.ask("failed_sends")
                apply_fault(receiver, fault)
                result = child.ask("phase", requests=requests)
                # The exporter really met the fault (a short phase may end before its first send).
                if fault == "delay-5s":
                    hit = _wait(lambda before=sent_before: receiver.request_count > before, RECOVERY_TIMEOUT_S)
                else:
                    hit = _wait(lambda before=failed_before: child.ask("failed_sends") > before, RECOVERY_TIMEOUT_S)
                result["fault_hit"] = hit
                # The exporter logs after the failed send that told us, and with spans, log records and
                # Sentry envelopes each sending, the one that warns may send a few seconds later.
                if fault == "delay-5s":
                    time.sleep(0.5)
                else:
                    _wait(lambda: child.ask("warnings")["export_warnings"] > 0, WARNING_TIMEOUT_S)
                result |= child.ask("warnings")  # the whole fault, not only while requests ran
                receiver.heal()
                if fault == "http-429":
                    time.sleep(1.1)  # Sentry drops (not queues) until the Retry-After passed
                receiver.clear()
                child.ask("probe")
                result["recovered"] = _wait(lambda: _probe_arrived(backend, receiver), RECOVERY_TIMEOUT_S)
                phases[fault] = result
        finally:
            child.close()
    return phases


def run_prometheus(llm: str, requests: int, warmup: int, faults: tuple[str, ...]) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    child = _spawn("--serve", "prometheus", "--llm", llm, "--target", "")
    url = child.ready["url"]
    try:
        child.ask("phase", requests=warmup)
        with Scraper(url).running() as scraper:
            phases["healthy"] = child.ask("phase", requests=requests)
        phases["healthy"] |= {"recovered": _scrape_ok(url), "scrapes": scraper.scrapes, "failed": scraper.failures}
        for fault in faults:
            if fault == "unreachable":  # Prometheus is down: nobody scrapes
                result = child.ask("phase", requests=requests)
                result["recovered"] = _scrape_ok(url)
            elif fault == "delay-5s":  # stalled scraper connections, while scraping goes on
                with stalled_connections(url, STALLED_SCRAPERS), Scraper(url).running() as scraper:
                    result = child.ask("phase", requests=requests)
                result |= {"scrapes": scraper.scrapes, "failed": scraper.failures, "slowest_s": scraper.slowest_s}
                result["recovered"] = _scrape_ok(url) and scraper.failures == 0
            elif fault == "port-taken":
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", 0))
                    taken.listen()
                    result = {"url": child.ask("reconfigure", port=taken.getsockname()[1])["url"]}
                    result |= child.ask("phase", requests=requests, fresh=False)
                result["recovered"] = None  # no endpoint to recover: setup() with a free port brings it back
            else:
                raise ValueError(f"unknown prometheus fault {fault!r}")
            phases[fault] = result
    finally:
        child.close()
    return phases


def run(
    quick: bool, backends: list[str], faults: list[str] | None, requests: int | None, output: Path
) -> dict[str, Any]:
    from otel_hakgal.demo.simulator import LLMSimulator

    started = time.perf_counter()
    requests = requests or (200 if quick else 20_000)
    warmup = max(10, min(500, requests // 10))
    results: dict[str, Any] = {}
    with LLMSimulator() as simulator:
        for backend in backends:
            wanted = tuple(f for f in faults_of(backend) if faults is None or f in faults)
            if backend == "prometheus":
                results[backend] = run_prometheus(simulator.base_url, requests, warmup, wanted)
            else:
                results[backend] = run_push(backend, simulator.base_url, requests, warmup, wanted)
    rows = _rows(results)
    report = {
        "command": COMMAND["command"],
        "quick": quick,
        "requests_per_phase": requests,
        "warmup": warmup,
        "phases": results,
        "rows": rows,
        "all_met": all(row["met"] for row in rows),
        "wall_s": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    return report


def _rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per backend x fault, with each target's verdict."""
    rows = []
    for backend, phases in results.items():
        healthy_p50 = phases["healthy"]["p50_s"]
        for fault, phase in phases.items():
            ratio = phase["p50_s"] / healthy_p50 if healthy_p50 > 0 else None
            allowed = max(1, math.ceil(phase["elapsed_s"] / 60))  # one per started minute
            queues_ok = all(depth <= cap for depth, cap in phase["queues"].values())
            checks = {
                "answered": phase["answered"] == phase["requests"],
                "p50": ratio is not None and ratio <= P50_RATIO_LIMIT,
                "rss": phase["rss_growth_mb"] < RSS_LIMIT_MB,
                "warnings": phase["export_warnings"] <= allowed
                and all(n <= allowed for n in phase["warnings_by_logger"].values()),
                "queues": queues_ok,
                "recovered": phase["recovered"] is not False,
                "fault hit": phase.get("fault_hit", True),
            }
            rows.append(
                {
                    "backend": backend,
                    "fault": fault,
                    "requests": phase["requests"],
                    "answered": phase["answered"],
                    "p50_ms": phase["p50_s"] * 1000,
                    "p50_ratio": ratio,
                    "rss_growth_mb": phase["rss_growth_mb"],
                    "warnings": sum(phase["warnings_by_logger"].values()),
                    "warnings_allowed": allowed,
                    "suppressed": phase["suppressed"],
                    "fullest_queue": max(phase["queues"].values(), key=lambda q: q[0] / q[1], default=None),
                    "recovered": phase["recovered"],
                    "checks": checks,
                    "met": all(checks.values()),
                }
            )
    return rows


def print_report(report: Mapping[str, Any]) -> None:
    print(f"POST /api/command {report['command']!r}; {report['requests_per_phase']} requests per phase")
    header = (
        f"{'backend':<12}{'fault':<12}{'answered':>10}{'p50 ms':>8}{'ratio':>7}{'RSS MB':>8}"
        f"{'warn':>6}{'supp':>7}{'queue':>12}{'recovered':>10}  targets"
    )
    print(header)
    print("-" * len(header))
    for row in report["rows"]:
        ratio = "-" if row["p50_ratio"] is None else f"{row['p50_ratio']:.2f}"
        queue = "-" if row["fullest_queue"] is None else f"{row['fullest_queue'][0]}/{row['fullest_queue'][1]}"
        recovered = {True: "yes", False: "NO", None: "n/a"}[row["recovered"]]
        failed = [name for name, ok in row["checks"].items() if not ok]
        verdict = "met" if not failed else "NOT met: " + ", ".join(failed)
        print(
            f"{row['backend']:<12}{row['fault']:<12}{row['answered']:>10}{row['p50_ms']:>8.2f}{ratio:>7}"
            f"{row['rss_growth_mb']:>8.1f}{row['warnings']:>6}{row['suppressed']:>7}{queue:>12}{recovered:>10}"
            f"  {verdict}"
        )
    print(
        f"targets: every request answered; p50 <= {P50_RATIO_LIMIT}x healthy; RSS growth < {RSS_LIMIT_MB:g} MB;"
        " <= 1 warning per started minute; queues within caps; delivery resumes"
    )
    print(f"all met: {report['all_met']}; wall time {report['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 requests per phase (a smoke run)")
    parser.add_argument("--requests", type=int, help="requests per phase (default 20,000; --quick 200)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset")
    parser.add_argument("--faults", help="comma-separated subset of the faults (default: all of each backend)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON result file (default {RESULTS})")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--llm", help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.llm, args.target)
        return 0
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    faults = [f for f in args.faults.split(",") if f] if args.faults else None
    if faults is not None and set(faults) - set(PUSH_FAULTS) - set(PULL_FAULTS):
        parser.error(f"unknown faults: {', '.join(sorted(set(faults) - set(PUSH_FAULTS) - set(PULL_FAULTS)))}")
    report = run(args.quick, backends, faults, args.requests, args.output)
    print_report(report)
    return 0 if report["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
