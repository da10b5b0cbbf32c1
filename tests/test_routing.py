"""Routing: exact names, aliases and glob patterns; upstream names; per-route sampling defaults."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI, NotFoundError

from tests.conftest import QWEN25
from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import make_config, running_gateway

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def routed(fake_llama: FakeLlamaServer):  # type: ignore[no-untyped-def]
    backends = [{"name": "fake", "type": "llamacpp", "url": fake_llama.url}]
    template = str(QWEN25)
    models = [
        {"name": "qwen-fixed", "backend": "fake", "upstream_model": "Qwen2.5-7B-Q4", "chat_template": template,
         "aliases": ["gpt-4o", "default"], "defaults": {"temperature": 0.1, "top_p": 0.5, "max_tokens": 99}},
        {"name": "qwen2.5-*", "backend": "fake", "tool_format": "hermes", "chat_template": template},
        {"name": "plain", "backend": "fake", "chat_template": template},
    ]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            yield client


async def test_models_lists_names_aliases_and_patterns(routed: AsyncOpenAI) -> None:
    ids = [model.id async for model in routed.models.list()]
    assert ids == ["qwen-fixed", "plain", "gpt-4o", "default", "qwen2.5-*"]


@pytest.mark.parametrize(
    ("asked", "upstream"),
    [("qwen-fixed", "Qwen2.5-7B-Q4"), ("gpt-4o", "Qwen2.5-7B-Q4"), ("qwen2.5-14b", "qwen2.5-14b"), ("plain", "plain")],
)
async def test_upstream_model_per_route(routed: AsyncOpenAI, fake_llama: FakeLlamaServer, asked: str, upstream: str) -> None:
    fake_llama.script("ok")
    reply = await routed.chat.completions.create(model=asked, messages=HELLO)
    assert reply.model == asked, "the client sees the name it asked for"
    assert fake_llama.requests[-1]["model"] == upstream


async def test_route_defaults_and_request_overrides(routed: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script("ok", "ok")
    await routed.chat.completions.create(model="gpt-4o", messages=HELLO)
    body = fake_llama.requests[-1]
    assert (body["temperature"], body["top_p"], body["n_predict"]) == (0.1, 0.5, 99)
    await routed.chat.completions.create(model="gpt-4o", messages=HELLO, temperature=0.9, max_tokens=5)
    body = fake_llama.requests[-1]
    assert (body["temperature"], body["top_p"], body["n_predict"]) == (0.9, 0.5, 5)


async def test_unmatched_name_is_404_listing_models(routed: AsyncOpenAI) -> None:
    with pytest.raises(NotFoundError, match="qwen2.5-\\*"):
        await routed.chat.completions.create(model="llama-3", messages=HELLO)
