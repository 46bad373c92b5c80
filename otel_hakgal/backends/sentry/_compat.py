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
- ``HookedHttpTransport``: ``HttpTransport._request`` and ``HttpTransport.on_dropped_event``;
- ``transport_queue``: the transport's ``_worker._queue``;
- ``compression_options``: ``_experiments["transport_compression_level"]``;
- ``register_external_propagation_context`` / ``remove_external_propagation_context``
  (``sentry_sdk.scope``);
- ``SENTRY_TRACE_KEY`` / ``SENTRY_BAGGAGE_KEY`` (OTel context keys of sentry-sdk's OTel integration);
- ``SPAN_ORIGIN`` (the origin sentry-sdk's OTel span processor gives spans);
- ``Baggage``, ``extract_sentrytrace_data`` (``sentry_sdk.tracing_utils``);
- ``event_from_exception``, ``format_timestamp`` (``sentry_sdk.utils``);
- ``otlp_traces_target``: ``Dsn(...).to_auth(...).get_api_url(EndpointType.OTLP_TRACES)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

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
    from sentry_sdk._span_batcher import SpanBatcher
    from sentry_sdk.client import _serialized_v1_span_to_serialized_v2_span
    from sentry_sdk.consts import VERSION, EndpointType
    from sentry_sdk.integrations.opentelemetry.consts import SENTRY_BAGGAGE_KEY, SENTRY_TRACE_KEY
    from sentry_sdk.integrations.opentelemetry.span_processor import SPAN_ORIGIN
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
    (Scope, "_merge_scopes"),
    (HttpTransport, "_request"),
    (HttpTransport, "on_dropped_event"),
):
    if not callable(getattr(_owner, _method, None)):
        raise _incompatible(f"{_owner.__name__}.{_method}")

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient

__all__ = [
    "SENTRY_BAGGAGE_KEY",
    "SENTRY_TRACE_KEY",
    "SPAN_ITEM_CONTENT_TYPE",
    "SPAN_ITEM_TYPE",
    "SPAN_ORIGIN",
    "SUPPORTED",
    "Baggage",
    "HookedHttpTransport",
    "IncompatibleSentrySdk",
    "compression_options",
    "event_from_exception",
    "extract_sentrytrace_data",
    "format_timestamp",
    "merged_scope",
    "otlp_traces_target",
    "prepare_event",
    "register_external_propagation_context",
    "remove_external_propagation_context",
    "transport_queue",
    "v2_span",
]

# --- envelope items ------------------------------------------------------------

# The envelope item sentry-sdk streams gen_ai spans in (v2 span format).
SPAN_ITEM_TYPE: Final[str] = SpanBatcher.TYPE
SPAN_ITEM_CONTENT_TYPE: Final[str] = SpanBatcher.CONTENT_TYPE


def v2_span(span: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """A transaction's span JSON (v1) as a streamed span item entry (v2), as sentry-sdk converts it."""
    converted: dict[str, Any] = _serialized_v1_span_to_serialized_v2_span(span, event)  # type: ignore[arg-type]
    return converted


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


# --- transport ------------------------------------------------------------------------


class HookedHttpTransport(HttpTransport):
    """sentry-sdk's HTTP transport with two public hooks over its private methods.

    ``around_request(send)`` wraps each HTTP request (``send()`` performs it and
    returns the urllib3 response); ``queue_overflows`` counts envelopes the
    transport dropped because its queue was full.
    """

    queue_overflows = 0

    def _request(self, method: str, endpoint_type: Any, body: Any, headers: Any) -> Any:
        send = super()._request
        return self.around_request(lambda: send(method, endpoint_type, body, headers))

    def around_request(self, send: Callable[[], Any]) -> Any:
        return send()

    def on_dropped_event(self, reason: str) -> None:
        if reason == "full_queue":
            self.queue_overflows += 1
        super().on_dropped_event(reason)


def transport_queue(transport: object) -> tuple[int, int] | None:
    """(envelopes queued now, capacity) of a transport's background worker; None if it has no such queue."""
    queue = getattr(getattr(transport, "_worker", None), "_queue", None)
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
