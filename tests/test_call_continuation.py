"""A call broken inside a value is repaired by continuation: the backend finishes it from the valid
prefix under a grammar (llama.cpp, vLLM); Ollama, which takes no grammar, gets it closed; with
`repair: off` nothing changes. Through the gateway with the real openai SDK, stream and not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from openai import APIError, AsyncOpenAI

from gateway.core.call_continuation import completion_grammar
from tests.conftest import QWEN25
from tests.fakes.gbnf import constrained
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.ollama import Scripted as OllamaScript
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import make_config, running_gateway
from tests.test_format_variants import _streamed

WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
ASK: Any = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
FIRST = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>\n'
# The second call breaks inside its arguments: a value that never comes, then the model wanders off.
BROKEN_AT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": '
BROKEN = FIRST + BROKEN_AT + "<|im_start|>oops</tool_call>\nMore text."
# What the model writes when asked to go on from the valid prefix; the grammar cuts what follows the JSON.
CONTINUED = '"celsius"}}\n</tool_call>\nMore text.'
EXPECTED = [("get_weather", {"city": "Lyon"}), ("get_weather", {"city": "Paris", "unit": "celsius"})]


@pytest.mark.parametrize(
    "whole",
    ['{"a": "x\\u00e9", "b": [1, -2.5e3, true, null, {"c": []}], "d": {"e": "f"}}',
     '[{"name": "f", "arguments": {"q": "one two", "n": 10}}]'],
)  # fmt: skip
def test_the_grammar_admits_a_valid_completion_from_every_cut(whole: str) -> None:
    """At every cut inside the JSON, a model decoding under the grammar ends with valid JSON that
    keeps the prefix, whether it meant the rest, junk, or nothing at all."""
    for cut in range(1, len(whole) - 1):
        prefix, rest = whole[:cut], whole[cut:]
        grammar = completion_grammar(prefix)
        if grammar is None:  # only a prefix that is complete has no grammar
            assert prefix.strip() and orjson.loads(prefix) is not None
            continue
        for intended in (rest + " trailing junk", "<junk>", ""):
            assert orjson.loads(prefix + constrained(grammar, intended)) is not None, (prefix, intended)


def test_the_grammar_finishes_the_value_and_adds_no_members() -> None:
    grammar = completion_grammar('{"name": "f", "arguments": {"city": "Par')
    assert grammar is not None
    assert constrained(grammar, 'is"}}\n</tool_call>') == 'is"}}'
    assert (
        constrained(grammar, 'is", "days": 3}}').replace(" ", "") == 'is"}}'
    )  # a new member is not admitted
    grammar = completion_grammar('{"a": {"b": ')
    assert grammar is not None and constrained(grammar, '[1, {"c": true}]}}') == '[1, {"c": true}]}}'


def test_no_grammar_for_what_is_not_a_json_start() -> None:
    assert (
        completion_grammar('{"a": 1}}') is None
        and completion_grammar("x") is None
        and completion_grammar("") is None
    )


def _calls(message: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


@pytest.fixture
async def backends(fake_llama: FakeLlamaServer) -> AsyncIterator[tuple[FakeVllmServer, FakeOllama]]:
    async with (
        FakeVllmServer(model="Qwen/Qwen2.5-7B-Instruct", eos_token="<|im_end|>", max_model_len=32768) as vllm,
        FakeOllama(models=[FakeModel(name="gemma3:270m", context_length=32768)]) as ollama,
    ):
        yield vllm, ollama


def _config(
    fake_llama: FakeLlamaServer, vllm: FakeVllmServer, ollama: FakeOllama, *, repair: bool = True
) -> Any:
    backends = [{"name": "llama", "type": "llamacpp", "url": fake_llama.url},
                {"name": "vllm", "type": "vllm", "url": vllm.url},
                {"name": "ollama", "type": "ollama", "url": ollama.url}]  # fmt: skip
    models = [
        {"name": "on-llama", "backend": "llama", "tool_format": "hermes", "chat_template": str(QWEN25), "repair": repair},
        {"name": "on-vllm", "backend": "vllm", "upstream_model": "Qwen/Qwen2.5-7B-Instruct", "tool_format": "hermes",
         "chat_template": str(QWEN25), "repair": repair},
        {"name": "on-ollama", "backend": "ollama", "upstream_model": "gemma3:270m", "tool_format": "hermes",
         "chat_template": str(QWEN25), "repair": repair},
    ]  # fmt: skip
    return make_config(backends, models)


async def test_continued_on_llama_and_vllm_closed_on_ollama(
    fake_llama: FakeLlamaServer, backends: tuple[FakeVllmServer, FakeOllama]
) -> None:
    vllm, ollama = backends
    scripts = {
        "on-llama": lambda: fake_llama.script(Scripted(split_text(BROKEN)), CONTINUED),
        "on-vllm": lambda: vllm.script(VllmScript(split_text(BROKEN)), CONTINUED),
        "on-ollama": lambda: ollama.script(OllamaScript(split_text(BROKEN))),
    }
    async with running_gateway(_config(fake_llama, vllm, ollama)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            for model, script in scripts.items():
                script()
                whole = await client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER])
                script()
                content, streamed, finish = await _streamed(
                    client, model=model, messages=ASK, tools=[WEATHER]
                )
                calls = _calls(whole.choices[0].message)
                if model == "on-ollama":  # no grammar there: the call is closed, as before
                    assert calls == [EXPECTED[0], ("get_weather", {"city": "Paris", "unit": None})]
                else:
                    assert calls == EXPECTED, model
                assert whole.choices[0].finish_reason == finish == "tool_calls"
                assert [(n, json.loads(a)) for _, n, a in streamed] == calls
                assert [a for _, _, a in streamed] == [
                    c.function.arguments
                    for c in whole.choices[0].message.tool_calls or []  # type: ignore[union-attr]
                ]
                # Closing skips the broken block and keeps the text after it; a continued call ends the turn.
                assert whole.choices[0].message.content == content == (
                    "More text." if model == "on-ollama" else None), model  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.get(url.removesuffix("/v1") + "/metrics") as reply,
        ):
            metrics = await reply.text()
    assert 'toolwire_repaired_tool_calls_total{format="hermes",how="continued"} 4.0' in metrics
    assert 'toolwire_repaired_tool_calls_total{format="hermes",how="closed"} 2.0' in metrics
    # The continuation: the same prompt plus exactly the valid text, under a grammar.
    for request in (fake_llama.requests[1], fake_llama.requests[3]):
        assert request["prompt"].endswith("<|im_start|>assistant\n" + FIRST + BROKEN_AT.rstrip())
        assert constrained(request["grammar"], '"x"}}') == '"x"}}' and "grammar_lazy" not in request
        assert request["n_predict"] <= 256
    for request in (vllm.requests[1], vllm.requests[3]):
        assert request["prompt"].endswith(FIRST + BROKEN_AT.rstrip())
        assert constrained(request["structured_outputs"]["grammar"], '"x"}} more') == '"x"}}'


async def test_a_continuation_that_fails_falls_back_to_closing(
    fake_llama: FakeLlamaServer, backends: tuple[FakeVllmServer, FakeOllama]
) -> None:
    """The backend fails the continuation (an HTTP error): the call is closed, the turn finishes."""
    vllm, ollama = backends
    failing = Scripted(
        [], http_error=(500, {"error": {"code": 500, "message": "boom", "type": "server_error"}})
    )
    async with running_gateway(_config(fake_llama, vllm, ollama)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            fake_llama.script(Scripted(split_text(BROKEN)), failing)
            whole = await client.chat.completions.create(model="on-llama", messages=ASK, tools=[WEATHER])
            fake_llama.script(Scripted(split_text(BROKEN)), failing)
            _, streamed, finish = await _streamed(client, model="on-llama", messages=ASK, tools=[WEATHER])
    closed = [EXPECTED[0], ("get_weather", {"city": "Paris", "unit": None})]
    assert (
        _calls(whole.choices[0].message) == closed and [(n, json.loads(a)) for _, n, a in streamed] == closed
    )
    assert whole.choices[0].finish_reason == finish == "tool_calls"


async def test_repair_off_is_unchanged(
    fake_llama: FakeLlamaServer, backends: tuple[FakeVllmServer, FakeOllama]
) -> None:
    """No continuation request is made; the broken call is content, or ends a stream with an error."""
    vllm, ollama = backends
    async with running_gateway(_config(fake_llama, vllm, ollama, repair=False)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            fake_llama.script(Scripted(split_text(BROKEN)), Scripted(split_text(BROKEN)))
            whole = await client.chat.completions.create(model="on-llama", messages=ASK, tools=[WEATHER])
            assert _calls(whole.choices[0].message) == [EXPECTED[0]]
            assert BROKEN_AT.strip() in (whole.choices[0].message.content or "")
            with pytest.raises(APIError):
                await _streamed(client, model="on-llama", messages=ASK, tools=[WEATHER])
    assert len(fake_llama.requests) == 2 and all(
        "grammar" not in r or not r["grammar"] for r in fake_llama.requests
    )


async def test_a_length_cut_is_not_continued(
    fake_llama: FakeLlamaServer, backends: tuple[FakeVllmServer, FakeOllama]
) -> None:
    vllm, ollama = backends
    async with running_gateway(_config(fake_llama, vllm, ollama)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            pieces = split_text(FIRST + BROKEN_AT)
            fake_llama.script(Scripted(pieces, stop_type="limit"))
            whole = await client.chat.completions.create(model="on-llama", messages=ASK, tools=[WEATHER])
    assert whole.choices[0].finish_reason == "length" and len(fake_llama.requests) == 1
    assert whole.choices[0].message.tool_calls is not None and len(whole.choices[0].message.tool_calls) == 2
