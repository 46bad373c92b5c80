"""What a backend's sends actually did: HTTP statuses and errors, for ``selftest``."""

from __future__ import annotations

import threading


class DeliveryLog:
    """Counts a backend's network sends by outcome. Thread-safe; cheap enough to keep always on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}

    def record_status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def record_error(self, error: BaseException) -> None:
        with self._lock:
            key = f"{type(error).__name__}"
            self.errors[key] = self.errors.get(key, 0) + 1

    @property
    def attempts(self) -> int:
        with self._lock:
            return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> bool:
        """True when something was sent and every send got a 2xx answer."""
        with self._lock:
            sent = bool(self.statuses or self.errors)
            return sent and not self.errors and all(200 <= status < 300 for status in self.statuses)

    def counts(self) -> dict[str, int]:
        """Sends by outcome: ``"HTTP <status>"`` or the exception's class name -> count."""
        with self._lock:
            counts = {f"HTTP {status}": count for status, count in sorted(self.statuses.items())}
            counts.update(sorted(self.errors.items()))
        return counts

    def describe(self) -> str:
        return ", ".join(f"{outcome} x{count}" for outcome, count in self.counts().items()) or "nothing was sent"


class SignalDeliveryLog(DeliveryLog):
    """The sends of one signal (log records), also counted in the backend's own log.

    ``selftest`` reads it to tell whether log records arrived, apart from spans and metrics.
    """

    def __init__(self, backend_log: DeliveryLog) -> None:
        super().__init__()
        self._backend_log = backend_log

    def record_status(self, status: int) -> None:
        super().record_status(status)
        self._backend_log.record_status(status)

    def record_error(self, error: BaseException) -> None:
        super().record_error(error)
        self._backend_log.record_error(error)
