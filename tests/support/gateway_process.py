"""The gateway as a separate process (`python -m gateway serve`), for tests of what must not
freeze it: a test in the same process would freeze with it. Its address space is capped, so a
runaway request cannot take the machine's memory."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from .real_llama import free_port

ADDRESS_SPACE_CAP = 4 * 1024**3


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


@asynccontextmanager
async def gateway_process(config: dict[str, Any], tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """Yields (base URL without /v1, pid)."""
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"listen": {"host": "127.0.0.1", "port": port}, **config}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env={**os.environ},
        preexec_fn=_cap_memory,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                async with aiohttp.ClientSession() as session, session.get(url + "/health/live") as reply:
                    if reply.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the gateway did not start")
        yield url, process.pid
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def health_latencies(url: str, until: asyncio.Future[Any], every: float = 0.2) -> list[float]:
    """How long `/health/live` took to answer, polled until `until` is done (10 s per poll at most)."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        while not until.done():
            started = time.monotonic()
            try:
                async with asyncio.timeout(10), session.get(url + "/health/live") as reply:
                    await reply.read()
            except TimeoutError:
                pass
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(every)
    return latencies


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
