"""The overhead benchmark measures what it claims: every variant really sends to its receiver.

Guards correctness, not timing: each variant's server process is set up exactly
as the benchmark sets it up, serves a few real HTTP requests, and its telemetry
must arrive where the benchmark counts it.
"""

from __future__ import annotations

import time
from types import ModuleType

import pytest

from tests.support.benchmarks import load_benchmark

pytestmark = [pytest.mark.system, pytest.mark.slow]

REQUESTS = 3


def _load() -> ModuleType:
    return load_benchmark("overhead")


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    return _load()


def test_every_variant_sends_to_its_receiver(overhead: ModuleType) -> None:
    variants = list(overhead.VARIANTS)
    bench = overhead.Bench(variants)
    try:
        for variant in variants:
            port = bench.servers[variant].ready["port"]
            for _ in range(REQUESTS):
                assert overhead.timed_request(port) > 0
        flushed = {v: s.ask("flush") for v, s in bench.servers.items()}
        counts = bench.infra.ask("counts")
        for _ in range(40):  # Sentry's transport and the receivers finish asynchronously
            if all(overhead.received_spans(counts, v) > 0 for v in overhead.EXPORTING):
                break
            time.sleep(0.25)
            counts = bench.infra.ask("counts")
    finally:
        bench.close()

    # Backends that export: spans at the receiver the benchmark counts, none dropped in process.
    assert counts["otlp"]["otlp_spans"] >= REQUESTS
    assert counts["sentry"]["transactions"] == REQUESTS
    assert counts["sentry"]["transaction_spans"] > REQUESTS  # children inside each transaction
    assert counts["sentry-otlp"]["sentry_otlp_spans"] >= REQUESTS
    assert counts["sentry+otlp"]["transactions"] == REQUESTS and counts["sentry+otlp"]["otlp_spans"] >= REQUESTS
    assert counts["sentry-sdk-flask"]["transactions"] == REQUESTS  # sentry-sdk's own Flask tracing
    assert all(entry["dropped_in_process"] == 0 for entry in flushed.values())
    # The OTel baseline really records and exports, to its null exporter.
    assert flushed["otel-flask"]["null_exported"] >= REQUESTS
    # Variants without a receiver send nowhere.
    for variant in ("bare", "none", "otel-flask"):
        assert variant not in counts


def test_throughput_counts_every_span(overhead: ModuleType) -> None:
    bench = overhead.Bench(["sentry"])
    try:
        before = overhead.received_spans(bench.counts(), "sentry")
        result = bench.servers["sentry"].ask("throughput", spans=overhead.BURST)
        received = overhead.received_spans(bench.counts(), "sentry") - before
    finally:
        bench.close()
    assert result["spans"] == overhead.BURST and result["dropped_in_process"] == 0
    assert received == result["spans"]  # spans in equal spans received
