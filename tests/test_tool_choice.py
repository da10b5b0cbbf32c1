"""tool_choice in all its forms, parallel_tool_calls, legacy functions, response_format and
argument validation: what reaches each backend (prefill, constraint) and what the client gets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from openai import APIError, AsyncOpenAI, BadRequestError

from tests.conftest import GEMMA3, QWEN25
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, error_body, split_text
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.ollama import Scripted as OllamaScript
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import make_config, running_gateway

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "strict": True, "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}
TOOLS = [WEATHER, ADD]
ASK = [{"role": "user", "content": "Weather in Paris?"}]
NAMED_ADD = {"type": "function", "function": {"name": "add"}}


@pytest.fixture
async def client(fake_llama: FakeLlamaServer) -> AsyncIterator[AsyncOpenAI]:
    backends = [{"name": "fake", "type": "llamacpp", "url": fake_llama.url}]
    models = [
        {"name": "qwen", "backend": "fake", "tool_format": "hermes", "chat_template": str(QWEN25)},
        {"name": "qwen-unconstrained", "backend": "fake", "tool_format": "hermes", "chat_template": str(QWEN25),
         "constrain": "off"},
        {"name": "gemma", "backend": "fake", "tool_format": "default", "chat_template": str(GEMMA3),
         "bos_token": "<bos>", "eos_token": "<eos>"},
    ]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as sdk:
            yield sdk


def call_names(reply) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    return [(c.function.name, json.loads(c.function.arguments)) for c in reply.choices[0].message.tool_calls or []]


async def test_required_prefills_the_opening_and_constrains_the_call(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text('{"name": "get_weather", "arguments": {"city": "Paris"}}')))
    reply = await client.chat.completions.create(model="qwen", messages=ASK, tools=TOOLS, tool_choice="required")
    assert call_names(reply) == [("get_weather", {"city": "Paris"})]
    assert reply.choices[0].finish_reason == "tool_calls"
    body = fake_llama.requests[-1]
    assert body["prompt"].endswith("<|im_start|>assistant\n<tool_call>\n")
    schema = body["json_schema"]
    assert [v["properties"]["name"]["const"] for v in schema["anyOf"]] == ["get_weather", "add"]
    assert schema["anyOf"][1]["properties"]["arguments"] == ADD["function"]["parameters"]


async def test_named_choice_constrains_to_that_function(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text('{"name": "add", "arguments": {"a": 1, "b": 2}}')))
    async with client.chat.completions.stream(model="qwen", messages=ASK, tools=TOOLS, tool_choice=NAMED_ADD) as stream:
        reply = await stream.get_final_completion()
    assert call_names(reply) == [("add", {"a": 1, "b": 2})]
    assert fake_llama.requests[-1]["json_schema"]["properties"]["name"] == {"const": "add"}


async def test_unconstrained_route_prefills_the_call_head(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text('{"a": 1, "b": 2}}\n</tool_call>')))
    reply = await client.chat.completions.create(model="qwen-unconstrained", messages=ASK, tools=TOOLS, tool_choice=NAMED_ADD)
    assert call_names(reply) == [("add", {"a": 1, "b": 2})]
    body = fake_llama.requests[-1]
    assert body["prompt"].endswith('<tool_call>\n{"name": "add", "arguments": ')
    assert "json_schema" not in body and "grammar" not in body


async def test_default_format_prefill(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text('{"name": "get_weather", "arguments": {"city": "Rome"}}')))
    reply = await client.chat.completions.create(model="gemma", messages=ASK, tools=TOOLS, tool_choice="required")
    assert call_names(reply) == [("get_weather", {"city": "Rome"})]
    assert fake_llama.requests[-1]["prompt"].endswith("<start_of_turn>model\n[TOOL_REQUEST]")


async def test_rejected_constraint_falls_back_to_prefill(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(
        Scripted([], http_error=error_body("failed to parse grammar", "invalid_request_error")),
        Scripted(split_text('{"a": 5, "b": 6}}\n</tool_call>')),
    )
    reply = await client.chat.completions.create(model="qwen", messages=ASK, tools=TOOLS, tool_choice=NAMED_ADD)
    assert call_names(reply) == [("add", {"a": 5, "b": 6})]
    first, second = fake_llama.requests[-2:]
    assert "json_schema" in first and "json_schema" not in second
    assert second["prompt"].endswith('{"name": "add", "arguments": ')


async def test_none_offers_no_tools_and_parses_no_calls(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>'
    fake_llama.script(Scripted(split_text(text)))
    history = [*ASK, {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
               "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "cold"}, {"role": "user", "content": "And now?"}]
    reply = await client.chat.completions.create(model="qwen", messages=history, tools=TOOLS, tool_choice="none")
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == text
    prompt = fake_llama.requests[-1]["prompt"]
    assert "<tools>" not in prompt, "no tools offered this turn"
    assert '"city": "Oslo"' in prompt and "cold" in prompt, "earlier calls still render"


async def test_parallel_tool_calls_false_returns_one_call(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    two = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "A"}}\n</tool_call>\n'
           '<tool_call>\n{"name": "get_weather", "arguments": {"city": "B"}}\n</tool_call>')
    fake_llama.script(Scripted(split_text(two)), Scripted(split_text(two)))
    reply = await client.chat.completions.create(model="qwen", messages=ASK, tools=TOOLS, parallel_tool_calls=False)
    assert call_names(reply) == [("get_weather", {"city": "A"})]
    async with client.chat.completions.stream(model="qwen", messages=ASK, tools=TOOLS, parallel_tool_calls=False) as s:
        streamed = await s.get_final_completion()
    assert call_names(streamed) == [("get_weather", {"city": "A"})]


async def test_legacy_functions_and_function_call(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text('{"name": "add", "arguments": {"a": 1, "b": 1}}')))
    reply = await client.chat.completions.create(
        model="qwen", messages=ASK, functions=[ADD["function"]], function_call={"name": "add"}
    )
    assert call_names(reply) == [("add", {"a": 1, "b": 1})]
    assert fake_llama.requests[-1]["json_schema"]["properties"]["name"] == {"const": "add"}


async def test_unknown_named_function_is_400(client: AsyncOpenAI) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(
            model="qwen", messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}
        )
    assert caught.value.param == "tool_choice"


async def test_strict_tool_with_invalid_arguments_is_an_error(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    bad = '<tool_call>\n{"name": "add", "arguments": {"a": "one"}}\n</tool_call>'
    lax = '<tool_call>\n{"name": "get_weather", "arguments": {"town": 3}}\n</tool_call>'
    fake_llama.script(Scripted(split_text(bad)), Scripted(split_text(lax)))
    with pytest.raises(APIError) as caught:
        await client.chat.completions.create(model="qwen", messages=ASK, tools=TOOLS)
    assert caught.value.code == "tool_arguments_invalid" and "add" in caught.value.message
    reply = await client.chat.completions.create(model="qwen", messages=ASK, tools=TOOLS)
    assert call_names(reply) == [("get_weather", {"town": 3})], "a non-strict tool's invalid call is returned as is"


async def test_response_format_becomes_a_json_schema_constraint(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    fake_llama.script(Scripted(['{"answer": 4}']), Scripted(['{"x": 1}']))
    reply = await client.chat.completions.create(
        model="qwen", messages=ASK, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    )
    assert json.loads(reply.choices[0].message.content) == {"answer": 4}
    assert fake_llama.requests[-1]["json_schema"] == schema
    await client.chat.completions.create(model="qwen", messages=ASK, response_format={"type": "json_object"})
    assert fake_llama.requests[-1]["json_schema"] == {"type": "object"}


async def test_vllm_gets_structured_outputs_and_ollama_gets_format() -> None:
    async with (
        FakeVllmServer(model="qwen", eos_token="<|im_end|>", max_model_len=32768) as vllm,
        FakeOllama(models=[FakeModel(name="gemma3:270m", context_length=8192)]) as ollama,
    ):
        backends = [{"name": "vllm", "type": "vllm", "url": vllm.url}, {"name": "ollama", "type": "ollama", "url": ollama.url}]
        models = [
            {"name": "v", "backend": "vllm", "upstream_model": "qwen", "tool_format": "hermes", "chat_template": str(QWEN25)},
            {"name": "o", "backend": "ollama", "upstream_model": "gemma3:270m", "tool_format": "default",
             "chat_template": str(GEMMA3), "bos_token": "<bos>", "eos_token": "<eos>"},
        ]
        async with running_gateway(make_config(backends, models)) as url:
            async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
                vllm.script(VllmScript(split_text('{"name": "add", "arguments": {"a": 1, "b": 2}}')))
                reply = await client.chat.completions.create(model="v", messages=ASK, tools=TOOLS, tool_choice=NAMED_ADD)
                assert call_names(reply) == [("add", {"a": 1, "b": 2})]
                body = vllm.requests[-1]
                assert body["structured_outputs"]["json"]["properties"]["name"] == {"const": "add"}
                assert not any(key.startswith("guided_") for key in body)
                assert body["prompt"].endswith("<tool_call>\n")
                ollama.script(OllamaScript(split_text('{"name": "get_weather", "arguments": {"city": "Rome"}}')))
                reply = await client.chat.completions.create(model="o", messages=ASK, tools=TOOLS, tool_choice="required")
                assert call_names(reply) == [("get_weather", {"city": "Rome"})]
                body = ollama.requests[-1]
                assert [v["properties"]["name"]["const"] for v in body["format"]["anyOf"]] == ["get_weather", "add"]
                assert body["prompt"].endswith("[TOOL_REQUEST]")


async def test_constrain_always_sends_a_lazy_grammar_for_auto(fake_llama: FakeLlamaServer) -> None:
    backends = [{"name": "fake", "type": "llamacpp", "url": fake_llama.url}]
    models = [{"name": "gemma", "backend": "fake", "tool_format": "default", "chat_template": str(GEMMA3),
               "bos_token": "<bos>", "eos_token": "<eos>", "constrain": "always"}]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            fake_llama.script(Scripted(split_text('Sure. [TOOL_REQUEST]{"name": "add", "arguments": {"a": 1, "b": 2}}[END_TOOL_REQUEST]')))
            reply = await client.chat.completions.create(model="gemma", messages=ASK, tools=TOOLS)
    assert call_names(reply) == [("add", {"a": 1, "b": 2})] and reply.choices[0].message.content == "Sure."
    body = fake_llama.requests[-1]
    assert body["grammar_lazy"] is True
    assert body["grammar_triggers"] == [{"type": 1, "value": "[TOOL_REQUEST]"}]
    assert "[TOOL_REQUEST]" in body["preserved_tokens"]
    assert body["grammar"].startswith("root ::=") and '"\\"add\\""' in body["grammar"]
    assert "json_schema" not in body
