"""``otel-hakgal report``: indicators and tables from in-process metrics and from a live Prometheus."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_hakgal as hg
from otel_hakgal import cli
from otel_hakgal.backends.prometheus import label_name
from otel_hakgal.conventions import Attr, ErrorType, ProverResult, TokenType
from otel_hakgal.instruments import Instruments
from otel_hakgal.report import (
    INDICATORS,
    histogram_quantile,
    indicator_values,
    points_from_prometheus,
    render,
    snapshot_from_metrics,
    snapshot_from_points,
    snapshot_from_prometheus,
)
from otel_hakgal.testing import TelemetryRecorder
from otel_hakgal.testing.prometheus import PrometheusServer, require_binary, wait_for


def run_workload() -> None:
    """6 commands (1 error, 1 timeout), 5 LLM calls (deepseek 1 of 4 failed), 7 prover runs (z3 1 of 5 error)."""
    for i in range(4):
        try:
            with hg.command("ask", text=f"ask question {i}"):
                with hg.cache_lookup("prompt") as cache:
                    cache.set_hit(i > 0)
                with hg.llm_call("deepseek", "deepseek-chat") as call:
                    if i == 1:
                        call.fail(ErrorType.PROVIDER_ERROR)
                    else:
                        call.record_usage(100, 10)
                if i == 1:
                    with hg.llm_call("mistral_ai", "mistral-large-latest") as call:
                        call.record_usage(120, 12)
                with hg.prover("z3") as prover:
                    prover.set_result(ProverResult.ERROR if i == 3 else ProverResult.PROVED)
                if i == 3:
                    raise ValueError("boom")
        except ValueError:
            pass
    with hg.prover("z3") as prover:
        prover.set_result(ProverResult.UNKNOWN)
    for result in (ProverResult.PROVED, ProverResult.UNKNOWN):
        with hg.prover("pattern") as prover:
            prover.set_result(result)
    with hg.command("status"):
        pass
    with hg.command("learn") as learn:
        learn.fail(ErrorType.TIMEOUT)


def test_histogram_quantile_follows_prometheus() -> None:
    buckets = {0.1: 2.0, 0.5: 6.0, 1.0: 10.0, math.inf: 10.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.4)  # rank 5 in (0.1, 0.5]: 0.1 + 0.4 * 3/4
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.05)  # first bucket starts at 0
    assert histogram_quantile(0.95, {1.0: 1.0, math.inf: 10.0}) == 1.0  # in +Inf: the last finite bound
    assert histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None


# Ten z3 runs of 0.2 s to 1.01 s: only the slowest lies in the bucket (1, 2.5].
Z3_RUNS = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def test_quantiles_stay_within_the_recorded_range() -> None:
    reader = InMemoryMetricReader()
    instruments = Instruments.create(MeterProvider(metric_readers=[reader]))
    for seconds in Z3_RUNS:
        instruments.prover_duration.record(seconds, {Attr.PROVER_NAME: "z3", Attr.PROVER_RESULT: "proved"})
    z3 = snapshot_from_metrics(reader.get_metrics_data()).provers["z3"]
    p95 = z3.quantile(0.95)
    assert p95 is not None and 1.0 < p95 <= max(Z3_RUNS)  # bucket interpolation alone says 1.75
    assert z3.quantile(0.0) == min(Z3_RUNS)


def test_quantile_bounds() -> None:
    buckets = {0.25: 2.0, 0.5: 5.0, 1.0: 9.0, 2.5: 10.0, math.inf: 10.0}
    assert histogram_quantile(0.95, buckets, 0.2, 1.01) == pytest.approx(1.005)  # (1, 1.01] instead of (1, 2.5]
    assert histogram_quantile(0.1, buckets, 0.2, 1.01) == pytest.approx(0.225)  # [0.2, 0.25] instead of [0, 0.25]
    # Without min/max (Prometheus) the occupied buckets bound the estimate, +Inf standing for the last finite bound.
    assert histogram_quantile(0.01, {0.5: 0.0, 1.0: 4.0, math.inf: 4.0}) == pytest.approx(0.505)
    assert histogram_quantile(0.99, {1.0: 0.0, 2.5: 1.0, math.inf: 3.0}) == 2.5


def test_report_from_in_process_metrics(hakgal_telemetry: TelemetryRecorder) -> None:
    run_workload()
    snapshot = snapshot_from_metrics(hakgal_telemetry._memory.metrics())
    assert snapshot.commands["ask"].count == 4 and snapshot.commands["ask"].failures == 1
    assert snapshot.commands["learn"].failures == 1
    assert snapshot.providers["deepseek"].count == 4 and snapshot.providers["deepseek"].failures == 1
    assert snapshot.providers["deepseek"].input_tokens == 300
    assert snapshot.provers["z3"].results == {"proved": 3, "error": 1, "unknown": 1}
    assert snapshot.caches["prompt"].results["hit"] == 3
    values = {(i.key, key): value for i, key, value in indicator_values(snapshot)}
    assert values[("api_error_rate", None)] == pytest.approx(2 / 6)
    assert values[("llm_failure_rate", "deepseek")] == pytest.approx(1 / 4)
    assert values[("llm_failure_rate", "mistral_ai")] == 0
    assert values[("prover_error_rate", "z3")] == pytest.approx(1 / 5)
    assert values[("prover_error_rate", "pattern")] == 0
    assert values[("average_response_time", None)] is not None

    text = render(snapshot)
    lines = text.splitlines()
    indicator_line = next(line for line in lines if line.startswith("API error rate"))
    assert "33.3 %" in indicator_line and "> 5.0 %" in indicator_line and indicator_line.endswith("ALERT")
    assert next(line for line in lines if "[mistral_ai]" in line).endswith("ok")
    assert next(line for line in lines if line.startswith("Average response time")).endswith("ok")
    for heading in ("Alert indicators", "Commands", "Provers", "LLM providers", "Caches"):
        assert heading in lines
    ask_row = next(line for line in lines if line.startswith("ask "))
    assert ask_row.split()[:4] == ["ask", "4", "1", "25.0"]


class FakePrometheus:
    """Answers ``sum by (labels) (series)`` from a list of samples, as Prometheus would."""

    def __init__(self, samples: dict[str, list[tuple[dict[str, str], float]]]) -> None:
        self.samples = samples
        self.queries: list[str] = []

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        self.queries.append(promql)
        match = re.fullmatch(r"sum by \((?P<by>[^)]*)\) \((increase\()?(?P<series>\w+)(\[\w+\]\))?\)", promql)
        assert match, promql
        by = match["by"].split(", ")
        sums: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
        for labels, value in self.samples.get(match["series"], []):
            sums[tuple((k, labels[k]) for k in by if labels.get(k))] += value
        return [(dict(key), value) for key, value in sums.items()]


def test_prometheus_series_become_the_same_points() -> None:
    command, outcome, le = label_name(Attr.COMMAND_NAME), label_name(Attr.COMMAND_OUTCOME), "le"
    provider, token_type = label_name(Attr.GEN_AI_PROVIDER_NAME), label_name(Attr.GEN_AI_TOKEN_TYPE)
    hit = label_name(Attr.CACHE_HIT)
    ok, failed = {command: "ask", outcome: "success"}, {command: "ask", outcome: "error", "error_type": "E"}
    fake = FakePrometheus(
        {
            "hakgal_command_duration_seconds_count": [(ok, 3.0), (failed, 1.0)],
            "hakgal_command_duration_seconds_sum": [(ok, 1.5), (failed, 0.5)],
            "hakgal_command_duration_seconds_bucket": [
                *(({**ok, le: b}, n) for b, n in (("0.5", 2.0), ("1.0", 3.0), ("+Inf", 3.0))),
                *(({**failed, le: b}, n) for b, n in (("0.5", 1.0), ("1.0", 1.0), ("+Inf", 1.0))),
            ],
            "gen_ai_client_token_usage_sum": [
                ({provider: "deepseek", token_type: TokenType.INPUT}, 300.0),
                ({provider: "deepseek", token_type: TokenType.OUTPUT}, 30.0),
            ],
            "hakgal_cache_lookups_total": [({label_name(Attr.CACHE_NAME): "prompt", hit: "true"}, 3.0)],
        }
    )
    snapshot = snapshot_from_points(points_from_prometheus(fake), source="fake")
    ask = snapshot.commands["ask"]
    assert (ask.count, ask.failures, ask.duration_sum) == (4.0, 1.0, 2.0)
    assert ask.buckets == {0.5: 3.0, 1.0: 4.0, math.inf: 4.0}
    assert (ask.duration_min, ask.duration_max) == (None, None)
    assert snapshot.providers["deepseek"].input_tokens == 300 and snapshot.providers["deepseek"].output_tokens == 30
    assert snapshot.caches["prompt"].results["hit"] == 3
    count_query = "sum by (hakgal_command_name, hakgal_command_outcome) (hakgal_command_duration_seconds_count)"
    assert count_query in fake.queries
    windowed = FakePrometheus({})
    points_from_prometheus(windowed, window="5m")
    assert windowed.queries and all(q.endswith("[5m]))") for q in windowed.queries)


def test_report_without_data_says_so() -> None:
    text = render(snapshot_from_metrics(None, source="nothing"))
    assert text.count("no data") == len(INDICATORS)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """The workload recorded in this process, served by the prometheus backend and scraped by a real Prometheus."""
    binary = require_binary("prometheus")
    handle = hg.setup(backends=["prometheus", "memory"], settings={"prometheus.port": 0})
    try:
        run_workload()
        target = f"127.0.0.1:{handle.backend('prometheus').port}"
        with PrometheusServer(tmp_path_factory.mktemp("prometheus"), [target], binary=binary) as server:
            server.memory = handle.backend("memory")  # type: ignore[attr-defined]
            wait_for(
                lambda: server.client.query("sum(hakgal_command_duration_seconds_count)") == [({}, 6.0)],
                30,
                "Prometheus to scrape the workload",
            )
            yield server
    finally:
        handle.shutdown()


@pytest.mark.system
def test_report_from_a_live_prometheus_matches_in_process(
    live: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from_prometheus = snapshot_from_prometheus(live.url)
    in_process = snapshot_from_metrics(live.memory.metrics())  # type: ignore[attr-defined]
    for table in ("commands", "provers", "providers", "caches"):
        ours, theirs = getattr(from_prometheus, table), getattr(in_process, table)
        assert set(ours) == set(theirs), table
        for key in ours:
            assert ours[key].count == theirs[key].count, (table, key)
            assert ours[key].failures == theirs[key].failures, (table, key)
            assert ours[key].duration_sum == pytest.approx(theirs[key].duration_sum), (table, key)
            assert ours[key].buckets == theirs[key].buckets, (table, key)
            assert dict(ours[key].results) == dict(theirs[key].results), (table, key)
            assert ours[key].input_tokens == theirs[key].input_tokens, (table, key)
            assert dict(ours[key].cost) == pytest.approx(dict(theirs[key].cost)), (table, key)

    assert cli.main(["report", "--prometheus", live.url]) == 0
    out = capsys.readouterr().out
    assert f"Prometheus {live.url}, since start" in out
    assert next(line for line in out.splitlines() if "[deepseek]" in line).endswith("ALERT")
    # The tables are the same as from in-process metrics, except the source line and what the
    # recorded min/max add to the quantiles (Prometheus has no min/max).
    for group in (*in_process.commands.values(), *in_process.provers.values(), *in_process.providers.values()):
        group.duration_min = group.duration_max = None
    assert out.splitlines()[1:] == render(in_process).splitlines()[1:]


@pytest.mark.system
def test_indicator_promql_agrees_with_the_report(live: PrometheusServer) -> None:
    """The alert rules' expressions (lifetime form) give the values the report computes."""
    snapshot = snapshot_from_prometheus(live.url)
    for indicator, key, value in indicator_values(snapshot):
        result = {labels.get(indicator.by or "", None): v for labels, v in live.client.query(indicator.expr())}
        assert result[key] == pytest.approx(value), indicator.key


@pytest.mark.system
def test_report_with_a_window(live: PrometheusServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "--prometheus", live.url, "--window", "5m"]) == 0
    out = capsys.readouterr().out
    assert "last 5m" in out and "LLM providers" in out


def test_report_on_an_unreachable_prometheus_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    from otel_hakgal.testing.prometheus import free_port

    assert cli.main(["report", "--prometheus", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot read" in capsys.readouterr().err
