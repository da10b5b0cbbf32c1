"""Per-backend concurrency: a fixed number of generations at once, a bounded queue behind them,
and a 429 with Retry-After for whoever cannot get in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .faults import BackendBusy


class BackendLimiter:
    def __init__(self, backend: str, *, max_concurrency: int, queue_size: int, queue_timeout: float) -> None:
        self.backend = backend
        self._slots = asyncio.Semaphore(max_concurrency)
        self._queue_size = queue_size
        self._queue_timeout = queue_timeout
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self._queue_size:
            raise self._busy("its queue is full")
        self.waiting += 1
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise self._busy(f"no slot freed up within {self._queue_timeout:g}s") from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    def _busy(self, why: str) -> BackendBusy:
        return BackendBusy(self.backend, why, retry_after=max(1, round(self._queue_timeout / 2)))
