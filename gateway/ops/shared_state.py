"""The router's state in Redis, shared by every gateway replica that points at the same server.

Redis is a help here, not a dependency: when it cannot be reached, each call falls back to this
process's own memory (and logs it, once per outage), so an outage makes replicas disagree for a
while instead of failing requests.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from ..core.state import LocalState, SharedState

log = structlog.get_logger("toolwire.shared_state")

T = TypeVar("T")


def open_shared_state(redis_url: str | None) -> SharedState:
    return RedisState(redis_url) if redis_url else LocalState()


class RedisState:
    def __init__(self, url: str) -> None:
        # Imported here: only gateways configured for Redis need the client library.
        from redis.asyncio import Redis

        # Short timeouts, no retries: the request path must not wait on a sick Redis.
        self._redis = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry_on_timeout=False)
        self._local = LocalState()
        self._down = False

    async def _call(self, command: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        try:
            result = await command()
        except (RedisError, OSError) as error:
            if not self._down:
                log.error("shared_state_unavailable", error=repr(error), fallback="in-process")
                self._down = True
            return await fallback()
        if self._down:
            log.info("shared_state_available")
            self._down = False
        return result

    async def get_many(self, keys: list[str]) -> list[str | None]:
        async def command() -> list[str | None]:
            values = await self._redis.mget(keys)
            return [value.decode() if isinstance(value, bytes) else value for value in values]

        return await self._call(command, lambda: self._local.get_many(keys))

    async def put(self, key: str, value: str, ttl: float) -> None:
        async def command() -> None:
            await self._redis.set(key, value, px=_ms(ttl))

        await self._call(command, lambda: self._local.put(key, value, ttl))

    async def claim(self, key: str, value: str, ttl: float) -> bool:
        async def command() -> bool:
            return bool(await self._redis.set(key, value, px=_ms(ttl), nx=True))

        return await self._call(command, lambda: self._local.claim(key, value, ttl))

    async def add(self, key: str, amount: int, ttl: float) -> int:
        async def command() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, amount)
                pipe.pexpire(key, _ms(ttl), nx=True)  # the first add starts the clock
                total, _ = await pipe.execute()
            return int(total)

        return await self._call(command, lambda: self._local.add(key, amount, ttl))

    async def delete(self, *keys: str) -> None:
        async def command() -> None:
            await self._redis.delete(*keys)

        await self._call(command, lambda: self._local.delete(*keys))

    async def close(self) -> None:
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
