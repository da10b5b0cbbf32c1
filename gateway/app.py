"""Builds the aiohttp application from a loaded configuration."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from adapters.backends import Backend, HttpSettings, SamplingParams, create_backend
from adapters.backends.managed import Fleet, ManagedLlamaCppBackend
from adapters.formats import format_names, get_format

from .api.chat_handler import chat_completions
from .api.debug_render import render_prompt
from .api.health import PROBE, BackendProbe, live, models_status, ready
from .api.messages_handler import add_messages_routes
from .api.models_handler import list_models, retrieve_model
from .api.responses_handler import add_responses_routes
from .core.balancing import BackendPool, PoolMember
from .core.chat_template import TemplateError, load_template_file
from .core.limits import BackendLimiter
from .core.rate_limits import KeyRateLimits
from .core.routing import TEMPLATE_FROM_BACKEND, Route, RoutingTable
from .core.state import LocalState, SharedState
from .ops.app_keys import (
    CONFIG,
    FLEET,
    KEY_RING,
    LIFECYCLE,
    METRICS,
    RATE_LIMITS,
    ROUTING_TABLE,
    SHARED_STATE,
    STARTED_AT,
)
from .ops.auth import KeyRing
from .ops.config import BackendConfig, ConfigError, GatewayConfig
from .ops.fleet_metrics import FleetCollector
from .ops.lifecycle import Lifecycle
from .ops.metrics import Metrics
from .ops.middleware import MIDDLEWARES
from .ops.router_setup import build_router, record_backend_states
from .ops.shared_state import open_shared_state

log = structlog.get_logger("toolwire.app")

AUTO_FORMAT = "auto"  # tool_format value: choose the format from the route's chat template


def check_config(config: GatewayConfig, source: str) -> None:
    """What pydantic cannot see: tool formats must exist, template files compile."""
    problems = [
        f"{source}: models[{i}].tool_format: unknown tool format {m.tool_format!r} (known: auto, {', '.join(format_names())})"
        for i, m in enumerate(config.models)
        if m.tool_format not in (*format_names(), AUTO_FORMAT)
    ]
    for i, model in enumerate(config.models):
        if model.chat_template != TEMPLATE_FROM_BACKEND:
            try:
                load_template_file(model.chat_template)
            except TemplateError as error:
                problems.append(f"{source}: models[{i}].chat_template: {error}")
    if problems:
        raise ConfigError("\n".join(problems))


def _create_backend(backend: BackendConfig, fleet: Fleet | None) -> Backend:
    settings = HttpSettings(
        base_url=backend.url or "",  # a launched server's URL is known once it runs
        api_key=backend.api_key,
        connect_timeout=backend.timeouts.connect,
        read_timeout=backend.timeouts.read,
        max_connections=backend.max_connections,
        max_line_bytes=backend.max_line_bytes,
    )
    spec = backend.launch_spec()
    if spec is None:
        return create_backend(backend.type, backend.name, settings)
    if fleet is None:
        raise ValueError(f"backend {backend.name!r} launches its server: building it needs the gateway's fleet")
    return ManagedLlamaCppBackend(backend.name, fleet.supervisor(backend.name, spec, settings))


def build_routing_table(
    config: GatewayConfig, state: SharedState | None = None, fleet: Fleet | None = None
) -> RoutingTable:
    """Backends are created once and shared by every route that names them (one pool each);
    launched ones get their supervisor from `fleet`, which owns their processes."""
    backends = {backend.name: _create_backend(backend, fleet) for backend in config.backends}
    limiters = {
        backend.name: BackendLimiter(
            backend.name,
            max_concurrency=backend.max_concurrency,
            queue_size=backend.queue_size,
            queue_timeout=backend.queue_timeout,
        )
        for backend in config.backends
    }
    router = build_router(config.router, state or LocalState(), limiters)
    routes = []
    for model in config.models:
        members = [PoolMember(backends[ref.name], ref.upstream_model, ref.weight) for ref in model.backend_refs]
        routes.append(
            Route(
                name=model.name,
                backend=members[0].backend,
                pool=BackendPool(members, router, strategy=model.balance, resume=model.resume),
                fallbacks=model.fallbacks,
                upstream_model=model.upstream_model,
                tool_format=None if model.tool_format == AUTO_FORMAT else get_format(model.tool_format),
                template_source=model.chat_template,
                bos_token=model.bos_token,
                eos_token=model.eos_token,
                stop=tuple(model.stop or ()),
                defaults=SamplingParams(**model.defaults.model_dump()),
                context_size=model.context_size,
                keep_alive=model.keep_alive,
                constrain=model.constrain,
                repair=model.repair,
                plain_content=model.plain_content,
            )
        )
    aliases = {alias: model.name for model in config.models for alias in model.aliases}
    return RoutingTable(routes, aliases, limiters, router)


async def start_routing_table(
    config: GatewayConfig, state: SharedState | None = None, fleet: Fleet | None = None
) -> RoutingTable:
    """A routing table with its file templates loaded: a broken one fails now, not on a request."""
    table = build_routing_table(config, state, fleet)
    for route in table:
        if route.template_source != TEMPLATE_FROM_BACKEND:
            await route.template()
    return table


def create_app(config: GatewayConfig) -> web.Application:
    app = web.Application(middlewares=list(MIDDLEWARES), client_max_size=config.limits.max_body_bytes)
    app[STARTED_AT] = time.time()
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[KEY_RING] = KeyRing(config.auth)
    app[PROBE] = BackendProbe()
    app[FLEET] = Fleet(config.limits.max_loaded_models)
    app[METRICS].registry.register(FleetCollector(app[FLEET]))

    async def start_routes(app: web.Application) -> AsyncIterator[None]:
        # Backends hold connection pools and locks, which belong to the running event loop.
        app[LIFECYCLE] = Lifecycle()
        app[SHARED_STATE] = open_shared_state(config.router.redis_url)
        app[RATE_LIMITS] = KeyRateLimits(app[SHARED_STATE])
        app[ROUTING_TABLE] = await start_routing_table(config, app[SHARED_STATE], app[FLEET])
        app[METRICS].before_scrape.append(lambda: record_backend_states(app[ROUTING_TABLE], app[METRICS]))
        log.info("routes_ready", models=app[ROUTING_TABLE].public_names())
        app[FLEET].preload()
        yield
        for backend in app[ROUTING_TABLE].backends:
            await backend.close()
        await app[SHARED_STATE].close()
        await app[FLEET].close()  # every llama-server toolwire started stops with it

    app.cleanup_ctx.append(start_routes)
    app.router.add_get("/health", live)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/models", models_status)
    app.router.add_get("/metrics", app[METRICS].handler)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    add_responses_routes(app, config.responses)
    add_messages_routes(app)
    if config.debug.render_endpoint:
        app.router.add_post("/v1/debug/render", render_prompt)
    return app
