"""Builds the aiohttp application from a loaded configuration."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from adapters.backends import HttpSettings, SamplingParams, create_backend
from adapters.formats import format_names, get_format

from .api.chat_handler import chat_completions
from .api.debug_render import render_prompt
from .api.health import PROBE, BackendProbe, live, ready
from .api.models_handler import list_models
from .api.responses_handler import add_responses_routes
from .core.chat_template import TemplateError, load_template_file
from .core.limits import BackendLimiter
from .core.routing import TEMPLATE_FROM_BACKEND, Route, RoutingTable
from .ops.app_keys import (
    CONFIG,
    KEY_RING,
    LIFECYCLE,
    METRICS,
    ROUTING_TABLE,
    STARTED_AT,
)
from .ops.auth import KeyRing
from .ops.config import ConfigError, GatewayConfig
from .ops.lifecycle import Lifecycle
from .ops.metrics import Metrics
from .ops.middleware import MIDDLEWARES

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


def build_routing_table(config: GatewayConfig) -> RoutingTable:
    """Backends are created once and shared by every route that names them (one pool each)."""
    backends = {
        backend.name: create_backend(
            backend.type,
            backend.name,
            HttpSettings(
                base_url=backend.url,
                api_key=backend.api_key,
                connect_timeout=backend.timeouts.connect,
                read_timeout=backend.timeouts.read,
                max_connections=backend.max_connections,
            ),
        )
        for backend in config.backends
    }
    routes = []
    for model in config.models:
        routes.append(
            Route(
                name=model.name,
                backend=backends[model.backend],
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
            )
        )
    aliases = {alias: model.name for model in config.models for alias in model.aliases}
    limiters = {
        backend.name: BackendLimiter(
            backend.name,
            max_concurrency=backend.max_concurrency,
            queue_size=backend.queue_size,
            queue_timeout=backend.queue_timeout,
        )
        for backend in config.backends
    }
    return RoutingTable(routes, aliases, limiters)


async def start_routing_table(config: GatewayConfig) -> RoutingTable:
    """A routing table with its file templates loaded: a broken one fails now, not on a request."""
    table = build_routing_table(config)
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

    async def start_routes(app: web.Application) -> None:
        # Backends hold connection pools and locks, which belong to the running event loop.
        app[LIFECYCLE] = Lifecycle()
        app[ROUTING_TABLE] = await start_routing_table(config)
        log.info("routes_ready", models=app[ROUTING_TABLE].public_names())
        yield
        for backend in app[ROUTING_TABLE].backends:
            await backend.close()

    app.cleanup_ctx.append(start_routes)
    app.router.add_get("/health", live)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", app[METRICS].handler)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    add_responses_routes(app, config.responses)
    if config.debug.render_endpoint:
        app.router.add_post("/v1/debug/render", render_prompt)
    return app
