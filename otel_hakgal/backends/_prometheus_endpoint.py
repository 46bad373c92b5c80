"""The ``prometheus`` backend's scrape endpoint and process metrics (imported only when it starts)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar, Final
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric as PrometheusMetric
from prometheus_client.registry import Collector

from otel_hakgal.backends.prometheus import prometheus_name
from otel_hakgal.conventions import PROCESS_METRICS


class ProcessMetricsInstrumentor(SystemMetricsInstrumentor):
    """Our own instance of the system-metrics instrumentor.

    ``BaseInstrumentor`` is a per-class singleton; a subclass with its own
    ``_instance`` keeps ours apart from one that zero-code auto-instrumentation
    may have started on the global MeterProvider.
    """

    _instance = None


def process_metrics_config() -> dict[str, list[str] | None]:
    """The system-metrics instrumentor's config: the metrics it records, by the names it records them under."""
    config: dict[str, list[str] | None] = {}
    for definition in PROCESS_METRICS:
        name = definition.instrument_name
        config[name] = ["user", "system"] if name.startswith("process.cpu.") else None
    return config


# Families served under another name: the conventions' renames (``process_thread_count`` -> ``process_threads``).
_RENAMED: Final = {
    prometheus_name(d.recorded_as, d.unit, d.instrument): prometheus_name(d.name, d.unit, d.instrument)
    for d in PROCESS_METRICS
    if d.recorded_as
}
_GAUGE_TYPES: Final = ("gauge", "unknown")


def gauge_name(family: str) -> str:
    """The name a gauge family is served under, so that a scrape passes ``promtool check metrics``.

    ``_count`` is reserved for histograms and summaries; Prometheus names a gauge that
    counts things by their plural. So the conventions' renames apply first
    (``process_open_file_descriptor_count`` -> ``process_open_fds``), and any other
    ``<stem>_count`` gauge, e.g. the system metrics the launcher instruments on the
    global provider, becomes ``<stem>s`` (``system_thread_count`` -> ``system_threads``).
    """
    if family in _RENAMED:
        return _RENAMED[family]
    if not family.endswith("_count"):
        return family
    stem = family.removesuffix("_count")
    return stem + ("es" if stem.endswith(("s", "x", "ch", "sh")) else "s")


def _served(family: PrometheusMetric) -> PrometheusMetric:
    name = gauge_name(family.name) if family.type in _GAUGE_TYPES else family.name
    if name == family.name:
        return family
    try:
        renamed = PrometheusMetric(name, family.documentation, family.type, family.unit)
    except ValueError:  # a unit the new name does not end with
        renamed = PrometheusMetric(name, family.documentation, family.type)
    renamed.samples = [sample._replace(name=name + sample.name[len(family.name) :]) for sample in family.samples]
    return renamed


class MergedCollector(Collector):
    """Serves several readers' collections as one, each metric family once, gauges named by :func:`gauge_name`."""

    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = tuple(registries)
        self._lock = threading.Lock()

    def collect(self) -> Iterable[PrometheusMetric]:
        with self._lock:  # a collection drains the readers' queues: one scrape at a time
            return list(self._merged())

    def _merged(self) -> Iterator[PrometheusMetric]:
        seen: set[str] = set()
        for registry in self._registries:
            for collected in registry.collect():
                family = _served(collected)
                if family.name in seen:  # e.g. process metrics also instrumented on the global provider
                    continue
                seen.add(family.name)
                yield family


class Endpoint(Collector):
    """One scrape endpoint per (host, port), handed from a backend to the one that replaces it.

    ``setup()`` starts the new backends before it stops the old ones, so a
    reconfigured ``prometheus`` backend finds its port still taken by its
    predecessor: it takes over the running endpoint instead of failing to bind.
    The endpoint serves the newest of its sources; when that one leaves (its
    setup failed to start, or was replaced), the one before it is served again.
    """

    _open: ClassVar[dict[tuple[str, int], Endpoint]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: tuple[str, int], server: WSGIServer) -> None:
        self.key = key
        self.server = server
        self.sources: list[Collector] = []

    def collect(self) -> Iterable[PrometheusMetric]:
        sources = self.sources
        return sources[-1].collect() if sources else ()

    @classmethod
    def serve(cls, host: str, port: int, source: Collector) -> Endpoint:
        """The endpoint on ``host:port`` now serving ``source``; raises ``OSError`` if the port is taken."""
        with cls._lock:
            endpoint = cls._open.get((host, port)) if port else None
            if endpoint is None:
                registry = CollectorRegistry(auto_describe=False)
                server, _ = start_http_server(port, addr=host, registry=registry)
                endpoint = cls(key=(host, port or int(server.server_port)), server=server)
                registry.register(endpoint)
                cls._open[endpoint.key] = endpoint
            endpoint.sources = [*endpoint.sources, source]
            return endpoint

    def release(self, source: Collector) -> None:
        """Stop serving ``source``; close the endpoint when no source is left."""
        with self._lock:
            self.sources = [s for s in self.sources if s is not source]
            if self.sources:
                return
            self._open.pop(self.key, None)
        self.server.shutdown()
        self.server.server_close()


class ProcessMetrics:
    """Process resource usage on a MeterProvider of its own, shared by a backend and the one replacing it.

    The instrumentor is a per-class singleton: a second backend instrumenting
    while its predecessor still runs would get nothing, and the predecessor's
    shutdown would uninstrument both. So one instance serves all users, and the
    last one to leave stops it.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _shared: ClassVar[ProcessMetrics | None] = None

    def __init__(self, resource: Resource) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # target_info comes from the backend's main reader already.
        reader = PrometheusMetricReader(registry=self.registry, disable_target_info=True)
        self._provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        self._instrumentor = ProcessMetricsInstrumentor(config=process_metrics_config())
        self._instrumentor.instrument(meter_provider=self._provider)
        self._users = 0

    @classmethod
    def acquire(cls, resource: Resource) -> ProcessMetrics:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls(resource)
            cls._shared._users += 1
            return cls._shared

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            ProcessMetrics._shared = None
        self._instrumentor.uninstrument()
        self._provider.shutdown()
