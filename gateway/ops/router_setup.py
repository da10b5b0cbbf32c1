"""The router's parts from the config, and its state for /metrics."""

from __future__ import annotations

from ..core.balancing import Router
from ..core.breaker import BreakerBoard
from ..core.limits import BackendLimiter
from ..core.retry import RetryPolicy
from ..core.routing import RoutingTable
from ..core.state import SharedState
from .metrics import Metrics
from .server_config import RouterConfig

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def build_router(config: RouterConfig, state: SharedState, limiters: dict[str, BackendLimiter]) -> Router:
    return Router(
        state=state,
        breakers=BreakerBoard(state, failures=config.breaker.failures, cooldown=config.breaker.cooldown),
        limiter=limiters.__getitem__,
        retry=RetryPolicy(config.retry.attempts, config.retry.backoff, config.retry.max_backoff),
        affinity_ttl=config.affinity_ttl,
    )


async def record_backend_states(table: RoutingTable, metrics: Metrics) -> None:
    if table.router is None:
        return
    for name, state in (await table.router.board.states()).items():
        metrics.backend_state.labels(name).set(BREAKER_STATE_VALUES[state])
        metrics.backend_in_flight.labels(name).set(table.router.load.in_flight.get(name, 0))
