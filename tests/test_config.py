import subprocess
import sys
from pathlib import Path

import pytest

from otel_hakgal.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hakgal.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path | None = None, environ: dict[str, str] | None = None, **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides=overrides, environ=environ or {})
    return caught.value.problems


def test_defaults_without_any_source() -> None:
    config = load_config(environ={})
    assert config.sampling.sampler == "parentbased_traceidratio" and config.sampling.ratio == 1.0
    assert config.backends == ("console",)
    assert config.redaction.max_text_length == 100
    assert config.pricing["deepseek-chat"].input > 0


def test_precedence_arguments_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'backends = ["jsonl"]\n[service]\nname = "from-file"\nenvironment = "file-env"\n'
        '[sampling]\nratio = 0.5\n[otlp]\nendpoint = "http://127.0.0.1:1111"\n',
    )
    environ = {"OTEL_SERVICE_NAME": "from-env", "OTEL_TRACES_SAMPLER_ARG": "0.25", "SENTRY_RELEASE": "9.9.9"}
    config = load_config(path, environ=environ, overrides={"sampling.ratio": 0.75})
    assert config.service.name == "from-env"  # env beats file
    assert config.service.environment == "file-env"  # file beats default
    assert config.service.version == "9.9.9"
    assert config.sampling.ratio == 0.75  # argument beats env
    assert config.backends == ("jsonl",)
    assert config.settings_for("otlp").endpoint == "http://127.0.0.1:1111"
    assert config.source == str(path)


def test_standard_otel_environment_variables() -> None:
    environ = {
        "OTEL_HAKGAL_BACKENDS": "otlp, console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-token=abc%20def,other=1",
        "OTEL_RESOURCE_ATTRIBUTES": "team=reasoning,region=eu",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_SDK_DISABLED": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "2500",
        "SENTRY_ENVIRONMENT": "staging",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
    }
    config = load_config(environ=environ)
    assert config.backends == ("otlp", "console")
    assert config.settings_for("otlp").headers == {"x-token": "abc def", "other": "1"}
    assert config.service.attributes == {"team": "reasoning", "region": "eu"}
    assert config.sampling.sampler == "traceidratio"
    assert config.disabled is True
    assert config.export.metric_interval == 2.5
    assert config.service.environment == "staging"
    assert config.genai.capture_message_content is True


def test_config_file_from_env(tmp_path: Path) -> None:
    path = _write(tmp_path, 'backends = ["none"]\n')
    assert load_config(environ={"OTEL_HAKGAL_CONFIG": str(path)}).backends == ("none",)


def test_unknown_backend_names_the_file_key_value_and_choices(tmp_path: Path) -> None:
    path = _write(tmp_path, 'backends = ["otlpp"]\n')
    [problem] = _problems(path)
    assert str(path) in problem and "'backends'" in problem and "'otlpp'" in problem
    assert "available: console, jsonl, memory, none, otlp" in problem
    assert "did you mean 'otlp'" in problem


def test_bad_sample_ratio(tmp_path: Path) -> None:
    [problem] = _problems(_write(tmp_path, "[sampling]\nratio = 1.5\n"))
    assert "'sampling.ratio'" in problem and "1.5" in problem and "from 0.0 to 1.0" in problem
    [problem] = _problems(environ={"OTEL_TRACES_SAMPLER_ARG": "lots"})
    assert "OTEL_TRACES_SAMPLER_ARG" in problem and "'lots'" in problem and "a number" in problem


def test_malformed_endpoint_url(tmp_path: Path) -> None:
    [problem] = _problems(_write(tmp_path, '[otlp]\nendpoint = "localhost:4318"\n'))
    assert "'otlp.endpoint'" in problem and "'localhost:4318'" in problem and "http://" in problem
    # Read only when the otlp backend is in use.
    assert load_config(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://host:notaport"}).backends == ("console",)
    [problem] = _problems(
        environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://host:notaport", "OTEL_HAKGAL_BACKENDS": "otlp"}
    )
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in problem


def test_unreadable_file(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path / "missing.toml")
    assert "missing.toml" in problem and "does not exist" in problem
    [problem] = _problems(_write(tmp_path, "backends = [\n"))
    assert "not valid TOML" in problem


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    [problem] = _problems(_write(tmp_path, "[sampling]\nratoi = 0.5\n"))
    assert "unknown key 'sampling.ratoi'" in problem and "did you mean 'sampling.ratio'" in problem
    assert "keys of [sampling]: ratio, sampler" in problem
    [problem] = _problems(_write(tmp_path, "[nonsense]\nx = 1\n"))
    assert "unknown key 'nonsense.x'" in problem and "known top-level keys" in problem


def test_wrong_types_and_all_problems_reported_together(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, '[redaction]\nmax_text_length = "long"\ntext_mode = "shout"\n'))
    assert len(problems) == 2
    assert any("an integer" in p for p in problems)
    assert any("'truncate', 'hash', 'omit'" in p for p in problems)


def test_setup_arguments_are_validated_too() -> None:
    [problem] = _problems(**{"backends": ["carrier-pigeon"]})
    assert problem.startswith("setup() argument")


def test_pricing_table(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, '[pricing."my-model"]\ninput = 1.0\noutput = 2.0\n'), environ={})
    assert config.pricing["my-model"].output == 2.0
    assert "deepseek-chat" in config.pricing  # defaults stay
    [problem] = _problems(_write(tmp_path, '[pricing."my-model"]\ninput = "free"\noutput = 2.0\n'))
    assert "my-model" in problem and "numbers" in problem


def _check_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_hakgal.cli", "check-config", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


def test_check_config_prints_resolved_config_with_secrets_masked(tmp_path: Path) -> None:
    path = _write(tmp_path, 'backends = ["otlp"]\n[otlp]\nendpoint = "http://127.0.0.1:4318"\n')
    result = _check_config(str(path), env={"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer s3cr3t-token"})
    assert result.returncode == 0, result.stderr
    assert '"authorization": "***"' in result.stdout
    assert "s3cr3t-token" not in result.stdout
    assert '"endpoint": "http://127.0.0.1:4318"' in result.stdout


def test_check_config_exits_2_on_each_error(tmp_path: Path) -> None:
    cases = {
        'backends = ["nope"]\n': "unknown backend",
        "[sampling]\nratio = -1\n": "sampling.ratio",
        '[otlp]\nendpoint = "ftp://x"\n': "otlp.endpoint",
        "[service]\nnmae = 'x'\n": "unknown key",
    }
    for text, expected in cases.items():
        result = _check_config(str(_write(tmp_path, text)))
        assert result.returncode == 2, text
        assert expected in result.stderr and str(tmp_path) in result.stderr
    result = _check_config(str(tmp_path / "absent.toml"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_shipped_configs_are_valid() -> None:
    for path in sorted((ROOT / "configs").glob("*.toml")):
        load_config(path, environ={})


def test_otel_traces_exporter_chooses_backends_below_the_layers_own_settings(tmp_path: Path) -> None:
    assert load_config(environ={"OTEL_TRACES_EXPORTER": "otlp,console"}).backends == ("otlp", "console")
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_HAKGAL_BACKENDS": "jsonl"}
    assert load_config(environ=environ).backends == ("jsonl",)
    path = _write(tmp_path, 'backends = ["none"]\n')
    assert load_config(path, environ={"OTEL_TRACES_EXPORTER": "otlp"}).backends == ("none",)
    [problem] = _problems(environ={"OTEL_TRACES_EXPORTER": "zipkin"})
    assert "OTEL_TRACES_EXPORTER" in problem and "'zipkin'" in problem


# What check-config accepted and setup() then failed on (issue 13): now refused by both, before anything starts.
SETUP_FAILURES = {
    "two sentry backends": ('backends = ["sentry", "sentry-otlp"]\n', {}, "choose one"),
    "sentry rate against the sampler": (
        'backends = ["sentry"]\n[sampling]\nratio = 0.5\n[sentry]\ntraces_sample_rate = 1.0\n',
        {},
        "sentry.traces_sample_rate",
    ),
    "negative schedule delay": ("", {"OTEL_BSP_SCHEDULE_DELAY": "-5"}, "OTEL_BSP_SCHEDULE_DELAY"),
    "negative queue size": ("", {"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
    "negative attribute length": ("", {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-1"}, "OTEL_SPAN_ATTRIBUTE_VALUE"),
}


@pytest.mark.parametrize("case", sorted(SETUP_FAILURES))
def test_check_config_rejects_what_setup_would_fail_on(tmp_path: Path, case: str) -> None:
    text, env, expected = SETUP_FAILURES[case]
    path = _write(tmp_path, text or 'backends = ["otlp"]\n')
    result = _check_config(str(path), env=env)
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=env)
    assert any(expected in problem for problem in caught.value.problems)


@pytest.mark.parametrize(
    ("env", "build"),
    [
        ({"OTEL_BSP_SCHEDULE_DELAY": "-5"}, "batch"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}, "batch"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"}, "batch"),
        ({"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-1"}, "limits"),
        ({"OTEL_SPAN_EVENT_COUNT_LIMIT": "-3"}, "limits"),
    ],
)
def test_the_sdk_itself_fails_on_what_the_config_refuses(
    env: dict[str, str], build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config's rules are the SDK's: each value it refuses makes the SDK raise when it reads it."""
    from opentelemetry.sdk.trace import SpanLimits
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with pytest.raises(ConfigError):
        load_config(environ=env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError):
        BatchSpanProcessor(InMemorySpanExporter()) if build == "batch" else SpanLimits()


def test_sdk_variables_reach_the_config() -> None:
    config = load_config(
        environ={
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_QUEUE_SIZE": "64",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "300",
            "OTEL_SPAN_LINK_COUNT_LIMIT": "0",
        }
    )
    assert (config.batch.schedule_delay, config.batch.max_queue_size, config.batch.max_export_batch_size) == (
        0.25,
        64,
        32,
    )
    assert config.redaction.max_attribute_length == 300 and config.limits.link_count == 0


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_BSP_SCHEDULE_DELAY": "abc"},
        {"OTEL_METRIC_EXPORT_INTERVAL": "soon"},
        {"OTEL_RESOURCE_ATTRIBUTES": "garbage"},
        {"OTEL_HAKGAL_BACKENDS": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": "bad"},
    ],
)
def test_unparsable_variables_of_core_and_backend_sections_are_reported(environ: dict[str, str]) -> None:
    variable = next(name for name in environ if name != "OTEL_HAKGAL_BACKENDS")
    [problem] = _problems(environ=environ)
    assert problem.startswith(f"environment variable {variable} (key '") and "is not valid" in problem
