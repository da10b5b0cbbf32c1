"""The routing table: public model name -> the backend, upstream model, template and tool format."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from adapters.backends import Backend, SamplingParams
from adapters.formats import ToolFormat

from .chat_template import ChatTemplate, TemplateError, load_template_file
from .errors import ApiError, model_not_found

log = structlog.get_logger("toolwire.routing")

TEMPLATE_FROM_BACKEND = "backend"


@dataclass(slots=True)
class Route:
    name: str
    backend: Backend
    upstream_model: str
    tool_format: ToolFormat
    # "backend" to ask the backend for its template, or the path of a .jinja file.
    template_source: str | Path
    bos_token: str | None = None
    eos_token: str | None = None
    stop: tuple[str, ...] = ()
    defaults: SamplingParams = field(default_factory=SamplingParams)
    context_size: int | None = None
    keep_alive: str | None = None
    _template: ChatTemplate | None = None
    _template_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def template(self) -> ChatTemplate:
        """The route's chat template, loaded once (from the file or the backend) and kept."""
        if self._template is not None:
            return self._template
        async with self._template_lock:
            if self._template is None:
                self._template = await self._load_template()
        return self._template

    async def _load_template(self) -> ChatTemplate:
        if self.template_source != TEMPLATE_FROM_BACKEND:
            template = load_template_file(
                self.template_source, bos_token=self.bos_token or "", eos_token=self.eos_token or ""
            )
            log.info("chat_template_loaded", model=self.name, source=str(self.template_source))
            return template
        info = await self.backend.template_info(self.upstream_model)
        try:
            template = ChatTemplate(
                info.chat_template or "",
                bos_token=self.bos_token if self.bos_token is not None else info.bos_token or "",
                eos_token=self.eos_token if self.eos_token is not None else info.eos_token or "",
                name=f"{self.name} ({info.source})",
            )
        except TemplateError as error:
            raise ApiError(
                502, f"The chat template reported by {info.source} does not compile: {error}", type="server_error"
            ) from error
        log.info("chat_template_loaded", model=self.name, source=info.source, bos=template.bos_token)
        return template

    def sampling(self, requested: SamplingParams) -> SamplingParams:
        """The request's sampling parameters over the route's defaults."""
        overrides = {name: getattr(requested, name) for name in requested.__slots__}
        return replace(self.defaults, **{k: v for k, v in overrides.items() if v is not None})


class RoutingTable:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = {route.name: route for route in routes}

    def resolve(self, model: str) -> Route:
        route = self._routes.get(model)
        if route is None:
            raise model_not_found(model, list(self._routes))
        return route

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._routes.values())

    @property
    def backends(self) -> list[Backend]:
        unique: dict[int, Backend] = {}
        for route in self._routes.values():
            unique[id(route.backend)] = route.backend
        return list(unique.values())
