"""Proof on a real model: with `tool_choice` "required" or a named function, the tiny base model
behind a real llama-server returns a valid call to a listed tool with schema-valid arguments on
every one of 20 varied prompts, streamed and not. Constrained decoding is what makes that work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import jsonschema
import pytest
from openai import AsyncOpenAI

from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import RunningServer

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                    "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Add two numbers",
     "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}},
    {"type": "function", "function": {"name": "send_email", "description": "Send an email",
     "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"},
                    "urgent": {"type": "boolean"}}, "required": ["to", "subject"]}}},
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
PROMPTS = [
    "What is the weather in Paris?", "Add 2 and 3.", "Email Ann about lunch.", "Is it raining in Tokyo?",
    "What is 17 plus 25?", "Tell Bob the meeting moved, it is urgent.", "How warm is it in Cairo in fahrenheit?",
    "Sum 1.5 and 2.25", "Write to the team about the release.", "Weather for Lima please", "hi",
    "Can you add minus four and ten?", "Send mom a note saying happy birthday", "Forecast for Oslo?",
    "What's 100 + 1?", "Remind Carol about the invoice by email", "Nice day in Rome?", "Compute 7+8",
    "Mail support: my order is late", "Tell me a joke",
]
CHOICES = ["required", {"type": "function", "function": {"name": "add"}}]


@pytest.fixture
async def client(llama_server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    backends = [{"name": "llama", "type": "llamacpp", "url": llama_server.url, "timeouts": {"read": 120}}]
    models = [{"name": "gemma", "backend": "llama", "tool_format": "default", "chat_template": "backend",
               "defaults": {"temperature": 0.8, "seed": 42, "max_tokens": 64}}]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=300) as sdk:
            yield sdk


async def one_call(client: AsyncOpenAI, prompt: str, choice: object, stream: bool) -> tuple[str, dict]:
    messages = [{"role": "user", "content": prompt}]
    if not stream:
        reply = await client.chat.completions.create(model="gemma", messages=messages, tools=TOOLS, tool_choice=choice)
        calls = reply.choices[0].message.tool_calls or []
        assert reply.choices[0].finish_reason == "tool_calls", (prompt, reply.choices[0])
    else:
        async with client.chat.completions.stream(model="gemma", messages=messages, tools=TOOLS, tool_choice=choice) as s:
            reply = await s.get_final_completion()
        calls = reply.choices[0].message.tool_calls or []
        assert reply.choices[0].finish_reason == "tool_calls", (prompt, reply.choices[0])
    assert len(calls) == 1, (prompt, calls)
    return calls[0].function.name, json.loads(calls[0].function.arguments)


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("choice", CHOICES, ids=["required", "named"])
async def test_twenty_prompts_all_yield_valid_calls(client: AsyncOpenAI, choice: object, stream: bool) -> None:
    # llama-server runs 4 slots: four requests at a time keep the test quick on 2 cores.
    gate = asyncio.Semaphore(4)

    async def run(prompt: str) -> tuple[str, dict]:
        async with gate:
            return await one_call(client, prompt, choice, stream)

    results = await asyncio.gather(*(run(prompt) for prompt in PROMPTS))
    for prompt, (name, arguments) in zip(PROMPTS, results, strict=True):
        assert name in SCHEMAS, prompt
        if isinstance(choice, dict):
            assert name == "add", prompt
        jsonschema.validate(arguments, SCHEMAS[name])
