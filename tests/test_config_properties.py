"""Property-based tests of the config loader (issue 8, item 6).

Whatever the file, the environment or the ``setup()`` arguments hold,
``load_config`` returns a ``Config`` or raises ``ConfigError`` whose every
problem names its source and the key (or says the file itself is unreadable);
never any other exception.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_hakgal.config import (
    ARGUMENT_SOURCE,
    CONFIG_FILE_ENV,
    ROOT_SETTINGS,
    Config,
    ConfigError,
    all_sections,
    environment_variables,
    load_config,
)

SECTIONS: dict[str, list[str]] = {
    name: [f.name for f in dataclasses.fields(cls)] for name, cls in all_sections().items()
}
ENV_VARS = sorted(environment_variables())
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- strategies ---------------------------------------------------------------------------

random_keys = st.text(min_size=1, max_size=10)
# Values a real config could hold, so the valid path is explored as well as the invalid one.
plausible = st.one_of(
    st.sampled_from(["otlp", "console", "none", "jsonl", "memory", "sentry", "gzip", "truncate", "hash", "always_on"]),
    st.sampled_from(["http://127.0.0.1:4318", "https://key@o1.ingest.sentry.io/1", "http://[::1", "http://h:99999"]),
    st.lists(st.sampled_from(["otlp", "console", "none", "jsonl", "carrier-pigeon"]), max_size=3),
    st.floats(0, 2),
    st.integers(-2, 70000),
    st.sampled_from(["(", "[a-z]+", "a{99999999999}", "(?P<x>a)(?P<x>b)", "true", "off", "1e999", "nan"]),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(st.characters(exclude_categories=["Cs"])),  # TOML files cannot hold lone surrogates
    st.datetimes(),
    st.dates(),
    plausible,
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(random_keys, inner, max_size=3), max_leaves=8
)
prices = st.dictionaries(
    st.sampled_from(["deepseek-chat", "new-model"]) | random_keys,
    st.fixed_dictionaries({}, optional={"input": values, "output": values, "currency": values}) | values,
    max_size=2,
)


def section_table(section: str) -> st.SearchStrategy[dict[str, Any]]:
    """A section's table: real keys of the section and random ones, with any values."""
    return st.dictionaries(st.sampled_from(SECTIONS[section]) | random_keys, plausible | values, max_size=4)


config_data: st.SearchStrategy[dict[str, Any]] = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {},
        optional={
            **{section: section_table(section) | values for section in SECTIONS},
            **{key: values for key in ROOT_SETTINGS if key != "pricing"},
            "pricing": prices | values,
        },
    ),
    st.dictionaries(random_keys, values | st.dictionaries(random_keys, values, max_size=3), max_size=3),
)
env_values = st.one_of(
    st.text(),  # anything, lone surrogates and NUL included
    st.sampled_from(["", "otlp,console", "a=b,c", "=x", "%zz=%ff", "1e999", "nan", "-1", "true", "/nonexistent"]),
    st.sampled_from(["http://127.0.0.1:4318", "https://k@o1.ingest.sentry.io/1", "http://[::1", "http://h:99999"]),
)
environs = st.dictionaries(st.sampled_from(ENV_VARS), env_values, max_size=6)


# --- writing TOML -------------------------------------------------------------------------


def toml_string(text: str) -> str:
    # JSON escapes are TOML escapes; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)  # repr gives inf, -inf, 1e+16: all TOML
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, Mapping), value
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(data: Mapping[str, Any]) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in data.items())


# --- the property -------------------------------------------------------------------------


def load_or_error(
    path: Path | None = None, *, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config | ConfigError:
    """Whatever load_config does, as a value; any exception but ConfigError fails the test."""
    try:
        config = load_config(path, overrides=overrides, environ=environ or {})
    except ConfigError as error:
        return error
    assert isinstance(config, Config)
    return config


def assert_clear(outcome: Config | ConfigError, file: Path | str | None = None) -> None:
    """Each problem starts with its source and names the key, or says the file itself is bad."""
    if isinstance(outcome, Config):
        return
    assert outcome.problems, "a ConfigError lists its problems"
    sources = ["environment variable ", ARGUMENT_SOURCE] + ([str(file)] if file is not None else [])
    for problem in outcome.problems:
        assert problem.startswith(tuple(sources)), problem
        file_level = file is not None and problem.startswith(f"{file}: ") and "config file" in problem
        assert "key '" in problem or file_level or "not valid TOML" in problem, problem
        assert problem in str(outcome)


@pytest.mark.slow
@FAST
@given(data=config_data)
def test_any_toml_file_gives_a_config_or_a_clear_error(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "hakgal.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    assert_clear(load_or_error(path), path)


@pytest.mark.slow
@FAST
@given(data=config_data)
def test_any_setup_arguments_give_a_config_or_a_clear_error(data: dict[str, Any]) -> None:
    assert_clear(load_or_error(overrides=data))


@FAST
@given(
    data=st.dictionaries(
        st.sampled_from(["sampling.ratio", "export.metric_interval", "otlp.timeout", "pricing", "backends"]),
        st.one_of(st.integers(), st.floats(), st.text(), st.none(), st.just(10**400), st.tuples(st.integers())),
    )
)
def test_python_only_values_as_setup_arguments(data: dict[str, Any]) -> None:
    # Arguments need not be TOML: None, tuples, integers beyond any float.
    assert_clear(load_or_error(overrides=data))


@FAST
@given(environ=environs)
def test_any_environment_gives_a_config_or_a_clear_error(environ: dict[str, str]) -> None:
    file = environ.get(CONFIG_FILE_ENV)
    assert_clear(load_or_error(environ=environ), Path(file) if file else None)  # Path: '0/' is named '0'


@FAST
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_file_bytes_give_a_config_or_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "hakgal.toml"
    path.write_bytes(content)
    assert_clear(load_or_error(path), path)


@pytest.mark.slow
@FAST
@given(data=config_data, flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_toml_gives_a_config_or_a_clear_error(
    tmp_path: Path, data: dict[str, Any], flips: list[tuple[int, int]]
) -> None:
    content = bytearray(to_toml(data).encode("utf-8") or b"x")
    for position, byte in flips:
        content[position % len(content)] = byte
    path = tmp_path / "hakgal.toml"
    path.write_bytes(bytes(content))
    assert_clear(load_or_error(path), path)


@pytest.mark.slow
@FAST
@given(data=config_data, environ=environs, overrides=config_data)
def test_all_sources_at_once(
    tmp_path: Path, data: dict[str, Any], environ: dict[str, str], overrides: dict[str, Any]
) -> None:
    path = tmp_path / "hakgal.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    assert_clear(load_or_error(path, overrides=overrides, environ=environ), path)


@pytest.mark.parametrize(
    "content",
    [
        b"a = " + b"[" * 10_000 + b"]" * 10_000,
        b"a = " + b"{b = " * 5_000 + b"1" + b"}" * 5_000,
        b'[service]\nname = "\xff\xfe"\n',
        b"\xef\xbb\xbf[service]\n",
    ],
    ids=["array-10000-deep", "table-5000-deep", "invalid-utf8", "utf8-bom"],
)
def test_hostile_files_give_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "hakgal.toml"
    path.write_bytes(content)
    outcome = load_or_error(path)
    assert isinstance(outcome, ConfigError) and outcome.problems[0].startswith(f"{path}: "), outcome


@pytest.mark.parametrize("file", ["bad\x00name.toml", "\ud800.toml", "x" * 5000, "/"])
def test_unopenable_config_paths_give_a_clear_error(file: str) -> None:
    outcome = load_or_error(environ={CONFIG_FILE_ENV: file})
    assert isinstance(outcome, ConfigError) and "cannot read the config file" in str(outcome), outcome


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "SENTRY_DSN"])
@pytest.mark.parametrize("url", ["http://[::1", "http://[", "https://k@[zz]/1", "http://h:99999"])
def test_urls_that_trip_the_url_parser_are_invalid_not_a_crash(variable: str, url: str) -> None:
    # A backend's variables are read when the backend is in use.
    backend = "otlp" if variable.startswith("OTEL_") else "sentry"
    outcome = load_or_error(environ={variable: url, "OTEL_HAKGAL_BACKENDS": backend})
    assert isinstance(outcome, ConfigError) and f"environment variable {variable}: key " in str(outcome), outcome


@pytest.mark.parametrize("key", ["export.metric_interval", "export.shutdown_timeout", "otlp.timeout"])
@pytest.mark.parametrize("value", [math.inf, math.nan, "inf", 10**400])
def test_durations_must_be_finite(key: str, value: object) -> None:
    outcome = load_or_error(overrides={key: value})
    assert isinstance(outcome, ConfigError) and f"key '{key}'" in str(outcome), outcome


def test_a_valid_file_from_the_writer_loads(tmp_path: Path) -> None:
    # The TOML writer above is right: a known-good config round-trips through it.
    path = tmp_path / "hakgal.toml"
    data = {"backends": ["otlp"], "sampling": {"ratio": 0.5}, "service": {"name": 'a"b\x7f\n'}}
    path.write_text(to_toml(data), encoding="utf-8")
    config = load_config(path, environ={})
    assert config.backends == ("otlp",) and config.sampling.ratio == 0.5 and config.service.name == 'a"b\x7f\n'


# --- no problem line quotes a secret (issue 14, item 9) ---------------------------------------

PLANTED = "c6ad55cf0bef16cd19cc216608aac43c"  # a realistic DSN key: 32 hex
url_text = st.text(alphabet="htps:/@.?&=#,;-_ Bearer0123456789xyz%[]", max_size=20)
around_a_secret = st.builds(lambda before, after: before + PLANTED + after, url_text, url_text)


@FAST
@given(value=around_a_secret, variable=st.sampled_from(["SENTRY_DSN", "OTEL_EXPORTER_OTLP_HEADERS"]))
def test_no_problem_line_quotes_a_secret_setting(value: str, variable: str) -> None:
    backend = "otlp" if variable.startswith("OTEL_") else "sentry"
    for outcome in (
        load_or_error(environ={variable: value, "OTEL_HAKGAL_BACKENDS": backend}),
        load_or_error(overrides={"backends": [backend], f"{backend}.{variable.rsplit('_', 1)[-1].lower()}": value}),
    ):
        assert_clear(outcome)
        if isinstance(outcome, ConfigError):
            assert PLANTED not in str(outcome), outcome
