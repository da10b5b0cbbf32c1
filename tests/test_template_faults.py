"""Fault and blame for chat templates, through the running gateway: a template that refuses the conversation
(its own raise_exception) is the client's 400; a template that fails any other way is the server's 5xx,
with the template's file named in the log. And FireFunction v2's real template, which reads variables
transformers never passes, renders with the values llama.cpp gives them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from openai import AsyncOpenAI, BadRequestError, InternalServerError

from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import TEMPLATES, make_config, running_gateway

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[FakeLlamaServer, str, Path]]:
    broken = tmp_path / "broken.jinja"
    # Compiles, but fails on every conversation with text in it: the template's own bug.
    broken.write_text("{% for m in messages %}{{ m.content + 1 }}{% endfor %}")
    picky = tmp_path / "picky.jinja"
    picky.write_text("{% if messages[0].role != 'user' %}{{ raise_exception('Start with a user message, please.') }}"
                     "{% endif %}{{ messages[0].content }}")
    fake = FakeLlamaServer(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                           special_tokens={"<|start_header_id|>", "<|end_header_id|>"})
    await fake.start()
    models = [
        {"name": "broken", "backend": "fake", "chat_template": str(broken)},
        {"name": "picky", "backend": "fake", "chat_template": str(picky)},
        {"name": "firefunction", "backend": "fake", "tool_format": "auto",
         "chat_template": str(TEMPLATES / "fireworks-ai-llama-3-firefunction-v2.jinja"),
         "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    ]
    async with running_gateway(make_config([{"name": "fake", "type": "llamacpp", "url": fake.url}], models)) as url:
        yield fake, url, broken
    await fake.stop()


async def test_a_template_that_refuses_the_conversation_is_a_400(gateway: tuple[FakeLlamaServer, str, Path]) -> None:
    fake, url, _ = gateway
    async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        await client.chat.completions.create(model="picky", messages=ASK)  # type: ignore[arg-type]
        with pytest.raises(BadRequestError) as refused:
            await client.chat.completions.create(  # type: ignore[call-overload]
                model="picky", messages=[{"role": "assistant", "content": "Hi!"}, *ASK])
    assert refused.value.code == "template_error" and "Start with a user message, please." in refused.value.message
    assert len(fake.requests) == 1, "a refused conversation never reaches the backend"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_broken_template_is_the_servers_fault(gateway: tuple[FakeLlamaServer, str, Path], stream: bool) -> None:
    fake, url, broken = gateway
    with structlog.testing.capture_logs() as logs:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            with pytest.raises(InternalServerError) as failed:
                await client.chat.completions.create(model="broken", messages=ASK, stream=stream)  # type: ignore[call-overload]
    assert failed.value.status_code >= 500 and failed.value.code == "chat_template_broken"
    assert "TypeError" in failed.value.message
    failures = [entry for entry in logs if entry["event"] == "chat_template_failed"]
    assert failures and failures[0]["template"] == str(broken) and failures[0]["log_level"] == "error"
    assert fake.requests == []


async def test_firefunction_renders_and_calls(gateway: tuple[FakeLlamaServer, str, Path]) -> None:
    fake, url, _ = gateway
    fake.script('functools[{"name": "get_weather", "arguments": {"city": "Paris"}}]')
    async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        reply = await client.chat.completions.create(model="firefunction", messages=ASK, tools=[WEATHER])  # type: ignore[arg-type]
    calls = reply.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    prompt = fake.prompts[-1]
    assert json.dumps([WEATHER], indent=2) in prompt
    assert re.search(r"Today is [A-Z][a-z]{2} \d\d \d{4} \d\d:\d\d:\d\d GMT\.", prompt)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
