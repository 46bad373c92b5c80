"""werkzeug's threaded server with a graceful stop: on SIGTERM or Ctrl-C, drain the requests in flight, then return.

``serve_until_stopped`` is what ``python -m otel_hakgal.demo.api`` runs: the
first signal stops accepting (the listening socket closes, so new clients
are refused at once instead of hanging), closes connections that have not
sent a request line, and waits up to ``drain_timeout_s`` for the requests
in flight to be answered. A second signal stops waiting. The caller then
flushes telemetry: every answered request's spans have ended by then.
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

logger = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT_S = 10.0
_POLL_S = 0.05  # how fast a stop request, or a drained request, is noticed


class _TrackingHandler(WSGIRequestHandler):
    """Tells the server when a connection's request line has arrived: from then on it is a request in flight."""

    server: DrainingServer

    def parse_request(self) -> bool:
        self.server.mark_busy(self.connection)
        return super().parse_request()


class DrainingServer(ThreadedWSGIServer):
    """``ThreadedWSGIServer`` that knows its open connections, so it can wait for the requests in flight.

    werkzeug answers every request with ``Connection: close``, so one
    connection carries at most one request.
    """

    def __init__(self, host: str, port: int, app: Any) -> None:
        self._connections: dict[socket.socket, bool] = {}  # -> True once its request line has arrived
        self._changed = threading.Condition()
        super().__init__(host, port, app, handler=_TrackingHandler)

    # --- bookkeeping, called by socketserver and the handler ---

    def process_request(self, request: Any, client_address: Any) -> None:
        # Counted here, in the accepting thread, so a drain that starts next already sees it.
        with self._changed:
            self._connections[request] = False
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._changed:
                self._connections.pop(request, None)
                self._changed.notify_all()

    def mark_busy(self, connection: socket.socket) -> None:
        with self._changed:
            if connection in self._connections:
                self._connections[connection] = True

    @property
    def in_flight(self) -> int:
        """Requests being answered now (connections that sent at least a request line)."""
        with self._changed:
            return sum(self._connections.values())

    # --- stopping ---

    def drain(self, timeout_s: float, give_up: Callable[[], bool] = lambda: False) -> int:
        """After ``shutdown()``: wait until every request in flight is answered, at most ``timeout_s``.

        Connections that have not sent a request line are closed for reading
        (an idle or half-sent request is not one in flight). Returns how many
        requests were still running when the wait ended.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                self._close_idle()
                if not self._connections or give_up() or time.monotonic() >= deadline:
                    return len(self._connections)
                self._changed.wait(min(_POLL_S, max(deadline - time.monotonic(), 0.0)))

    def _close_idle(self) -> None:
        for connection, busy in self._connections.items():
            if not busy and not _has_pending_bytes(connection):
                # SHUT_RD wakes the handler's blocked read with EOF; it then closes the connection itself.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RD)


def _has_pending_bytes(connection: socket.socket) -> bool:
    """True when the client has sent bytes not read yet: a request arriving now is served, not cut."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return bool(readable)


class StopSignals:
    """SIGTERM and SIGINT as a flag to poll (a signal handler must not take locks the main thread may hold)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[signal.Signals, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Catch the signals inside the block (main thread only), restore the previous handlers after it."""
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)

    def wait(self) -> None:
        while not self.count:
            time.sleep(_POLL_S)


def serve_until_stopped(
    server: DrainingServer, *, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S, on_ready: Callable[[], None] = print
) -> int:
    """Serve in a thread until SIGTERM or SIGINT, then drain; returns the requests cut off (0 when all finished)."""
    with StopSignals().installed() as stop:
        accepting = threading.Thread(target=server.serve_forever, args=(_POLL_S,), name="hakgal-api", daemon=True)
        accepting.start()
        on_ready()
        stop.wait()
        logger.info(
            "stopping: no new connections; %d requests in flight get up to %g s (a second signal stops waiting)",
            server.in_flight,
            drain_timeout_s,
        )
        server.shutdown()  # werkzeug's serve_forever closes the listening socket when it returns
        left = server.drain(drain_timeout_s, give_up=lambda: stop.count > 1)
    if left:
        logger.warning("stopped with %d requests unanswered after the drain", left)
    return left


__all__ = ["DEFAULT_DRAIN_TIMEOUT_S", "DrainingServer", "StopSignals", "serve_until_stopped"]
