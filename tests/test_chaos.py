"""Chaos: two backends for one model, 200 streamed and non-streamed requests, and one backend
SIGKILLed in the middle. Every request completes with the right text and calls and no error
reaches a client (answers cut mid-stream are resumed on the other backend); the killed backend,
restarted on its address, gets traffic again once its cooldown is over. On every backend type.

The fakes run as their own processes (`tests/fakes/run.py`), so the kill is a real one: the
connections die with the process, mid-answer.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.fakes.model import echo_text
from tests.support.gateway import make_config
from tests.support.real_llama import free_port
from tests.support.router import (
    KINDS,
    backend,
    chat,
    gateway_client,
    get_text,
    qwen_route,
)

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 200
CONCURRENCY = 16
KILL_AFTER = 60  # requests done
COOLDOWN = 1.0


@asynccontextmanager
async def fake_process(kind: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.run", kind, "--port", str(port), "--token-delay", "0.004",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"READY"), line
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def question(i: int) -> tuple[str, str, list[tuple[str, dict]]]:
    """The request's text and the answer the model gives it: content, calls."""
    if i % 2:
        return f"weather in City-{i}", "", [("get_weather", {"city": f"City-{i}"})]
    words = f"chaos number {i}, long enough that a kill finds it mid-stream"
    return f"echo {words}", echo_text(words), []


def served_by(metrics: str, name: str) -> float:
    pattern = rf'toolwire_requests_total\{{backend="{name}",model="qwen",route="chat",status="200"\}} (\S+)'
    match = re.search(pattern, metrics)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_backend_killed_mid_traffic_costs_no_request(kind: str) -> None:
    ports = free_port(), free_port()
    async with fake_process(kind, ports[0]) as doomed, fake_process(kind, ports[1]):
        backends = [backend(kind, name, f"http://127.0.0.1:{port}") for name, port in zip("ab", ports, strict=True)]
        config = make_config(backends, [qwen_route(kind, ["a", "b"])],
                             router={"breaker": {"failures": 2, "cooldown": COOLDOWN}})
        async with gateway_client(config, timeout=60) as (url, client):
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> tuple[str, list[tuple[str, dict]], str]:
                async with gate:
                    content, calls, finish = await chat(client, question(i)[0], stream=i % 4 < 2)
                    return content, [(name, args) for _, name, args in calls], finish

            tasks = [asyncio.create_task(one(i)) for i in range(REQUESTS)]
            while sum(task.done() for task in tasks) < KILL_AFTER:
                await asyncio.sleep(0.005)
            doomed.kill()  # SIGKILL, with answers in flight
            await doomed.wait()
            async with fake_process(kind, ports[0]):  # restarted on its address
                answers = await asyncio.gather(*tasks)
                _, metrics = await get_text(url + "/metrics")
                before = served_by(metrics, "a")
                await asyncio.sleep(COOLDOWN)
                for i in range(REQUESTS, REQUESTS + 8):
                    content, calls, _ = await one(i)
                    assert (content, calls) == question(i)[1:]
                _, later = await get_text(url + "/metrics")
    for i, (content, calls, finish) in enumerate(answers):
        assert (content, calls) == question(i)[1:], f"request {i}"
        assert finish == ("tool_calls" if calls else "stop")
    resumed = re.search(r'toolwire_stream_resumes_total\{backend="b",model="qwen"\} (\S+)', metrics)
    assert resumed and float(resumed.group(1)) >= 1, "the kill cut answers mid-stream, and they were resumed"
    assert 'toolwire_requests_total{backend="b",model="qwen",route="chat",status="200"}' in metrics
    assert not re.search(r'route="chat",status="(4|5)\d\d"', later), "no error reached a client"
    assert served_by(later, "a") > before, "the restarted backend is back in the rotation"
