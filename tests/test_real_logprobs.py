"""End to end: log probabilities from the real llama-server (Gemma 3 270M) through toolwire and the
real `openai` SDK, streamed and not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.support.real_llama import RunningServer

MODEL = "gemma-3"
ASK = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture
async def client(llama_server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    backends = [{"name": "llama", "type": "llamacpp", "url": llama_server.url, "timeouts": {"read": 60}}]
    models = [{"name": MODEL, "backend": "llama", "tool_format": "default",
               "chat_template": str(TEMPLATES / "gemma3-instruct.index.jinja"), "bos_token": "<bos>", "eos_token": "<eos>",
               "defaults": {"temperature": 0, "seed": 1, "max_tokens": 24}}]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=120) as sdk:
            yield sdk


def check(content: str, tokens: list[dict], top: int) -> None:
    assert content and tokens
    assert "".join(t["token"] for t in tokens) == content, "the tokens make up the content"
    for token in tokens:
        assert token["logprob"] <= 0
        assert bytes(token["bytes"]).decode("utf-8", "replace") == token["token"] or not token["token"].isprintable()
        assert len(token["top_logprobs"]) == top
        assert all(alt["logprob"] <= 0 for alt in token["top_logprobs"])
        logprobs = [alt["logprob"] for alt in token["top_logprobs"]]
        assert logprobs == sorted(logprobs, reverse=True)


async def test_logprobs_whole_and_streamed(client: AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, top_logprobs=3)
    choice = whole.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = [t.model_dump() for t in choice.logprobs.content]
    check(choice.message.content or "", tokens, 3)
    # temperature 0: the chosen token is the likeliest
    assert all(t["top_logprobs"][0]["token"] == t["token"] for t in tokens)

    content, streamed = "", []
    async for chunk in await client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, stream=True):
        for part in chunk.choices:
            content += part.delta.content or ""
            if part.logprobs is not None and part.logprobs.content:
                streamed += [t.model_dump() for t in part.logprobs.content]
    check(content, streamed, 0)
    assert content == choice.message.content
    assert [t["token"] for t in streamed] == [t["token"] for t in tokens]
