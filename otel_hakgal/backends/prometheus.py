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
exporter's own rules), except that a gauge is never served with a ``_count``
suffix, which ``promtool check metrics`` refuses: ``process_thread_count`` is
served as ``process_threads``, ``process_open_file_descriptor_count`` as
``process_open_fds`` (``conventions.PROCESS_METRICS``), any other ``<stem>_count``
gauge as ``<stem>s`` (``_prometheus_endpoint.gauge_name``). Traces are not handled: pair it with ``otlp`` or
``sentry`` for those.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource

from otel_hakgal.backends.base import Backend, Parts
from otel_hakgal.config import Config, setting

if TYPE_CHECKING:  # the prometheus extra: imported when the backend starts
    from otel_hakgal.backends._prometheus_endpoint import Endpoint, MergedCollector, ProcessMetrics

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
    from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_full_name

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
    from opentelemetry.exporter.prometheus._mapping import sanitize_attribute

    return sanitize_attribute(attribute)


class PrometheusBackend(Backend):
    name = "prometheus"
    Settings = PrometheusSettings
    requires = (
        "prometheus_client",
        "opentelemetry.exporter.prometheus",
        "opentelemetry.instrumentation.system_metrics",
    )
    extra = "prometheus"

    def __init__(self, config: Config, resource: Resource) -> None:
        super().__init__(config, resource)
        self._endpoint: Endpoint | None = None
        self._collector: MergedCollector | None = None
        self._process_metrics: ProcessMetrics | None = None

    def create_parts(self) -> Parts:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        from otel_hakgal.backends._prometheus_endpoint import Endpoint, MergedCollector, ProcessMetrics

        main_registry = CollectorRegistry(auto_describe=False)
        reader = PrometheusMetricReader(registry=main_registry)
        registries = [main_registry]
        if self.settings.process_metrics:
            self._process_metrics = ProcessMetrics.acquire(self.resource)
            registries.append(self._process_metrics.registry)
        self._collector = MergedCollector(registries)
        host, port = self.settings.host, self.settings.port
        try:
            self._endpoint = Endpoint.serve(host, port, self._collector)
        except OSError as error:
            # Telemetry never stops the app: without the endpoint, metrics are simply not scraped.
            logger.error("prometheus backend: cannot listen on %s:%s (%s); metrics are not served", host, port, error)
        return Parts(metric_readers=(reader,))

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on (the chosen one when configured with 0), or None."""
        return None if self._endpoint is None else self._endpoint.key[1]

    @property
    def url(self) -> str | None:
        """The scrape URL, or None when the endpoint could not be started."""
        if self.port is None:
            return None
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/metrics"

    def shutdown(self) -> None:
        if self._endpoint is not None and self._collector is not None:
            self._endpoint.release(self._collector)
            self._endpoint = None
        if self._process_metrics is not None:
            self._process_metrics.release()
            self._process_metrics = None
