"""Running the gateway as a service: graceful shutdown on SIGTERM, routing reload on SIGHUP.

SIGTERM: readiness turns 503 and new API requests are refused at once, while the server keeps
listening so probes can see it; requests in flight get up to `limits.shutdown_grace` to finish;
then the server stops, cancelling what is left (which closes those upstream requests too).
SIGHUP: the config file is read again and the routing table swapped in one step; a bad file is
logged and the running table stays.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog
from aiohttp import web

from adapters.backends.managed import supervisors_of

from .app import check_config, create_app, start_routing_table
from .ops.app_keys import CONFIG, FLEET, KEY_RING, LIFECYCLE, ROUTING_TABLE, SHARED_STATE
from .ops.auth import KeyRing
from .ops.config import ConfigError, GatewayConfig, load_config

log = structlog.get_logger("toolwire.server")


async def serve(config: GatewayConfig, config_path: Path, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM; `reuse_port` lets several worker processes share the port."""
    app = create_app(config)
    # The drain below already waited for requests in flight: what is left is cancelled at once.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    log.info("listening", url=f"http://{host}:{port}/v1", models=len(config.models))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = loop.create_task(reload_routes(app, config_path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    await stop.wait()
    await drain(app)
    await runner.cleanup()
    log.info("stopped")


async def drain(app: web.Application) -> None:
    lifecycle = app[LIFECYCLE]
    lifecycle.draining = True
    grace = app[CONFIG].limits.shutdown_grace
    log.info("shutting_down", in_flight=lifecycle.in_flight, grace_seconds=grace)
    try:
        async with asyncio.timeout(grace):
            await lifecycle.wait_idle()
    except TimeoutError:
        log.warning("shutdown_grace_expired", cancelled=lifecycle.in_flight)


async def reload_routes(app: web.Application, config_path: Path) -> None:
    try:
        config = load_config(config_path)
        check_config(config, str(config_path))
        table = await start_routing_table(config, app[SHARED_STATE], app[FLEET])
    # Whatever breaks a reload (config, templates, backends), the old table keeps serving.
    except (ConfigError, Exception) as error:  # noqa: BLE001
        log.error("reload_rejected", path=str(config_path), error=str(error))
        return
    old = app[ROUTING_TABLE]
    # One assignment each: a request sees either the old table or the new one, never a mix.
    app[ROUTING_TABLE] = table
    app[KEY_RING] = KeyRing(config.auth)
    app[FLEET].max_loaded = config.limits.max_loaded_models
    app[FLEET].preload()
    log.info("routes_reloaded", models=table.public_names())
    if app[CONFIG].listen != config.listen:
        log.warning("reload_ignores_listen", hint="restart to change listen.host / listen.port")
    # Requests still running on the old table keep its backends; close them once those are done.
    await asyncio.sleep(app[CONFIG].limits.shutdown_grace)
    for backend in old.backends:
        await backend.close()
    # Launched servers whose backend the new table dropped or changed stop now; the rest run on.
    await app[FLEET].prune(supervisors_of(app[ROUTING_TABLE].backends))
