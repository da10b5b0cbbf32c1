"""State the router keeps about backends and callers, behind one small interface.

In one process it lives in memory (`LocalState`); several gateway replicas share it through Redis
(`gateway/ops/shared_state.py`), so they agree on which backend is out, how much a key has used
this minute and which backend holds a session's cache. Values are short strings; every key expires.
"""

from __future__ import annotations

import time
from typing import Protocol


class SharedState(Protocol):
    async def get_many(self, keys: list[str]) -> list[str | None]: ...

    async def put(self, key: str, value: str, ttl: float) -> None: ...

    async def claim(self, key: str, value: str, ttl: float) -> bool:
        """Set the key only if it is absent; True for the one caller that set it."""
        ...

    async def add(self, key: str, amount: int, ttl: float) -> int:
        """Add to a counter (created at 0, expiring after `ttl`); its new value."""
        ...

    async def delete(self, *keys: str) -> None: ...

    async def close(self) -> None: ...


class LocalState:
    """The in-process state: a dict of (value, expiry)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, float]] = {}
        self._puts = 0

    def _live(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._items[key]
            return None
        return item[0]

    def _set(self, key: str, value: str, ttl: float) -> None:
        self._items[key] = (value, time.monotonic() + ttl)
        self._puts += 1
        if self._puts % 4096 == 0:  # now and then, drop what expired (affinity keys pile up)
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[1] > now}

    async def get_many(self, keys: list[str]) -> list[str | None]:
        return [self._live(key) for key in keys]

    async def put(self, key: str, value: str, ttl: float) -> None:
        self._set(key, value, ttl)

    async def claim(self, key: str, value: str, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._set(key, value, ttl)
        return True

    async def add(self, key: str, amount: int, ttl: float) -> int:
        current = self._live(key)
        total = int(current or 0) + amount
        if current is None:
            self._set(key, str(total), ttl)
        else:
            self._items[key] = (str(total), self._items[key][1])
        return total

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._items.pop(key, None)

    async def close(self) -> None:
        self._items.clear()
