"""The routing table: public model name -> the backend, upstream model, template and tool format."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from adapters.backends import Backend, SamplingParams, TemplateInfo
from adapters.backends.errors import BackendError
from adapters.formats import ToolFormat
from adapters.formats.auto import choose_format

from .bounded import Overran, run_bounded
from .call_checks import SchemaValidators
from .chat_template import ChatTemplate, TemplateError, load_template_file
from .decoding import ConstrainMode
from .faults import TemplateBroken, UnknownModel
from .limits import BackendLimiter

if TYPE_CHECKING:
    from .balancing import BackendPool, Router

log = structlog.get_logger("toolwire.routing")

TEMPLATE_FROM_BACKEND = "backend"
PROBE_SECONDS = 10.0  # finding what a template can do renders it a few dozen times


def is_glob(name: str) -> bool:
    """A model name with `*`, `?` or `[` is a pattern (fnmatch) that serves many names."""
    return any(char in name for char in "*?[")


@dataclass(slots=True)
class Route:
    name: str
    backend: Backend
    # The backend's name for the model; None sends the name the client asked for (glob routes).
    upstream_model: str | None
    # A format, or None for `tool_format: auto` (chosen from each template as it loads).
    tool_format: ToolFormat | None
    # "backend" to ask the backend for its template, or the path of a .jinja file.
    template_source: str | Path
    bos_token: str | None = None
    eos_token: str | None = None
    stop: tuple[str, ...] = ()
    defaults: SamplingParams = field(default_factory=SamplingParams)
    context_size: int | None = None
    keep_alive: str | None = None
    constrain: ConstrainMode = "auto"
    repair: bool = True
    # The client's text is tokenized as plain text where the backend can (content_marks).
    plain_content: bool = True
    validators: SchemaValidators = field(default_factory=SchemaValidators)
    # Several backends for the model (balancing, retries, resume); `backend` is the first of them.
    pool: BackendPool | None = None
    fallbacks: tuple[str, ...] = ()  # other public models, when no backend can answer
    # Loaded templates (and the format each teaches) by upstream model: a glob route may serve
    # models with different templates.
    _templates: dict[str, tuple[ChatTemplate, ToolFormat]] = field(default_factory=dict)
    _template_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def template(self, upstream_model: str = "") -> tuple[ChatTemplate, ToolFormat]:
        """The chat template and tool format, loaded once (from the file, or from the backend per
        model) and kept."""
        key = upstream_model if self.template_source == TEMPLATE_FROM_BACKEND else ""
        loaded = self._templates.get(key)
        if loaded is not None:
            return loaded
        async with self._template_lock:
            if key not in self._templates:
                template = await self._load_template(upstream_model)
                self._templates[key] = (template, await self._bounded_format_for(template))
        return self._templates[key]

    async def _bounded_format_for(self, template: ChatTemplate) -> ToolFormat:
        """Probing renders the template many times: off the event loop, and within a time limit."""
        try:
            return await run_bounded(lambda: self._format_for(template), PROBE_SECONDS)
        except Overran:
            raise TemplateBroken(f"The chat template of {self.name} took longer than {PROBE_SECONDS:g}s to probe.") from None

    def _format_for(self, template: ChatTemplate) -> ToolFormat:
        if self.tool_format is not None:
            return self.tool_format
        choice = choose_format(template.source, template.render_probe, template.caps.generation_prompt)
        log.info("tool_format_detected", model=self.name, format=choice.format.name, reason=choice.reason)
        return choice.format

    async def _load_template(self, upstream_model: str) -> ChatTemplate:
        if self.template_source != TEMPLATE_FROM_BACKEND:
            template = load_template_file(
                self.template_source, bos_token=self.bos_token or "", eos_token=self.eos_token or ""
            )
            log.info("chat_template_loaded", model=self.name, source=str(self.template_source))
            return template
        info = await self._template_info(upstream_model)
        try:
            template = ChatTemplate(
                info.chat_template or "",
                bos_token=self.bos_token if self.bos_token is not None else info.bos_token or "",
                eos_token=self.eos_token if self.eos_token is not None else info.eos_token or "",
                name=f"{self.name} ({info.source})",
            )
        except TemplateError as error:
            raise TemplateBroken(f"The chat template reported by {info.source} does not compile: {error}") from error
        log.info(
            "chat_template_loaded", model=self.name, upstream_model=upstream_model, source=info.source, bos=template.bos_token
        )
        return template

    async def _template_info(self, upstream_model: str) -> TemplateInfo:
        """From the first backend of the pool that can tell: one being down must not stop the route."""
        members = self.pool.members if self.pool is not None else []
        for member in members[:-1]:
            try:
                return await member.backend.template_info(member.upstream_model or upstream_model)
            except BackendError as error:
                log.warning("template_info_failed", model=self.name, backend=member.name, error=error.message)
        if members:
            return await members[-1].backend.template_info(members[-1].upstream_model or upstream_model)
        return await self.backend.template_info(upstream_model)

    @property
    def constraints(self) -> frozenset[str]:
        return self.pool.constraints if self.pool is not None else self.backend.constraints

    def upstream_for(self, requested: str) -> str:
        return self.upstream_model or requested

    def sampling(self, requested: SamplingParams) -> SamplingParams:
        """The request's sampling parameters over the route's defaults."""
        overrides = {name: getattr(requested, name) for name in requested.__slots__}
        return replace(self.defaults, **{k: v for k, v in overrides.items() if v is not None})


class RoutingTable:
    """Exact names and aliases first, then glob patterns in the order the config lists them."""

    def __init__(
        self,
        routes: list[Route],
        aliases: dict[str, str] | None = None,
        limiters: dict[str, BackendLimiter] | None = None,
        router: Router | None = None,
    ) -> None:
        self._routes = {route.name: route for route in routes}
        self.router = router
        self._limiters = limiters or {}
        self._exact = {route.name: route for route in routes if not is_glob(route.name)}
        for alias, target in (aliases or {}).items():
            self._exact[alias] = self._routes[target]
        self._patterns = [route for route in routes if is_glob(route.name)]

    def resolve(self, model: str) -> Route:
        route = self._exact.get(model)
        if route is not None:
            return route
        for pattern in self._patterns:
            if fnmatch.fnmatchcase(model, pattern.name):
                return pattern
        raise UnknownModel(model, self.public_names())

    def public_names(self) -> list[str]:
        """What GET /v1/models lists: names, aliases and patterns, each once."""
        return [*self._exact, *(route.name for route in self._patterns)]

    def limiter(self, backend: str) -> BackendLimiter:
        limiter = self._limiters.get(backend)
        if limiter is None:  # a table built without limits (tests, tools): no limit
            limiter = self._limiters[backend] = BackendLimiter(
                backend, max_concurrency=1 << 30, queue_size=0, queue_timeout=1
            )
        return limiter

    def route_for_name(self, name: str) -> Route:
        return self._exact.get(name) or self._routes[name]

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())

    @property
    def backends(self) -> list[Backend]:
        unique: dict[int, Backend] = {}
        for route in self._routes.values():
            unique[id(route.backend)] = route.backend
            for member in route.pool.members if route.pool is not None else ():
                unique[id(member.backend)] = member.backend
        return list(unique.values())
