"""Per-key rate limits: requests and tokens per minute, counted in fixed one-minute windows in the
router's state (so replicas sharing Redis share the counts)."""

from __future__ import annotations

import time

from .faults import RateLimited
from .state import SharedState

_WINDOW = 60
_PREFIX = "toolwire:ratelimit:"


class KeyRateLimits:
    def __init__(self, state: SharedState) -> None:
        self._state = state

    async def admit(self, key_id: str, *, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        """Count one request, or refuse it (429) when the key's minute is used up."""
        now = time.time()
        window = int(now // _WINDOW)
        retry_after = max(1, int(_WINDOW - now % _WINDOW))
        if tokens_per_minute is not None:
            (used,) = await self._state.get_many([f"{_PREFIX}{key_id}:{window}:tokens"])
            if int(used or 0) >= tokens_per_minute:
                raise RateLimited("tokens", tokens_per_minute, retry_after)
        if requests_per_minute is not None:
            count = await self._state.add(f"{_PREFIX}{key_id}:{window}:requests", 1, 2 * _WINDOW)
            if count > requests_per_minute:
                raise RateLimited("requests", requests_per_minute, retry_after)

    async def spend(self, key_id: str, tokens: int) -> None:
        """Tokens are known only when a request ends; they count against the minute it ended in."""
        if tokens > 0:
            window = int(time.time() // _WINDOW)
            await self._state.add(f"{_PREFIX}{key_id}:{window}:tokens", tokens, 2 * _WINDOW)
