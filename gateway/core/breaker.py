"""Circuit breaking per backend: a backend that keeps failing is taken out for a cooldown, then
one probe request is let through (half-open); its success puts the backend back, its failure
takes it out again.

The state sits in a `SharedState` (keys expire, so a forgotten breaker closes by itself), and each
board keeps a copy refreshed at most every `sync_every` seconds: asking "is it out?" costs no round
trip on the request path, and replicas sharing Redis agree within that interval.
"""

from __future__ import annotations

import time
from typing import Literal

import structlog

from .state import SharedState

log = structlog.get_logger("toolwire.breaker")

BreakerState = Literal["closed", "open", "half_open"]
_PREFIX = "toolwire:breaker:"


class BreakerBoard:
    def __init__(
        self, state: SharedState, *, failures: int = 3, cooldown: float = 10.0, sync_every: float = 0.25
    ) -> None:
        self._state = state
        self._threshold = failures
        self.cooldown = cooldown
        self._sync_every = sync_every
        self._names: list[str] = []
        self._open_until: dict[str, float] = {}  # wall-clock time: replicas compare it
        self._failures: dict[str, int] = {}  # this replica's last view of the shared count
        self._synced = float("-inf")

    def register(self, name: str) -> None:
        if name not in self._names:
            self._names.append(name)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def state(self, name: str) -> BreakerState:
        until = self._open_until.get(name)
        if until is None:
            return "closed"
        return "open" if time.time() < until else "half_open"

    async def states(self) -> dict[str, BreakerState]:
        await self.sync(force=True)
        return {name: self.state(name) for name in self._names}

    async def sync(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._names or (not force and now - self._synced < self._sync_every):
            return
        self._synced = now
        values = await self._state.get_many([_PREFIX + name + ":open_until" for name in self._names])
        for name, value in zip(self._names, values, strict=True):
            if value is None:
                self._open_until.pop(name, None)
            else:
                self._open_until[name] = float(value)

    async def allow(self, name: str) -> bool:
        """May a request go to this backend now? In half-open, only the one that claims the probe."""
        await self.sync()
        state = self.state(name)
        return state == "closed" or (state == "half_open" and await self.claim_probe(name))

    async def claim_probe(self, name: str) -> bool:
        """The one request (across replicas) that tries a half-open backend."""
        claimed = await self._state.claim(_PREFIX + name + ":probe", "1", self.cooldown)
        if claimed:
            log.info("backend_state", backend=name, state="half_open", probe=True)
        return claimed

    async def failed(self, name: str) -> None:
        was = self.state(name)
        count = await self._state.add(_PREFIX + name + ":failures", 1, max(60.0, self.cooldown))
        self._failures[name] = count
        if was == "half_open" or (was == "closed" and count >= self._threshold):
            until = time.time() + self.cooldown
            # The key outlives the cooldown: after it, the backend is half-open until a probe
            # settles it; long after, with no traffic at all, it closes by expiring.
            await self._state.put(_PREFIX + name + ":open_until", repr(until), self.cooldown * 10 + 60)
            await self._state.delete(_PREFIX + name + ":failures", _PREFIX + name + ":probe")
            self._open_until[name] = until
            self._failures[name] = 0
            log.warning("backend_state", backend=name, state="open", failures=count, cooldown=self.cooldown)

    async def succeeded(self, name: str) -> None:
        was = self.state(name)
        if was == "closed" and not self._failures.get(name):
            return  # the common case: nothing to reset, no round trip
        if was == "open":
            return  # a request that began before the backend was taken out proves nothing now
        await self._state.delete(
            _PREFIX + name + ":failures", _PREFIX + name + ":open_until", _PREFIX + name + ":probe"
        )
        self._open_until.pop(name, None)
        self._failures[name] = 0
        if was != "closed":
            log.info("backend_state", backend=name, state="closed")
