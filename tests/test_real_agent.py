"""End to end: `toolwire.agent.act()` with the real `openai` SDK -> toolwire -> a real llama.cpp
`llama-server` running a real model (Gemma 3 270M, a tiny base model). A `tool_choice` naming the
tool forces a call in the first round; the loop runs it and goes on until the model answers. The
answers are not judged for quality; the loop's shape is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import RunningServer
from toolwire.agent import act


@pytest.fixture
async def client(llama_server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    backends = [{"name": "llama", "type": "llamacpp", "url": llama_server.url, "timeouts": {"read": 120}}]
    models = [{"name": "gemma", "backend": "llama", "tool_format": "default", "chat_template": "backend",
               "defaults": {"temperature": 0, "seed": 1, "max_tokens": 48}}]
    async with (
        running_gateway(make_config(backends, models)) as url,
        AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=300) as sdk,
    ):
        yield sdk


async def test_act_with_a_forced_first_call(client: AsyncOpenAI) -> None:
    sums: list[tuple[int, int]] = []

    def add(a: int, b: int) -> int:
        """Given two numbers a and b, returns the sum of them."""
        sums.append((a, b))
        return a + b

    rounds_started: list[int] = []
    result = await act(
        client, "gemma", "What is 2 plus 3? Use the add tool.", [add],
        max_rounds=3, tool_choice={"type": "function", "function": {"name": "add"}},
        on_round_start=rounds_started.append,
    )
    first = result.rounds[0]
    assert first.finish_reason == "tool_calls" and len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert call.request.name == "add" and not call.is_error, call.content
    assert call.content == str(sum(sums[0])), "the tool ran on the model's arguments, coerced to int"
    assert 2 <= len(result.rounds) <= 3 and rounds_started == list(range(len(result.rounds)))
    assert not result.rounds[-1].tool_calls, "the loop ended on an answer"
    roles = [m["role"] for m in result.messages]
    assert roles[:3] == ["user", "assistant", "tool"] and roles[-1] == "assistant"
    call_ids = [c["id"] for m in result.messages for c in m.get("tool_calls", [])]
    answered = [m["tool_call_id"] for m in result.messages if m["role"] == "tool"]
    assert call_ids == answered, "every call has its result, in order"
