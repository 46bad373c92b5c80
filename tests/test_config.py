import secrets
import subprocess
import sys
from pathlib import Path

import pytest

import otel_hakgal as hg
from otel_hakgal.config import BOOL_EXPECTED, ConfigError, load_config, mask_secret
from otel_hakgal.testing import OtlpReceiver

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
    assert '"authorization": "[REDACTED]"' in result.stdout
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


# --- secrets in problem lines (issue 14, item 9) ---------------------------------------------


def _planted() -> tuple[str, str, str]:
    """A realistic DSN public key (32 hex), DSN secret key and bearer token, unique to the test."""
    return secrets.token_hex(16), secrets.token_hex(16), "tok_" + secrets.token_urlsafe(24)


def _malformed_secrets(key: str, secret: str, token: str) -> dict[str, tuple[dict[str, str], str, str]]:
    """Case -> (environment, the key named in the line, what the line must still show)."""
    host = "o1.ingest.sentry.io"
    return {
        "dsn with a secret key and no project id": (
            {"OTEL_HAKGAL_BACKENDS": "sentry", "SENTRY_DSN": f"https://{key}:{secret}@{host}/notanumber"},
            "sentry.dsn",
            f"'https://[REDACTED]@{host}/notanumber'",
        ),
        "dsn with a typo in the scheme": (
            {"OTEL_HAKGAL_BACKENDS": "sentry", "SENTRY_DSN": f"https:/{key}@{host}/42"},
            "sentry.dsn",
            f"'https:/[REDACTED]@{host}/42'",
        ),
        "dsn with '.' for '@'": (
            {"OTEL_HAKGAL_BACKENDS": "sentry-otlp", "SENTRY_DSN": f"https://{key}.{host}/42"},
            "sentry-otlp.dsn",
            f"'https://[REDACTED].{host}/42'",
        ),
        "headers with ':' for '='": (
            {"OTEL_HAKGAL_BACKENDS": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization: Bearer {token}"},
            "otlp.headers",
            "'Authorization: [REDACTED]' is not valid; expected comma-separated key=value pairs",
        ),
    }


@pytest.mark.parametrize("case", sorted(_malformed_secrets("k", "s", "t")))
def test_problem_lines_mask_secrets_but_say_what_is_wrong(case: str) -> None:
    key, secret, token = _planted()
    environ, setting, shown = _malformed_secrets(key, secret, token)[case]
    [problem] = _problems(environ=environ)
    assert not {key, secret, token} & set(problem.replace("'", " ").replace("@", " ").split()), problem
    assert all(planted not in problem for planted in (key, secret, token)), problem
    assert f"key '{setting}'" in problem and shown in problem, problem
    assert problem.startswith("environment variable "), problem


def test_a_secret_from_the_file_or_arguments_is_masked_too(tmp_path: Path) -> None:
    key, secret, token = _planted()
    dsn = f"https://{key}:{secret}@o1.ingest.sentry.io/x"
    [problem] = _problems(_write(tmp_path, f'backends = ["sentry"]\n[sentry]\ndsn = "{dsn}"\n'))
    assert key not in problem and secret not in problem and "'https://[REDACTED]@o1.ingest.sentry.io/x'" in problem
    [problem] = _problems(**{"backends": ["otlp"], "otlp.headers": f"x-api-key={token},authorization {token}"})
    assert token not in problem and "'x-api-key=[REDACTED],[REDACTED]' is not valid" in problem, problem
    [problem] = _problems(**{"backends": ["otlp"], "otlp.headers": [f"authorization={token}"]})
    assert token not in problem and "a value of type list is not valid; expected a table of string values" in problem, (
        problem
    )
    [problem] = _problems(**{"backends": ["sentry"], "sentry.dsn": 12345})
    assert "key 'sentry.dsn': a value of type int is not valid; expected a string" in problem, problem


def test_credentials_in_a_url_that_is_no_secret_setting_are_masked() -> None:
    _, secret, _ = _planted()
    environ = {"OTEL_HAKGAL_BACKENDS": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://user:{secret}@collector:x"}
    [problem] = _problems(environ=environ)
    assert secret not in problem and "'https://[REDACTED]@collector:x'" in problem, problem


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", ""),
        ("https://o1.ingest.sentry.io/42", "https://o1.ingest.sentry.io/42"),  # nothing secret: all of it
        ("KEY:SECRET-and-more", "[REDACTED]"),  # no URL shape: the whole value may be the secret
        ("https://host/api?sentry_key=abc&x=1#frag", "https://host/api?sentry_key=[REDACTED]&x=[REDACTED]#[REDACTED]"),
        ("https://h/" + "a" * 32, "https://h/[REDACTED]"),  # a key pasted into the path
        ("https//k@h/1", "https//[REDACTED]@h/1"),
    ],
)
def test_mask_secret_keeps_the_shape(value: str, shown: str) -> None:
    assert mask_secret(value) == shown


def test_check_config_never_prints_a_planted_secret() -> None:
    key, secret, token = _planted()
    for case, (environ, setting, shown) in _malformed_secrets(key, secret, token).items():
        result = _check_config(env=environ)
        output = result.stdout + result.stderr
        assert result.returncode == 2, (case, output)
        assert all(planted not in output for planted in (key, secret, token)), (case, output)
        assert f"key '{setting}'" in result.stderr and shown in result.stderr, (case, output)


# --- booleans (issue 14, item 13) -------------------------------------------------------------

BOOLEAN_VARIABLES = {
    "OTEL_HAKGAL_STRICT": lambda config: config.strict,
    "OTEL_SDK_DISABLED": lambda config: config.disabled,
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": lambda config: config.genai.capture_message_content,
}


@pytest.mark.parametrize("variable", sorted(BOOLEAN_VARIABLES))
def test_boolean_variables_accept_the_usual_words_in_any_case(variable: str) -> None:
    read = BOOLEAN_VARIABLES[variable]
    for words, expected in (("true 1 yes on True YES On", True), ("false 0 no off FALSE No OFF", False)):
        for word in words.split():
            assert read(load_config(environ={variable: f" {word} "})) is expected, word


@pytest.mark.parametrize("variable", sorted(BOOLEAN_VARIABLES))
def test_other_words_are_refused_with_the_accepted_ones_listed(variable: str) -> None:
    [problem] = _problems(environ={variable: "maybe"})
    assert problem.startswith(f"environment variable {variable}") and "'maybe' is not valid" in problem
    assert BOOL_EXPECTED in problem and "'yes', 'no', 'on', 'off'" in problem, problem


def test_strict_maybe_is_a_clear_line_in_check_config_and_the_demo_command() -> None:
    result = _check_config(env={"OTEL_HAKGAL_STRICT": "maybe"})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "OTEL_HAKGAL_STRICT" in result.stderr and BOOL_EXPECTED in result.stderr
    demo = subprocess.run(
        [sys.executable, "-m", "otel_hakgal.cli", "demo"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OTEL_HAKGAL_STRICT": "maybe"},
        timeout=120,
    )
    assert demo.returncode == 2 and "Traceback" not in demo.stderr, demo.stderr
    assert (
        demo.stderr.startswith("otel-hakgal demo: invalid otel_hakgal configuration") and BOOL_EXPECTED in demo.stderr
    )


# --- backends that are not selected (issue 14, item 13) ------------------------------------


def _bad_dsn() -> str:
    return f"https://{secrets.token_hex(16)}@o1.ingest.sentry.io/notanumber"


def test_variables_of_a_backend_not_selected_are_notes_not_errors() -> None:
    file = ROOT / "configs" / "sentry+otlp.toml"  # names [sentry]: its variables are read
    dsn = _bad_dsn()
    config = load_config(file, overrides={"backends": ["otlp"]}, environ={"SENTRY_DSN": dsn})
    assert config.backends == ("otlp",)
    [note] = config.notes
    assert "SENTRY_DSN" in note and "key 'sentry.dsn'" in note and "not used" in note and dsn not in note
    assert config.settings_for("sentry").dsn == ""  # the bad value is not taken
    # Selected, the same value stops the configuration.
    [problem] = _problems(file, environ={"SENTRY_DSN": dsn})
    assert "key 'sentry.dsn'" in problem
    # What the file itself says about an unselected backend is still checked.
    with pytest.raises(ConfigError, match=r"sentry\.attach_stacktrace"):
        load_config(overrides={"backends": ["otlp"], "sentry.attach_stacktrace": "maybe"}, environ={})


def test_check_config_prints_the_note_and_passes() -> None:
    env = {
        "OTEL_HAKGAL_CONFIG": str(ROOT / "configs" / "sentry+otlp.toml"),
        "OTEL_HAKGAL_BACKENDS": "otlp",
        "SENTRY_DSN": _bad_dsn(),
    }
    result = _check_config(env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("otel-hakgal: note: environment variable SENTRY_DSN: key 'sentry.dsn'")
    assert env["SENTRY_DSN"] not in result.stderr + result.stdout
    assert '"backends": [\n    "otlp"\n  ]' in result.stdout


def test_a_bad_sentry_dsn_does_not_stop_the_otlp_backend(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTRY_DSN", _bad_dsn())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    handle = hg.setup(ROOT / "configs" / "sentry+otlp.toml", backends=["otlp"])
    try:
        with hg.command("status"):
            pass
        assert handle.force_flush(5)
    finally:
        handle.shutdown()
    assert [span.name for span in otlp_receiver.wait_for_spans(1)] == ["hakgal.command status"]


# --- check-config looks at what only I/O finds (issue 14, item 13) -------------------------


def test_check_config_reports_a_jsonl_path_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file, not a directory\n")
    cases = {
        str(blocker / "out.jsonl"): f"{str(blocker)!r} is not a directory",
        str(tmp_path): "it is a directory",
    }
    for path, reason in cases.items():
        result = _check_config(env={"OTEL_HAKGAL_BACKENDS": "jsonl,console", "OTEL_HAKGAL_JSONL_PATH": path})
        assert result.returncode == 2, result.stdout
        assert f"environment variable OTEL_HAKGAL_JSONL_PATH: key 'jsonl.path': {path!r} cannot be written" in (
            result.stderr
        )
        assert reason in result.stderr, result.stderr
    creatable = tmp_path / "new" / "dir" / "out.jsonl"
    result = _check_config(env={"OTEL_HAKGAL_BACKENDS": "jsonl", "OTEL_HAKGAL_JSONL_PATH": str(creatable)})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "new").exists()  # check-config creates nothing


# --- the otlp backend's signals, each on its own (issue 15, item 7) --------------------------------------


@pytest.mark.parametrize(
    ("value", "metrics"),
    [("none", False), ("otlp", True), ("OTLP", True), ("prometheus", False), ("prometheus, otlp", True),
     ("otlp_proto_http", True), ("console", False)],
)
def test_otel_metrics_exporter_turns_otlp_metrics_on_only_when_it_names_otlp(value: str, metrics: bool) -> None:
    config = load_config(environ={"OTEL_HAKGAL_BACKENDS": "otlp", "OTEL_METRICS_EXPORTER": value})
    assert config.settings_for("otlp").metrics is metrics


def test_otel_metrics_exporter_beats_the_file_and_a_bad_value_names_the_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, 'backends = ["otlp"]\n[otlp]\nmetrics = true\n')
    assert load_config(path, environ={"OTEL_METRICS_EXPORTER": "none"}).settings_for("otlp").metrics is False
    [problem] = _problems(environ={"OTEL_HAKGAL_BACKENDS": "otlp", "OTEL_METRICS_EXPORTER": "otlp; prometheus"})
    assert problem.startswith("environment variable OTEL_METRICS_EXPORTER (key 'otlp.metrics')"), problem
    assert "'none'" in problem


def test_per_signal_endpoints_and_switches(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'backends = ["otlp"]\n[otlp]\ntraces_endpoint = "http://127.0.0.1:6006/v1/traces"\n'
        "metrics = false\nlogs = false\n",
    )
    environ = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/custom/metrics"}
    otlp = load_config(path, environ=environ).settings_for("otlp")
    assert otlp.traces_endpoint == "http://127.0.0.1:6006/v1/traces" and otlp.traces is True
    assert otlp.metrics_endpoint == "http://127.0.0.1:4318/custom/metrics"
    assert (otlp.metrics, otlp.logs) == (False, False)
    problems = _problems(path, **{"otlp.traces_endpoint": "localhost:6006", "otlp.traces": "maybe"})
    assert any("key 'otlp.traces_endpoint'" in p and "http://" in p for p in problems), problems
    assert any("key 'otlp.traces'" in p and BOOL_EXPECTED in p for p in problems), problems
