"""Keeping one trace across threads and processes."""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from opentelemetry import propagate, trace

P = ParamSpec("P")
R = TypeVar("R")


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to the caller's context (trace context and current operation).

    Call it where the work is handed off, then run the result in any thread:
    spans it starts are children of the span that was current at bind time.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        # A copy per call: one Context object cannot be entered by two threads at once.
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_context


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the submitter's trace context."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(bind_context(fn), *args, **kwargs)


def start_thread(
    target: Callable[..., object],
    *args: Any,
    name: str | None = None,
    daemon: bool = True,
    **kwargs: Any,
) -> threading.Thread:
    """Start a thread that runs ``target(*args, **kwargs)`` in the caller's trace context."""
    thread = threading.Thread(target=bind_context(target), args=args, kwargs=kwargs, name=name, daemon=daemon)
    thread.start()
    return thread


def propagation_headers() -> dict[str, str]:
    """Headers that carry the current trace context to an outgoing HTTP request."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def instrument_flask(app: Any) -> Any:
    """Instrument an existing Flask app with OpenTelemetry, once (safe under the launcher).

    A request that matches no route (a 404 scan, a 60 KB path, a 405) gets
    a server span named by its method alone, as the HTTP conventions say:
    the Flask instrumentation would name it ``{method} {path}``, one span
    name per path sent. This holds also when the launcher instrumented the
    app first.

    The server spans and HTTP metrics follow the stable HTTP conventions unless
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` says otherwise (see
    :mod:`otel_hakgal.http_conventions`).
    """
    from otel_hakgal.http_conventions import default_to_stable_http

    default_to_stable_http()  # before the Flask instrumentation reads it, once per process
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        FlaskInstrumentor.instrument_app(app)  # type: ignore[no-untyped-call]
    if not app.extensions.get(_UNROUTED_NAMING):
        # Right after the instrumentation's own hook: the span exists, and no app hook that answers early skips it.
        hooks: list[Any] = app.before_request_funcs.setdefault(None, [])
        instrumentation_hook = getattr(app, "_before_request", None)
        at = hooks.index(instrumentation_hook) + 1 if instrumentation_hook in hooks else len(hooks)
        hooks.insert(at, _name_unrouted_request)
        app.extensions[_UNROUTED_NAMING] = True
    return app


_UNROUTED_NAMING = "otel_hakgal.unrouted_span_names"
_FLASK_SPAN_KEY = "opentelemetry-flask.span_key"  # where the Flask instrumentation keeps the request's span


def flask_request_hook(span: trace.Span, environ: Mapping[str, Any]) -> None:
    """``request_hook`` for the Flask instrumentation: a request no route matched is named by its method.

    For apps the launcher instruments that never call :func:`instrument_flask`:
    ``FlaskInstrumentor().instrument(request_hook=flask_request_hook)``.
    """
    import flask

    if flask.request.url_rule is None:  # routed requests keep the instrumentation's "{method} {route}"
        span.update_name(http_span_method(str(environ.get("REQUEST_METHOD", ""))))


def _name_unrouted_request() -> None:
    import flask

    span = flask.request.environ.get(_FLASK_SPAN_KEY)
    if isinstance(span, trace.Span):
        flask_request_hook(span, flask.request.environ)


def http_span_method(method: str) -> str:
    """The method as a span name: known methods as they are, any other one ``HTTP`` (HTTP conventions)."""
    from opentelemetry.util.http import sanitize_method

    sanitized = sanitize_method(method.strip())
    return "HTTP" if sanitized in (None, "_OTHER") else sanitized
