"""Which backend faults another backend may fix, and how long to wait before asking it."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.backends.errors import BackendError, BackendRejected

from .faults import BackendBusy


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # backends tried before the first byte, the first one included
    backoff: float = 0.05  # seconds before the second attempt; doubles after each
    max_backoff: float = 1.0

    def delay(self, failed_attempts: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** max(0, failed_attempts - 1))


def retryable(error: BaseException) -> bool:
    """Connection refused or reset, timeouts, 5xx, 429, "model loading", a full queue: another
    backend may answer. A rejected request (4xx about the request itself) would be rejected again."""
    if isinstance(error, BackendBusy):
        return True
    return isinstance(error, BackendError) and not isinstance(error, BackendRejected)


def breaks_backend(error: BaseException) -> bool:
    """Does this fault count against the backend's breaker? Busy (429, a full queue) is not broken."""
    if isinstance(error, BackendBusy):
        return False
    if isinstance(error, BackendRejected):
        return False
    return isinstance(error, BackendError) and error.status != 429
