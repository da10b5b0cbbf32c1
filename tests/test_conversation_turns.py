"""Conversations as clients really send them, through the running gateway, on the real fixture templates.

Templates that insist on alternating roles (Gemma, Mistral) get runs of same-role turns merged: an
assistant's text followed by its calls as a second message (LM Studio's streaming example sends this), two
user messages in a row, a tool result written as a user turn just before the user's next question.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError

from gateway.core.turns import merge_same_role_turns
from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.test_chat_template import SPECIAL_TOKENS

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

# (fixture, tool format, special tokens the fake keeps whole)
ALTERNATING = [
    ("gemma3-instruct.index", "default", {"<start_of_turn>", "<end_of_turn>"}),
    ("tool_chat_template_gemma3_pythonic", "pythonic", {"<start_of_turn>", "<end_of_turn>"}),
    ("google-gemma-2-2b-it", "default", {"<start_of_turn>", "<end_of_turn>"}),
    ("mistralai-Mistral-Nemo-Instruct-2407", "mistral", {"[INST]", "[/INST]", "[TOOL_CALLS]"}),
    ("Mistral-Small-3.2-24B-Instruct-2506", "mistral", {"[INST]", "[/INST]", "[TOOL_CALLS]"}),
    ("mistralai-Ministral-3-14B-Reasoning-2512", "mistral", {"[INST]", "[/INST]", "[TOOL_CALLS]"}),
]


@pytest.fixture
async def routes() -> AsyncIterator[tuple[FakeLlamaServer, str]]:
    fake = FakeLlamaServer(bos_token="<s>", eos_token="</s>",
                           special_tokens={token for _, _, tokens in ALTERNATING for token in tokens})
    await fake.start()
    models = []
    for fixture, tool_format, _ in ALTERNATING:
        bos, eos = SPECIAL_TOKENS[fixture]
        models.append({"name": fixture, "backend": "fake", "tool_format": tool_format,
                       "chat_template": str(TEMPLATES / f"{fixture}.jinja"), "bos_token": bos, "eos_token": eos})
    config = make_config([{"name": "fake", "type": "llamacpp", "url": fake.url}], models)
    async with running_gateway(config) as url:
        yield fake, url
    await fake.stop()


CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "assistant text, then its calls as a second message": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check the weather."},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call12345", "content": "18C and sunny"},
    ],
    "two user messages in a row": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "user", "content": "Be brief."},
    ],
    "a tool result, then the user's next question": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check the weather.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call12345", "content": "18C and sunny"},
        {"role": "user", "content": "Be brief."},
    ],
    "two assistant texts, then a user": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check the weather."},
        {"role": "assistant", "content": "It is 18C and sunny."},
        {"role": "user", "content": "Be brief."},
    ],
}


# Templates with a tool role of their own that want the assistant's answer between a tool result and the
# user's next message (Mistral's own tokenizer refuses it too): no merge can make that conversation theirs.
# The client hears the template's own reason, as a 400.
REFUSED = {(fixture, "a tool result, then the user's next question") for fixture in (
    "tool_chat_template_gemma3_pythonic", "mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506",
    "mistralai-Ministral-3-14B-Reasoning-2512")}


@pytest.mark.parametrize("name", list(CONVERSATIONS))
@pytest.mark.parametrize("fixture", [fixture for fixture, _, _ in ALTERNATING])
async def test_same_role_runs_render_on_alternating_templates(
    routes: tuple[FakeLlamaServer, str], fixture: str, name: str
) -> None:
    fake, url = routes
    messages = CONVERSATIONS[name]
    async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        if (fixture, name) in REFUSED:
            with pytest.raises(BadRequestError) as refused:
                await client.chat.completions.create(model=fixture, messages=messages, tools=[WEATHER])  # type: ignore[arg-type]
            assert refused.value.code == "template_error" and "must alternate" in refused.value.message
            return
        reply = await client.chat.completions.create(model=fixture, messages=messages, tools=[WEATHER])  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Hello from the fake llama-server."
    prompt = fake.prompts[-1]
    # Every text the client sent reaches the prompt, in order, and the call too (where the template shows calls).
    texts = [m["content"] for m in messages if m.get("content")]
    positions = [prompt.find(text) for text in texts]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), (texts, prompt)
    if any(m.get("tool_calls") for m in messages):
        assert "get_weather" in prompt and "Paris" in prompt


async def test_merged_turn_is_one_turn(routes: tuple[FakeLlamaServer, str]) -> None:
    fake, url = routes
    async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        await client.chat.completions.create(
            model="gemma3-instruct.index", messages=CONVERSATIONS["two assistant texts, then a user"])  # type: ignore[arg-type]
    assert "<start_of_turn>model\nLet me check the weather.\n\nIt is 18C and sunny.<end_of_turn>" in fake.prompts[-1]


def test_merge_keeps_calls_in_order_and_tool_results_apart() -> None:
    second = {**CALL, "id": "call67890"}
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "tool_calls": [CALL], "reasoning_content": "r1"},
        {"role": "assistant", "content": None, "tool_calls": [second]},
        {"role": "tool", "tool_call_id": "call12345", "content": "x"},
        {"role": "tool", "tool_call_id": "call67890", "content": "y"},
    ]
    merged = merge_same_role_turns(messages)
    assert [m["role"] for m in merged] == ["user", "assistant", "tool", "tool"]
    assert merged[1] == {"role": "assistant", "content": "b", "tool_calls": [CALL, second], "reasoning_content": "r1"}
    both_empty = merge_same_role_turns([{"role": "assistant", "content": None}, {"role": "assistant", "content": ""}])
    assert both_empty == [{"role": "assistant", "content": None}]
