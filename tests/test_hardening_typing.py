"""Strict request typing where OpenAI is strict, and parameters toolwire cannot honor refused with
a clear 400 instead of silently dropped (issue 13, item 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.backends import GenerationRequest, HttpSettings, SamplingParams
from adapters.backends.vllm import VllmBackend
from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port

MODEL = "qwen2.5-7b-instruct"
HELLO = [{"role": "user", "content": "hi"}]


async def post(url: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url + path, json=body) as reply:
        return reply.status, await reply.json()


@pytest.fixture
async def url(fake_llama: FakeLlamaServer, tmp_path: Path) -> Any:
    backends, models = fake_routes(fake_llama.url)
    backends.append({"name": "ollama", "type": "ollama", "url": f"http://127.0.0.1:{free_port()}"})
    models.append({"name": "on-ollama", "backend": "ollama", "upstream_model": "x", "tool_format": "hermes",
                   "chat_template": models[0]["chat_template"]})
    config = make_config(backends, models, responses={"sqlite_path": str(tmp_path / "r.sqlite3")})
    async with running_gateway(config) as base:
        yield base


@pytest.mark.parametrize(("path", "extra", "param"), [
    ("/chat/completions", {"stream": "yes"}, "stream"),
    ("/chat/completions", {"max_tokens": "10"}, "max_tokens"),
    ("/chat/completions", {"temperature": "0.5"}, "temperature"),
    ("/chat/completions", {"max_tokens": 10.5}, "max_tokens"),
    ("/chat/completions", {"parallel_tool_calls": "false"}, "parallel_tool_calls"),
    ("/responses", {"tools": True}, "tools"),
    ("/responses", {"stream": "yes"}, "stream"),
    ("/responses", {"max_output_tokens": "20"}, "max_output_tokens"),
    ("/responses", {"store": "no"}, "store"),
])
async def test_wrong_json_types_are_400(url: str, path: str, extra: dict[str, Any], param: str) -> None:
    body = {"model": MODEL, **({"messages": HELLO} if path == "/chat/completions" else {"input": "hi"}), **extra}
    status, answer = await post(url, path, body)
    assert status == 400 and answer["error"]["param"] == param, answer


# `logprobs: true` is honored now on every backend type (tests/test_logprobs.py); `top_logprobs`
# without it is still refused, as OpenAI does.
@pytest.mark.parametrize(("extra", "param"), [
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"n": 2}, "n"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
])
async def test_what_toolwire_cannot_honor_is_refused(url: str, fake_llama: FakeLlamaServer, extra: dict[str, Any],
                                                     param: str) -> None:
    status, answer = await post(url, "/chat/completions", {"model": MODEL, "messages": HELLO, **extra})
    assert status == 400 and answer["error"]["param"] == param, answer
    assert fake_llama.requests == [], "refused before generating"


async def test_harmless_values_of_those_parameters_pass(url: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script("ok")
    body = {"model": MODEL, "messages": HELLO, "logprobs": False, "n": 1, "modalities": ["text"]}
    status, answer = await post(url, "/chat/completions", body)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "ok"


async def test_logit_bias_reaches_llama_cpp_and_is_refused_where_it_cannot(url: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script("ok")
    status, _ = await post(url, "/chat/completions", {"model": MODEL, "messages": HELLO,
                                                      "logit_bias": {"15043": 5, "42": -100}})
    assert status == 200
    assert fake_llama.requests[-1]["logit_bias"] == [[15043, 5.0], [42, -100.0]]
    status, answer = await post(url, "/chat/completions", {"model": "on-ollama", "messages": HELLO,
                                                           "logit_bias": {"15043": 5}})
    assert status == 400 and answer["error"]["param"] == "logit_bias" and "ollama" in answer["error"]["message"]
    status, answer = await post(url, "/chat/completions", {"model": MODEL, "messages": HELLO,
                                                           "logit_bias": {"abc": 5}})
    assert status == 400 and answer["error"]["param"].startswith("logit_bias")


async def test_logit_bias_in_the_vllm_body() -> None:
    backend = VllmBackend("v", HttpSettings(base_url="http://127.0.0.1:9"))
    request = GenerationRequest(prompt="p", upstream_model="m", sampling=SamplingParams(logit_bias=((7, 2.0),)))
    assert backend.completion_body(request, 10)["logit_bias"] == {"7": 2.0}
    await backend.close()
