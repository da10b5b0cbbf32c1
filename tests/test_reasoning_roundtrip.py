"""Interleaved reasoning round-trips, through the running gateway, on GLM-4.6's and MiniMax-M2's real
templates and the fake llama-server (which records every prompt it is sent).

A model that reasoned before its calls must find that reasoning in the history of the next request of the
tool loop. Clients that drop `reasoning_content` get it back from the gateway's memory (keyed by the call
ids they send back); clients that send it (as `reasoning_content` or `reasoning`) are taken at their word.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.test_chat_template import SPECIAL_TOKENS
from tests.test_format_families import EOG, SPECIAL, glm, invoke, minimax

THOUGHT = "The user wants Paris; the weather tool takes a city."
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# fixture -> what the model writes: reasoning then a call (after the generation prompt), then an answer
FAMILIES = {
    "GLM-4.6": (f"\n<think>{THOUGHT}</think>\n" + glm("get_weather", ("city", "Paris")), "\n<think></think>\nSunny."),
    "MiniMax-M2": (f"{THOUGHT}\n</think>\n\n" + minimax(invoke("get_weather", ("city", "Paris"))), "Ok.\n</think>\n\nSunny."),
}
ASK = {"role": "user", "content": "Weather in Paris?"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeLlamaServer]:
    server = FakeLlamaServer(bos_token="", eos_token="<eos>", eog_tokens=EOG, special_tokens=SPECIAL)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def url(fake: FakeLlamaServer, tmp_path: Path) -> AsyncIterator[str]:
    models = [{"name": fixture, "backend": "fake", "tool_format": "auto", "chat_template": str(TEMPLATES / f"{fixture}.jinja"),
               "bos_token": SPECIAL_TOKENS[fixture][0], "eos_token": SPECIAL_TOKENS[fixture][1]} for fixture in FAMILIES]
    config = make_config([{"name": "fake", "type": "llamacpp", "url": fake.url}], models,
                         responses={"sqlite_path": str(tmp_path / "store.db")})
    async with running_gateway(config) as gateway_url:
        yield gateway_url


@pytest.fixture
async def client(url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=30) as sdk:
        yield sdk


def say(fake: FakeLlamaServer, *outputs: str) -> None:
    fake.script(*(Scripted(split_text(output, special=SPECIAL)) for output in outputs))


async def first_turn(client: AsyncOpenAI, fixture: str, stream: bool) -> Any:
    """The model's call turn, as the client's SDK assembles it."""
    if not stream:
        reply = await client.chat.completions.create(model=fixture, messages=[ASK], tools=[WEATHER])  # type: ignore[list-item]
        return reply.choices[0].message
    async with client.chat.completions.stream(model=fixture, messages=[ASK], tools=[WEATHER]) as events:  # type: ignore[list-item]
        return (await events.get_final_completion()).choices[0].message


def history(call: Any, **assistant: Any) -> list[dict[str, Any]]:
    """What most clients send back: the call turn without its reasoning (unless given), and the result."""
    calls = [{"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]
    return [ASK, {"role": "assistant", "content": None, "tool_calls": calls, **assistant},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fixture", list(FAMILIES))
async def test_dropped_reasoning_comes_back(client: AsyncOpenAI, fake: FakeLlamaServer, fixture: str, stream: bool) -> None:
    call_turn, answer = FAMILIES[fixture]
    say(fake, call_turn, answer)
    message = await first_turn(client, fixture, stream)
    assert message.tool_calls and message.tool_calls[0].function.name == "get_weather"
    reply = await client.chat.completions.create(model=fixture, messages=history(message.tool_calls[0]), tools=[WEATHER])  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Sunny."
    prompt = fake.prompts[-1]
    assert f"<think>{THOUGHT}</think>" in prompt.replace("\n", ""), prompt
    assert prompt.index(THOUGHT) < prompt.index("Paris</") < prompt.index("sunny, 21C"), "before its call, in its turn"


@pytest.mark.parametrize("fixture", list(FAMILIES))
async def test_without_a_remembered_turn_nothing_is_invented(client: AsyncOpenAI, fake: FakeLlamaServer, fixture: str) -> None:
    say(fake, FAMILIES[fixture][1])
    unknown = type("Call", (), {"id": "call_never_made", "function": type("F", (), {"name": "get_weather",
                                                                                 "arguments": '{"city": "Paris"}'})})
    await client.chat.completions.create(model=fixture, messages=history(unknown), tools=[WEATHER])  # type: ignore[arg-type]
    assert THOUGHT not in fake.prompts[-1] and "sunny, 21C" in fake.prompts[-1]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
@pytest.mark.parametrize("fixture", list(FAMILIES))
async def test_reasoning_the_client_sends_wins(client: AsyncOpenAI, fake: FakeLlamaServer, fixture: str, field: str) -> None:
    call_turn, answer = FAMILIES[fixture]
    say(fake, call_turn, answer)
    message = await first_turn(client, fixture, stream=False)
    mine = "My own account of what I thought."
    await client.chat.completions.create(  # type: ignore[call-overload]
        model=fixture, messages=history(message.tool_calls[0], **{field: mine}), tools=[WEATHER])
    assert mine in fake.prompts[-1] and THOUGHT not in fake.prompts[-1]


async def test_responses_stateless_client_that_drops_reasoning_items(client: AsyncOpenAI, fake: FakeLlamaServer) -> None:
    call_turn, answer = FAMILIES["GLM-4.6"]
    say(fake, call_turn, answer, answer)
    tools = [{"type": "function", **WEATHER["function"]}]
    first = await client.responses.create(model="GLM-4.6", input="Weather in Paris?", tools=tools, store=False)  # type: ignore[arg-type]
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    call = first.output[1]
    kept_calls_only = [{"role": "user", "content": "Weather in Paris?"},
                       {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
                       {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}]
    await client.responses.create(model="GLM-4.6", input=kept_calls_only, tools=tools, store=False)  # type: ignore[arg-type]
    assert f"<think>{THOUGHT}</think>" in fake.prompts[-1].replace("\n", "")
    # A client that replays the whole output sends the reasoning item itself: rendered the same.
    replayed = [kept_calls_only[0], *first.output, kept_calls_only[2]]
    await client.responses.create(model="GLM-4.6", input=replayed, tools=tools, store=False)  # type: ignore[arg-type]
    assert fake.prompts[-1] == fake.prompts[-2]


async def test_responses_chain_renders_the_stored_reasoning(client: AsyncOpenAI, fake: FakeLlamaServer) -> None:
    call_turn, answer = FAMILIES["MiniMax-M2"]
    say(fake, call_turn, answer)
    tools = [{"type": "function", **WEATHER["function"]}]
    first = await client.responses.create(model="MiniMax-M2", input="Weather in Paris?", tools=tools)  # type: ignore[arg-type]
    call = next(item for item in first.output if item.type == "function_call")
    await client.responses.create(model="MiniMax-M2", previous_response_id=first.id, tools=tools,  # type: ignore[arg-type]
                                  input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    prompt = fake.prompts[-1]
    assert THOUGHT in prompt and prompt.index(THOUGHT) < prompt.rindex("<minimax:tool_call>") < prompt.index("sunny, 21C")
