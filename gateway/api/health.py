"""Liveness and readiness, for orchestrators; neither needs a key.

Ready means: the configuration is loaded, the gateway is not shutting down, and the backend of
every routed model answers its health check. Backend probes are cached briefly so a busy probe
endpoint does not hammer the backends. A model whose llama-server toolwire launches counts as
ready while it can load on demand; both endpoints show each such model's state, and
`/health/models` lists them in full (what `toolwire ps` prints).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiohttp import web

from adapters.backends import Backend

from ..ops.app_keys import FLEET, LIFECYCLE, ROUTING_TABLE
from .json_body import json_response

_PROBE_TTL = 2.0  # seconds a backend's health answer is reused


class BackendProbe:
    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, bool]] = {}

    async def healthy(self, backends: list[Backend]) -> dict[str, bool]:
        now = time.monotonic()
        stale = [b for b in backends if now - self._seen.get(b.name, (-_PROBE_TTL, False))[0] >= _PROBE_TTL]
        results = await asyncio.gather(*(backend.health() for backend in stale))
        for backend, ok in zip(stale, results, strict=True):
            self._seen[backend.name] = (now, ok)
        return {backend.name: self._seen[backend.name][1] for backend in backends}


PROBE = web.AppKey("backend_probe", BackendProbe)


async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    if request.app[LIFECYCLE].draining:
        return json_response({"status": "shutting_down"}, status=503)
    table = request.app[ROUTING_TABLE]
    backends = await request.app[PROBE].healthy(table.backends)
    circuits = await table.router.board.states() if table.router is not None else {}
    problems, out = [], []
    for route in table:
        names = [m.name for m in route.pool.members] if route.pool is not None else [route.backend.name]
        why = {name: _why_out(backends[name], circuits.get(name, "closed")) for name in names}
        missing = [f"backend '{name}' {reason}" for name, reason in why.items() if reason]
        if len(missing) == len(names):
            problems.append(f"model '{route.name}': " + "; ".join(missing))
        else:  # still served: ready, but say which backend is out
            out += [f"model '{route.name}': {text}" for text in missing]
    body: dict[str, object] = {"status": "not_ready" if problems else "ready", "backends": backends}
    if circuits:
        body["circuits"] = circuits
    if out:
        body["degraded"] = out
    managed = {status.backend: status.state for status in request.app[FLEET].statuses()}
    if managed:
        body["models"] = managed
    if problems:
        body["problems"] = problems
    return json_response(body, status=503 if problems else 200)


def _why_out(reachable: bool, circuit: str) -> str:
    if circuit == "open":
        return "is out after repeated failures (circuit open)"
    return "" if reachable else "is not reachable"


async def models_status(request: web.Request) -> web.Response:
    """Every llama-server toolwire launched: state, port, PID, memory, idle time."""
    statuses = request.app[FLEET].statuses()
    return json_response({"models": [dataclasses.asdict(status) for status in statuses]})
