"""Sentry profiling for OTel spans: sentry-sdk's continuous profiler, run while sampled local roots are open.

A legacy (transaction) profile needs a Sentry transaction entered on the
request thread, which the OTel path never has. The continuous profiler needs
none: ``sentry_sdk.init(profile_session_sample_rate=..., profile_lifecycle="trace")``
sets up a sampler thread (101 Hz, every thread's stack) that runs while at
least one *profile handle* is active. :class:`SentryProfiler` takes one handle
per sampled local root span when it starts and releases it when the root ends:
the scheduler's set of active handles is the count of open sampled roots, kept
without a lock (a deque append on start, a flag on stop); the sampler thread
stops itself at its first sample after the last root ended and sends its chunk
as a ``profile_chunk`` envelope item. Each root records the sampler's
``profiler_id`` and its own thread, which Sentry uses to cut the root's part
out of the chunks:

- backend ``sentry``: the transaction gets ``contexts.profile.profiler_id`` and
  ``contexts.trace.data["thread.id"/"thread.name"]``, as sentry-sdk's own transactions;
- backend ``sentry-otlp``: :class:`ProfilingSpanProcessor` puts
  ``sentry.profiler_id``, ``thread.id`` and ``thread.name`` on the root span,
  the attributes sentry-sdk's own streamed segment spans carry.

A :class:`SentryProfiler` drives the scheduler its backend's ``sentry_sdk.init``
set up, not whichever is global later: a backend retired after a newer one
started stops its own sampler thread and leaves the newer one's running.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_hakgal.backends.batching import ReadsOnlySpanContext
from otel_hakgal.backends.sentry import _compat

if TYPE_CHECKING:
    from opentelemetry.context import Context

# Sentry's names for what links a span to the profiler's samples.
PROFILER_ID: Final = "profiler_id"  # contexts.profile key
SPAN_PROFILER_ID: Final = "sentry.profiler_id"  # span attribute (sentry-sdk's streamed segment spans)
THREAD_ID: Final = "thread.id"
THREAD_NAME: Final = "thread.name"
# How long ``settle`` waits for an idle sampler thread to send its last chunk (it stops within one sample).
SETTLE_S: Final = 0.25


class ProfiledRoot:
    """One sampled local root's profile handle: the profiler id and the thread its samples are filed under."""

    __slots__ = ("_handle", "profiler_id", "thread_id", "thread_name")

    def __init__(self, handle: Any, profiler_id: str, thread: threading.Thread) -> None:
        self._handle = handle
        self.profiler_id = profiler_id
        self.thread_id = str(thread.ident)
        self.thread_name = thread.name

    def stop(self) -> None:
        """Release the handle (idempotent): the sampler stops once no root holds one."""
        self._handle.stop()


class SentryProfiler:
    """The continuous profiler one Sentry backend's client set up, started and stopped by sampled local roots."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    @classmethod
    def attach(cls) -> SentryProfiler | None:
        """The profiler ``sentry_sdk.init`` just set up; None if this process's session was not sampled."""
        scheduler = _compat.profile_scheduler()
        if scheduler is None or not _compat.profile_session_sampled(scheduler):
            return None
        return cls(scheduler)

    def root_started(self) -> ProfiledRoot | None:
        """A sampled local root span starts (on its thread): the sampler runs until the root's ``stop()``."""
        handle = _compat.start_profile(self._scheduler)
        if handle is None:
            return None
        profiler_id = _compat.running_profiler_id(self._scheduler)
        if profiler_id is None:  # the sampler thread could not start (interpreter shutting down)
            handle.stop()
            return None
        return ProfiledRoot(handle, profiler_id, threading.current_thread())

    def settle(self, timeout_s: float) -> bool:
        """Wait (briefly) for an idle sampler to stop, so that its last chunk is in the transport."""
        return _compat.wait_profiler_idle(self._scheduler, min(timeout_s, SETTLE_S))

    def stop(self) -> None:
        """Stop the sampler thread now (its last chunk goes to the client, which must still be open)."""
        _compat.stop_profile_scheduler(self._scheduler)


class ProfilingSpanProcessor(ReadsOnlySpanContext, SpanProcessor):
    """For ``sentry-otlp``: runs the profiler while sampled local roots are open and tags the roots.

    A root span gets ``sentry.profiler_id``, ``thread.id`` and ``thread.name`` when it starts (before
    any exporter sees it). Roots that never end are forgotten past ``max_open``, oldest first.
    """

    def __init__(self, profiler: SentryProfiler, max_open: int = 10_000) -> None:
        self.profiler = profiler
        self.max_open = max_open
        self._open: dict[int, ProfiledRoot] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        parent = span.parent
        if (parent is not None and not parent.is_remote) or not span.context.trace_flags.sampled:
            return
        root = self.profiler.root_started()
        if root is None:
            return
        span.set_attributes(
            {SPAN_PROFILER_ID: root.profiler_id, THREAD_ID: root.thread_id, THREAD_NAME: root.thread_name}
        )
        self._open[span.context.span_id] = root
        if len(self._open) > self.max_open:
            forget_oldest(self._open)

    def on_end(self, span: ReadableSpan) -> None:
        if not self._open:
            return
        root = self._open.pop(span.context.span_id, None)
        if root is not None:
            root.stop()

    def shutdown(self) -> None:
        stop_all(self._open)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def forget_oldest(roots: dict[int, ProfiledRoot]) -> None:
    """Forget the oldest open root and release its handle (another thread may race: then skip)."""
    with contextlib.suppress(StopIteration, KeyError, RuntimeError):
        roots.pop(next(iter(roots))).stop()


def stop_all(roots: dict[int, ProfiledRoot]) -> None:
    """Release every open root's handle (shutdown: the sampler must not outlive its backend)."""
    while roots:
        with contextlib.suppress(KeyError, RuntimeError):
            roots.popitem()[1].stop()
