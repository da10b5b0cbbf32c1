"""Waiting for a server started in another process to answer (the benchmarks start the gateway and
the fake backends that way)."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress

import aiohttp


async def wait_ok(url: str, within: float = 30.0) -> None:
    """Return once GET `url` answers 200; RuntimeError after `within` seconds."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {within:g} s")
