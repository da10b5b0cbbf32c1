"""A llama.cpp backend whose server toolwire runs itself: the same wire transport
(`LlamaCppBackend`), pointed at whichever child process is serving the model now."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from ..base import BackendEvent, GenerationRequest, TemplateInfo
from ..llamacpp import LlamaCppBackend
from .supervisor import ModelSupervisor


class ManagedLlamaCppBackend:
    type = "llamacpp"
    constraints = LlamaCppBackend.constraints
    features = LlamaCppBackend.features

    def __init__(self, name: str, supervisor: ModelSupervisor) -> None:
        self.name = name
        self.supervisor = supervisor

    async def generate(self, request: GenerationRequest) -> AsyncIterator[BackendEvent]:
        # The first request loads the model (and waits for it, within its own deadline).
        async with self.supervisor.lease() as transport:
            async for event in transport.generate(request):
                yield event

    async def template_info(self, upstream_model: str) -> TemplateInfo:
        async with self.supervisor.lease() as transport:
            return await transport.template_info(upstream_model)

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        async with self.supervisor.lease() as transport:
            return await transport.count_tokens(request)

    async def health(self) -> bool:
        return await self.supervisor.healthy()

    async def list_models(self) -> list[str] | None:
        return None  # one model per server: any name reaches it

    async def close(self) -> None:
        """Nothing to do: the fleet owns the server (a reload may keep it running)."""


def supervisors_of(backends: Iterable[object]) -> list[ModelSupervisor]:
    """The supervisors behind the launched backends among `backends`."""
    return [backend.supervisor for backend in backends if isinstance(backend, ManagedLlamaCppBackend)]
