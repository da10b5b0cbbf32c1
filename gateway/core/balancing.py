"""Several backends behind one model: which one a request goes to.

A `BackendPool` holds a route's backends and its strategy: least in-flight requests (default),
round-robin, weighted (smooth weighted round-robin), lowest recent latency, or session affinity
(a conversation goes back to the backend that answered it, while that backend is in). Backends
whose breaker is open are skipped; a half-open one takes a single probe request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from adapters.backends import Backend

from .breaker import BreakerBoard
from .job import Affinity
from .limits import BackendLimiter
from .retry import RetryPolicy
from .state import LocalState, SharedState

Strategy = Literal["least_in_flight", "round_robin", "weighted", "lowest_latency", "affinity"]
_AFFINITY_PREFIX = "toolwire:affinity:"
_LATENCY_WEIGHT = 0.3  # of the newest observation in the moving average


@dataclass(frozen=True, slots=True)
class PoolMember:
    backend: Backend
    upstream_model: str | None = None  # None: the route's own (or the name the client sent)
    weight: int = 1

    @property
    def name(self) -> str:
        return self.backend.name


@dataclass(slots=True)
class BackendLoad:
    """What this replica sees of each backend: requests on it now, recent time to first byte."""

    in_flight: dict[str, int] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)

    def observe(self, name: str, seconds: float) -> None:
        previous = self.latency.get(name)
        self.latency[name] = seconds if previous is None else previous + _LATENCY_WEIGHT * (seconds - previous)


@dataclass(slots=True)
class Router:
    """What every pool of a routing table shares: breakers, load, limits and the shared state."""

    state: SharedState = field(default_factory=LocalState)
    breakers: BreakerBoard | None = None
    load: BackendLoad = field(default_factory=BackendLoad)
    limiter: Callable[[str], BackendLimiter] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    affinity_ttl: float = 3600.0

    def __post_init__(self) -> None:
        if self.breakers is None:
            self.breakers = BreakerBoard(self.state)

    @property
    def board(self) -> BreakerBoard:
        assert self.breakers is not None
        return self.breakers


class BackendPool:
    def __init__(
        self, members: list[PoolMember], router: Router, *, strategy: Strategy = "least_in_flight", resume: bool = True
    ) -> None:
        if not members:
            raise ValueError("a pool needs at least one backend")
        self.members = members
        self.router = router
        self.strategy = strategy
        self.resume = resume
        self._turn = 0
        self._current = {member.name: 0 for member in members}  # smooth weighted round-robin
        for member in members:
            router.board.register(member.name)

    @property
    def constraints(self) -> frozenset[str]:
        """What every backend can enforce: a request may end up on any of them."""
        return frozenset.intersection(*(member.backend.constraints for member in self.members))

    @property
    def retry(self) -> RetryPolicy:
        return self.router.retry

    async def pick(self, exclude: set[str], affinity: Affinity | None = None) -> PoolMember | None:
        """The backend for the next attempt, counted in flight at once (release it with `lease`);
        None when every backend not yet tried is out.

        Open breakers steer requests to the backends still in; they never refuse a request on their
        own: when every backend of the model is out, its first attempt still goes to one of them
        (the client gets that backend's own error, and readiness reports the model as down)."""
        candidates = [member for member in self.members if member.name not in exclude]
        if not candidates:
            return None
        preferred = await self._session_backend(affinity) if self.strategy == "affinity" else None
        board = self.router.board
        await board.sync()
        ordered = self._ordered(candidates, preferred)
        chosen: PoolMember | None = None
        for member in ordered:
            state = board.state(member.name)
            if state == "closed" or (state == "half_open" and await board.claim_probe(member.name)):
                chosen = member
                break
        if chosen is None and not exclude:
            chosen = ordered[0]  # the last resort
        if chosen is not None:
            in_flight = self.router.load.in_flight
            in_flight[chosen.name] = in_flight.get(chosen.name, 0) + 1
        return chosen

    @asynccontextmanager
    async def lease(self, member: PoolMember) -> AsyncIterator[None]:
        """The backend's concurrency slot for one attempt; ends its in-flight count from `pick`."""
        try:
            if self.router.limiter is None:
                yield
            else:
                async with self.router.limiter(member.name).slot():
                    yield
        finally:
            self.router.load.in_flight[member.name] -= 1

    async def remember(self, affinity: Affinity | None, member: PoolMember) -> None:
        if self.strategy != "affinity" or affinity is None:
            return
        for key in affinity.record:
            await self.router.state.put(_AFFINITY_PREFIX + key, member.name, self.router.affinity_ttl)

    async def _session_backend(self, affinity: Affinity | None) -> str | None:
        if affinity is None or not affinity.lookup:
            return None
        names = await self.router.state.get_many([_AFFINITY_PREFIX + key for key in affinity.lookup])
        return next((name for name in names if name is not None), None)

    def _ordered(self, candidates: list[PoolMember], preferred: str | None) -> list[PoolMember]:
        start = self._turn % len(candidates)
        self._turn += 1
        rotated = candidates[start:] + candidates[:start]  # ties take turns
        load = self.router.load
        match self.strategy:
            case "round_robin":
                return rotated
            case "weighted":
                return self._weighted(candidates)
            case "lowest_latency":
                # Untried backends (no latency yet) first; a busy one counts as slower.
                return sorted(
                    rotated, key=lambda m: load.latency.get(m.name, 0.0) * (1 + load.in_flight.get(m.name, 0))
                )
        ordered = sorted(rotated, key=lambda m: load.in_flight.get(m.name, 0))
        if preferred is not None:
            ordered.sort(key=lambda m: m.name != preferred)  # stable: the rest stay least-loaded first
        return ordered

    def _weighted(self, candidates: list[PoolMember]) -> list[PoolMember]:
        # nginx's smooth weighted round-robin: over N picks each backend gets its share, interleaved.
        total = sum(member.weight for member in candidates)
        for member in candidates:
            self._current[member.name] += member.weight
        best = max(candidates, key=lambda m: self._current[m.name])
        self._current[best.name] -= total
        return [best, *sorted((m for m in candidates if m is not best), key=lambda m: -m.weight)]
