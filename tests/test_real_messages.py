"""End to end: the real `anthropic` SDK -> toolwire's Messages API -> a real llama.cpp `llama-server`
running a real model (Gemma 3 270M). A forced tool gives a real call, the same one the OpenAI
surface gets, and count_tokens is what the generation is charged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.support.real_llama import RunningServer

MODEL = "gemma-3"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"name": "get_weather", "description": "Current weather for a city", "input_schema": SCHEMA}
ASK = [{"role": "user", "content": "What is the weather in Tokyo?"}]


@pytest.fixture
async def gateway(llama_server: RunningServer) -> AsyncIterator[str]:
    backends = [{"name": "llama", "type": "llamacpp", "url": llama_server.url, "timeouts": {"read": 60}}]
    models = [{"name": MODEL, "backend": "llama", "tool_format": "default",
               "chat_template": str(TEMPLATES / "gemma3-instruct.index.jinja"), "bos_token": "<bos>",
               "eos_token": "<eos>", "defaults": {"temperature": 0, "seed": 1}}]
    async with running_gateway(make_config(backends, models)) as url:
        yield url


async def test_a_forced_tool_on_the_real_model(gateway: str) -> None:
    params = {"model": MODEL, "max_tokens": 64, "messages": ASK, "tools": [WEATHER],
              "tool_choice": {"type": "tool", "name": "get_weather"}}
    async with (
        AsyncAnthropic(base_url=gateway.removesuffix("/v1"), api_key="x", max_retries=0, timeout=120) as claude,
        AsyncOpenAI(base_url=gateway, api_key="x", max_retries=0, timeout=120) as openai,
    ):
        whole = await claude.messages.create(**params)
        assert whole.stop_reason == "tool_use"
        [use] = [block for block in whole.content if block.type == "tool_use"]
        assert use.name == "get_weather" and use.id.startswith("toolu_")
        assert isinstance(use.input["city"], str) and use.input["city"]

        async with claude.messages.stream(**params) as stream:
            streamed = await stream.get_final_message()
        [streamed_use] = [block for block in streamed.content if block.type == "tool_use"]
        assert streamed_use.input == use.input, "same tokens at temperature 0"
        assert streamed.stop_reason == "tool_use" and streamed.usage.output_tokens == whole.usage.output_tokens

        chat = await openai.chat.completions.create(
            model=MODEL, max_tokens=64, messages=ASK,
            tools=[{"type": "function", "function": {"name": "get_weather", "description": WEATHER["description"],
                                                     "parameters": SCHEMA}}],
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
        [call] = chat.choices[0].message.tool_calls
        assert (call.function.name, json.loads(call.function.arguments)) == (use.name, use.input)

        counted = await claude.messages.count_tokens(model=MODEL, messages=ASK, tools=[WEATHER],
                                                     tool_choice={"type": "tool", "name": "get_weather"})
        assert counted.input_tokens == whole.usage.input_tokens + whole.usage.cache_read_input_tokens
        assert counted.input_tokens == chat.usage.prompt_tokens
