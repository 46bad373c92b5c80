"""Configuration: parsed and validated once into a typed, immutable ``Config``.

Sources, highest precedence first: ``setup()`` keyword arguments, environment
variables, the TOML file (``OTEL_HAKGAL_CONFIG`` or ``setup(config=...)``),
built-in defaults. Every problem is reported with where the value came from,
the key, the bad value and what is allowed.

Each section is a frozen dataclass whose fields are declared with
:func:`setting`. Backends declare their own section the same way, so the
loader, ``check-config`` and ``instrumentation.md`` all read one schema.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from otel_hakgal.conventions import DEFAULT_COST_CURRENCY

CONFIG_FILE_ENV: Final = "OTEL_HAKGAL_CONFIG"
TRACES_EXPORTER_ENV: Final = "OTEL_TRACES_EXPORTER"
# OTEL_TRACES_EXPORTER names that mean one of our backends; other names are taken as backend names.
EXPORTER_BACKENDS: Final = {"otlp": "otlp", "otlp_proto_http": "otlp", "console": "console"}
BACKENDS_ENV: Final = "OTEL_HAKGAL_BACKENDS"
STRICT_ENV: Final = "OTEL_HAKGAL_STRICT"
DEFAULT_BACKENDS: Final = ("console",)
ARGUMENT_SOURCE: Final = "setup() argument"
ENV_SOURCE: Final = "environment variable "
DEFAULT_SOURCE: Final = "default"

Validator = Callable[[Any], str | None]  # returns what is allowed, or None when valid
EnvParser = Callable[[str], Any]


class ConfigError(ValueError):
    """The configuration is invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], *, strict: bool = False) -> None:
        self.problems = problems
        # Whether the configuration asked to stop on errors (``strict``), as far as it could be read.
        self.strict = strict
        super().__init__("invalid otel_hakgal configuration:\n  " + "\n  ".join(problems))


# --- declaring settings ------------------------------------------------------


@dataclass(frozen=True)
class SettingSpec:
    doc: str
    env: tuple[str, ...] = ()
    env_parser: EnvParser | None = None
    validate: Validator | None = None
    secret: bool = False


def setting(
    default: Any,
    doc: str,
    *,
    env: str | tuple[str, ...] = (),
    env_parser: EnvParser | None = None,
    validate: Validator | None = None,
    secret: bool = False,
) -> Any:
    """Declare one configuration key of a section dataclass."""
    spec = SettingSpec(doc, (env,) if isinstance(env, str) else env, env_parser, validate, secret)
    if isinstance(default, dict | list):
        frozen = dict(default) if isinstance(default, dict) else tuple(default)
        return field(default_factory=lambda: frozen, metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec})


def spec_of(f: dataclasses.Field[Any]) -> SettingSpec:
    spec = f.metadata["setting"]
    assert isinstance(spec, SettingSpec)
    return spec


# --- validators (each returns a description of what is allowed, or None) -----


def one_of(*allowed: str) -> Validator:
    return lambda value: None if value in allowed else "one of " + ", ".join(repr(a) for a in allowed)


def number_range(low: float, high: float) -> Validator:
    return lambda value: None if low <= value <= high else f"a number from {low} to {high}"


def non_negative(value: Any) -> str | None:
    return None if 0 <= value < math.inf else "a number of 0 or more"


def positive(value: Any) -> str | None:
    # inf is no timeout or interval at all: threads cannot wait that long (OverflowError).
    return None if 0 < value < math.inf else "a finite number greater than 0"


LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(value: Any) -> str | None:
    """A ``logging`` level name, in any case."""
    ok = isinstance(value, str) and value.strip().upper() in LOG_LEVELS
    return None if ok else "one of " + ", ".join(repr(name) for name in LOG_LEVELS) + " (any case)"


def regular_expressions(value: Any) -> str | None:
    for pattern in value:
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            return f"valid Python regular expressions ({pattern!r}: {exc})"
    return None


def http_url(value: Any) -> str | None:
    try:
        parsed = urllib.parse.urlsplit(value)  # raises on e.g. 'http://[::1' (unclosed IPv6 bracket)
        ok = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        _ = parsed.port
    except ValueError:
        ok = False
    return None if ok else "an http:// or https:// URL with a host, e.g. 'http://127.0.0.1:4318'"


# --- environment parsers ----------------------------------------------------


TRUE_WORDS: Final = ("true", "1", "yes", "on")
FALSE_WORDS: Final = ("false", "0", "no", "off")
# What every boolean setting accepts, as its problem line says.
BOOL_EXPECTED: Final = (
    "one of " + ", ".join(f"'{w}'" for pair in zip(TRUE_WORDS, FALSE_WORDS, strict=True) for w in pair) + " (any case)"
)


def parse_bool(raw: str) -> bool:
    """A boolean setting from text: true/false, 1/0, yes/no, on/off in any case ('' is false: unset)."""
    lowered = raw.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in (*FALSE_WORDS, ""):
        return False
    raise ValueError(BOOL_EXPECTED)


def parse_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_key_values(raw: str) -> dict[str, str]:
    """Parse the OTel ``key1=value1,key2=value2`` format (values percent-encoded)."""
    result: dict[str, str] = {}
    for pair in raw.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            # The message never quotes the pair: its value may be a credential.
            hint = " (a pair has ':' where '=' belongs)" if not sep and ":" in pair else ""
            raise ValueError("comma-separated key=value pairs, values percent-encoded" + hint)
        result[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return result


LOGS_EXPORTER_ENV: Final = "OTEL_LOGS_EXPORTER"


def parse_logs_switch(raw: str) -> bool:
    """``logs.enabled`` from ``OTEL_HAKGAL_LOGS`` (a boolean) or ``OTEL_LOGS_EXPORTER`` (exporter names).

    ``none`` turns logs off, as the OTel SDK reads ``OTEL_LOGS_EXPORTER``; any exporter name
    (``otlp``, ``console``) leaves them on: which backends get them is ``backends``' choice.
    """
    lowered = raw.strip().lower()
    if lowered == "none":
        return False
    try:
        return parse_bool(raw)
    except ValueError:
        if re.fullmatch(r"[a-z0-9_.\-]+(\s*,\s*[a-z0-9_.\-]+)*", lowered):
            return True
        raise ValueError(f"{BOOL_EXPECTED}, or exporter names ({LOGS_EXPORTER_ENV}; 'none' turns logs off)") from None


def parse_millis(raw: str) -> float:
    try:
        return float(raw) / 1000.0
    except ValueError:
        raise ValueError("a number of milliseconds") from None


# --- the core sections ------------------------------------------------------

SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


@dataclass(frozen=True)
class ServiceSettings:
    name: str = setting("hak-gal", "`service.name` resource attribute.", env="OTEL_SERVICE_NAME")
    version: str = setting("unknown", "`service.version` (Sentry release).", env="SENTRY_RELEASE")
    environment: str = setting(
        "development", "`deployment.environment.name` (Sentry environment).", env="SENTRY_ENVIRONMENT"
    )
    attributes: dict[str, str] = setting(
        {}, "Extra resource attributes.", env="OTEL_RESOURCE_ATTRIBUTES", env_parser=parse_key_values
    )


@dataclass(frozen=True)
class SamplingSettings:
    sampler: str = setting(
        "parentbased_traceidratio", "Head sampler.", env="OTEL_TRACES_SAMPLER", validate=one_of(*SAMPLERS)
    )
    ratio: float = setting(
        1.0,
        "Share of new traces kept by the ratio samplers.",
        env="OTEL_TRACES_SAMPLER_ARG",
        validate=number_range(0.0, 1.0),
    )


@dataclass(frozen=True)
class TailRule:
    """One ``[[sampling.tail.rules]]`` entry: keep a trace when one of its spans has ``attribute``
    (equal to ``equals``, when given), with probability ``keep_ratio``."""

    attribute: str
    equals: str | int | float | bool | None = None
    keep_ratio: float = 1.0
    name: str = ""

    @property
    def label(self) -> str:
        """What reports and metrics call the rule: its ``name``, else its attribute."""
        return self.name or self.attribute


TAIL_RULE_KEYS: Final = ("attribute", "equals", "keep_ratio", "name")


def parse_tail_rules(value: Any) -> tuple[TailRule, ...]:
    """``[[sampling.tail.rules]]`` tables (or the same as JSON, from the environment) as rules."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"a JSON list of rule tables ({exc.msg})") from None
    expected = "a list of tables with 'attribute' and optionally 'equals', 'keep_ratio', 'name'"
    if isinstance(value, tuple) and all(isinstance(rule, TailRule) for rule in value):
        return value  # parsed already (from the environment)
    if not isinstance(value, list | tuple):
        raise ValueError(expected)
    rules: list[TailRule] = []
    for index, table in enumerate(value):
        where = f"rule {index + 1}"
        if not isinstance(table, Mapping):
            raise ValueError(expected)
        unknown = sorted(set(table) - set(TAIL_RULE_KEYS))
        if unknown:
            raise ValueError(f"{expected}; {where} has unknown keys {', '.join(map(repr, unknown))}")
        attribute, equals = table.get("attribute"), table.get("equals")
        ratio, name = table.get("keep_ratio", 1.0), table.get("name", "")
        if not isinstance(attribute, str) or not attribute.strip():
            raise ValueError(f"{expected}; {where} has no 'attribute' name")
        if equals is not None and not isinstance(equals, str | int | float | bool):
            raise ValueError(f"{expected}; {where}: 'equals' must be a string, number or boolean")
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{expected}; {where}: 'keep_ratio' must be a number from 0.0 to 1.0")
        if not isinstance(name, str):
            raise ValueError(f"{expected}; {where}: 'name' must be a string")
        rules.append(TailRule(attribute.strip(), equals, float(ratio), name))
    return tuple(rules)


@dataclass(frozen=True)
class TailSamplingSettings:
    """``[sampling.tail]``: decide when a trace's local root ends, keeping what matters.

    A trace is kept when one of its spans has status ERROR, when its local root
    took longer than ``keep_slower_than_s``, when a rule matches, or else with
    probability ``keep_ratio``, decided by trace id (the same in every process).
    """

    enabled: bool = setting(
        False,
        "Tail sampling in the process: spans are held until their trace's local root ends, then the whole"
        " trace goes to every backend, or none of it. Metrics are never sampled.",
        env="OTEL_HAKGAL_TAIL_SAMPLING",
        env_parser=parse_bool,
    )
    keep_ratio: float = setting(
        0.1,
        "Share of ordinary traces kept (no error, not slow, no rule matched), decided by trace id.",
        env="OTEL_HAKGAL_TAIL_KEEP_RATIO",
        validate=number_range(0.0, 1.0),
    )
    keep_slower_than_s: float = setting(
        10.0,
        "Keep every trace whose local root took longer than this many seconds (the seed's slow-response"
        " threshold).",
        env="OTEL_HAKGAL_TAIL_KEEP_SLOWER_THAN_S",
        validate=positive,
    )
    rules: tuple[TailRule, ...] = setting(
        [],
        "More reasons to keep a trace: `[[sampling.tail.rules]]` tables with `attribute`, optional"
        " `equals` (omitted: the attribute is present), `keep_ratio` (default 1.0) and `name`. The env"
        " var takes the same as a JSON list.",
        env="OTEL_HAKGAL_TAIL_RULES",
        env_parser=parse_tail_rules,
    )
    max_spans_per_trace: int = setting(
        1000, "Spans held per trace until its decision; more are dropped and counted.", validate=positive
    )
    max_open_traces: int = setting(
        10_000,
        "Traces held at once awaiting their decision; past it the oldest is decided early, as a partial trace.",
        validate=positive,
    )
    max_trace_age_s: float = setting(
        60.0,
        "A trace whose local root is still open after this many seconds is decided on what it holds, its"
        " spans marked `otel_hakgal.sampling.partial`; later spans follow that decision.",
        validate=positive,
    )


@dataclass(frozen=True)
class RedactionSettings:
    text_mode: str = setting(
        "truncate", "How command and question text is recorded.", validate=one_of("truncate", "hash", "omit")
    )
    max_text_length: int = setting(100, "Characters kept of command and question text.", validate=positive)
    max_attribute_length: int = setting(
        4096,
        "Longest string attribute value, in characters; longer ones are cut (the one cut, for every span).",
        env=("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        validate=positive,
    )
    scrub_secrets: bool = setting(
        True,
        "Replace API keys, bearer tokens, `Authorization` values, DSN keys, passwords and the values of"
        " secret-looking environment variables with `[REDACTED]`, for every backend.",
    )
    secret_patterns: tuple[str, ...] = setting(
        [], "Extra regular expressions whose matches are redacted as secrets.", validate=regular_expressions
    )
    scrub_logs: bool = setting(
        True,
        "Scrub the process's log records too (every logger, werkzeug's access log included): messages and"
        " tracebacks pass the secret scrubber and the `max_attribute_length` cut before any handler sees them.",
    )


@dataclass(frozen=True)
class GenAISettings:
    emit_legacy_system: bool = setting(False, "Also emit the legacy `gen_ai.system` attribute.")
    capture_message_content: bool = setting(
        False,
        "Record prompts and responses on LLM spans.",
        env="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    )
    emit_upcoming_names: bool = setting(
        False,
        "Also emit the GenAI conventions' coming names: `gen_ai.client.inference.duration`, the per-direction"
        " token histograms `gen_ai.client.inference.operation.{input,output}_tokens` and"
        " `gen_ai.usage.cache_write.input_tokens`, beside the current ones, to migrate without a gap.",
        env="OTEL_HAKGAL_GENAI_UPCOMING_NAMES",
        env_parser=parse_bool,
    )


@dataclass(frozen=True)
class ExportSettings:
    metric_interval: float = setting(
        60.0,
        "Seconds between metric exports (the env var is in milliseconds).",
        env="OTEL_METRIC_EXPORT_INTERVAL",
        env_parser=parse_millis,
        validate=positive,
    )
    shutdown_timeout: float = setting(5.0, "Upper bound in seconds for flushing at shutdown.", validate=positive)
    flush_on_sigterm: bool = setting(
        True, "Make SIGTERM exit through atexit so queued telemetry is flushed (only if nothing else handles it)."
    )


@dataclass(frozen=True)
class BatchSettings:
    """The batch span processor of every exporting backend (the SDK's ``OTEL_BSP_*`` variables)."""

    max_queue_size: int = setting(
        2048,
        "Spans a backend queues for export; more are dropped and counted.",
        env="OTEL_BSP_MAX_QUEUE_SIZE",
        validate=positive,
    )
    schedule_delay: float = setting(
        5.0,
        "Seconds between two exports (the env var is in milliseconds).",
        env="OTEL_BSP_SCHEDULE_DELAY",
        env_parser=parse_millis,
        validate=positive,
    )
    max_export_batch_size: int = setting(
        512,
        "Most spans in one export request; at most `batch.max_queue_size`.",
        env="OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        validate=positive,
    )
    export_timeout: float = setting(
        30.0,
        "Seconds one export may take (the env var is in milliseconds).",
        env="OTEL_BSP_EXPORT_TIMEOUT",
        env_parser=parse_millis,
        validate=positive,
    )


@dataclass(frozen=True)
class LimitSettings:
    """Span limits of the SDK (its ``OTEL_*_LIMIT`` variables); values are cut by `redaction.max_attribute_length`.

    They are fixed when the process's one TracerProvider is made, at the first ``setup()``.
    """

    attribute_count: int = setting(
        128,
        "Most attributes per span.",
        env=("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"),
        validate=non_negative,
    )
    event_count: int = setting(128, "Most events per span.", env="OTEL_SPAN_EVENT_COUNT_LIMIT", validate=non_negative)
    link_count: int = setting(128, "Most links per span.", env="OTEL_SPAN_LINK_COUNT_LIMIT", validate=non_negative)
    event_attribute_count: int = setting(
        128, "Most attributes per span event.", env="OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", validate=non_negative
    )
    link_attribute_count: int = setting(
        128, "Most attributes per span link.", env="OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", validate=non_negative
    )


@dataclass(frozen=True)
class LogsSettings:
    """The service's log records as the third signal, sent to every backend that takes logs."""

    enabled: bool = setting(
        True,
        "Export the service's log records (the `logging` module, through one handler on the root logger)"
        f" to the backends; `{LOGS_EXPORTER_ENV}=none` turns it off too. Log lines carry the trace and"
        " span ids (`%(otelTraceID)s`, `%(otelSpanID)s`) whether or not this is on.",
        env=("OTEL_HAKGAL_LOGS", LOGS_EXPORTER_ENV),
        env_parser=parse_logs_switch,
    )
    level: str = setting(
        "WARNING",
        "Least severe level exported (a `logging` level name). The app's own handlers and the root"
        " logger's level are left alone: a record the root logger's level (or its logger's) filters"
        " out is never exported either.",
        env="OTEL_HAKGAL_LOGS_LEVEL",
        validate=log_level,
    )
    max_per_second: float = setting(
        100.0,
        "Most log records exported per second, for the whole process (a token bucket holding one"
        " second's worth); the rest are dropped, counted in `otel_hakgal.logs.dropped` and reported"
        " in one warning a minute.",
        env="OTEL_HAKGAL_LOGS_MAX_PER_SECOND",
        validate=positive,
    )

    @property
    def level_number(self) -> int:
        """``level`` as a ``logging`` level number (``level`` was validated as a level name)."""
        number = logging.getLevelName(self.level.strip().upper())
        return number if isinstance(number, int) else logging.WARNING


@dataclass(frozen=True)
class Price:
    """Price of one model, per million tokens."""

    input: float
    output: float
    currency: str = DEFAULT_COST_CURRENCY


def _parse_pricing(value: Any) -> dict[str, Price]:
    if not isinstance(value, Mapping):
        raise ValueError("a table of model = {input = <per 1M tokens>, output = <per 1M tokens>}")
    prices: dict[str, Price] = {}
    for model, entry in value.items():
        if isinstance(entry, Price):
            prices[model] = entry
            continue
        if not isinstance(entry, Mapping) or set(entry) - {"input", "output", "currency"}:
            raise ValueError(f"model {model!r}: a table with keys input, output and optional currency")
        try:
            price = Price(
                float(entry["input"]), float(entry["output"]), str(entry.get("currency", DEFAULT_COST_CURRENCY))
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"model {model!r}: input and output must be numbers (per 1M tokens)") from exc
        if price.input < 0 or price.output < 0:
            raise ValueError(f"model {model!r}: prices must not be negative")
        prices[model] = price
    return prices


DEFAULT_PRICING: Final = {
    "deepseek-chat": Price(0.27, 1.10),
    "mistral-large-latest": Price(2.0, 6.0),
    "gemini-1.5-pro-latest": Price(1.25, 5.0),
}


# --- the whole configuration ------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The resolved configuration. Build it with :func:`load_config`."""

    backends: tuple[str, ...] = DEFAULT_BACKENDS
    disabled: bool = False
    strict: bool = False
    service: ServiceSettings = field(default_factory=ServiceSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    sampling_tail: TailSamplingSettings = field(default_factory=TailSamplingSettings)
    redaction: RedactionSettings = field(default_factory=RedactionSettings)
    genai: GenAISettings = field(default_factory=GenAISettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    logs: LogsSettings = field(default_factory=LogsSettings)
    pricing: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICING))
    backend_settings: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    # Where each key that was set came from (file, variable, argument), for problems found after loading.
    key_sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Problems of settings no selected backend reads (check-config prints them; nothing fails on them).
    notes: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def settings_for(self, backend: str) -> Any:
        """The typed settings section of ``backend`` (``None`` if it declares none)."""
        return self.backend_settings.get(backend)

    def problem(self, key: str, message: str) -> str:
        """One problem line about ``key``, naming where its value came from, as loading errors do."""
        source = self.key_sources.get(key, DEFAULT_SOURCE)
        return f"{source}: key '{key}': {message}"


ROOT_SETTINGS: Final[dict[str, SettingSpec]] = {
    "backends": SettingSpec(
        "Backends to send telemetry to, several at once allowed.", env=(BACKENDS_ENV,), env_parser=parse_list
    ),
    "disabled": SettingSpec("Turn all telemetry off.", env=("OTEL_SDK_DISABLED",), env_parser=parse_bool),
    "strict": SettingSpec(
        "Fail at start on a bad configuration instead of running with telemetry off.",
        env=(STRICT_ENV,),
        env_parser=parse_bool,
    ),
    "pricing": SettingSpec(
        'Model prices: `[pricing."<model>"] input = .., output = .., currency = ..` (per 1M tokens).'
    ),
}

CORE_SECTIONS: Final[dict[str, type]] = {
    "service": ServiceSettings,
    "sampling": SamplingSettings,
    "sampling.tail": TailSamplingSettings,
    "redaction": RedactionSettings,
    "genai": GenAISettings,
    "export": ExportSettings,
    "batch": BatchSettings,
    "limits": LimitSettings,
    "logs": LogsSettings,
}


def core_field(section: str) -> str:
    """The :class:`Config` attribute of a core section (``sampling.tail`` -> ``sampling_tail``)."""
    return section.replace(".", "_")


def section_class(section: str) -> type | None:
    """The settings dataclass of ``[section]``: a core one, or a registered backend's (imported on demand)."""
    core = CORE_SECTIONS.get(section)
    if core is not None:
        return core
    from otel_hakgal.backends import registry

    if not registry.is_backend(section):
        return None
    return registry.backend_class(section).Settings


def all_sections() -> dict[str, type]:
    """Core sections plus every registered backend's section (imports every backend: for docs and tools)."""
    from otel_hakgal.backends import registry

    sections = dict(CORE_SECTIONS)
    for name in registry.backend_names():
        settings = section_class(name)
        if settings is not None:
            sections[name] = settings
    return sections


def _section_names() -> list[str]:
    """Every section a config may hold, without importing any backend."""
    from otel_hakgal.backends import registry

    return sorted({*CORE_SECTIONS, *registry.backend_names()})


# --- loading ----------------------------------------------------------------


@dataclass
class _Value:
    value: Any
    source: str


def _flatten(data: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, _Value]:
    flat: dict[str, _Value] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        # Tables are sections except where the setting itself is a table.
        if isinstance(value, Mapping) and dotted not in ("pricing",) and not _is_table_setting(dotted):
            flat.update(_flatten(value, source, dotted + "."))
        else:
            flat[dotted] = _Value(value, source)
    return flat


def _is_table_setting(dotted: str) -> bool:
    section, _, key = dotted.partition(".")
    if not key or "." in key:
        return False
    cls = section_class(section)
    if cls is None:
        return False
    hints = typing.get_type_hints(cls)
    return key in hints and typing.get_origin(hints[key]) is dict


def _read_file(path: Path) -> dict[str, _Value]:
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: cannot read the config file: it does not exist"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror or exc}"]) from None
    except ValueError as exc:  # a NUL byte or a lone surrogate in the path: no file has that name
        raise ConfigError([f"{path}: cannot read the config file: {exc}"]) from None
    try:
        data = tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: not UTF-8 ({exc.reason} at byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses per level of nested arrays and inline tables
        raise ConfigError([f"{path}: not valid TOML: arrays or tables nested too deeply"]) from None
    return _flatten(data, str(path))


def _env_specs(sections: Mapping[str, type], *, root: bool = True) -> list[tuple[str, str, SettingSpec]]:
    """(env var, dotted key, spec) of the root settings (with ``root``) and of ``sections``, for each variable."""
    specs = [(env, key, spec) for key, spec in ROOT_SETTINGS.items() for env in spec.env] if root else []
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            spec = spec_of(f)
            specs.extend((env, f"{section}.{f.name}", spec) for env in spec.env)
    return specs


def environment_variables() -> dict[str, tuple[str, ...]]:
    """Every environment variable the configuration honours, with the keys it sets (imports every backend)."""
    result: dict[str, tuple[str, ...]] = {}
    for env, key, _ in _env_specs(all_sections()):
        result[env] = (*result.get(env, ()), key)
    result[CONFIG_FILE_ENV] = ("(path of the config file)",)
    result[TRACES_EXPORTER_ENV] = ("backends",)
    return result


def _read_env(
    environ: Mapping[str, str], problems: list[str], sections: Mapping[str, type], *, root: bool = True
) -> dict[str, _Value]:
    flat: dict[str, _Value] = {}
    for env, key, spec in _env_specs(sections, root=root):
        raw = environ.get(env)
        if raw is None or (raw == "" and key != "disabled"):
            continue
        source = f"{ENV_SOURCE}{env}"
        if key in flat:  # the first listed variable wins
            continue
        if spec.env_parser is not None:
            try:
                flat[key] = _Value(spec.env_parser(raw), source)
            except ValueError as exc:
                shown = shown_value(raw, spec, table=spec.env_parser is parse_key_values)
                problems.append(f"{source} (key '{key}'): {shown} is not valid; expected {exc}")
        else:
            flat[key] = _Value(raw, source)
    return flat


def _coerce(value: Any, hint: Any) -> Any:
    """Convert ``value`` to the annotated type or raise ValueError saying what was expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, options[0])
    if hint is bool:
        if isinstance(value, str):
            return parse_bool(value)
        if isinstance(value, bool):
            return value
        raise ValueError(BOOL_EXPECTED)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("an integer")
        try:
            return int(value)
        except ValueError:
            raise ValueError("an integer") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("a number")
        try:
            return float(value)
        except (ValueError, OverflowError):  # OverflowError: an integer beyond any float
            raise ValueError("a number") from None
    if hint is str:
        if not isinstance(value, str):
            raise ValueError("a string")
        return value
    if origin is tuple and typing.get_args(hint)[0] is TailRule:
        return parse_tail_rules(value)
    if origin is tuple:
        if isinstance(value, str):
            value = parse_list(value)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError("a list of strings")
        return tuple(value)
    if origin is dict:
        if isinstance(value, str):
            value = parse_key_values(value)
        if not isinstance(value, Mapping):
            raise ValueError("a table of string values")
        return {str(k): str(v) for k, v in value.items()}
    return value


def _build_section(
    cls: type, section: str, merged: dict[str, _Value], problems: list[str], env_problems: list[str] | None = None
) -> Any:
    """The section's settings; a bad value is a problem and leaves its default.

    ``env_problems`` receives the problems of values from environment variables
    instead (the notes of a section whose backend is not selected).
    """
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        entry = merged.get(f"{section}.{f.name}")
        if entry is None:
            continue
        spec = spec_of(f)
        where = f"{entry.source}: key '{section}.{f.name}'"
        found = env_problems if env_problems is not None and entry.source.startswith(ENV_SOURCE) else problems
        shown = shown_value(entry.value, spec, table=typing.get_origin(hints[f.name]) is dict)
        try:
            value = _coerce(entry.value, hints[f.name])
        except ValueError as exc:
            found.append(f"{where}: {shown} is not valid; expected {exc}")
            continue
        try:
            allowed = spec.validate(value) if spec.validate else None
        except ValueError as exc:  # a validator tripping over the value (urlsplit on 'http://[') rejects it
            # The parser's message may quote part of a secret.
            allowed = "a valid value" if spec.secret else f"a valid value ({exc})"
        if allowed is not None:
            found.append(f"{where}: {shown} is not allowed; expected {allowed}")
            continue
        kwargs[f.name] = value
    return cls(**kwargs)


def _check_unknown(layer: dict[str, _Value], sections: Mapping[str, type], problems: list[str]) -> None:
    """Report keys no section declares; ``sections`` holds every section the layers name."""
    known = set(ROOT_SETTINGS)
    for section, cls in sections.items():
        known.update(f"{section}.{f.name}" for f in dataclasses.fields(cls))
    for key, entry in layer.items():
        if key in known or key.startswith("pricing."):
            continue
        section = key.partition(".")[0]
        if section in sections:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            allowed = ", ".join(sorted(k.partition(".")[2] for k in known if k.startswith(section + ".")))
            problems.append(f"{entry.source}: unknown key '{key}'{suggestion}; keys of [{section}]: {allowed}")
        else:
            top_level = sorted({*ROOT_SETTINGS, *_section_names()})
            hint = difflib.get_close_matches(section, top_level, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(
                f"{entry.source}: unknown key '{key}'{suggestion}; known top-level keys: {', '.join(top_level)}"
            )


def _normalise_overrides(overrides: Mapping[str, Any]) -> dict[str, _Value]:
    """Accept both nested (``{"otlp": {"endpoint": ..}}``) and dotted (``{"otlp.endpoint": ..}``) keys."""
    flat: dict[str, _Value] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping) and key != "pricing" and not _is_table_setting(key):
            flat.update(_flatten(value, ARGUMENT_SOURCE, key + "."))
        else:
            flat[key] = _Value(value, ARGUMENT_SOURCE)
    return flat


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Resolve the configuration from arguments, environment, file and defaults.

    ``path`` defaults to ``$OTEL_HAKGAL_CONFIG``; with neither, no file is read.
    Raises :class:`ConfigError` listing every problem found.
    """
    from otel_hakgal.backends import registry

    environ = os.environ if environ is None else environ
    problems: list[str] = []
    file_path = Path(path) if path is not None else None
    if file_path is None and environ.get(CONFIG_FILE_ENV):
        file_path = Path(environ[CONFIG_FILE_ENV])
    file_layer = _read_file(file_path) if file_path is not None else {}
    arg_layer = _normalise_overrides(overrides or {})
    root_env = _read_env(environ, problems, {})
    root_layer = {**file_layer, **root_env, **arg_layer}
    root = _root_settings(root_layer, environ, problems)

    # Only the sections in use are loaded: the core ones, the selected backends' and any the layers name.
    named = {key.partition(".")[0] for key in (*file_layer, *arg_layer) if "." in key}
    sections: dict[str, type] = dict(CORE_SECTIONS)
    for name in sorted({*root.get("backends", ()), *named} - set(CORE_SECTIONS)):
        if registry.is_backend(name):
            try:
                settings_class = section_class(name)
            except (ImportError, AttributeError, TypeError):
                continue  # reported by check_config, as the backend cannot be loaded
            if settings_class is not None:
                sections[name] = settings_class
    # A backend that is not selected never stops the others: what its variables hold is only a note
    # (SENTRY_DSN set for another service, with [sentry] in a shared file and backends = ["otlp"]).
    selected = set(root.get("backends", DEFAULT_BACKENDS))
    idle = {name: cls for name, cls in sections.items() if name not in CORE_SECTIONS and name not in selected}
    in_use = {name: cls for name, cls in sections.items() if name not in idle}
    notes: list[str] = []
    env_layer = {
        **root_env,
        **_read_env(environ, notes, idle, root=False),
        **_read_env(environ, problems, in_use, root=False),
    }
    _check_unknown(file_layer, sections, problems)
    _check_unknown(arg_layer, sections, problems)
    merged = {**file_layer, **env_layer, **arg_layer}
    built = {
        name: _build_section(cls, name, merged, problems, notes if name in idle else None)
        for name, cls in sections.items()
    }

    pricing = dict(DEFAULT_PRICING)
    pricing_entries = {k: v for k, v in merged.items() if k == "pricing" or k.startswith("pricing.")}
    for key, entry in pricing_entries.items():
        table = entry.value if key == "pricing" else {key.partition(".")[2]: entry.value}
        try:
            pricing.update(_parse_pricing(table))
        except ValueError as exc:
            problems.append(f"{entry.source}: key '{key}': {shown_value(entry.value)} is not valid; expected {exc}")

    core = {core_field(name): built.pop(name) for name in CORE_SECTIONS}
    config = Config(
        **root,
        **core,
        pricing=pricing,
        backend_settings=built,
        source=str(file_path) if file_path else None,
        key_sources={key: entry.source for key, entry in {**merged, **root_layer}.items()},
        notes=tuple(f"{note} (not used: no selected backend reads it)" for note in dict.fromkeys(notes)),
    )
    problems.extend(check_config(config))
    if problems:
        # A problem two backends share is told once.
        raise ConfigError(list(dict.fromkeys(problems)), strict=bool(root.get("strict", False)))
    return config


def _root_settings(merged: dict[str, _Value], environ: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """``backends``, ``disabled`` and ``strict``, validated."""
    from otel_hakgal.backends import registry

    if "backends" not in merged and environ.get(TRACES_EXPORTER_ENV):
        # The generic OTel variable chooses backends only when the layer's own settings don't.
        names = [EXPORTER_BACKENDS.get(n, n) for n in parse_list(environ[TRACES_EXPORTER_ENV])]
        merged["backends"] = _Value(names, f"environment variable {TRACES_EXPORTER_ENV}")
    root: dict[str, Any] = {}
    for key in ("disabled", "strict"):
        if key in merged:
            entry = merged[key]
            try:
                root[key] = _coerce(entry.value, bool)
            except ValueError as exc:
                problems.append(f"{entry.source}: key '{key}': {entry.value!r} is not valid; expected {exc}")
    if "backends" in merged:
        entry = merged["backends"]
        try:
            names = _coerce(entry.value, tuple[str, ...])
        except ValueError as exc:
            problems.append(f"{entry.source}: key 'backends': {entry.value!r} is not valid; expected {exc}")
        else:
            for name in names:
                if not registry.is_backend(name):
                    known = registry.backend_names()
                    hint = difflib.get_close_matches(name, known, n=1)
                    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                    problems.append(
                        f"{entry.source}: key 'backends': unknown backend {name!r}{suggestion}; "
                        f"available: {', '.join(known)}"
                    )
            root["backends"] = tuple(dict.fromkeys(n for n in names if registry.is_backend(n)))
    return root


def check_config(config: Config) -> list[str]:
    """Rules that span several keys or belong to a backend: what ``setup()`` would otherwise fail on."""
    problems: list[str] = []
    batch = config.batch
    if batch.max_export_batch_size > batch.max_queue_size:
        # Blame the key that was set (the SDK's rule: a batch never exceeds the queue).
        if "batch.max_export_batch_size" in config.key_sources:
            key, value = "batch.max_export_batch_size", batch.max_export_batch_size
            rule, other = "at most batch.max_queue_size", ("batch.max_queue_size", batch.max_queue_size)
        else:
            key, value = "batch.max_queue_size", batch.max_queue_size
            rule = "at least batch.max_export_batch_size"
            other = ("batch.max_export_batch_size", batch.max_export_batch_size)
        source = config.key_sources.get(other[0], DEFAULT_SOURCE)
        problems.append(config.problem(key, f"{value} is not allowed; expected {rule} ({other[1]}, from {source})"))
    if not config.disabled:
        for name in config.backends:
            cls = _load_backend(name, config, problems)
            if cls is not None:
                problems.extend(cls.check(config, config.settings_for(name)))
    return problems


def _load_backend(name: str, config: Config, problems: list[str]) -> Any:
    """The backend class registered as ``name``, or ``None`` with a problem when it cannot be loaded."""
    from otel_hakgal.backends import registry

    try:
        return registry.backend_class(name)
    except KeyError:
        problems.append(config.problem("backends", f"unknown backend {name!r}"))
    except (ImportError, AttributeError, TypeError) as error:  # a broken plugin: tell, don't crash
        target = registry.target(name)
        problems.append(config.problem("backends", f"backend {name!r} ({target}) cannot be loaded: {error}"))
    return None


def probe_config(config: Config) -> list[str]:
    """What only I/O finds wrong with a valid ``config`` here (a jsonl path that cannot be written).

    For ``check-config``: each selected backend's ``probe(config, settings)`` classmethod
    looks, creating nothing. ``setup()`` does not fail on these: such a
    backend warns when it starts and its ``force_flush()`` returns False, while the
    other backends work on.
    """
    problems: list[str] = []
    if config.disabled:
        return problems
    for name in config.backends:
        backend = _load_backend(name, config, problems)
        if backend is not None:
            problems.extend(backend.probe(config, config.settings_for(name)))
    return problems


# --- presenting -------------------------------------------------------------


MASK: Final = "[REDACTED]"
# A URL's start as typed: a short scheme and its slashes ('https://', or the typo 'https:/').
_URL_START: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,9}(?::/*|//)")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]{1,64}")
# Shorter parts of a URL or a name (a project id, a port, a path word, a host label) are shown: they
# are how a typo is found. Longer runs may be a key typed in the wrong place ('.' for '@').
_LONG_TOKEN: Final = 16
_URL_TOKENS: Final = re.compile(r"[^/:;,.]+")
_NAME_TOKENS: Final = re.compile(r"[^\-_.]+")
_URL_CREDENTIALS: Final = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@]+@")


def _mask_long(match: re.Match[str]) -> str:
    token = match.group(0)
    return token if len(token) < _LONG_TOKEN else MASK


def _is_plain_name(name: str) -> bool:
    """A header or query parameter name, not a key pasted where a name belongs."""
    return bool(_HEADER_NAME.fullmatch(name)) and all(len(t) < _LONG_TOKEN for t in _NAME_TOKENS.findall(name))


def _mask_pair(pair: str, separators: str) -> str:
    """``name=value`` as ``name=[REDACTED]``; a name that is no header or query name is masked too."""
    for separator in separators:
        name, found, value = pair.partition(separator)
        if found:
            if not _is_plain_name(name.strip()):
                return MASK
            spacing = value[: len(value) - len(value.lstrip())]  # shows 'Authorization: ...' as typed
            return f"{name}{separator}{spacing}{MASK}"
    return MASK if pair.strip() else pair


def mask_secret(value: str) -> str:
    """Hide the secret parts of a DSN or URL, keeping what finds a mistake.

    The credentials (all before the last ``@``), query values, the fragment and
    long tokens (a key pasted into the path) become ``[REDACTED]``; the scheme as
    typed, the host and short path segments stay: ``'https://[REDACTED]@host/notanumber'``.
    A value without a URL's shape is a secret as a whole.
    """
    if not value:
        return value
    start = _URL_START.match(value)
    prefix = start.group(0) if start else ""
    rest = value[len(prefix) :]
    credentials = ""
    if "@" in rest:
        credentials, rest = MASK + "@", rest.rpartition("@")[2]
    elif not prefix.endswith("/"):
        return MASK
    rest, hash_sign, fragment = rest.partition("#")
    location, question_mark, query = rest.partition("?")
    shown = _URL_TOKENS.sub(_mask_long, location)
    if question_mark:
        shown += "?" + "&".join(_mask_pair(pair, "=") for pair in query.split("&"))
    if hash_sign:
        shown += "#" + (MASK if fragment else "")
    return prefix + credentials + shown


def mask_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (``https://user:token@host``)."""
    return _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)


def mask_key_values(raw: str) -> str:
    """A ``key=value,...`` secret (``OTEL_EXPORTER_OTLP_HEADERS``) with every value masked, names kept."""
    return ",".join(_mask_pair(pair, "=:") for pair in raw.split(","))


def mask_table(table: Mapping[Any, Any]) -> dict[str, str]:
    """A table of secrets (headers) with every value masked; a key that is no header name is masked too."""
    return {str(k) if _is_plain_name(str(k)) else MASK: MASK for k in table}


def shown_value(value: Any, spec: SettingSpec | None = None, *, table: bool = False) -> str:
    """``value`` as a problem line quotes it: its repr, with secrets masked.

    A setting marked secret shows only its shape; any other value still loses
    the credentials of a URL (``https://user:token@host``).
    """
    if spec is None or not spec.secret:
        return repr(mask_credentials(value) if isinstance(value, str) else value)
    if isinstance(value, Mapping):
        return repr(mask_table(value))
    if isinstance(value, str):
        return repr(mask_key_values(value) if table else mask_secret(value))
    return f"a value of type {type(value).__name__}"  # a number or a list where a secret belongs: its type tells


def secret_values(config: Config) -> list[str]:
    """The values of every setting marked secret (DSNs, header values), for the secret scrubber."""
    values: list[str] = []
    for section in config.backend_settings.values():
        if not dataclasses.is_dataclass(section):
            continue
        for f in dataclasses.fields(section):
            if spec_of(f).secret:
                value = getattr(section, f.name)
                if isinstance(value, Mapping):
                    values.extend(str(v) for v in value.values())
                elif isinstance(value, str):
                    values.append(value)
    return values


def describe(config: Config) -> dict[str, Any]:
    """A plain, secret-masked view of ``config`` for printing (``check-config``)."""
    out: dict[str, Any] = {
        "source": config.source or "(no file)",
        "backends": list(config.backends),
        "disabled": config.disabled,
        "strict": config.strict,
    }
    sections: dict[str, Any] = {
        **{name: getattr(config, core_field(name)) for name in CORE_SECTIONS},
        **{name: s for name, s in config.backend_settings.items() if name in config.backends},
    }
    for name, section in sections.items():
        values: dict[str, Any] = {}
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if spec_of(f).secret:
                if isinstance(value, Mapping):
                    value = mask_table(value)
                elif isinstance(value, str):
                    value = mask_secret(value)
            elif isinstance(value, tuple) and value and isinstance(value[0], TailRule):
                value = [dataclasses.asdict(rule) for rule in value]
            values[f.name] = value
        out[name] = values
    out["pricing"] = {model: dataclasses.asdict(price) for model, price in config.pricing.items()}
    return out
