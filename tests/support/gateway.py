"""Runs the real gateway app as an HTTP server on a free port, inside the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from gateway.app import create_app
from gateway.ops.config import GatewayConfig, parse_config

from .real_llama import free_port

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TEMPLATES = SHARED / "fixtures" / "chat_templates"


def make_config(backends: list[dict[str, Any]], models: list[dict[str, Any]], **extra: Any) -> GatewayConfig:
    """A validated config from plain dicts, through the same parser as a YAML file."""
    text = yaml.safe_dump({"backends": backends, "models": models, **extra})
    return parse_config(text, source="<test config>", base_dir=TEMPLATES)


@asynccontextmanager
async def running_gateway(config: GatewayConfig) -> AsyncIterator[str]:
    """Serve the gateway on 127.0.0.1; yields its OpenAI base URL (ending in /v1)."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
