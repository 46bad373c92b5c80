"""OpenTelemetry Collector configurations for the collector tier, from the layer's TOML.

When HAK-GAL runs as several processes, the spans of one trace end up in
several processes, and tail sampling belongs where whole traces meet:

* a **gateway** collector: ``otlp`` receiver (OTLP/HTTP, what the app
  processes send to) -> ``loadbalancing`` exporter, routing by trace id to a
  static list of sampling collectors, so every span of a trace reaches the
  same one; metrics and log records go straight to the backends;
* **sampling** collectors: ``otlp`` receiver (OTLP/gRPC from the gateway) ->
  ``tail_sampling`` processor -> ``otlphttp`` exporters: the ``[otlp]``
  backend's endpoint, and Sentry's OTLP traces endpoint when a ``sentry`` or
  ``sentry-otlp`` DSN is configured.

The tail-sampling policies are made from the same ``[sampling.tail]``
settings (:class:`~otel_hakgal.config.TailSamplingSettings`) the layer's
in-process tail sampling uses, so the two cannot drift:

=================================  ====================================================
``[sampling.tail]``                ``tail_sampling`` policy
=================================  ====================================================
(a span with status ERROR)         ``status_code`` ``[ERROR]``
``keep_slower_than_s``             ``latency`` ``threshold_ms`` (the whole trace's duration)
rule, ``equals`` a string          ``string_attribute``
rule, ``equals`` an integer        ``numeric_attribute`` (``min_value = max_value``)
rule, ``equals`` another number    ``ottl_condition`` ``attributes["x"] == n``
rule, ``equals`` a boolean         ``boolean_attribute``
rule without ``equals``            ``ottl_condition`` ``attributes["x"] != nil``
rule with ``keep_ratio`` < 1       ``and`` of the rule and ``probabilistic``
``keep_ratio``                     ``probabilistic`` ``sampling_percentage``
``max_open_traces``                ``num_traces``
=================================  ====================================================

A trace is kept when any policy keeps it. ``decision_wait`` (default
:data:`DEFAULT_DECISION_WAIT_S`) is how long a sampling collector holds a
trace after its first span arrived before deciding; spans arriving later
follow the decision already made (the decision caches).

The YAML is written by :func:`to_yaml`, a small emitter for dicts, lists and
scalars (no dependency). The backend's export headers and Sentry's auth
header are written into ``sampler.yaml`` and ``gateway.yaml`` as the
collector needs them, never into a comment; a file that holds one is written
readable by its owner only.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from otel_hakgal.config import Config, TailRule, TailSamplingSettings

DEFAULT_DECISION_WAIT_S = 30.0
"""Seconds a sampling collector waits after a trace's first span before deciding.

HAK-GAL's default command timeout is 30 s, and the layer exports ended spans
every ``batch.schedule_delay`` (5 s): a command's first spans reach the
collector while its root is still running. 30 s covers the ordinary command
plus the export delay of its last spans; a longer trace is decided on what
arrived by then (a slow or failed command has usually shown it by then), and
its later spans follow that decision. Raise it for long ``ask``/``build_kb``
commands at the cost of memory (``num_traces`` traces held at once).
"""

DEFAULT_GATEWAY_LISTEN = "0.0.0.0:4318"
DEFAULT_SAMPLER_LISTEN = "0.0.0.0:4317"
DEFAULT_SAMPLERS = ("127.0.0.1:4317",)
GATEWAY_FILE = "gateway.yaml"
SAMPLER_FILE = "sampler.yaml"

_OTLP_SECTION = "otlp"
_SIGNALS = ("traces", "metrics", "logs")  # each with an `<signal>_endpoint` in [otlp] and the collector
_SENTRY_SECTIONS = ("sentry", "sentry-otlp")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


class CollectorConfigError(ValueError):
    """The layer's configuration or the options cannot make a working collector tier."""


@dataclass(frozen=True)
class CollectorOptions:
    """What the TOML does not say: where the collectors listen, and the sampling collectors' addresses."""

    gateway_listen: str = DEFAULT_GATEWAY_LISTEN
    """``host:port`` the gateway's OTLP/HTTP receiver listens on (the apps' ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    samplers: tuple[str, ...] = DEFAULT_SAMPLERS
    """``host:port`` of every sampling collector's OTLP/gRPC receiver: the gateway's static resolver."""
    sampler_listen: str = DEFAULT_SAMPLER_LISTEN
    """``host:port`` a sampling collector's OTLP/gRPC receiver listens on."""
    decision_wait_s: float = DEFAULT_DECISION_WAIT_S
    """The ``tail_sampling`` processor's ``decision_wait``, in seconds."""
    backend: str | None = None
    """OTLP/HTTP base URL the collectors export to, over the ``[otlp]`` endpoint of the TOML."""

    def __post_init__(self) -> None:
        for what, address in (("gateway listen", self.gateway_listen), ("sampler listen", self.sampler_listen)):
            _check_host_port(what, address)
        if not self.samplers:
            raise CollectorConfigError("at least one sampling collector address is needed (--samplers)")
        for address in self.samplers:
            _check_host_port("sampler", address)
        if not (math.isfinite(self.decision_wait_s) and self.decision_wait_s > 0):
            raise CollectorConfigError(
                f"decision wait must be a positive number of seconds, not {self.decision_wait_s}"
            )
        if self.backend is not None:
            _check_url("backend", self.backend)


def _check_host_port(what: str, address: str) -> None:
    found = _HOST_PORT.match(address)
    if found is None or not 0 < int(found.group(2)) < 65536:
        raise CollectorConfigError(f"{what} address must be host:port, not {address!r}")


def _check_url(what: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CollectorConfigError(f"{what} must be an http(s) URL, not {url!r}")


# --- the YAML emitter ---------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_/$][A-Za-z0-9_./:$-]*$")
_YAML_WORDS = frozenset(
    {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "nan", "inf", ".nan", ".inf", "-.inf"}
)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no YAML for {value!r}")
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _YAML_WORDS and not value.endswith(":"):
            return value
        return json.dumps(value, ensure_ascii=True)  # a JSON string is a YAML double-quoted scalar
    raise TypeError(f"no YAML for a {type(value).__name__}")


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        lines: list[str] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"YAML keys here are strings, not {key!r}")
            if isinstance(item, Mapping | list | tuple) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.extend(_lines(item, indent + 2))
            else:
                lines.append(f"{pad}{_scalar(key)}: {_inline(item)}")
        return lines
    if isinstance(value, list | tuple):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            if isinstance(item, Mapping | list | tuple) and item:
                inner = _lines(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
        return lines
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return _scalar(value)


def to_yaml(value: Mapping[str, Any]) -> str:
    """Block-style YAML for nested dicts and lists of strings, numbers, booleans and None.

    Strings that could read as anything else (numbers, booleans, ``null``,
    ``key: value``, leading punctuation) are double-quoted.
    """
    return "\n".join(_lines(value, 0)) + "\n"


# --- tail-sampling policies ---------------------------------------------------------------


def _policy_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "rule"


def _percentage(ratio: float) -> float:
    return round(ratio * 100.0, 6)


def _ottl_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule_policy(rule: TailRule, name: str) -> dict[str, Any]:
    key, equals = rule.attribute, rule.equals
    if equals is None:
        condition = f"attributes[{_ottl_string(key)}] != nil"
        return {"name": name, "type": "ottl_condition",
                "ottl_condition": {"error_mode": "ignore", "span": [condition]}}
    if isinstance(equals, bool):
        return {"name": name, "type": "boolean_attribute", "boolean_attribute": {"key": key, "value": equals}}
    if isinstance(equals, int):
        return {"name": name, "type": "numeric_attribute",
                "numeric_attribute": {"key": key, "min_value": equals, "max_value": equals}}
    if isinstance(equals, float):  # numeric_attribute compares integers only
        condition = f"attributes[{_ottl_string(key)}] == {equals!r}"
        return {"name": name, "type": "ottl_condition",
                "ottl_condition": {"error_mode": "ignore", "span": [condition]}}
    return {"name": name, "type": "string_attribute", "string_attribute": {"key": key, "values": [equals]}}


def tail_sampling_policies(tail: TailSamplingSettings) -> list[dict[str, Any]]:
    """The ``tail_sampling`` policies for ``[sampling.tail]``; the collector keeps a trace any of them keeps.

    ``enabled`` is not read: in the collector tier the apps keep everything
    and the rules stay in the TOML to feed this.
    """
    policies: list[dict[str, Any]] = [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow", "type": "latency",
         "latency": {"threshold_ms": round(tail.keep_slower_than_s * 1000)}},
    ]
    used = {"errors", "slow", "keep-ratio"}
    for index, rule in enumerate(tail.rules, start=1):
        if rule.keep_ratio <= 0.0:
            continue  # keeps nothing
        name = _policy_name(rule.label)
        if name in used:
            name = f"{name}-{index}"
        used.add(name)
        policy = _rule_policy(rule, name if rule.keep_ratio >= 1.0 else f"{name}-match")
        if rule.keep_ratio < 1.0:
            sample = {"name": f"{name}-ratio", "type": "probabilistic",
                      "probabilistic": {"sampling_percentage": _percentage(rule.keep_ratio)}}
            policy = {"name": name, "type": "and", "and": {"and_sub_policy": [policy, sample]}}
        policies.append(policy)
    if tail.keep_ratio > 0.0:
        policies.append({"name": "keep-ratio", "type": "probabilistic",
                         "probabilistic": {"sampling_percentage": _percentage(tail.keep_ratio)}})
    return policies


def _duration(seconds: float) -> str:
    return f"{seconds:g}s" if seconds >= 1 else f"{round(seconds * 1000)}ms"


def tail_sampling_processor(tail: TailSamplingSettings, decision_wait_s: float) -> dict[str, Any]:
    """The ``tail_sampling`` processor's configuration."""
    return {
        "decision_wait": _duration(decision_wait_s),
        "num_traces": tail.max_open_traces,
        # Spans of a trace decided already (arriving after decision_wait) follow the decision.
        "decision_cache": {"sampled_cache_size": tail.max_open_traces,
                           "non_sampled_cache_size": tail.max_open_traces},
        "policies": tail_sampling_policies(tail),
    }


# --- exporters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Exporters:
    """The ``otlphttp`` exporters both collectors use, by name, and which signals each takes."""

    configs: dict[str, dict[str, Any]]
    traces: list[str]
    metrics: list[str]
    logs: list[str]
    secret: bool


def _exporters(config: Config, options: CollectorOptions) -> _Exporters:
    configs: dict[str, dict[str, Any]] = {}
    traces: list[str] = []
    metrics: list[str] = []
    logs: list[str] = []
    secret = False
    otlp = config.backend_settings.get(_OTLP_SECTION)
    endpoint = options.backend or (otlp.endpoint if otlp is not None else None)
    if endpoint is not None:
        _check_not_the_gateway(endpoint, options.gateway_listen)
        exporter: dict[str, Any] = {"endpoint": endpoint.rstrip("/")}
        if otlp is not None:
            exporter["compression"] = otlp.compression
            exporter["timeout"] = _duration(otlp.timeout)
            if otlp.headers:
                exporter["headers"] = dict(otlp.headers)
                secret = True
            if options.backend is None:  # --backend URL replaces the [otlp] routing; else each signal's URL
                for signal in _SIGNALS:
                    if url := getattr(otlp, f"{signal}_endpoint"):
                        _check_not_the_gateway(url, options.gateway_listen)
                        exporter[f"{signal}_endpoint"] = url
        configs["otlphttp/backend"] = exporter
        if otlp is None or otlp.traces:
            traces.append("otlphttp/backend")
        if otlp is None or otlp.metrics:
            metrics.append("otlphttp/backend")
        if otlp is None or otlp.logs:
            if otlp is not None and otlp.logs_headers:  # the collector's exporter has one set of headers
                configs["otlphttp/backend_logs"] = {**exporter, "headers": {**otlp.headers, **otlp.logs_headers}}
                logs.append("otlphttp/backend_logs")
                secret = True
            else:
                logs.append("otlphttp/backend")
    dsn = next((settings.dsn for name in _SENTRY_SECTIONS
                if (settings := config.backend_settings.get(name)) is not None and settings.dsn), None)
    if dsn:
        try:
            from otel_hakgal.backends.sentry._compat import otlp_logs_target, otlp_traces_target
        except ImportError as error:
            raise CollectorConfigError(
                f"a Sentry DSN is configured, but {error.name or 'sentry-sdk'} is not installed:"
                " pip install 'otel_hakgal[sentry]'"
            ) from None
        traces_url, headers = otlp_traces_target(dsn)
        logs_url, _ = otlp_logs_target(dsn)
        configs["otlphttp/sentry"] = {"traces_endpoint": traces_url, "logs_endpoint": logs_url, "headers": headers}
        traces.append("otlphttp/sentry")
        logs.append("otlphttp/sentry")
        secret = True
    if not traces:
        raise CollectorConfigError(
            "the configuration names no backend for the collectors to export to: configure the otlp backend"
            " ([otlp] endpoint), a sentry or sentry-otlp DSN, or pass --backend URL"
        )
    return _Exporters(configs, traces, metrics, logs, secret)


def _check_not_the_gateway(endpoint: str, gateway_listen: str) -> None:
    """Refuse a backend URL that is the gateway itself: the samplers would send every span round in a loop."""
    parts = urlsplit(endpoint)
    host, _, port = gateway_listen.rpartition(":")
    local = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "[::]", "::"}
    same_host = parts.hostname == host.strip("[]") or (host in ("0.0.0.0", "[::]") and parts.hostname in local)
    backend_port = parts.port or (443 if parts.scheme == "https" else 80)
    if same_host and str(backend_port) == port:
        raise CollectorConfigError(
            f"the backend {endpoint} is the gateway's own address ({gateway_listen}): the collectors would export"
            " to themselves. In the collector tier the TOML's [otlp] endpoint names the backend behind the"
            " collectors (the apps send to the gateway with OTEL_EXPORTER_OTLP_ENDPOINT); pass --backend URL or"
            " another --gateway-listen"
        )


# --- the two configurations -----------------------------------------------------------------

_TELEMETRY = {
    # The collectors' own metrics are off: several collectors on one host would all claim port 8888.
    "metrics": {"level": "none"},
    "logs": {"level": "info"},
}


def _traces_pipeline(processors: list[str], exporters: list[str]) -> dict[str, list[str]]:
    pipeline = {"receivers": ["otlp"], "processors": processors, "exporters": exporters}
    return pipeline if processors else {"receivers": ["otlp"], "exporters": exporters}


def gateway_config(config: Config, options: CollectorOptions) -> dict[str, Any]:
    """The gateway: OTLP/HTTP in; traces load-balanced by trace id to the samplers; metrics and logs to the backends."""
    exporters = _exporters(config, options)
    pipelines = {"traces": _traces_pipeline([], ["loadbalancing"])}
    if exporters.metrics:
        pipelines["metrics"] = {"receivers": ["otlp"], "exporters": exporters.metrics}
    if exporters.logs:
        pipelines["logs"] = {"receivers": ["otlp"], "exporters": exporters.logs}
    used = {name for pipeline in pipelines.values() for name in pipeline["exporters"]}
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": options.gateway_listen}}}},
        "exporters": {
            "loadbalancing": {
                "routing_key": "traceID",
                "protocol": {"otlp": {"tls": {"insecure": True}, "timeout": "10s"}},
                "resolver": {"static": {"hostnames": list(options.samplers)}},
            },
            **{name: exporter for name, exporter in exporters.configs.items() if name in used},
        },
        "service": {"telemetry": _TELEMETRY, "pipelines": pipelines},
    }


def sampler_config(config: Config, options: CollectorOptions) -> dict[str, Any]:
    """A sampling collector: OTLP/gRPC in from the gateway, ``tail_sampling``, ``otlphttp`` out."""
    exporters = _exporters(config, options)
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": options.sampler_listen}}}},
        "processors": {"tail_sampling": tail_sampling_processor(config.sampling_tail, options.decision_wait_s)},
        "exporters": {name: exporters.configs[name] for name in exporters.traces},
        "service": {
            "telemetry": _TELEMETRY,
            "pipelines": {"traces": _traces_pipeline(["tail_sampling"], exporters.traces)},
        },
    }


@dataclass(frozen=True)
class GeneratedFile:
    name: str
    text: str
    secret: bool
    """Holds an auth header (the backend's headers or Sentry's key): write it readable by its owner only."""


def generate(config: Config, options: CollectorOptions, *, command: Sequence[str] | None = None) -> list[GeneratedFile]:
    """``gateway.yaml`` and ``sampler.yaml`` for ``config``; ``command`` is named in their header comment."""
    secret = _exporters(config, options).secret
    header = ["# Generated by otel_hakgal.collector_config from the layer's [sampling.tail] and backends: do not edit."]
    if command:
        header.append(f"# Regenerate: {shlex.join(command)}")
    sampler_notes = [
        "# More sampling collectors on one host: each with its own listen address, e.g.",
        f"#   otelcol-hakgal --config {SAMPLER_FILE} --set=receivers.otlp.protocols.grpc.endpoint=HOST:PORT",
    ]
    files = []
    for name, body, role, notes in (
        (GATEWAY_FILE, gateway_config(config, options), "the gateway collector: load-balances traces by trace id", []),
        (SAMPLER_FILE, sampler_config(config, options), "a sampling collector: tail sampling, then the backends",
         sampler_notes),
    ):
        lines = [*header, f"# This is {role}.", f"# Run: otelcol-hakgal --config {name}", *notes, ""]
        files.append(GeneratedFile(name, "\n".join(lines) + to_yaml(body), secret))
    return files


def write(files: Sequence[GeneratedFile], directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``files`` into ``directory`` (created); a file with a secret gets mode 0600."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for generated in files:
        path = out / generated.name
        if generated.secret:
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
        path.write_text(generated.text, encoding="utf-8")
        paths.append(path)
    return paths


__all__ = [
    "DEFAULT_DECISION_WAIT_S",
    "CollectorConfigError",
    "CollectorOptions",
    "GeneratedFile",
    "gateway_config",
    "generate",
    "sampler_config",
    "tail_sampling_policies",
    "tail_sampling_processor",
    "to_yaml",
    "write",
]
