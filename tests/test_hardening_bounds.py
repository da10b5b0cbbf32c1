"""No request runs unbounded on the event loop (issue 13, item 2): a catastrophic `pattern` in a
tool schema, `$ref`s that loop or point nowhere, bodies nested past any use, and chat templates
(which may come from the backend) that loop for ever or double a string until memory runs out.

The freezing cases run the gateway as its own process: while their request is in flight, the
gateway must keep answering `/health/live` at once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import QWEN25, QWEN_SPECIAL, fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted
from tests.support.gateway import make_config, running_gateway
from tests.support.gateway_process import gateway_process, health_latencies, peak_rss_mb

MODEL = "qwen2.5-7b-instruct"
HELLO = [{"role": "user", "content": "hi"}]


async def post(url: str, path: str, body: dict[str, Any] | bytes, timeout: float = 60) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, session.post(
        url + path, data=data, headers={"Content-Type": "application/json"}
    ) as reply:
        return reply.status, await reply.json()


async def timed_with_health(url: str, path: str, body: dict[str, Any]) -> tuple[int, Any, float, list[float]]:
    started = time.monotonic()
    request = asyncio.ensure_future(post(url, path, body, timeout=120))
    latencies = await health_latencies(url, request)
    status, answer = await request
    return status, answer, time.monotonic() - started, latencies


async def test_a_catastrophic_pattern_does_not_freeze_the_gateway(fake_llama: FakeLlamaServer, tmp_path: Path) -> None:
    backends, models = fake_routes(fake_llama.url)
    call = '<tool_call>\n{"name": "f", "arguments": {"s": "' + "a" * 34 + '!"}}\n</tool_call>'
    fake_llama.script(Scripted(fake_llama.split(call), delay=0.01))
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^(b+)+$": {"type": "string"}}}}}
    async with gateway_process({"backends": backends, "models": models}, tmp_path) as (url, _):
        status, answer, took, latencies = await timed_with_health(
            url, "/v1/chat/completions", {"model": MODEL, "messages": HELLO, "tools": [tool]})
    assert status == 200, answer
    # Not strict: the call that does not match is returned as the model wrote it (and logged).
    assert json.loads(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"s": "a" * 34 + "!"}
    assert took < 10 and max(latencies, default=0) < 1.0, (took, latencies)


@pytest.mark.parametrize("parameters", [
    {"$ref": "#"},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
    {"type": "object", "properties": {"a": {"$ref": "https://example.com/schema.json"}}},
    {"allOf": [{"$ref": "#"}]},
])
async def test_refs_that_loop_or_point_nowhere_are_400(client: Any, gateway_url: str, parameters: dict[str, Any]) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    status, body = await post(gateway_url, "/chat/completions", {"model": MODEL, "messages": HELLO, "tools": [tool],
                                                                 "tool_choice": "required"})
    assert status == 400 and body["error"]["param"] == "tools[0].function.parameters", body
    status, body = await post(gateway_url, "/responses", {"model": MODEL, "input": "hi", "store": False,
                                                          "tools": [{"type": "function", "name": "f", "parameters": parameters}]})
    assert status == 400 and body["error"]["param"] == "tools[0].parameters", body


async def test_a_recursive_schema_that_descends_is_fine(fake_llama: FakeLlamaServer, gateway_url: str) -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "type": "object", "properties": {"root": {"$ref": "#/$defs/node"}}}
    call = '<tool_call>\n{"name": "f", "arguments": {"root": {"children": [{"children": []}]}}}\n</tool_call>'
    fake_llama.script(call)
    tool = {"type": "function", "function": {"name": "f", "strict": True, "parameters": tree}}
    status, body = await post(gateway_url, "/chat/completions", {"model": MODEL, "messages": HELLO, "tools": [tool]})
    assert status == 200 and body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "f"


async def test_bodies_nested_past_any_use_are_400(gateway_url: str) -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = {"a": deep}
    body = json.dumps({"model": MODEL, "messages": HELLO, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": deep}}}}]})
    status, answer = await post(gateway_url, "/chat/completions", body.encode())
    assert status == 400 and answer["error"]["code"] == "invalid_json" and "deeper" in answer["error"]["message"]


RUNAWAY_TEMPLATES = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
    "string doubling": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                       "{% endfor %}{{ ns.s|length }}",
    "string times a billion": "{{ ('ab' * 1000000000)|length }}",
    "padding": "{{ 'x'.center(2000000000)|length }}",
}


@pytest.mark.parametrize("name", list(RUNAWAY_TEMPLATES))
async def test_a_runaway_chat_template_is_stopped(tmp_path: Path, name: str) -> None:
    fake = FakeLlamaServer(chat_template=RUNAWAY_TEMPLATES[name], bos_token="", eos_token="<|endoftext|>",
                           special_tokens=QWEN_SPECIAL)
    async with fake:
        backends = [{"name": "fake", "type": "llamacpp", "url": fake.url}]
        models = [{"name": MODEL, "backend": "fake", "tool_format": "hermes", "chat_template": "backend"}]
        async with gateway_process({"backends": backends, "models": models}, tmp_path) as (url, pid):
            status, answer, took, latencies = await timed_with_health(
                url, "/v1/chat/completions", {"model": MODEL, "messages": HELLO})
            peak = peak_rss_mb(pid)
            fake.script("fine")
            # The gateway is still whole: the next request is refused the same way, as quickly.
            again, _ = await post(url, "/v1/chat/completions", {"model": MODEL, "messages": HELLO})
    assert status == 502 and answer["error"]["code"] == "chat_template_broken", answer
    assert again == 502
    assert took < 20 and max(latencies, default=0) < 1.0, (took, latencies)
    assert peak < 800, f"the gateway grew to {peak:.0f} MB"
    assert fake.requests == [], "nothing was generated from a prompt that never rendered"


async def test_an_ordinary_template_still_renders_through_the_bounds(fake_llama: FakeLlamaServer, tmp_path: Path) -> None:
    backends, models = fake_routes(fake_llama.url)
    fake_llama.script("Hello there.")
    async with running_gateway(make_config(backends, models)) as url:
        status, answer = await post(url, "/chat/completions", {"model": MODEL, "messages": HELLO})
    assert status == 200 and answer["choices"][0]["message"]["content"] == "Hello there."
    assert str(QWEN25).endswith(".jinja") and fake_llama.requests[0]["prompt"].endswith("<|im_start|>assistant\n")
