"""End to end: the real `openai` SDK -> toolwire -> a real llama.cpp `llama-server` running a real
model (Gemma 3 270M, a tiny base model). Its answers are not judged for quality; the shapes,
the parsing and the constraints are."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.support.real_llama import RunningServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

# Two earlier turns in which the assistant called the tool: the base model continues the pattern,
# which also proves that calls and results in the history render into the prompt.
FEW_SHOT = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    {"role": "assistant", "content": "It is sunny and 21C in Paris."},
    {"role": "user", "content": "What is the weather in London?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "London"}'}}]},
    {"role": "tool", "tool_call_id": "call_2", "content": "rain, 12C"},
    {"role": "assistant", "content": "It is raining and 12C in London."},
    {"role": "user", "content": "What is the weather in Tokyo?"},
]

MODELS = ["gemma-backend-template", "gemma-3-template"]


@pytest.fixture
async def real_client(llama_server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    backends = [{"name": "llama", "type": "llamacpp", "url": llama_server.url, "timeouts": {"read": 60}}]
    defaults = {"temperature": 0, "seed": 1, "max_tokens": 48}
    models = [
        # The template llama-server reports (its ChatML fallback: this GGUF carries none).
        {"name": MODELS[0], "backend": "llama", "tool_format": "default", "chat_template": "backend", "defaults": defaults},
        # Gemma 3's own template from a file, with its special tokens.
        {"name": MODELS[1], "backend": "llama", "tool_format": "default",
         "chat_template": str(TEMPLATES / "gemma3-instruct.index.jinja"),
         "bos_token": "<bos>", "eos_token": "<eos>", "defaults": defaults},
    ]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=120) as client:
            yield client


def check_message(message, finish_reason: str) -> None:  # type: ignore[no-untyped-def]
    assert finish_reason in ("stop", "length", "tool_calls")
    if finish_reason == "tool_calls":
        assert message.tool_calls
    if message.tool_calls:
        assert finish_reason in ("tool_calls", "length"), "calls made: the reason says so unless the output was cut"
    for call in message.tool_calls or []:
        assert call.type == "function" and call.id.startswith("call_")
        assert isinstance(json.loads(call.function.arguments), dict)
    if message.content is not None:
        assert "<|im_end|>" not in message.content and "<end_of_turn>" not in message.content, "stopped at end of turn"
        assert "[TOOL_REQUEST]" not in message.content or finish_reason == "length"


@pytest.mark.parametrize("model", MODELS)
async def test_plain_request_with_tools(real_client: AsyncOpenAI, model: str) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    whole = await real_client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    check_message(whole.choices[0].message, whole.choices[0].finish_reason)
    assert whole.usage.prompt_tokens > 150, "the tool block is in the prompt"
    assert 0 < whole.usage.completion_tokens <= 48
    # Accumulated by hand: the SDK's stream helper refuses replies that end with "length".
    stream = await real_client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], stream=True)
    content, calls, finishes = "", {}, []
    async for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            calls.setdefault(call.index, [call.function.name, ""])[1] += call.function.arguments or ""
        finishes += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert finishes == [whole.choices[0].finish_reason], "same tokens at temperature 0"
    assert content == (whole.choices[0].message.content or "")
    assert [calls[i] for i in sorted(calls)] == [
        [c.function.name, c.function.arguments] for c in whole.choices[0].message.tool_calls or []
    ]


async def test_the_real_model_makes_a_tool_call(real_client: AsyncOpenAI) -> None:
    whole = await real_client.chat.completions.create(model=MODELS[0], messages=FEW_SHOT, tools=[WEATHER])
    choice = whole.choices[0]
    check_message(choice.message, choice.finish_reason)
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]
    assert "city" in json.loads(choice.message.tool_calls[0].function.arguments)

    stream = await real_client.chat.completions.create(
        model=MODELS[0], messages=FEW_SHOT, tools=[WEATHER], stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].index == 0
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert arguments == choice.message.tool_calls[0].function.arguments
    assert len(deltas) > 2, "arguments arrive in pieces as the model writes them"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens


async def test_max_tokens_gives_length(real_client: AsyncOpenAI) -> None:
    whole = await real_client.chat.completions.create(
        model=MODELS[1], messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=5
    )
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5



async def test_through_the_openai_completions_adapter(llama_server: RunningServer) -> None:
    """The same real server through its OpenAI-style `/v1/completions` endpoint."""
    backends = [{"name": "llama-v1", "type": "openai-completions", "url": llama_server.url}]
    models = [{"name": "gemma-v1", "backend": "llama-v1", "tool_format": "default",
               "chat_template": str(TEMPLATES / "gemma3-instruct.index.jinja"), "bos_token": "<bos>", "eos_token": "<eos>",
               "defaults": {"temperature": 0, "seed": 1, "max_tokens": 48}}]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=120) as client:
            whole = await client.chat.completions.create(model="gemma-v1", messages=FEW_SHOT, tools=[WEATHER])
            check_message(whole.choices[0].message, whole.choices[0].finish_reason)
            assert whole.usage.prompt_tokens > 150 and whole.usage.completion_tokens > 0
            stream = await client.chat.completions.create(
                model="gemma-v1", messages=FEW_SHOT, tools=[WEATHER], stream=True
            )
            chunks = [chunk async for chunk in stream]
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert finishes == [whole.choices[0].finish_reason]


async def test_lazy_grammar_on_the_real_server(llama_server: RunningServer) -> None:
    """`constrain: always`: free text until [TOOL_REQUEST], then only a valid call (llama-server's lazy grammar)."""
    backends = [{"name": "llama", "type": "llamacpp", "url": llama_server.url, "timeouts": {"read": 60}}]
    models = [{"name": "gemma", "backend": "llama", "tool_format": "default", "chat_template": "backend",
               "constrain": "always", "defaults": {"temperature": 0, "seed": 1, "max_tokens": 48}}]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=120) as client:
            whole = await client.chat.completions.create(model="gemma", messages=FEW_SHOT, tools=[WEATHER])
    choice = whole.choices[0]
    check_message(choice.message, choice.finish_reason)
    assert choice.message.tool_calls, "the few-shot history leads the model into a call"
    for call in choice.message.tool_calls:  # the grammar allows only valid calls to listed tools
        assert call.function.name == "get_weather"
        assert set(json.loads(call.function.arguments)) <= {"city"}
