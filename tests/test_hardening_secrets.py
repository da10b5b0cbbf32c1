"""No backend URL or its credentials in what a client sees, in logs or in metric labels; a URL
with credentials works, as HTTP basic auth (issue 13, item 6)."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from tests.conftest import QWEN25
from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port

MODEL = "qwen2.5-7b-instruct"
HELLO = [{"role": "user", "content": "hi"}]
SECRET = "s3cr3t-pw"


async def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url + "/chat/completions", json=body) as reply:
        return reply.status, await reply.json()


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url.removesuffix("/v1") + "/metrics") as reply:
        return await reply.text()


async def test_an_unreachable_backend_is_named_not_located() -> None:
    port = free_port()
    backends = [{"name": "private-llama", "type": "llamacpp", "url": f"http://admin:{SECRET}@127.0.0.1:{port}"}]
    models = [{"name": MODEL, "backend": "private-llama", "tool_format": "hermes", "chat_template": str(QWEN25)},
              {"name": "from-backend", "backend": "private-llama", "tool_format": "hermes", "chat_template": "backend"}]
    async with running_gateway(make_config(backends, models)) as url:
        with structlog.testing.capture_logs() as logs:
            for model in (MODEL, "from-backend"):
                status, body = await post(url, {"model": model, "messages": HELLO})
                message = body["error"]["message"]
                assert status == 502 and "private-llama" in message, body
                assert SECRET not in message and "127.0.0.1" not in message and str(port) not in message, message
        text = await metrics(url)
    assert SECRET not in repr(logs), "no credentials in any log line"
    assert SECRET not in text and str(port) not in text


async def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    seen: list[str | None] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return await handler(request)

    fake = FakeLlamaServer(bos_token="", eos_token="<|endoftext|>")
    app_builder = fake.build_app

    def build_app() -> web.Application:
        app = app_builder()
        app.middlewares.insert(0, record)
        return app

    fake.build_app = build_app  # type: ignore[method-assign]
    async with fake:
        fake.script("hello")
        host = fake.url.removeprefix("http://")
        backends = [{"name": "b", "type": "llamacpp", "url": f"http://admin:{SECRET}@{host}"}]
        models = [{"name": MODEL, "backend": "b", "tool_format": "hermes", "chat_template": str(QWEN25)}]
        async with running_gateway(make_config(backends, models)) as url:
            status, body = await post(url, {"model": MODEL, "messages": HELLO})
    assert status == 200 and body["choices"][0]["message"]["content"] == "hello", body
    assert seen[-1] == "Basic " + base64.b64encode(f"admin:{SECRET}".encode()).decode()
