"""Upstream stream lines of any length up to `max_line_bytes`, and a clean error past it.

llama-server's final event echoes the whole prompt in one SSE line, and a model that repeats a long
text sends it in one line too: a prompt over 1 MB goes through every backend, streamed and not.
Past the configured maximum the answer is a clean error, and any failure after a stream began ends
it with an error event, never a silent cut.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from adapters.backends.errors import BackendProtocolError
from adapters.backends.lines import LineSplitter
from tests.conftest import GEMMA3, QWEN25
from tests.fakes.llamacpp import FakeLlamaServer
from tests.fakes.llamacpp import Scripted as LlamaScript
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.ollama import Scripted as OllamaScript
from tests.fakes.server import LoopbackServer
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import make_config, running_gateway

# About 1.2 MB of prose: a document pasted into the conversation.
LONG = "The quick brown fox jumps over the lazy dog, again and again. " * 20_000
BIG_CONTEXT = 2_000_000


# -- the splitter on its own ---------------------------------------------------------------------

def test_lines_split_across_reads_and_kept_whole() -> None:
    splitter = LineSplitter("b", max_line_bytes=100)
    assert splitter.feed(b"data: 1\n\nda") == [b"data: 1", b""]
    assert splitter.feed(b"ta: ") == []
    assert splitter.feed(b"2\ndata: 3\n") == [b"data: 2", b"data: 3"]
    assert splitter.feed(b"tail") == [] and splitter.close() == [b"tail"]


def test_a_long_line_in_many_reads_is_one_line_and_the_limit_holds() -> None:
    line = b"x" * 1_000_000
    splitter = LineSplitter("b", max_line_bytes=2_000_000)
    out = [got for start in range(0, len(line), 1000) for got in splitter.feed(line[start : start + 1000])]
    assert out == [] and splitter.feed(b"\n") == [line]
    limited = LineSplitter("b", max_line_bytes=10_000)
    with pytest.raises(BackendProtocolError, match="max_line_bytes"):
        for start in range(0, len(line), 1000):
            limited.feed(line[start : start + 1000])
    with pytest.raises(BackendProtocolError, match="max_line_bytes"):
        LineSplitter("b", max_line_bytes=10).feed(b"short\n" + b"y" * 20 + b"\nmore")


# -- every backend, through the gateway -----------------------------------------------------------

@asynccontextmanager
async def gateway_on(kind: str) -> AsyncIterator[tuple[str, Any]]:
    """The gateway with one model `m` on a fake of `kind` sized for a 1 MB prompt; yields (url, fake)."""
    if kind == "llamacpp":
        fake: Any = FakeLlamaServer(bos_token="", eos_token="<|im_end|>", n_ctx=BIG_CONTEXT)
        route = {"tool_format": "hermes", "chat_template": str(QWEN25)}
    elif kind == "vllm":
        fake = FakeVllmServer(eos_token="<|im_end|>", max_model_len=BIG_CONTEXT)
        route = {"upstream_model": "Qwen/Qwen2.5-7B-Instruct", "tool_format": "hermes", "chat_template": str(QWEN25)}
    else:
        fake = FakeOllama(models=[FakeModel(name="gemma3:270m", context_length=BIG_CONTEXT)])
        route = {"upstream_model": "gemma3:270m", "tool_format": "default", "chat_template": str(GEMMA3),
                 "bos_token": "<bos>", "eos_token": "<eos>"}
    async with fake:
        config = make_config([{"name": "up", "type": kind, "url": fake.url}],
                             [{"name": "m", "backend": "up", **route}])
        async with running_gateway(config) as url:
            yield url, fake


def echo_script(kind: str) -> Any:
    """The model repeats the document: one chunk of over 1 MB (llama.cpp also echoes the prompt)."""
    if kind == "llamacpp":
        return LlamaScript([LONG])
    if kind == "vllm":
        return VllmScript([LONG])
    return OllamaScript([LONG])


@pytest.mark.parametrize("kind", ["llamacpp", "vllm", "ollama"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_over_one_megabyte_comes_back(kind: str, stream: bool) -> None:
    async with gateway_on(kind) as (url, fake), AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        fake.script(echo_script(kind))
        messages = [{"role": "user", "content": "Repeat this document:\n" + LONG}]
        if stream:
            async with client.chat.completions.stream(model="m", messages=messages) as events:
                reply = await events.get_final_completion()
        else:
            reply = await client.chat.completions.create(model="m", messages=messages)
        assert reply.choices[0].message.content == LONG
        assert reply.choices[0].finish_reason == "stop"
        assert len(fake.requests[-1]["prompt"]) > len(LONG) > 1_000_000


# -- past the limit, and failures after the stream began ------------------------------------------

async def raw_stream(url: str, body: dict[str, Any]) -> list[Any]:
    """The SSE `data:` payloads of one streamed chat request, parsed ([DONE] kept as a string)."""
    events: list[Any] = []
    async with aiohttp.ClientSession() as session, session.post(f"{url}/chat/completions", json=body) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: "):
                payload = line[6:].strip()
                events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


async def test_a_line_past_max_line_bytes_is_a_clean_error() -> None:
    async with FakeLlamaServer(bos_token="", eos_token="<|im_end|>", n_ctx=BIG_CONTEXT) as fake:
        config = make_config([{"name": "up", "type": "llamacpp", "url": fake.url, "max_line_bytes": 65536}],
                             [{"name": "m", "backend": "up", "tool_format": "hermes", "chat_template": str(QWEN25)}])
        ask = {"model": "m", "messages": [{"role": "user", "content": LONG[:200_000]}]}
        async with running_gateway(config) as url, AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            # The prompt echo in the final event is the long line; the answer before it is short.
            fake.script(LlamaScript(["Fine", " then."]))
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(**ask)
            assert caught.value.status_code == 502 and "max_line_bytes" in caught.value.message
            fake.script(LlamaScript(["Fine", " then."], delay=0.01))
            events = await raw_stream(url, {**ask, "stream": True})
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if "choices" in e)
        assert text == "Fine then."
        assert "max_line_bytes" in events[-1]["error"]["message"] and "[DONE]" not in events


class _BrokenLlama(LoopbackServer):
    """A llama.cpp-shaped server that sends one good event, then one no real server would send."""

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/completion", self._completion)
        return app

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"content":"Hel","stop":false}\n\n')
        await asyncio.sleep(0.05)
        await response.write(b'data: {"content":["not","text"],"stop":false}\n\n')
        await response.write(b'data: {"content":"","stop":true,"stop_type":"eos"}\n\n')
        return response


async def test_an_unexpected_failure_mid_stream_ends_with_an_error_event() -> None:
    async with _BrokenLlama() as broken:
        config = make_config([{"name": "up", "type": "llamacpp", "url": broken.url}],
                             [{"name": "m", "backend": "up", "tool_format": "hermes", "chat_template": str(QWEN25)}])
        async with running_gateway(config) as url:
            events = await raw_stream(url, {"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                                            "stream": True})
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert any(e.get("choices") and e["choices"][0]["delta"].get("content") == "Hel" for e in events)
    assert "error" in events[-1] and "[DONE]" not in events
