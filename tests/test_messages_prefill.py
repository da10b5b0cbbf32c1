"""Anthropic's prefill: a final assistant message is the start of the reply, which the model
continues; the answer holds only what the model wrote after it. Through the `anthropic` SDK,
against the fake llama.cpp server's continuing model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from anthropic import AsyncAnthropic

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer
from tests.fakes.model import QWEN_OPENING, ContinuingModel, echo_text, weather_or_echo
from tests.support.gateway import make_config, running_gateway

MODEL = "qwen2.5-7b-instruct"
WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture
async def claude(fake_llama: FakeLlamaServer) -> AsyncIterator[AsyncAnthropic]:
    backends, models = fake_routes(fake_llama.url)
    async with running_gateway(make_config(backends, models)) as url, AsyncAnthropic(
        base_url=url.removesuffix("/v1"), api_key="k", max_retries=0, timeout=30
    ) as sdk:
        yield sdk


async def test_the_model_continues_the_prefill_and_only_its_words_come_back(
    claude: AsyncAnthropic, fake_llama: FakeLlamaServer
) -> None:
    prefill = "You asked me to echo"
    whole = echo_text("blue sky")
    fake_llama.script(ContinuingModel(weather_or_echo), ContinuingModel(weather_or_echo))
    messages = [{"role": "user", "content": "echo blue sky"}, {"role": "assistant", "content": prefill}]
    reply = await claude.messages.create(model=MODEL, max_tokens=200, messages=messages)  # type: ignore[arg-type]
    assert [block.type for block in reply.content] == ["text"] and reply.stop_reason == "end_turn"
    assert reply.content[0].text == whole.removeprefix(prefill)  # type: ignore[union-attr]
    assert fake_llama.prompts[-1].endswith(QWEN_OPENING + prefill), "rendered as the reply's opening, not a turn"
    async with claude.messages.stream(model=MODEL, max_tokens=200, messages=messages) as stream:  # type: ignore[arg-type]
        streamed = await stream.get_final_message()
    assert streamed.content[0].text == reply.content[0].text  # type: ignore[union-attr]


async def test_a_prefill_that_opens_a_call_gives_the_call(claude: AsyncAnthropic, fake_llama: FakeLlamaServer) -> None:
    prefill = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "'
    fake_llama.script(ContinuingModel(weather_or_echo), ContinuingModel(weather_or_echo))
    messages = [{"role": "user", "content": "weather in Oslo"}, {"role": "assistant", "content": prefill}]
    reply = await claude.messages.create(model=MODEL, max_tokens=200, messages=messages,  # type: ignore[arg-type]
                                         tools=[WEATHER])  # type: ignore[list-item]
    assert reply.stop_reason == "tool_use"
    assert [(block.type, getattr(block, "name", None), getattr(block, "input", None)) for block in reply.content] == [
        ("tool_use", "get_weather", {"city": "Oslo"})]
    async with claude.messages.stream(model=MODEL, max_tokens=200, messages=messages,  # type: ignore[arg-type]
                                      tools=[WEATHER]) as stream:  # type: ignore[list-item]
        streamed = await stream.get_final_message()
    assert [(b.type, getattr(b, "input", None)) for b in streamed.content] == [("tool_use", {"city": "Oslo"})]


async def test_count_tokens_counts_the_prefill(claude: AsyncAnthropic, fake_llama: FakeLlamaServer) -> None:
    ask = [{"role": "user", "content": "echo blue sky"}]
    without = await claude.messages.count_tokens(model=MODEL, messages=ask)  # type: ignore[arg-type]
    prefilled = [*ask, {"role": "assistant", "content": "You asked me to echo"}]
    with_prefill = await claude.messages.count_tokens(model=MODEL, messages=prefilled)  # type: ignore[arg-type]
    assert with_prefill.input_tokens > without.input_tokens
