"""A real MCP server, built with the `mcp` SDK's own server (`MCPServer`, FastMCP's name in mcp 2):
served over streamable HTTP inside a test's event loop (`serving_http`), or run as a stdio
subprocess (`python -m tests.support.mcp_server`).

Its tools are deterministic, and it records the calls it ran, so a test can tell whether the
gateway really called it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer

from .real_llama import free_port

ROOT = Path(__file__).resolve().parents[2]
STDIO_COMMAND = [sys.executable, "-m", "tests.support.mcp_server"]


def build_server(calls: list[tuple[str, dict[str, object]]] | None = None) -> MCPServer:
    ran = calls if calls is not None else []
    server = MCPServer("calc", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers and return the sum."""
        ran.append(("add", {"a": a, "b": b}))
        return a + b

    @server.tool()
    def shout(text: str) -> str:
        """Return the text in capitals."""
        ran.append(("shout", {"text": text}))
        return text.upper()

    @server.tool()
    def explode() -> str:
        """Always fails."""
        ran.append(("explode", {}))
        raise ValueError("the fuse was lit")

    @server.tool()
    def huge(size: int) -> str:
        """Return `size` letters."""
        ran.append(("huge", {"size": size}))
        return "x" * size

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        ran.append(("slow", {"seconds": seconds}))
        await anyio.sleep(seconds)
        return "done"

    @server.tool()
    def die() -> str:
        """End the server's process mid-call (for a stdio server: the connection breaks)."""
        os._exit(3)

    return server


class HttpServing:
    """An MCP server served over streamable HTTP on a loopback port, at `url` (`.../mcp`)."""

    def __init__(self, server: MCPServer) -> None:
        port = free_port()
        config = uvicorn.Config(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on")
        self.url = f"http://127.0.0.1:{port}/mcp"
        self._web = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._web.serve())
        while not self._web.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop at once, open connections and all (as a server that goes away does)."""
        self._web.should_exit = self._web.force_exit = True
        if self._task is not None:
            await self._task
            self._task = None


@asynccontextmanager
async def serving_http(server: MCPServer) -> AsyncIterator[str]:
    """Serve over streamable HTTP on a loopback port; yields the endpoint URL (`.../mcp`)."""
    serving = HttpServing(server)
    await serving.start()
    try:
        yield serving.url
    finally:
        await serving.stop()


if __name__ == "__main__":
    build_server().run()
