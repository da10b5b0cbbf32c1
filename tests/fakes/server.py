"""What every fake backend shares: serving its app on a free loopback port, stopping, and
counting clients that went away mid-answer."""

from __future__ import annotations

import asyncio
import socket
from typing import Self

from aiohttp import web

_POLL_SECONDS = 0.01
# The real servers take prompts of many megabytes; aiohttp's default body limit is 1 MiB.
MAX_REQUEST_BYTES = 256 * 1024 * 1024


class LoopbackServer:
    """Subclasses build their aiohttp app in `build_app`; `start` returns the base URL."""

    def __init__(self) -> None:
        self.url = ""
        self.cancelled = 0  # clients that disconnected before their answer ended
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def wait_cancelled(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` clients have gone away before their generation ended."""

        async def _wait() -> None:
            while self.cancelled < count:
                await asyncio.sleep(_POLL_SECONDS)

        await asyncio.wait_for(_wait(), timeout)

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (a free port unless one is given, e.g. to come back where it was)."""
        self._closing.clear()  # a fake may be stopped and started again (a backend coming back)
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
