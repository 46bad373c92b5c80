"""Every sentry-sdk name the layer uses beyond sentry-sdk's documented API, in this one module.

sentry-sdk may rename or drop its private and undocumented names in any
release. Importing them here, and nowhere else, makes an upgrade that breaks
one fail in one place, at backend start, with :class:`IncompatibleSentrySdk`
naming the supported version range; ``tests/backends/test_sentry_compat.py``
has one test per name. The documented API (``sentry_sdk.init``, the scopes,
``capture_event``, the integrations, ``Envelope``) is used directly.

Names, each a module attribute or small function below:

- ``SPAN_ITEM_TYPE`` / ``SPAN_ITEM_CONTENT_TYPE``: ``sentry_sdk._span_batcher.SpanBatcher``'s
  envelope item for streamed (v2) spans;
- ``v2_span``: ``sentry_sdk.client._serialized_v1_span_to_serialized_v2_span``;
- ``prepare_event``: ``Client._prepare_event``;
- ``merged_scope``: ``Scope._merge_scopes``;
- ``HookedHttpTransport``: ``HttpTransport._request``, ``._send_request`` (its ``envelope``) and
  ``.on_dropped_event``; for sending several envelopes at once, ``._create_worker(options)`` (the
  worker it submits each send to: ``submit``, ``full``, ``flush``, ``kill``, ``is_alive``, and
  ``options["transport_queue_size"]``), ``._get_pool_options()`` (urllib3 ``PoolManager`` keyword
  arguments, given ``maxsize``), ``._make_pool()`` and ``._pool`` (a fresh pool in a forked child),
  and ``._fetch_pending_client_report`` / ``.record_lost_event`` (the client-report tally, locked
  around them: sentry-sdk assumes one sending thread);
- ``transport_queue``: the transport's ``_worker._queue`` (a sentry-sdk worker's; the layer's own
  ``SenderPool`` is asked directly);
- ``compression_options``: ``_experiments["transport_compression_level"]``;
- ``register_external_propagation_context`` / ``remove_external_propagation_context``
  (``sentry_sdk.scope``);
- ``SENTRY_TRACE_KEY`` / ``SENTRY_BAGGAGE_KEY`` (OTel context keys of sentry-sdk's OTel integration);
- ``SPAN_ORIGIN`` (the origin sentry-sdk's OTel span processor gives spans);
- ``Baggage``, ``extract_sentrytrace_data`` (``sentry_sdk.tracing_utils``);
- ``event_from_exception``, ``format_timestamp`` (``sentry_sdk.utils``);
- ``otlp_traces_target``: ``Dsn(...).to_auth(...).get_api_url(EndpointType.OTLP_TRACES)``;
- ``otlp_logs_target``: the same URL with ``v1/logs`` for ``v1/traces`` (sentry-sdk has no ``OTLP_LOGS``);
- ``capture_log``: ``Client._capture_log`` (a log with its own trace and span id; ``sentry_sdk.logger``
  takes them from the calling thread's scope);
- ``LOG_ITEM_TYPE`` / ``LOG_ITEM_CONTENT_TYPE`` / ``log_batcher_depth``: ``sentry_sdk._log_batcher.LogBatcher``'s
  envelope item, and the client's ``log_batcher``'s ``_buffer`` and ``MAX_BEFORE_DROP``;
- ``profile_scheduler``, ``profile_session_sampled``, ``start_profile``, ``running_profiler_id``,
  ``wait_profiler_idle``, ``stop_profile_scheduler``: the continuous profiler's module-global
  ``_scheduler`` and its ``sampled``, ``lifecycle``, ``auto_start()``, ``profiler_id``, ``thread``,
  ``teardown()`` (and ``teardown_continuous_profiler``);
- ``PROFILE_CHUNK_ITEM_TYPE``: the envelope item the profiler's chunks travel in;
- ``without_live_request_processors``: ``Scope.fork()`` and ``Scope._event_processors``, with the
  module of the Flask integration's request event processor.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from otel_hakgal.backends.sentry.worker import SenderPool
from otel_hakgal.fork_safety import EXPORTS_IN_FLIGHT

SUPPORTED: Final = "sentry-sdk>=2.75,<3"


class IncompatibleSentrySdk(ImportError):
    """The installed sentry-sdk lacks a name the Sentry backends rely on."""


def _incompatible(what: str, error: BaseException | None = None) -> IncompatibleSentrySdk:
    try:
        from sentry_sdk.consts import VERSION
    except ImportError:
        VERSION = "unknown"
    detail = f" ({error})" if error is not None else ""
    return IncompatibleSentrySdk(
        f"otel_hakgal's Sentry backends need {what} from sentry-sdk, which the installed sentry-sdk "
        f"{VERSION} lacks{detail}; install a supported version: pip install '{SUPPORTED}'"
    )


try:
    import sentry_sdk
    from sentry_sdk._log_batcher import LogBatcher
    from sentry_sdk._span_batcher import SpanBatcher
    from sentry_sdk.client import _serialized_v1_span_to_serialized_v2_span
    from sentry_sdk.consts import VERSION, EndpointType
    from sentry_sdk.integrations.opentelemetry.consts import SENTRY_BAGGAGE_KEY, SENTRY_TRACE_KEY
    from sentry_sdk.integrations.opentelemetry.span_processor import SPAN_ORIGIN
    from sentry_sdk.profiler import continuous_profiler as _continuous_profiler
    from sentry_sdk.scope import Scope, register_external_propagation_context, remove_external_propagation_context
    from sentry_sdk.tracing_utils import Baggage, extract_sentrytrace_data
    from sentry_sdk.transport import HttpTransport
    from sentry_sdk.utils import Dsn, event_from_exception, format_timestamp

    _ = EndpointType.OTLP_TRACES
except ImportError as error:
    if error.name == "sentry_sdk":
        raise ImportError("sentry-sdk is not installed: pip install 'otel_hakgal[sentry]'") from error
    raise _incompatible(f"'{error.name}'", error) from error
except AttributeError as error:
    raise _incompatible("EndpointType.OTLP_TRACES", error) from error

# Methods the layer calls or overrides: checked at import, so a missing one fails here, not mid-send.
for _owner, _method in (
    (sentry_sdk.Client, "_prepare_event"),
    (sentry_sdk.Client, "_capture_log"),
    (Scope, "_merge_scopes"),
    (HttpTransport, "_request"),
    (HttpTransport, "_send_request"),
    (HttpTransport, "on_dropped_event"),
    (HttpTransport, "_create_worker"),
    (HttpTransport, "_get_pool_options"),
    (HttpTransport, "_make_pool"),
    (HttpTransport, "_fetch_pending_client_report"),
    (HttpTransport, "record_lost_event"),
):
    if not callable(getattr(_owner, _method, None)):
        raise _incompatible(f"{_owner.__name__}.{_method}")

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient

__all__ = [
    "LOG_ITEM_CONTENT_TYPE",
    "LOG_ITEM_TYPE",
    "PROFILE_CHUNK_ITEM_TYPE",
    "SENTRY_BAGGAGE_KEY",
    "SENTRY_TRACE_KEY",
    "SPAN_ITEM_CONTENT_TYPE",
    "SPAN_ITEM_TYPE",
    "SPAN_ORIGIN",
    "SUPPORTED",
    "Baggage",
    "HookedHttpTransport",
    "IncompatibleSentrySdk",
    "capture_log",
    "compression_options",
    "event_from_exception",
    "extract_sentrytrace_data",
    "format_timestamp",
    "log_batcher_depth",
    "merged_scope",
    "otlp_logs_target",
    "otlp_traces_target",
    "prepare_event",
    "profile_scheduler",
    "profile_session_sampled",
    "register_external_propagation_context",
    "remove_external_propagation_context",
    "running_profiler_id",
    "start_profile",
    "stop_profile_scheduler",
    "transport_queue",
    "v2_span",
    "wait_profiler_idle",
]

# --- envelope items ------------------------------------------------------------

# The envelope item sentry-sdk streams gen_ai spans in (v2 span format).
SPAN_ITEM_TYPE: Final[str] = SpanBatcher.TYPE
SPAN_ITEM_CONTENT_TYPE: Final[str] = SpanBatcher.CONTENT_TYPE


def v2_span(span: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """A transaction's span JSON (v1) as a streamed span item entry (v2), as sentry-sdk converts it."""
    converted: dict[str, Any] = _serialized_v1_span_to_serialized_v2_span(span, event)  # type: ignore[arg-type]
    return converted


# The envelope item sentry-sdk batches logs in (``{"version": 2, "items": [...]}``).
LOG_ITEM_TYPE: Final[str] = LogBatcher.TYPE
LOG_ITEM_CONTENT_TYPE: Final[str] = LogBatcher.CONTENT_TYPE

# --- events ----------------------------------------------------------------------


def prepare_event(
    client: BaseClient, event: dict[str, Any], scope: Scope, hint: dict[str, Any]
) -> dict[str, Any] | None:
    """The client's own event preparation (scope data, event processors, serializer, ``before_send*``).

    None when a processor or ``before_send_transaction`` (which gets ``hint``) dropped the event.
    """
    prepared: dict[str, Any] | None = client._prepare_event(event, hint, scope)  # type: ignore[attr-defined]
    return prepared


def merged_scope() -> Scope:
    """Global, isolation and current scope of this thread merged, as ``capture_event`` merges them."""
    return sentry_sdk.get_current_scope()._merge_scopes()


# Integrations whose event processors read the live request object (its body, its form) when an event
# is prepared; the WSGI middleware's processor reads only the environ dict and may run anywhere.
_LIVE_REQUEST_PROCESSOR_MODULES: Final = frozenset({"sentry_sdk.integrations.flask"})


def without_live_request_processors(scope: Scope) -> Scope:
    """A fork of ``scope`` for an event prepared after its request ended, on another thread.

    Flask's event processor reads the request's body (``request.form``, ``get_data()``) when the event
    is prepared. After the response, on another thread, that read races the server draining the same
    body (gunicorn: "generator already executing") and reads bodies the app never read. The URL,
    method and headers still come from the WSGI middleware's processor.
    """
    forked = scope.fork()
    forked._event_processors = [
        processor
        for processor in forked._event_processors
        if getattr(processor, "__module__", None) not in _LIVE_REQUEST_PROCESSOR_MODULES
    ]
    return forked


# --- logs ---------------------------------------------------------------------------------


def capture_log(client: BaseClient, log: dict[str, Any], scope: Scope) -> None:
    """Hand a Sentry log (sentry-sdk's ``Log`` dict) to ``client`` as ``sentry_sdk.logger`` does.

    The client applies ``scope`` (its attributes, and the trace and span id where ``log`` has none),
    runs ``before_send_log`` and adds the log to its batcher, which sends it within seconds.
    """
    client._capture_log(log, scope=scope)  # type: ignore[arg-type]


def log_batcher_depth(client: BaseClient) -> tuple[int, int] | None:
    """(logs buffered now, the count at which the batcher drops new ones) of ``client``; None if it has none."""
    batcher = getattr(client, "log_batcher", None)
    buffer = getattr(batcher, "_buffer", None)
    if batcher is None or buffer is None:
        return None
    try:
        return len(buffer), int(batcher.MAX_BEFORE_DROP)
    except (AttributeError, TypeError, ValueError):
        return None


# --- transport ------------------------------------------------------------------------


class HookedHttpTransport(HttpTransport):
    """sentry-sdk's HTTP transport with public hooks over its private methods, sending several envelopes at once.

    ``around_request(send)`` wraps each HTTP request (``send()`` performs it and
    returns the urllib3 response); during it, ``sending_items`` holds the item
    types of the envelope being sent (per sending thread). ``queue_overflows`` counts envelopes the
    transport dropped because its queue was full.

    ``senders`` (a class attribute, set by the subclass the backend makes) is how many envelopes are
    in flight at once: sentry-sdk's one-thread worker becomes a :class:`SenderPool` of that many
    threads, and its urllib3 pool keeps that many connections alive per host. Everything else per
    envelope is sentry-sdk's own: ``_prepare_envelope`` drops items whose category is rate-limited
    (recording client reports), ``_handle_response`` reads 429, ``Retry-After`` and
    ``X-Sentry-Rate-Limits``, and failures are recorded as lost. What sentry-sdk keeps for that
    (``_disabled_until``, a dict of deadlines) is updated atomically under the GIL; the client-report
    tally (``_discarded_events``, read-modify-written and swapped) is guarded by a lock here, as
    several senders and the request threads record losses at once.
    """

    senders: int = 1
    queue_overflows = 0

    def __init__(self, options: dict[str, Any]) -> None:
        self._sending = threading.local()
        self._reports_lock = threading.RLock()  # record_lost_event records a transaction's spans re-entrantly
        super().__init__(options)
        _transports.add(self)

    # --- concurrency ---

    def _create_worker(self, options: dict[str, Any]) -> Any:  # sentry-sdk's Worker interface, not its class
        return SenderPool(options["transport_queue_size"], self.senders)

    def _get_pool_options(self) -> dict[str, Any]:
        options: dict[str, Any] = super()._get_pool_options()
        options["maxsize"] = max(1, self.senders)  # connections kept alive per host: one per sender
        return options

    def _after_fork_in_child(self) -> None:
        """The parent's kept-alive connections are not this process's to use (a request on one would
        interleave with the parent's): a fresh pool, and fresh locks (another thread may have held them)."""
        self._reports_lock = threading.RLock()
        self._sending = threading.local()
        self._pool = self._make_pool()

    # --- client reports: recorded by every sender and request thread at once ---

    def record_lost_event(self, reason: str, data_category: Any = None, item: Any = None, *, quantity: int = 1) -> None:
        with self._reports_lock:
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    def _fetch_pending_client_report(self, force: bool = False, interval: int = 60) -> Any:
        with self._reports_lock:
            return super()._fetch_pending_client_report(force=force, interval=interval)

    # --- hooks ---

    @property
    def sending_items(self) -> frozenset[str]:
        """The item types of the envelope this thread is sending (empty outside a send)."""
        items: frozenset[str] = getattr(self._sending, "items", frozenset())
        return items

    def _send_request(self, body: Any, headers: Any, endpoint_type: Any, envelope: Any = None) -> None:
        items = getattr(envelope, "items", None) or ()
        self._sending.items = frozenset(str(getattr(item, "type", "")) for item in items)
        try:
            super()._send_request(body, headers=headers, endpoint_type=endpoint_type, envelope=envelope)
        finally:
            self._sending.items = frozenset()

    def _request(self, method: str, endpoint_type: Any, body: Any, headers: Any) -> Any:
        send = super()._request
        with EXPORTS_IN_FLIGHT.sending():  # a fork waits for it (see otel_hakgal.fork_safety)
            return self.around_request(lambda: send(method, endpoint_type, body, headers))

    def around_request(self, send: Callable[[], Any]) -> Any:
        return send()

    def on_dropped_event(self, reason: str) -> None:
        if reason == "full_queue":
            self.queue_overflows += 1
        super().on_dropped_event(reason)


_transports: weakref.WeakSet[HookedHttpTransport] = weakref.WeakSet()


def _transports_after_fork_in_child() -> None:
    for transport in list(_transports):
        try:
            transport._after_fork_in_child()
        except Exception:  # never fail a fork: that transport keeps the parent's pool
            continue


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_transports_after_fork_in_child)


def transport_queue(transport: object) -> tuple[int, int] | None:
    """(envelopes queued now, capacity) of a transport's background worker; None if it has no such queue.

    In flight is not queued: the layer's :class:`SenderPool` counts as sentry-sdk's worker does.
    """
    worker = getattr(transport, "_worker", None)
    if isinstance(worker, SenderPool):
        return worker.depth()
    queue = getattr(worker, "_queue", None)
    if queue is None:
        return None
    try:
        return int(queue.qsize()), int(queue.maxsize)
    except (AttributeError, TypeError, ValueError):
        return None


def compression_options(level: int) -> dict[str, Any]:
    """``sentry_sdk.init`` options for gzip envelopes at ``level`` (0: uncompressed)."""
    return {"_experiments": {"transport_compression_level": level}}


# --- OTLP endpoint --------------------------------------------------------------------


def otlp_traces_target(dsn: str) -> tuple[str, dict[str, str]]:
    """Sentry's OTLP traces URL for ``dsn`` and the auth header it wants."""
    auth = Dsn(dsn).to_auth(f"sentry.python/{VERSION}")
    return auth.get_api_url(EndpointType.OTLP_TRACES), {"X-Sentry-Auth": auth.to_header()}


_OTLP_TRACES_PATH: Final = "v1/traces/"
_OTLP_LOGS_PATH: Final = "v1/logs/"


def otlp_logs_target(dsn: str) -> tuple[str, dict[str, str]]:
    """Sentry's OTLP logs URL for ``dsn`` (``/api/<project>/integration/otlp/v1/logs/``) and its auth header."""
    traces, headers = otlp_traces_target(dsn)
    if not traces.endswith(_OTLP_TRACES_PATH):
        raise _incompatible(f"an OTLP traces URL ending in {_OTLP_TRACES_PATH!r} (got {traces!r})")
    return traces[: -len(_OTLP_TRACES_PATH)] + _OTLP_LOGS_PATH, headers


# --- the continuous profiler ---------------------------------------------------------
#
# ``sentry_sdk.init(profile_session_sample_rate=..., profile_lifecycle="trace")`` (documented options) sets up
# the module-global scheduler ``sentry_sdk.profiler.continuous_profiler._scheduler``. Sentry's own
# transactions start it with ``try_profile_lifecycle_trace_start()``; the layer has no Sentry transaction on
# the request thread, so it keeps the scheduler its client set up and drives that one.


def profile_scheduler() -> Any | None:
    """The continuous profiler's scheduler ``sentry_sdk.init`` set up last (None: none)."""
    return _continuous_profiler._scheduler


def profile_session_sampled(scheduler: Any) -> bool:
    """Whether this process's profile session was sampled (``profile_session_sample_rate``, decided once)."""
    return bool(scheduler.sampled) and scheduler.lifecycle == "trace"


def start_profile(scheduler: Any) -> Any | None:
    """Start the sampler thread if it is not running; the returned handle's ``stop()`` releases it.

    The scheduler samples while any handle is active and stops itself (flushing its chunk) at the first
    sample after the last one stopped. Lock-free while the sampler runs: a deque append and two reads.
    """
    return scheduler.auto_start()


def running_profiler_id(scheduler: Any) -> str | None:
    """The id the chunks of the running sampler carry (None when it is not running)."""
    profiler_id: str | None = scheduler.profiler_id
    return profiler_id


def wait_profiler_idle(scheduler: Any, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the sampler thread to stop (its last chunk is then in the transport)."""
    thread = scheduler.thread
    if thread is not None:
        thread.join(timeout_s)
        return not thread.is_alive()
    return True


def stop_profile_scheduler(scheduler: Any) -> None:
    """Stop ``scheduler``'s sampler thread (its last chunk goes to its client) and forget it if still global."""
    scheduler.teardown()
    if _continuous_profiler._scheduler is scheduler:
        _continuous_profiler.teardown_continuous_profiler()


PROFILE_CHUNK_ITEM_TYPE: Final = "profile_chunk"

_profiler_names: tuple[tuple[object, str, str], ...] = (
    (_continuous_profiler.ContinuousScheduler, "ContinuousScheduler", "auto_start"),
    (_continuous_profiler.ThreadContinuousScheduler, "ThreadContinuousScheduler", "teardown"),
    (_continuous_profiler.ContinuousProfile, "ContinuousProfile", "stop"),
    (_continuous_profiler, "continuous_profiler", "teardown_continuous_profiler"),
)
for _holder, _holder_name, _function in _profiler_names:
    if not callable(getattr(_holder, _function, None)):
        raise _incompatible(f"{_holder_name}.{_function}")
if not hasattr(_continuous_profiler, "_scheduler") or not isinstance(
    getattr(_continuous_profiler.ContinuousScheduler, "profiler_id", None), property
):
    raise _incompatible("sentry_sdk.profiler.continuous_profiler._scheduler / ContinuousScheduler.profiler_id")
