"""``otel-hakgal collector-config``: tail-sampling policies from ``[sampling.tail]``, the YAML, the shipped files."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_hakgal import cli
from otel_hakgal.collector_config import (
    CollectorConfigError,
    CollectorOptions,
    gateway_config,
    generate,
    sampler_config,
    tail_sampling_policies,
    to_yaml,
)
from otel_hakgal.config import Config, TailRule, TailSamplingSettings, load_config
from tests.support.collector import require_collector, validate
from tests.support.processes import ROOT

SHIPPED = ROOT / "configs" / "collector"
OPTIONS = CollectorOptions(gateway_listen="127.0.0.1:14318", samplers=("127.0.0.1:14317", "127.0.0.1:14327"))


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator reads the environment as the layer does: none of the test runner's settings may leak in."""
    import os

    for name in list(os.environ):
        if name.startswith(("OTEL_", "SENTRY_")):
            monkeypatch.delenv(name)


def _config(toml: str, tmp_path: Path) -> Config:
    path = tmp_path / "hakgal.toml"
    path.write_text(toml, encoding="utf-8")
    return load_config(path, environ={})


RULES = (
    TailRule("hakgal.prover.result", "timeout", 1.0, "prover-timeout"),
    TailRule("hakgal.cache.hit"),  # present
    TailRule("hakgal.kb.fact_count", 3),
    TailRule("gen_ai.usage.cost", 0.5, 0.25, "cost"),
    TailRule("cache.hit", True, 0.5),
    TailRule("never", "x", 0.0),
)


def test_every_reason_to_keep_has_its_policy() -> None:
    tail = TailSamplingSettings(keep_ratio=0.1, keep_slower_than_s=2.5, rules=RULES)
    policies = {policy["name"]: policy for policy in tail_sampling_policies(tail)}
    assert list(policies) == [
        "errors", "slow", "prover-timeout", "hakgal.cache.hit", "hakgal.kb.fact_count", "cost", "cache.hit",
        "keep-ratio",
    ]  # fmt: skip
    assert policies["errors"] == {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}
    assert policies["slow"]["latency"] == {"threshold_ms": 2500}
    assert policies["prover-timeout"]["string_attribute"] == {"key": "hakgal.prover.result", "values": ["timeout"]}
    assert policies["hakgal.cache.hit"]["ottl_condition"]["span"] == ['attributes["hakgal.cache.hit"] != nil']
    assert policies["hakgal.kb.fact_count"]["numeric_attribute"] == {
        "key": "hakgal.kb.fact_count", "min_value": 3, "max_value": 3,
    }  # fmt: skip
    cost = policies["cost"]  # a ratio below 1: the rule AND a probabilistic policy
    assert cost["type"] == "and"
    match, ratio = cost["and"]["and_sub_policy"]
    assert match["ottl_condition"]["span"] == ['attributes["gen_ai.usage.cost"] == 0.5']
    assert ratio["probabilistic"] == {"sampling_percentage": 25.0}
    boolean = policies["cache.hit"]["and"]["and_sub_policy"][0]
    assert boolean["boolean_attribute"] == {"key": "cache.hit", "value": True}
    assert policies["keep-ratio"]["probabilistic"] == {"sampling_percentage": 10.0}


def test_a_zero_keep_ratio_keeps_only_what_the_rules_keep() -> None:
    names = [policy["name"] for policy in tail_sampling_policies(TailSamplingSettings(keep_ratio=0.0))]
    assert names == ["errors", "slow"]


def test_sampler_and_gateway_from_the_toml(tmp_path: Path) -> None:
    config = _config(
        """
        backends = ["otlp"]
        [sampling.tail]
        keep_ratio = 0.5
        max_open_traces = 500
        [otlp]
        endpoint = "http://127.0.0.1:4318/"
        compression = "gzip"
        headers = { authorization = "Bearer s3cret" }
        """,
        tmp_path,
    )
    options = dataclasses.replace(OPTIONS, decision_wait_s=2.0)
    sampler = sampler_config(config, options)
    processor = sampler["processors"]["tail_sampling"]
    assert processor["decision_wait"] == "2s" and processor["num_traces"] == 500
    assert sampler["exporters"] == {
        "otlphttp/backend": {
            "endpoint": "http://127.0.0.1:4318",
            "compression": "gzip",
            "timeout": "10s",
            "headers": {"authorization": "Bearer s3cret"},
        }
    }
    gateway = gateway_config(config, options)
    assert gateway["exporters"]["loadbalancing"]["resolver"] == {"static": {"hostnames": list(OPTIONS.samplers)}}
    assert gateway["service"]["pipelines"]["metrics"]["exporters"] == ["otlphttp/backend"]
    files = generate(config, options)
    assert all(file.secret for file in files)  # the header is a secret: owner-only files
    for file in files:
        assert "s3cret" not in "".join(line for line in file.text.splitlines() if line.startswith("#"))


def test_sentry_gets_its_otlp_endpoint_and_auth_header(tmp_path: Path) -> None:
    pytest.importorskip("sentry_sdk")
    config = _config(
        """
        backends = ["sentry-otlp"]
        [sentry-otlp]
        dsn = "https://publickey@o1.ingest.example.test/42"
        """,
        tmp_path,
    )
    exporters = sampler_config(config, OPTIONS)["exporters"]
    sentry = exporters["otlphttp/sentry"]
    assert list(exporters) == ["otlphttp/sentry"]
    assert sentry["traces_endpoint"] == "https://o1.ingest.example.test/api/42/integration/otlp/v1/traces/"
    assert "sentry_key=publickey" in sentry["headers"]["X-Sentry-Auth"]
    gateway = gateway_config(config, OPTIONS)
    assert gateway["service"]["pipelines"]["logs"]["exporters"] == ["otlphttp/sentry"]
    assert "metrics" not in gateway["service"]["pipelines"]  # Sentry takes no OTLP metrics


def test_mistakes_are_refused(tmp_path: Path) -> None:
    no_backend = _config('backends = ["console"]', tmp_path)
    with pytest.raises(CollectorConfigError, match="no backend"):
        sampler_config(no_backend, OPTIONS)
    loop = _config('backends = ["otlp"]\n[otlp]\nendpoint = "http://127.0.0.1:14318"', tmp_path)
    with pytest.raises(CollectorConfigError, match="gateway's own address"):
        sampler_config(loop, OPTIONS)
    with pytest.raises(CollectorConfigError, match="host:port"):
        CollectorOptions(samplers=("nowhere",))
    with pytest.raises(CollectorConfigError, match="decision wait"):
        CollectorOptions(decision_wait_s=0)


@pytest.mark.parametrize(
    "value",
    [
        {"plain": "text", "quoted": ["yes", "null", "10s", "a: b", "#x", "", "é\"\\\n", "-1", "1e3"]},
        {"nested": {"empty": {}, "list": [], "items": [{"a": 1, "b": [True, None, 2.5]}, [1, [2]]]}},
    ],
)
def test_the_yaml_reads_back_as_what_was_written(value: dict[str, Any]) -> None:
    assert yaml.safe_load(to_yaml(value)) == value


def _shipped_command() -> list[str]:
    header = (SHIPPED / "gateway.yaml").read_text(encoding="utf-8").splitlines()[1]
    assert header.startswith("# Regenerate: otel-hakgal ")
    return shlex.split(header.removeprefix("# Regenerate: otel-hakgal "))


def test_the_shipped_collector_configs_are_the_generators_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert cli.main([*_shipped_command(), "--out", str(tmp_path)]) == 0
    for name in ("gateway.yaml", "sampler.yaml"):
        assert (tmp_path / name).read_text() == (SHIPPED / name).read_text(), f"regenerate configs/collector/{name}"


def test_printing_both_files(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert cli.main(_shipped_command()) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [sorted(document) for document in documents] == [
        ["exporters", "receivers", "service"],
        ["exporters", "processors", "receivers", "service"],
    ]


def test_a_bad_option_is_a_config_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    argv = ["collector-config", "--config", "configs/collector/hakgal.toml", "--samplers", "not-an-address"]
    assert cli.main(argv) == cli.EXIT_CONFIG_ERROR
    assert "host:port" in capsys.readouterr().err


@pytest.mark.system
def test_the_real_collector_accepts_the_shipped_and_generated_configs(tmp_path: Path) -> None:
    binary = require_collector()
    for name in ("gateway.yaml", "sampler.yaml"):
        result = validate(binary, SHIPPED / name)
        assert result.returncode == 0, result.stdout + result.stderr
    # Every kind of policy, as the collector reads them (it refuses unknown keys).
    config = _config('backends = ["otlp"]\n[otlp]\nendpoint = "http://127.0.0.1:4318"', tmp_path)
    config = dataclasses.replace(config, sampling_tail=TailSamplingSettings(keep_ratio=0.3, rules=RULES))
    split = _config(SPLIT_OTLP, tmp_path)  # per-signal endpoints and a logs-only exporter
    generated_files = [*generate(config, dataclasses.replace(OPTIONS, decision_wait_s=0.5)), *generate(split, OPTIONS)]
    for generated in generated_files:
        path = tmp_path / generated.name
        path.write_text(generated.text, encoding="utf-8")
        result = validate(binary, path)
        assert result.returncode == 0, generated.text + result.stdout + result.stderr


@pytest.mark.parametrize(("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_without_go_the_collector_tests_skip_but_fail_under_ci(
    ci: str, outcome: type[BaseException], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support import collector_build

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no binary built there
    monkeypatch.setattr(collector_build, "find_go", lambda: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="Go is not installed"):
        require_collector()
    assert collector_build.binary_path().parent.parent == tmp_path / "otel_hakgal"


SPLIT_OTLP = """
backends = ["otlp"]
[otlp]
endpoint = "http://127.0.0.1:4318"
traces_endpoint = "http://traces.example.test:4318/v1/traces"
logs_endpoint = "http://logs.example.test:4318/v1/logs"
logs_headers = { x-logs-key = "l0gs" }
metrics = false
"""


def test_per_signal_endpoints_switches_and_log_headers_reach_the_collectors(tmp_path: Path) -> None:
    config = _config(SPLIT_OTLP, tmp_path)
    sampler = sampler_config(config, OPTIONS)
    assert sampler["exporters"]["otlphttp/backend"]["traces_endpoint"] == "http://traces.example.test:4318/v1/traces"
    gateway = gateway_config(config, OPTIONS)
    assert "metrics" not in gateway["service"]["pipelines"]  # otlp.metrics = false
    assert gateway["service"]["pipelines"]["logs"]["exporters"] == ["otlphttp/backend_logs"]
    logs = gateway["exporters"]["otlphttp/backend_logs"]
    assert logs["logs_endpoint"] == "http://logs.example.test:4318/v1/logs"
    assert logs["headers"] == {"x-logs-key": "l0gs"}
    assert all(file.secret for file in generate(config, OPTIONS))
    # --backend URL sends every signal there, whatever [otlp] routes
    overridden = sampler_config(config, dataclasses.replace(OPTIONS, backend="http://127.0.0.1:9999"))
    assert overridden["exporters"]["otlphttp/backend"].keys() == {"endpoint", "compression", "timeout"}
