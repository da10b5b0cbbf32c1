"""The models list and one model, as each SDK reads them: OpenAI's shapes for the `openai` SDK,
Anthropic's (`type: model`, cursor pages) for the `anthropic` SDK, through the running gateway."""

from __future__ import annotations

from datetime import datetime

import aiohttp
import pytest
from anthropic import AsyncAnthropic, BadRequestError
from anthropic import NotFoundError as AnthropicNotFound
from openai import AsyncOpenAI
from openai import NotFoundError as OpenAINotFound

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import make_config, running_gateway

NAMES = [f"model-{index:02d}" for index in range(25)]


@pytest.fixture
async def gateway_url(fake_llama: FakeLlamaServer) -> object:
    backends, models = fake_routes(fake_llama.url)
    many = [{**models[0], "name": name} for name in NAMES]
    keys = [{"key": "sk-all", "models": ["*"]}, {"key": "sk-few", "models": ["model-0*"]}]
    async with running_gateway(make_config(backends, many, auth={"api_keys": keys})) as url:
        yield url


async def test_anthropic_sdk_pages_through_every_model(gateway_url: str) -> None:
    async with AsyncAnthropic(base_url=gateway_url.removesuffix("/v1"), api_key="sk-all", max_retries=0) as claude:
        first = await claude.models.list()
        assert [model.id for model in first.data] == NAMES[:20], "Anthropic's default page is 20"
        assert first.has_more and first.first_id == NAMES[0] and first.last_id == NAMES[19]
        assert all(model.type == "model" and model.display_name == model.id for model in first.data)
        assert isinstance(first.data[0].created_at, datetime)
        seen = [model.id async for model in claude.models.list(limit=7)]
        assert seen == NAMES, "the SDK's auto-paging follows after_id to the end"
        before = await claude.models.list(before_id=NAMES[10], limit=4)
        assert [model.id for model in before.data] == NAMES[6:10] and before.has_more
        one = await claude.models.retrieve(NAMES[3])
        assert one.id == NAMES[3] and one.type == "model"
        with pytest.raises(AnthropicNotFound) as missing:
            await claude.models.retrieve("no-such-model")
        assert missing.value.body["type"] == "error" and missing.value.body["error"]["type"] == "not_found_error"
        with pytest.raises(BadRequestError) as bad:
            await claude.models.list(limit=0)
        assert bad.value.body["error"]["type"] == "invalid_request_error"


async def test_a_key_sees_only_its_models(gateway_url: str) -> None:
    base = gateway_url.removesuffix("/v1")
    async with AsyncAnthropic(base_url=base, api_key="sk-few", max_retries=0) as claude:
        assert [model.id async for model in claude.models.list()] == NAMES[:10]
        with pytest.raises(AnthropicNotFound):
            await claude.models.retrieve(NAMES[12])
    async with AsyncOpenAI(base_url=gateway_url, api_key="sk-few", max_retries=0) as client:
        assert [model.id async for model in client.models.list()] == NAMES[:10]
        with pytest.raises(OpenAINotFound):
            await client.models.retrieve(NAMES[12])


async def test_openai_sdk_keeps_openai_shapes(gateway_url: str) -> None:
    async with AsyncOpenAI(base_url=gateway_url, api_key="sk-all", max_retries=0) as client:
        listed = await client.models.list()
        assert [model.id for model in listed.data] == NAMES
        assert all(model.object == "model" and model.owned_by == "toolwire:fake" for model in listed.data)
        one = await client.models.retrieve(NAMES[24])
        assert one.id == NAMES[24] and one.created == listed.data[0].created
        with pytest.raises(OpenAINotFound) as missing:
            await client.models.retrieve("no-such-model")
        assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bearer sk-all"}
        async with http.get(f"{gateway_url}/models/no-such-model", headers=headers) as response:
            assert response.status == 404
            assert (await response.json())["error"]["type"] == "invalid_request_error"
