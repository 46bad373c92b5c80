"""What in-process tail sampling costs: request-thread CPU, memory per buffered trace, export CPU.

Run: ``.venv/bin/python benchmarks/tail_sampling.py`` (``--quick`` for a short smoke run).

Every trace is the same span tree, through the public API: a command with a
query holding a cache lookup, an LLM call and a prover (five spans), as HAK-GAL
answers ``ask Is Rome a city?`` from a warm process. Variants:

- ``off``: ``[sampling.tail]`` disabled (every span straight to the batch processor);
- ``keep-1.0``: tail sampling on, ``keep_ratio = 1.0`` (every trace held, then kept);
- ``keep-0.1``: tail sampling on, ``keep_ratio = 0.1`` (the default ratio).

Each variant runs in a process of its own (a child of this script) with the
``otlp`` backend exporting to an :class:`~otel_hakgal.testing.OtlpReceiver` on
127.0.0.1 hosted by this process (one receiver per variant), so receiving and
decoding costs no measured CPU. Variants are interleaved in shuffled order
every round; figures are medians over the rounds.

Sections:

1. *request thread*: thread CPU (``time.thread_time``) of the thread making the
   spans, per trace and per span, while it produces traces in bursts of
   :data:`BURST` (each burst's export flushed outside the timed part, so no
   queue overflows); the ratio of each sampling variant to ``off``.
2. *memory*: in a fresh process per variant (``off``, ``keep-0.1``), ``N``
   traces held open (local root started, its four children ended, the root
   not ended), growth per held trace and per held span, by ``tracemalloc`` and
   RSS (two passes, tracemalloc off in the RSS pass); then the roots end and
   what remains is shown. The sampler's own share is ``keep-0.1`` minus
   ``off`` (which holds only the open roots).
3. *export*: process CPU (``time.process_time``: every thread, the batch
   exporter's included) per trace from the first span to the end of a
   ``force_flush`` of the span processors (which exports on the calling
   thread), and the spans the receiver got; the ratio of ``keep-0.1`` to
   ``keep-1.0``, for the whole and for the export's part (the process CPU
   less the producing thread's while it made the spans).

Prints a table and writes ``benchmarks/results/tail_sampling.json``. Errors (a
queue drop, a failed send, a warning, a trace decided early, spans missing at
the receiver) are collected in ``errors``; there are no timing targets.
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _line_protocol import Child, reply

VARIANTS: tuple[str, ...] = ("off", "keep-1.0", "keep-0.1")
KEEP_RATIO: Mapping[str, float | None] = {"off": None, "keep-1.0": 1.0, "keep-0.1": 0.1}
MEMORY_VARIANTS: tuple[str, ...] = ("off", "keep-0.1")
SPANS_PER_TRACE = 5  # command, query, cache lookup, LLM call, prover
HELD_SPANS_PER_TRACE = SPANS_PER_TRACE - 1  # a held trace: its children ended, its root open
BURST = 300  # traces per burst: 1,500 spans, under the batch processor's queue (2048)
QUESTION = "Is Rome a city?"
RESULTS = Path(__file__).resolve().parent / "results" / "tail_sampling.json"


def _spawn(variant: str, endpoint: str) -> Child:
    """The process of one variant (this script with ``--serve``)."""
    return Child(__file__, "--serve", variant, "--endpoint", endpoint, exit_timeout_s=30)


# --- the variant process ------------------------------------------------------------------


def settings_for(variant: str, endpoint: str) -> dict[str, Any]:
    """``hg.setup`` settings of ``variant``, exporting to ``endpoint``."""
    ratio = KEEP_RATIO[variant]
    tail: dict[str, Any] = {"enabled": ratio is not None}
    if ratio is not None:
        tail["keep_ratio"] = ratio
    return {"otlp.endpoint": endpoint, "sampling.tail": tail}


def children() -> None:
    """The four children of one trace, under the current span (the query and what it runs)."""
    import otel_hakgal as hg
    from otel_hakgal.conventions import CacheName, ProverResult

    with hg.query(QUESTION) as query:
        query.set_formula("IsCity(Rome)")
        with hg.cache_lookup(CacheName.PROMPT) as cache:
            cache.miss()
        with hg.llm_call("ollama", "qwen2.5:7b", server_address="127.0.0.1", server_port=11434) as llm:
            llm.record_usage(120, 40, finish_reasons=["stop"], response_model="qwen2.5:7b")
        with hg.prover("z3", order=1) as prover:
            prover.set_result(ProverResult.PROVED)
        query.set_answer("yes")


def one_trace() -> None:
    """One request's spans: the command (the local root) around :func:`children`."""
    import otel_hakgal as hg

    with hg.command("ask", text=QUESTION):
        children()


class Service:
    """One variant's configuration, measured on command."""

    def __init__(self, variant: str, endpoint: str) -> None:
        import otel_hakgal as hg
        from otel_hakgal.testing.outages import WarningCapture

        self.variant = variant
        self.handle = hg.setup(backends=["otlp"], settings=settings_for(variant, endpoint))
        self.warnings = WarningCapture().__enter__()

    # --- helpers ---

    def flush(self) -> None:
        """Export what the span processors hold (not the metrics: their export is not per request)."""
        for processor in self.handle.span_processors:
            processor.force_flush(30_000)

    def tail(self) -> Any:
        """The running tail sampler, or None (no public accessor: the pipeline's fan-out processor holds it)."""
        from otel_hakgal import pipeline

        return pipeline._PLUMBING.fan_out.tail

    def kept_traces(self) -> int:
        """Traces kept so far by tail sampling (counted by the sampler's tally)."""
        from otel_hakgal.conventions import SamplingDecision
        from otel_hakgal.tail_sampling import TALLY

        return sum(n for (decision, _), n in TALLY.decisions().items() if decision is SamplingDecision.KEPT)

    def _produce(self, traces: int, burst: int, on_burst_end: Callable[[], None]) -> tuple[int, float]:
        """``traces`` traces in bursts; returns (spans ended, request-thread CPU seconds of producing them)."""
        ended_before = self.handle.spans_ended
        thread_s = 0.0
        done = 0
        while done < traces:
            n = min(burst, traces - done)
            start = time.thread_time()
            for _ in range(n):
                one_trace()
            thread_s += time.thread_time() - start
            done += n
            on_burst_end()
        return self.handle.spans_ended - ended_before, thread_s

    # --- measurements ---

    def warmup(self, traces: int) -> dict[str, Any]:
        self._produce(traces, BURST, self.flush)
        return {}

    def request_cpu(self, traces: int, burst: int = BURST) -> dict[str, Any]:
        """Section 1: the request thread's CPU producing ``traces`` traces (the flush between bursts untimed)."""
        self.flush()
        kept = self.kept_traces()
        spans, thread_s = self._produce(traces, burst, self.flush)
        return {
            "traces": traces,
            "spans": spans,
            "thread_s": thread_s,
            "per_trace_s": thread_s / traces,
            "per_span_s": thread_s / spans if spans else None,
            "kept_traces": self._kept_since(kept, traces),
        }

    def export_cpu(self, traces: int, burst: int = BURST) -> dict[str, Any]:
        """Section 3: process CPU per trace, producing and exporting ``traces`` traces, flushed at the end."""
        self.flush()
        kept = self.kept_traces()
        start, wall = time.process_time(), time.perf_counter()
        spans, produce_s = self._produce(traces, burst, self.flush)
        self.flush()
        process_s = time.process_time() - start
        kept_traces = self._kept_since(kept, traces)
        return {
            "traces": traces,
            "spans": spans,
            "process_s": process_s,
            "wall_s": time.perf_counter() - wall,
            "per_trace_s": process_s / traces,
            # The rest: the batch processor's export (its worker, and the flushes on this thread), per trace.
            "export_per_trace_s": (process_s - produce_s) / traces,
            "kept_traces": kept_traces,
            "expected_spans": kept_traces * SPANS_PER_TRACE,
        }

    def _kept_since(self, before: int, traces: int) -> int:
        return traces if KEEP_RATIO[self.variant] is None else self.kept_traces() - before

    def memory(self, traces: int, chunk: int) -> dict[str, Any]:
        """Section 2: hold ``traces`` traces open, measure, end them, measure; an RSS pass then a tracemalloc pass."""
        rss = self._hold(traces, chunk, _rss)
        # RSS seldom shrinks after a free (the allocator keeps its arenas): holding as many traces again
        # shows whether the memory freed is reused (no new growth) or lost.
        again = self._hold(traces, chunk, _rss)
        rss["regrowth_per_trace"] = (again["holding"] - rss["holding"]) / traces
        return {"traces": traces, "rss": rss, "tracemalloc": self._traced(traces, chunk)}

    def _traced(self, traces: int, chunk: int) -> dict[str, Any]:
        tracemalloc.start()
        try:
            return self._hold(traces, chunk, lambda: tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()

    def _hold(self, traces: int, chunk: int, measure: Callable[[], int]) -> dict[str, Any]:
        """Bytes (by ``measure``) before, while ``traces`` traces are held open, and after they ended."""
        import otel_hakgal as hg

        self.flush()
        gc.collect()
        before = measure()
        held: list[tuple[contextvars.Context, Any]] = []
        for index in range(traces):
            # Each trace in a context of its own: its root stays current there, and ends there later.
            context = contextvars.copy_context()
            root = hg.command("ask", text=QUESTION)
            context.run(root.__enter__)
            context.run(children)
            held.append((context, root))
            if (index + 1) % chunk == 0:
                self.flush()  # without tail sampling the ended children go to export now
        self.flush()
        gc.collect()
        holding = measure()
        tail = self.tail()
        open_traces = tail.open_traces if tail is not None else 0
        held_spans = tail.held_spans if tail is not None else 0
        for index, (context, root) in enumerate(held):
            context.run(root.__exit__, None, None, None)
            if (index + 1) % chunk == 0:
                self.flush()  # kept traces go to the batch processor whole: stay under its queue
        held.clear()
        self.flush()
        gc.collect()
        after = measure()
        return {
            "before": before,
            "holding": holding,
            "after": after,
            "open_traces": open_traces,
            "held_spans": held_spans,
            "growth_per_trace": (holding - before) / traces,
            "residual_per_trace": (after - before) / traces,
            "still_open": tail.open_traces if tail is not None else 0,
        }

    def errors(self) -> dict[str, Any]:
        """What went wrong in this process so far: queue drops, failed sends, warnings, early decisions."""
        from otel_hakgal.tail_sampling import TALLY

        delivery = self.handle.backend("otlp").delivery
        failed = sum(delivery.errors.values()) + sum(n for status, n in delivery.statuses.items() if status >= 400)
        return {
            "dropped_in_process": self.handle.stats()["otlp"].dropped,
            "failed_sends": failed,
            "warnings": [f"{name}: {message}" for name, message in self.warnings.records][:10],
            "incomplete_traces": {loss.value: n for loss, n in TALLY.losses().items() if n},
        }

    def close(self) -> None:
        self.warnings.__exit__()
        self.handle.shutdown(timeout_s=10)


def _rss() -> int:
    import psutil

    rss: int = psutil.Process().memory_info().rss
    return rss


def serve(variant: str, endpoint: str) -> None:
    service = Service(variant, endpoint)
    reply({"pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        command = message.pop("command")
        if command == "exit":
            service.close()
            reply("bye")
            break
        handler = {
            "warmup": service.warmup,
            "request_cpu": service.request_cpu,
            "export_cpu": service.export_cpu,
            "memory": service.memory,
            "errors": service.errors,
        }[command]
        reply(handler(**message))


# --- this process: receivers, rounds, the report ----------------------------------------------


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(quick: bool, output: Path, rounds: int | None = None, traces: int | None = None) -> dict[str, Any]:
    from otel_hakgal.testing import OtlpReceiver

    started = time.perf_counter()
    rounds = rounds or (2 if quick else 10)
    traces = traces or (200 if quick else 1000)  # per round, per variant, per CPU section
    held = 300 if quick else 5000
    warmup = 50 if quick else 300
    chunk = 100
    errors: list[str] = []
    request: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    export: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    memory: dict[str, dict[str, Any]] = {}
    process_errors: dict[str, dict[str, Any]] = {}

    receivers = {v: OtlpReceiver().start() for v in (*VARIANTS, *(f"memory {m}" for m in MEMORY_VARIANTS))}
    try:
        # Sections 1 and 3: one process per variant, interleaved.
        children_ = {v: _spawn(v, receivers[v].endpoint) for v in VARIANTS}
        try:
            for child in children_.values():
                child.ask("warmup", traces=warmup)
            order = list(VARIANTS)
            for _ in range(rounds):
                random.shuffle(order)
                for variant in order:
                    request[variant].append(children_[variant].ask("request_cpu", traces=traces))
                random.shuffle(order)
                for variant in order:
                    receiver = receivers[variant]
                    receiver.clear()
                    result = children_[variant].ask("export_cpu", traces=traces)
                    result["received_spans"] = len(receiver.spans())  # the flush returned after the receiver's reply
                    export[variant].append(result)
            for variant, child in children_.items():
                process_errors[variant] = child.ask("errors")
        finally:
            for child in children_.values():
                child.close()

        # Section 2: a fresh process per variant, one after the other.
        for variant in MEMORY_VARIANTS:
            child = _spawn(variant, receivers[f"memory {variant}"].endpoint)
            try:
                child.ask("warmup", traces=warmup)
                memory[variant] = child.ask("memory", traces=held, chunk=chunk)
                process_errors[f"memory {variant}"] = child.ask("errors")
            finally:
                child.close()
    finally:
        for receiver in receivers.values():
            receiver.stop()

    for where, found in process_errors.items():
        if found["dropped_in_process"]:
            errors.append(f"{where}: {found['dropped_in_process']} spans dropped by a full queue")
        if found["failed_sends"]:
            errors.append(f"{where}: {found['failed_sends']} failed sends")
        errors.extend(f"{where}: warning {warning}" for warning in found["warnings"])
        if found["incomplete_traces"]:
            errors.append(f"{where}: traces decided early {found['incomplete_traces']}")
    for variant, runs in export.items():
        for result in runs:
            if result["received_spans"] != result["expected_spans"]:
                errors.append(
                    f"{variant}: receiver got {result['received_spans']} spans, expected {result['expected_spans']}"
                )
    for variant, runs in request.items():
        for result in runs:
            if result["spans"] != result["traces"] * SPANS_PER_TRACE:
                errors.append(f"{variant}: {result['spans']} spans ended for {result['traces']} traces")
    for variant, result in memory.items():
        for how in ("rss", "tracemalloc"):
            expected = held if KEEP_RATIO[variant] is not None else 0
            held_now = result[how]["open_traces"]
            if held_now != expected or result[how]["still_open"]:
                errors.append(f"memory {variant} ({how}): {held_now} traces held, expected {expected}")

    request_rows = _request_section(request)
    report = {
        "quick": quick,
        "settings": {
            "rounds": rounds,
            "traces_per_round": traces,
            "burst": BURST,
            "spans_per_trace": SPANS_PER_TRACE,
            "held_traces": held,
            "warmup": warmup,
        },
        "request_thread": request_rows,
        "memory": _memory_section(memory),
        "export": _export_section(export),
        "errors": errors,
        "wall_s": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    return report


def _request_section(request: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for variant, runs in request.items():
        per_trace = [r["per_trace_s"] for r in runs]
        rows[variant] = {
            "traces": sum(r["traces"] for r in runs),
            "spans": sum(r["spans"] for r in runs),
            "kept_traces": sum(r["kept_traces"] for r in runs),
            "per_trace_s": _spread(per_trace),
            "per_span_s": statistics.median(per_trace) / SPANS_PER_TRACE,
        }
    off = rows["off"]["per_trace_s"]["median"]
    for variant, row in rows.items():
        mine = row["per_trace_s"]["median"]
        row["ratio_to_off"] = mine / off if off > 0 else None
        row["added_per_span_s"] = (mine - off) / SPANS_PER_TRACE
        # The same ratio round by round (the variants of a round ran minutes apart at most, under one load).
        paired = [a["per_trace_s"] / b["per_trace_s"] for a, b in zip(request[variant], request["off"], strict=True)]
        row["paired_ratio_to_off"] = _spread(paired)
    return rows


def _memory_section(memory: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for variant, result in memory.items():
        row: dict[str, Any] = {"traces": result["traces"]}
        for how in ("rss", "tracemalloc"):
            measured = dict(result[how])
            measured["growth_per_held_span"] = measured["growth_per_trace"] / HELD_SPANS_PER_TRACE
            row[how] = measured
        rows[variant] = row
    if "off" in rows and "keep-0.1" in rows:  # the sampler's own share: buffered children, its bookkeeping
        sampler: dict[str, Any] = {}
        for how in ("rss", "tracemalloc"):
            per_trace = rows["keep-0.1"][how]["growth_per_trace"] - rows["off"][how]["growth_per_trace"]
            sampler[how] = {"per_trace": per_trace, "per_held_span": per_trace / HELD_SPANS_PER_TRACE}
        rows["sampler"] = sampler
    return rows


def _export_section(export: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per variant: process CPU per trace, spans received; ``export_only_s``: the export's part (process CPU
    minus the producing thread's CPU while it made the spans, in the same run)."""
    rows: dict[str, Any] = {}
    for variant, runs in export.items():
        per_trace = _spread([r["per_trace_s"] for r in runs])
        rows[variant] = {
            "traces": sum(r["traces"] for r in runs),
            "spans": sum(r["spans"] for r in runs),
            "kept_traces": sum(r["kept_traces"] for r in runs),
            "expected_spans": sum(r["expected_spans"] for r in runs),
            "received_spans": sum(r["received_spans"] for r in runs),
            "per_trace_s": per_trace,
            "export_only_s": statistics.median(r["export_per_trace_s"] for r in runs),
        }
    full = rows["keep-1.0"]
    for row in rows.values():
        row["cpu_ratio_to_keep_1"] = row["per_trace_s"]["median"] / full["per_trace_s"]["median"]
        full_export = full["export_only_s"]
        row["export_only_ratio_to_keep_1"] = row["export_only_s"] / full_export if full_export > 0 else None
        received = full["received_spans"]
        row["received_ratio_to_keep_1"] = row["received_spans"] / received if received else None
    return rows


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.1f}"


def _paired(spread: Mapping[str, float]) -> str:
    return f"{spread['median']:.2f} ({spread['min']:.2f}-{spread['max']:.2f})"


def _kb(size: float) -> str:
    return f"{size / 1024:,.2f}"


def print_report(report: Mapping[str, Any]) -> None:
    settings = report["settings"]
    print(
        f"tail sampling: {settings['spans_per_trace']} spans per trace (command > query > cache, LLM, prover);"
        f" {settings['rounds']} rounds x {settings['traces_per_round']} traces per variant and section"
    )
    print("\n1. request thread CPU (time.thread_time), medians over rounds")
    header = (
        f"  {'variant':<10}{'us/trace':>10}{'min':>9}{'max':>9}{'us/span':>9}{'+us/span':>10}{'x off':>7}"
        f"{'paired x off (min-max)':>25}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for variant, row in report["request_thread"].items():
        cost = row["per_trace_s"]
        print(
            f"  {variant:<10}{_us(cost['median']):>10}{_us(cost['min']):>9}{_us(cost['max']):>9}"
            f"{_us(row['per_span_s']):>9}{_us(row['added_per_span_s']):>10}{row['ratio_to_off']:>7.2f}"
            f"{_paired(row['paired_ratio_to_off']):>25}"
        )
    print("  paired: the ratio to off within each round, median (min-max) over the rounds")
    memory = report["memory"]
    print(f"\n2. memory, {settings['held_traces']} traces held open (4 children ended each, roots open)")
    header = (
        f"  {'variant':<10}{'measure':<13}{'held':>6}{'KB/trace':>10}{'KB/span':>9}{'after end KB/trace':>20}"
        f"{'MB held':>9}{'MB after':>10}{'re-held KB/trace':>18}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for variant in MEMORY_VARIANTS:
        if variant not in memory:
            continue
        for how in ("tracemalloc", "rss"):
            m = memory[variant][how]
            regrowth = m.get("regrowth_per_trace")
            print(
                f"  {variant:<10}{how:<13}{m['open_traces']:>6}{_kb(m['growth_per_trace']):>10}"
                f"{_kb(m['growth_per_held_span']):>9}{_kb(m['residual_per_trace']):>20}"
                f"{(m['holding'] - m['before']) / 2**20:>9.1f}{(m['after'] - m['before']) / 2**20:>10.1f}"
                f"{'-' if regrowth is None else _kb(regrowth):>18}"
            )
    print(
        "  KB/span: per held span (4 per trace; the root is open, not held); re-held: RSS growth past the first"
        " peak when as many traces are held again (about 0: the memory freed is reused)"
    )
    if "sampler" in memory:
        for how in ("tracemalloc", "rss"):
            s = memory["sampler"][how]
            print(
                f"  sampler's share ({how}, keep-0.1 - off): {_kb(s['per_trace'])} KB per held trace,"
                f" {_kb(s['per_held_span'])} KB per held span"
            )
    print("\n3. export: process CPU (time.process_time, all threads) per trace incl. force_flush to the receiver")
    header = (
        f"  {'variant':<10}{'us/trace':>10}{'min':>9}{'max':>9}{'kept':>7}{'received':>10}{'CPU x1.0':>10}"
        f"{'export us':>11}{'export x1.0':>13}{'spans x1.0':>12}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for variant, row in report["export"].items():
        cost = row["per_trace_s"]
        export_ratio, received_ratio = row["export_only_ratio_to_keep_1"], row["received_ratio_to_keep_1"]
        print(
            f"  {variant:<10}{_us(cost['median']):>10}{_us(cost['min']):>9}{_us(cost['max']):>9}"
            f"{row['kept_traces']:>7}{row['received_spans']:>10}{row['cpu_ratio_to_keep_1']:>10.2f}"
            f"{_us(row['export_only_s']):>11}{'-' if export_ratio is None else f'{export_ratio:.2f}':>13}"
            f"{'-' if received_ratio is None else f'{received_ratio:.3f}':>12}"
        )
    print("  export us: process CPU per trace minus what the producing thread spent making the spans (same run)")
    errors = report["errors"]
    print(f"\nerrors: {len(errors) or 'none'}")
    for error in errors[:20]:
        print(f"  {error}")
    print(f"wall time {report['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 200 traces, 300 held (a smoke run)")
    parser.add_argument("--rounds", type=int, help="rounds per CPU section (default 10; --quick 2)")
    parser.add_argument("--traces", type=int, help="traces per round and variant (default 1000; --quick 200)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON result file (default {RESULTS})")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.endpoint)
        return 0
    report = run(args.quick, args.output, args.rounds, args.traces)
    print_report(report)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
