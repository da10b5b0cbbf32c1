"""`toolwire serve --workers 2`: two gateway processes on one port, metrics summed over both,
SIGHUP reloads every worker, a dead worker is replaced, SIGTERM ends them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.conftest import QWEN25
from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.real_llama import free_port

ROOT = Path(__file__).resolve().parents[1]
ASK = {"model": "qwen", "messages": [{"role": "user", "content": "Hi"}]}

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="SO_REUSEPORT workers need Linux")


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def write_config(path: Path, backend_url: str, aliases: list[str]) -> None:
    path.write_text(yaml.safe_dump({
        "log_level": "info",
        "backends": [{"name": "fake", "type": "llamacpp", "url": backend_url}],
        "models": [{"name": "qwen", "aliases": aliases, "backend": "fake", "tool_format": "hermes",
                    "chat_template": str(QWEN25), "eos_token": "<|endoftext|>"}],
    }))


@asynccontextmanager
async def workers(fake_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, subprocess.Popen[bytes], Path]]:
    config, port = tmp_path / "toolwire.yaml", free_port()
    write_config(config, fake_url, [])
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),  # noqa: ASYNC220 (returns at once)
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp_path / "gateway.log").open("wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: len(children(proc.pid)) == 2)
        for _ in range(20):  # both workers listening: many fresh connections all answered
            await until_ok(url)
        yield url, proc, config
    finally:
        if proc.poll() is None:
            proc.kill()
            for child in children(proc.pid):
                os.kill(child, signal.SIGKILL)
            proc.wait()


async def until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def until_ok(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{url}/health/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "gateway did not become ready"
        await asyncio.sleep(0.1)


async def fresh(method: str, url: str, **kwargs: object) -> tuple[int, str]:
    """One request on its own connection, so the kernel may hand it to either worker."""
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.text()


def requests_counted(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("toolwire_requests_total{") and 'route="chat"' in line)


async def test_two_workers_share_a_port_and_their_metrics(fake_llama: FakeLlamaServer, tmp_path: Path) -> None:
    async with workers(fake_llama.url, tmp_path) as (url, proc, config):
        for _ in range(16):
            status, _ = await fresh("POST", f"{url}/v1/chat/completions", json=ASK)
            assert status == 200
        assert len(fake_llama.requests) == 16
        # Each /metrics answer comes from either worker; every one counts all 16 requests.
        for _ in range(10):
            status, metrics = await fresh("GET", f"{url}/metrics")
            assert status == 200 and requests_counted(metrics) == 16

        # SIGHUP reaches every worker: the new alias is served on every connection.
        write_config(config, fake_llama.url, ["gpt-4o"])
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while True:
            answers = [await fresh("POST", f"{url}/v1/chat/completions", json={**ASK, "model": "gpt-4o"})
                       for _ in range(10)]
            if all(status == 200 for status, _ in answers):
                break
            assert time.monotonic() < deadline, answers
            await asyncio.sleep(0.2)

        # A worker that dies is replaced.
        first = children(proc.pid)
        os.kill(min(first), signal.SIGKILL)
        await until(lambda: len(children(proc.pid)) == 2 and children(proc.pid) != first)
        for _ in range(10):
            await until_ok(url)

        # SIGTERM: every worker drains and exits, then the supervisor.
        pids = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        await until(lambda: proc.poll() is not None)
        assert proc.returncode == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_workers_must_be_a_positive_number_or_auto(tmp_path: Path) -> None:
    config = tmp_path / "toolwire.yaml"
    write_config(config, "http://127.0.0.1:9", [])
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--workers must be at least 1" in done.stderr
