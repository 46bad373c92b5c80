"""Keeping one trace across threads and processes."""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from opentelemetry import propagate

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
    """Instrument an existing Flask app with OpenTelemetry, once (safe under the launcher)."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        FlaskInstrumentor.instrument_app(app)  # type: ignore[no-untyped-call]
    return app
