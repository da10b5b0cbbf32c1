"""Every managed model of the gateway: one supervisor per launched backend, a cap on how many
are loaded at once (the least recently used idle one makes room), and stopping them all.

The fleet outlives routing tables: a config reload that keeps a backend's launch spec keeps its
running server; `prune` stops those the new table no longer uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from ..http import HttpSettings
from .spec import LaunchSpec
from .supervisor import ModelStatus, ModelSupervisor

log = structlog.get_logger("toolwire.managed")


class Fleet:
    def __init__(self, max_loaded: int | None = None) -> None:
        self.max_loaded = max_loaded
        self._supervisors: list[ModelSupervisor] = []
        self._room = asyncio.Lock()
        self._preloads: set[asyncio.Task[None]] = set()

    def supervisor(self, name: str, spec: LaunchSpec, settings: HttpSettings) -> ModelSupervisor:
        """The supervisor for this backend: the running one if nothing about it changed."""
        for existing in self._supervisors:
            if (existing.name, existing.spec, existing.settings) == (name, spec, settings):
                return existing
        created = ModelSupervisor(name, spec, settings, make_room=self._make_room)
        self._supervisors.append(created)
        return created

    def preload(self) -> None:
        """Start loading, in the background, every model configured with `preload: true`."""
        for supervisor in self._supervisors:
            if supervisor.spec.preload and supervisor.state == "stopped":
                task = asyncio.create_task(supervisor.preload(), name=f"preload {supervisor.name}")
                self._preloads.add(task)
                task.add_done_callback(self._preloads.discard)

    async def _make_room(self, loading: ModelSupervisor) -> None:
        if self.max_loaded is None:
            return
        async with self._room:  # two loads at once must not both take the last place
            loaded = [s for s in self._supervisors if s is not loading and s.occupies_memory]
            while len(loaded) >= self.max_loaded:
                idle = [s for s in loaded if s.state == "ready" and not s.in_flight]
                if not idle:
                    log.warning("max_loaded_models_exceeded", backend=loading.name, limit=self.max_loaded,
                                reason="every loaded model is serving a request")
                    return
                victim = min(idle, key=lambda s: s.last_used)
                log.info("model_evicted", backend=victim.name, model=victim.spec.model, for_backend=loading.name,
                         limit=self.max_loaded)
                await victim.unload()
                loaded.remove(victim)

    async def prune(self, keep: Iterable[ModelSupervisor]) -> None:
        """Stop every supervisor not in `keep` (the current routing table's)."""
        kept = {id(s) for s in keep}
        dropped = [s for s in self._supervisors if id(s) not in kept]
        self._supervisors = [s for s in self._supervisors if id(s) in kept]
        await asyncio.gather(*(s.close() for s in dropped))

    def statuses(self) -> list[ModelStatus]:
        return [supervisor.status() for supervisor in self._supervisors]

    async def close(self) -> None:
        """Stop every server (and every start under way): nothing outlives the gateway."""
        for task in self._preloads:
            task.cancel()
        await asyncio.gather(*self._preloads, return_exceptions=True)
        await asyncio.gather(*(supervisor.close() for supervisor in self._supervisors))
