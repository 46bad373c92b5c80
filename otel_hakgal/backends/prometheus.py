"""Backend ``prometheus``: a scrape endpoint serving the layer's metrics and process resource usage.

The endpoint (``http://<host>:<port>/metrics``) serves, in the Prometheus text format:

- every metric recorded through the process's MeterProvider: the layer's own
  (``conventions.METRICS``) and any instrumentation's that records to the global
  provider, e.g. the Flask instrumentation's HTTP server metrics;
- process resource usage (``conventions.PROCESS_METRICS``: CPU time, memory,
  threads, file descriptors) from ``opentelemetry-instrumentation-system-metrics``,
  read at each scrape on a MeterProvider of the backend's own, so it is served
  whatever other backends are active and is not sent to them.

OTel names become Prometheus names as :func:`prometheus_name` describes (the
exporter's own rules). Traces are not handled: pair it with ``otlp`` or
``sentry`` for those.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric as PrometheusMetric
from prometheus_client.registry import Collector

from otel_hakgal.backends import Backend
from otel_hakgal.config import setting
from otel_hakgal.conventions import PROCESS_METRICS

logger = logging.getLogger("otel_hakgal")

# The exporter turns OTel instrument kinds into these Prometheus types.
_COUNTER_KINDS = ("counter", "observable_counter")
_HISTOGRAM_KINDS = ("histogram",)


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "a port from 1 to 65535 (0 picks a free port)"


def _host(value: Any) -> str | None:
    return None if value.strip() else "a host name or address to listen on, e.g. '127.0.0.1'"


@dataclass(frozen=True)
class PrometheusSettings:
    port: int = setting(
        9464,
        "Port of the scrape endpoint `/metrics` (0 picks a free port). One process per port: "
        "with several worker processes, give each its own port or use `otlp` and a Collector.",
        env="OTEL_EXPORTER_PROMETHEUS_PORT",
        validate=_port,
    )
    host: str = setting(
        "127.0.0.1",
        "Address the scrape endpoint listens on; `0.0.0.0` to let a remote Prometheus scrape.",
        env="OTEL_EXPORTER_PROMETHEUS_HOST",
        validate=_host,
    )
    process_metrics: bool = setting(True, "Also serve process CPU, memory, thread and file-descriptor usage.")


def prometheus_name(name: str, unit: str, instrument: str) -> str:
    """The Prometheus metric family name the exporter gives an OTel metric.

    Dots and other invalid characters become ``_``; the unit is mapped
    (``s`` -> ``seconds``, ``By`` -> ``bytes``, ``1`` -> nothing, ``{annotation}``
    -> nothing) and appended unless the name already ends with it. Counters then
    get ``_total`` and histograms ``_bucket``/``_sum``/``_count`` on their series
    (see :func:`series_names`).
    """
    del instrument  # the family name does not depend on it; kept for symmetry with series_names
    family = sanitize_full_name(name)
    suffix = map_unit(unit)
    if suffix and not family.endswith("_" + suffix):
        family += "_" + suffix
    return family


def series_names(name: str, unit: str, instrument: str) -> tuple[str, ...]:
    """Every series name a metric appears under in a scrape."""
    family = prometheus_name(name, unit, instrument)
    if instrument in _HISTOGRAM_KINDS:
        return (f"{family}_bucket", f"{family}_sum", f"{family}_count")
    if instrument in _COUNTER_KINDS:
        return (f"{family}_total",)
    return (family,)  # gauges and up-down counters (served as gauges)


def label_name(attribute: str) -> str:
    """The Prometheus label an OTel attribute key becomes (``gen_ai.provider.name`` -> ``gen_ai_provider_name``)."""
    return sanitize_attribute(attribute)


class _ProcessMetricsInstrumentor(SystemMetricsInstrumentor):
    """Our own instance of the system-metrics instrumentor.

    ``BaseInstrumentor`` is a per-class singleton; a subclass with its own
    ``_instance`` keeps ours apart from one that zero-code auto-instrumentation
    may have started on the global MeterProvider.
    """

    _instance = None


def _process_metrics_config() -> dict[str, list[str] | None]:
    config: dict[str, list[str] | None] = {}
    for definition in PROCESS_METRICS:
        config[definition.name] = ["user", "system"] if definition.name.startswith("process.cpu.") else None
    return config


class _MergedCollector(Collector):
    """Serves several readers' collections as one, each metric family once."""

    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = tuple(registries)
        self._lock = threading.Lock()

    def collect(self) -> Iterable[PrometheusMetric]:
        with self._lock:  # a collection drains the readers' queues: one scrape at a time
            return list(self._merged())

    def _merged(self) -> Iterator[PrometheusMetric]:
        seen: set[str] = set()
        for registry in self._registries:
            for family in registry.collect():
                if family.name in seen:  # e.g. process metrics also instrumented on the global provider
                    continue
                seen.add(family.name)
                yield family


class PrometheusBackend(Backend):
    name = "prometheus"
    Settings = PrometheusSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registry = CollectorRegistry(auto_describe=False)
        self._main_registry = CollectorRegistry(auto_describe=False)
        self.reader = PrometheusMetricReader(registry=self._main_registry)
        registries = [self._main_registry]
        self._process_provider: MeterProvider | None = None
        self._instrumentor: _ProcessMetricsInstrumentor | None = None
        if self.settings.process_metrics:
            process_registry = CollectorRegistry(auto_describe=False)
            # target_info comes from the main reader already.
            process_reader = PrometheusMetricReader(registry=process_registry, disable_target_info=True)
            self._process_provider = MeterProvider(
                resource=self.resource, metric_readers=[process_reader], shutdown_on_exit=False
            )
            self._instrumentor = _ProcessMetricsInstrumentor(config=_process_metrics_config())
            self._instrumentor.instrument(meter_provider=self._process_provider)
            registries.append(process_registry)
        self.registry.register(_MergedCollector(registries))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._serve()

    def _serve(self) -> None:
        host, port = self.settings.host, self.settings.port
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            # Telemetry never stops the app: without the endpoint, metrics are simply not scraped.
            logger.error("prometheus backend: cannot listen on %s:%s (%s); metrics are not served", host, port, error)

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on (the chosen one when configured with 0), or None."""
        return None if self._server is None else int(self._server.server_port)

    @property
    def url(self) -> str | None:
        """The scrape URL, or None when the endpoint could not be started."""
        if self.port is None:
            return None
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/metrics"

    def metric_readers(self) -> Sequence[MetricReader]:
        return (self.reader,)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._instrumentor is not None:
            self._instrumentor.uninstrument()
            self._instrumentor = None
        if self._process_provider is not None:
            self._process_provider.shutdown()
            self._process_provider = None


BACKEND = PrometheusBackend
