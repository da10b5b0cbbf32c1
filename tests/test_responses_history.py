"""Responses conversations that go on: chains through `previous_response_id`, and stateless clients that
send earlier output items back as `input`, mixing text answers, calls and reasoning. The real `openai` SDK's
Responses client against the gateway and the fake llama-server (Qwen3's template, hermes calls, <think>)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import TEMPLATES, make_config, running_gateway

MODEL = "qwen3"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SPECIAL = {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>", "<think>", "</think>"}
CALL = '<think>Paris, so ask the tool.</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ANSWER = "<think>The tool said sunny.</think>\n\nIt is sunny in Paris."


@pytest.fixture
async def fake() -> AsyncIterator[FakeLlamaServer]:
    server = FakeLlamaServer(bos_token="", eos_token="<|im_end|>", special_tokens=SPECIAL)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeLlamaServer, tmp_path: Path) -> AsyncIterator[AsyncOpenAI]:
    models = [{"name": MODEL, "backend": "fake", "tool_format": "hermes",
               "chat_template": str(TEMPLATES / "Qwen-Qwen3-0.6B.jinja"), "eos_token": "<|im_end|>"}]
    config = make_config([{"name": "fake", "type": "llamacpp", "url": fake.url}], models,
                         responses={"sqlite_path": str(tmp_path / "store.db")})
    async with running_gateway(config) as url, AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as sdk:
        yield sdk


def say(fake: FakeLlamaServer, *outputs: str) -> None:
    fake.script(*(Scripted(split_text(output)) for output in outputs))


def turns(prompt: str) -> list[str]:
    """The prompt's turns as 'role\ntext', the system turn (the tools) and the generation prompt left out."""
    shown = [turn.split("<|im_end|>")[0].strip() for turn in prompt.split("<|im_start|>")[1:] if "<|im_end|>" in turn]
    return [turn for turn in shown if not turn.startswith("system")]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chain_goes_on_after_a_text_answer(client: AsyncOpenAI, fake: FakeLlamaServer, stream: bool) -> None:
    say(fake, "Hello! How can I help?", CALL, ANSWER, "You are welcome.")

    async def create(**kwargs: Any) -> Any:
        if not stream:
            return await client.responses.create(model=MODEL, tools=[WEATHER], **kwargs)  # type: ignore[arg-type]
        async with client.responses.stream(model=MODEL, tools=[WEATHER], **kwargs) as events:  # type: ignore[arg-type]
            return await events.get_final_response()

    first = await create(input="Hi!")
    assert first.output_text == "Hello! How can I help?"
    second = await create(previous_response_id=first.id, input="Weather in Paris?")
    assert [item.type for item in second.output] == ["reasoning", "function_call"]
    call = second.output[1]
    third = await create(previous_response_id=second.id,
                         input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert third.output_text == "It is sunny in Paris."
    fourth = await create(previous_response_id=third.id, input="Thanks!")
    assert fourth.output_text == "You are welcome."

    prompt = fake.prompts[-1]
    shown = turns(prompt)
    assert shown[0] == "user\nHi!" and shown[1] == "assistant\nHello! How can I help?"
    assert shown[2] == "user\nWeather in Paris?"
    assert '"name": "get_weather", "arguments": {"city": "Paris"}' in shown[3]
    assert "sunny, 21C" in shown[4] and shown[5].endswith("It is sunny in Paris.") and shown[6] == "user\nThanks!"


async def test_a_stateless_client_sends_the_output_back(client: AsyncOpenAI, fake: FakeLlamaServer) -> None:
    say(fake, "Hello! How can I help?", CALL, ANSWER, "You are welcome.")
    history: list[Any] = [{"role": "user", "content": "Hi!"}]

    async def turn(*new: Any) -> Any:
        history.extend(new)
        response = await client.responses.create(model=MODEL, tools=[WEATHER], store=False, input=history)  # type: ignore[arg-type]
        history.extend(response.output)  # the SDK's own output objects, back as input: text, reasoning, calls
        return response

    first = await turn()
    second = await turn({"role": "user", "content": "Weather in Paris?"})
    call = next(item for item in second.output if item.type == "function_call")
    third = await turn({"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"})
    fourth = await turn({"role": "user", "content": "Thanks!"})
    assert [first.output_text, third.output_text, fourth.output_text] == [
        "Hello! How can I help?", "It is sunny in Paris.", "You are welcome."]
    shown = turns(fake.prompts[-1])
    assert shown[1] == "assistant\nHello! How can I help?" and shown[6] == "user\nThanks!"
    assert shown[5].endswith("It is sunny in Paris.")


async def test_output_items_as_json_are_valid_history(client: AsyncOpenAI, fake: FakeLlamaServer) -> None:
    # What a client that keeps raw JSON sends: output_text parts with annotations and logprobs, reasoning
    # items with their content, function calls with status, all with the server's ids.
    say(fake, "Fine.")
    reply = await client.responses.create(model=MODEL, store=False, input=[
        {"role": "user", "content": "Hi!"},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": "Hello!", "annotations": [{"type": "url_citation", "url": "https://x.org",
                                                                        "title": "x", "start_index": 0, "end_index": 1}],
             "logprobs": [{"token": "Hello", "logprob": -0.1, "bytes": [72], "top_logprobs": []}]},
            {"type": "refusal", "refusal": "No spam."}]},
        {"id": "rs_1", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "user", "content": [{"type": "input_text", "text": "And now?"}]},
    ])
    assert reply.output_text == "Fine."
    shown = turns(fake.prompts[-1])
    assert shown[1].startswith("assistant\nHello!\nNo spam.") and "get_weather" in shown[1]
    assert "sunny" in shown[2] and shown[3] == "user\nAnd now?"
