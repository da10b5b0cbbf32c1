"""Shared pieces for the router tests: a Qwen-style model on two (or more) fakes of one backend type,
the gateway routes for it, and reading the gateway's stream as a client does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from openai import AsyncOpenAI

from gateway.ops.config import GatewayConfig
from tests.conftest import QWEN25
from tests.fakes import llamacpp, ollama, vllm
from tests.fakes.model import ContinuingModel, weather_or_echo
from tests.fakes.run import OLLAMA_MODEL, VLLM_MODEL, make_fake
from tests.fakes.server import LoopbackServer
from tests.support.gateway import running_gateway

KINDS = ("llamacpp", "vllm", "ollama")
UPSTREAM = {"llamacpp": "qwen", "vllm": VLLM_MODEL, "ollama": OLLAMA_MODEL}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
MODEL = ContinuingModel(weather_or_echo)


def backend(kind: str, name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": url, **extra}


def qwen_route(kind: str, backends: list[str], name: str = "qwen", **extra: Any) -> dict[str, Any]:
    return {"name": name, "backend": backends, "upstream_model": UPSTREAM[kind], "tool_format": "hermes",
            "chat_template": str(QWEN25), **extra}


def new_fake(kind: str, token_delay: float = 0.0) -> LoopbackServer:
    return make_fake(kind, token_delay)


def failing_reply(kind: str, fake: LoopbackServer, prompt_text: str, how: str, after: int) -> Any:
    """The model's own answer to the prompt, but the backend fails after `after` tokens: "cut" (the
    connection drops), "error" (an in-band error) or "stall" (silence, llama.cpp only)."""
    text = MODEL(prompt_text)
    fault = {"cut": {"cut_after": after}, "error": {"error_after": after}, "stall": {"stall_after": after}}[how]
    if isinstance(fake, llamacpp.FakeLlamaServer):
        return llamacpp.Scripted(fake.split(text), **fault)
    if isinstance(fake, vllm.FakeVllmServer):
        return vllm.Scripted(fake.split(text), **fault)
    assert isinstance(fake, ollama.FakeOllama)
    return ollama.Scripted(fake.split(text), **fault)


def prompts(fake: LoopbackServer) -> list[str]:
    return [str(body.get("prompt")) for body in fake.requests]  # type: ignore[attr-defined]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def chat(client: AsyncOpenAI, text: str, *, stream: bool, **extra: Any) -> tuple[str, list[tuple[str, str, dict]], str]:
    """(content, [(call id, name, arguments)], finish_reason) of one chat completion, as a client
    assembles it; a streamed call must arrive with one id."""
    if not stream:
        reply = await client.chat.completions.create(model="qwen", messages=ask(text), tools=TOOLS, **extra)  # type: ignore[arg-type]
        message = reply.choices[0].message
        calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
        return message.content or "", calls, reply.choices[0].finish_reason
    content, ids, names, args, finish = "", {}, {}, {}, ""
    async for chunk in await client.chat.completions.create(
        model="qwen", messages=ask(text), tools=TOOLS, stream=True, **extra  # type: ignore[arg-type]
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            if call.id:
                assert call.index not in ids, "a call's id is sent once"
                ids[call.index] = call.id
            if call.function and call.function.name:
                names[call.index] = call.function.name
            if call.function and call.function.arguments:
                args[call.index] = args.get(call.index, "") + call.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    calls = [(ids[i], names[i], json.loads(args[i])) for i in sorted(ids)]
    return content, calls, finish


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


@asynccontextmanager
async def gateway_client(
    config: GatewayConfig, api_key: str = "x", **client: Any
) -> AsyncIterator[tuple[str, AsyncOpenAI]]:
    """The gateway served on a free port and an SDK client for it: (base URL without /v1, client)."""
    async with running_gateway(config) as url, AsyncOpenAI(base_url=url, api_key=api_key, max_retries=0, **client) as sdk:
        yield url.removesuffix("/v1"), sdk
