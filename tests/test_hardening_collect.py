"""Non-streamed answers are bounded and cancellable like streamed ones (issue 13, item 4): a cap
on the collected output, the upstream generation cancelled when the client goes away, and the
departure logged as such."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted
from tests.support.gateway import make_config, running_gateway

MODEL = "qwen2.5-7b-instruct"
HELLO = [{"role": "user", "content": "hi"}]


async def post(url: str, body: dict[str, Any], timeout: float = 30) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, session.post(
        url + "/chat/completions", json=body
    ) as reply:
        return reply.status, await reply.json()


async def test_a_backend_that_never_stops_hits_the_output_cap(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, models, limits={"max_output_chars": 5000})
    fake_llama.script(Scripted(["0123456789" * 10] * 20_000, stop_type="none", delay=0.001))
    async with running_gateway(config) as url:
        status, body = await post(url, {"model": MODEL, "messages": HELLO})
        assert status == 502 and body["error"]["code"] == "output_too_large", body
        assert "5000" in body["error"]["message"]
        await fake_llama.wait_cancelled(1, timeout=5)  # and the backend was told to stop
        fake_llama.script("short")
        assert (await post(url, {"model": MODEL, "messages": HELLO}))[0] == 200, "under the cap all is as before"


async def test_a_client_that_leaves_a_non_streamed_request_stops_the_generation(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    fake_llama.script(Scripted(["tick "] * 400, delay=0.02))
    async with running_gateway(make_config(backends, models)) as url:
        with structlog.testing.capture_logs() as logs:
            try:
                await post(url, {"model": MODEL, "messages": HELLO}, timeout=0.5)
                raise AssertionError("the request should have outlived the client")
            except TimeoutError:
                pass
            await fake_llama.wait_cancelled(1, timeout=3)
            await asyncio.sleep(0.3)
    gone = [entry for entry in logs if entry["event"] == "client_disconnected"]
    assert gone, [entry["event"] for entry in logs]
    assert not [entry for entry in logs if entry["event"] == "unhandled_error"]
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert requests and requests[-1]["status"] == 499
