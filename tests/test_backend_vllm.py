"""vLLM (`type: vllm`) and any OpenAI text-completion server (`type: openai-completions`) through the running
gateway, with the real `openai` SDK, against a fake vLLM that speaks its `/v1/completions` wire format."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from openai import APIError, AsyncOpenAI, BadRequestError

from adapters.backends import HttpSettings
from adapters.backends.vllm import (
    DEFAULT_MAX_TOKENS,
    OpenAICompletionsBackend,
    VllmBackend,
    _split_trailing,
)
from tests.conftest import GEMMA3, QWEN25, QWEN_SPECIAL
from tests.fakes.vllm import FakeVllmServer, Scripted, error_body
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port
from tests.test_chat_tools import CORPUS, ask, ask_streamed, hermes_call, summary

MODEL = "qwen2.5-7b-instruct"  # the vllm route (the name test_chat_tools' helpers ask for)
GENERIC = "qwen2.5-generic"  # the same model and fake through type openai-completions
UPSTREAM = "Qwen/Qwen2.5-7B-Instruct"
HELLO = [{"role": "user", "content": "hi"}]
VLLM_ONLY = {"skip_special_tokens", "add_special_tokens", "top_k", "min_p", "repetition_penalty"}
QWEN_ROUTE = {"tool_format": "hermes", "chat_template": str(QWEN25), "eos_token": "<|im_end|>"}
GEMMA_ROUTE = {"tool_format": "default", "chat_template": str(GEMMA3), "bos_token": "<bos>", "eos_token": "<eos>"}


def routes(
    url: str, *, route: dict[str, Any] = QWEN_ROUTE, upstream: str = UPSTREAM, **backend_extra: Any
) -> dict[str, Any]:
    route = {"upstream_model": upstream, **route}
    return {
        "backends": [
            {"name": "vllm", "type": "vllm", "url": url, **backend_extra},
            {"name": "generic", "type": "openai-completions", "url": url, **backend_extra},
        ],
        "models": [{"name": MODEL, "backend": "vllm", **route}, {"name": GENERIC, "backend": "generic", **route}],
    }


@asynccontextmanager
async def gateway_client(url: str, **route_options: Any) -> AsyncIterator[AsyncOpenAI]:
    async with (
        running_gateway(make_config(**routes(url, **route_options))) as base_url,
        AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=30) as sdk,
    ):
        yield sdk


@pytest.fixture
async def fake_vllm() -> AsyncIterator[FakeVllmServer]:
    async with FakeVllmServer(
        model=UPSTREAM,
        eos_token="<|im_end|>",
        eog_tokens=["<|endoftext|>"],
        special_tokens=QWEN_SPECIAL,
        max_model_len=32768,  # Qwen2.5-7B's; the openai-completions default of 4096 tokens must fit
    ) as fake:
        yield fake


@pytest.fixture
async def client(fake_vllm: FakeVllmServer) -> AsyncIterator[AsyncOpenAI]:
    async with gateway_client(fake_vllm.url) as sdk:
        yield sdk


async def streamed_text(client: AsyncOpenAI, **kwargs: Any) -> str:
    stream = await client.chat.completions.create(messages=HELLO, stream=True, **{"model": MODEL, **kwargs})
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


# --------------------------------------------------------------------------------------------------
# Tool calls and the request sent upstream
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CORPUS))
async def test_tool_calls_stream_and_non_stream_agree(
    client: AsyncOpenAI, fake_vllm: FakeVllmServer, case: str
) -> None:
    output, expected, finish_reason = CORPUS[case]
    fake_vllm.script(Scripted(fake_vllm.split(output)), Scripted(fake_vllm.split(output, every=3)))
    whole = await ask(client)
    _, streamed = await ask_streamed(client)
    for choice in (whole.choices[0], streamed.choices[0]):
        assert summary(choice.message) == expected
        assert choice.finish_reason == finish_reason


async def test_request_sent_upstream(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    fake_vllm.script(Scripted(["ok"]))
    await ask(
        client,
        temperature=0.3,
        top_p=0.9,
        seed=7,
        stop=["END"],
        max_tokens=50,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1},
    )
    body = fake_vllm.requests[-1]
    assert body["model"] == UPSTREAM, "the route's upstream_model, not the public name"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["skip_special_tokens"] is False and body["add_special_tokens"] is False
    assert body["max_tokens"] == 50 and fake_vllm.tokenize_requests == [], "the request's own max_tokens"
    sampling = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "top_k", "min_p")
    assert [body[k] for k in sampling] == [0.3, 0.9, 7, 0.5, 0.25, 20, 0.05]
    assert body["repetition_penalty"] == 1.1, "repeat_penalty travels as vLLM's repetition_penalty"
    assert body["stop"] == ["<|im_end|>", "<tool_response>", "END"]
    assert body["prompt"].startswith("<|im_start|>system\n") and body["prompt"].endswith("<|im_start|>assistant\n")
    assert '"name": "get_weather"' in body["prompt"], "tools rendered by Qwen2.5's own template"


async def test_default_max_tokens_is_the_rest_of_the_context(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    fake_vllm.script(Scripted(["ok"]))
    await ask(client)
    body = fake_vllm.requests[-1]
    assert fake_vllm.tokenize_requests == [{"model": UPSTREAM, "prompt": body["prompt"], "add_special_tokens": False}]
    assert body["max_tokens"] == fake_vllm.max_model_len - len(fake_vllm.prompt_ids[-1])


async def test_special_token_markers_survive_only_on_vllm(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    """Markers that are special tokens in the vocabulary (QWEN_SPECIAL makes them so, as Mistral's [TOOL_CALLS] is)
    are dropped by vLLM unless skip_special_tokens is false, which only type vllm sends."""
    # Text first: a bare call object after text is not a call, so only the markers make this one.
    output = "Checking the clock. " + hermes_call("get_time", "{}")
    fake_vllm.script(Scripted(fake_vllm.split(output)), Scripted(fake_vllm.split(output)))
    assert summary((await ask(client)).choices[0].message)[1] == [("get_time", {})]
    generic = (await ask(client, model=GENERIC)).choices[0].message
    assert generic.tool_calls is None and "<tool_call>" not in (generic.content or "")


async def test_stop_string_finish_and_usage(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    pieces = ["one", " two", " END", " three"]
    fake_vllm.script(Scripted(pieces), Scripted(pieces))
    whole = await client.chat.completions.create(model=MODEL, messages=HELLO, stop=["END"])
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == ("one two ", "stop")
    assert whole.usage.completion_tokens == 3 and whole.usage.prompt_tokens == len(fake_vllm.prompt_ids[-1])
    stream = await client.chat.completions.create(
        model=MODEL, messages=HELLO, stop=["END"], stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two "
    assert chunks[-1].usage.completion_tokens == 3 and chunks[-1].usage.total_tokens == whole.usage.total_tokens


async def test_finish_reason_length(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    fake_vllm.script(Scripted(["Hello", " there", " friend"]), Scripted(["Hello", " there", " friend"]))
    for model in (MODEL, GENERIC):
        answer = await client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
        assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("Hello there", "length")
        assert answer.usage.completion_tokens == 2


async def test_eos_and_end_of_turn_text_never_reach_the_parser() -> None:
    """vLLM never prints the token that ended generation; servers that do (eos_in_text) get it stripped."""
    call = hermes_call("get_weather", '{"city": "Paris"}')
    async with (
        FakeVllmServer(model=UPSTREAM, special_tokens=QWEN_SPECIAL, eos_in_text=True) as fake,
        gateway_client(fake.url) as client,
    ):
        fake.script(*[Scripted(fake.split(text)) for text in ("It is sunny.", "It is sunny.", call, call)])
        whole = await client.chat.completions.create(model=MODEL, messages=HELLO)
        assert whole.choices[0].message.content == "It is sunny."
        assert await streamed_text(client) == "It is sunny."
        _, streamed = await ask_streamed(client)
        for message in ((await ask(client)).choices[0].message, streamed.choices[0].message):
            assert summary(message) == (None, [("get_weather", {"city": "Paris"})])
    markers = ("<|endoftext|>", "<|im_end|>")
    assert _split_trailing("a<|im_end|><|endoftext|>", markers) == ("a", "<|im_end|><|endoftext|>")
    assert _split_trailing("a<|im_end|>b", markers) == ("a<|im_end|>b", ""), "only at the end"


async def test_prompt_keeps_one_bos() -> None:
    """vLLM gets the prompt as rendered with add_special_tokens false; other servers add BOS themselves."""
    gemma = {"route": GEMMA_ROUTE}
    async with FakeVllmServer(
        model=UPSTREAM,
        bos_token="<bos>",
        eos_token="<eos>",
        eog_tokens=["<end_of_turn>"],
        special_tokens={"<start_of_turn>"},
        eos_in_text=True,
        max_model_len=32768,
    ) as fake:
        bos = fake.vocab.id_of("<bos>")
        async with gateway_client(fake.url, **gemma) as client:
            fake.script(Scripted(["Hi", "!", "<end_of_turn>"]), Scripted(["Hi", "!", "<end_of_turn>"]))
            for model in (MODEL, GENERIC):
                answer = await client.chat.completions.create(model=model, messages=HELLO)
                assert answer.choices[0].message.content == "Hi!", "the printed end of turn is stripped too"
                assert fake.prompt_ids[-1].count(bos) == 1 and fake.prompt_ids[-1][0] == bos
            vllm_body, generic_body = fake.requests
            assert vllm_body["prompt"].startswith("<bos><start_of_turn>user\n")
            assert generic_body["prompt"] == vllm_body["prompt"].removeprefix("<bos>")


async def test_openai_completions_request_shape(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    fake_vllm.script(Scripted(["ok"]))
    await ask(client, model=GENERIC, temperature=0.3, extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1})
    body = fake_vllm.requests[-1]
    assert not VLLM_ONLY & set(body), "no vLLM-only fields"
    assert body["model"] == UPSTREAM and body["temperature"] == 0.3
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS and fake_vllm.tokenize_requests == []
    assert "<|im_end|>" in body["stop"]


@pytest.mark.parametrize("model", [MODEL, GENERIC])
async def test_template_from_backend_is_a_clear_502(fake_vllm: FakeVllmServer, model: str) -> None:
    config = routes(fake_vllm.url)
    for route in config["models"]:
        route["chat_template"] = "backend"
    async with (
        running_gateway(make_config(**config)) as url,
        AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as sdk,
    ):
        with pytest.raises(APIError) as caught:
            await sdk.chat.completions.create(model=model, messages=HELLO)
    assert caught.value.status_code == 502 and caught.value.code == "chat_template_unavailable"
    assert (
        "chat_template" in caught.value.message and "no endpoint that reports the chat template" in caught.value.message
    )


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


async def test_backend_unreachable_is_502() -> None:
    async with gateway_client(f"http://127.0.0.1:{free_port()}") as client:
        for model in (MODEL, GENERIC):
            for stream in (False, True):
                with pytest.raises(APIError) as caught:
                    await client.chat.completions.create(model=model, messages=HELLO, stream=stream)
                assert caught.value.status_code == 502 and caught.value.code == "backend_unreachable"


async def test_backend_silence_is_504_within_the_read_timeout(fake_vllm: FakeVllmServer) -> None:
    async with gateway_client(fake_vllm.url, timeouts={"read": 0.5}) as client:
        for stream in (False, True):
            fake_vllm.script(Scripted(["never"], hang=True))
            started = time.monotonic()
            with pytest.raises(APIError) as caught:
                await client.chat.completions.create(model=MODEL, messages=HELLO, stream=stream)
            assert caught.value.status_code == 504 and caught.value.code == "backend_timeout"
            assert time.monotonic() - started < 3


async def test_backend_http_errors_keep_their_message(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    fake_vllm.script(Scripted([], http_error=error_body("the prompt is cursed")))
    with pytest.raises(BadRequestError) as bad:
        await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert "the prompt is cursed" in bad.value.message
    fake_vllm.script(Scripted([], http_error=error_body("engine on fire", "InternalServerError", 500)))
    with pytest.raises(APIError) as failed:
        await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    assert failed.value.status_code == 502 and "engine on fire" in failed.value.message


async def test_unknown_upstream_model_names_it(fake_vllm: FakeVllmServer) -> None:
    async with gateway_client(fake_vllm.url, upstream="nope/nope") as client:
        with pytest.raises(APIError) as caught:
            await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 502 and "The model `nope/nope` does not exist." in caught.value.message


async def test_context_overflow_is_a_400_with_the_openai_code(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    fake_vllm.max_model_len = 300
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=290)
    assert (
        caught.value.code == "context_length_exceeded" and "context length is only 300 tokens" in caught.value.message
    )


@pytest.mark.parametrize(
    "fault",
    [{"error_after": 2}, {"cut_after": 2}, {"omit_done": True}, {"end_after": 2}, {"end": "abort"}, {"end": "none"}],
)
async def test_fault_mid_stream_ends_with_an_error(fake_vllm: FakeVllmServer, fault: dict[str, Any]) -> None:
    pieces = ["Once", " upon", " a", " time", " there", " was"]
    async with gateway_client(fake_vllm.url, timeouts={"read": 0.5}) as client:
        for model in (MODEL, GENERIC):
            fake_vllm.script(Scripted(pieces, **fault))
            received = []
            with pytest.raises(APIError):
                stream = await client.chat.completions.create(model=model, messages=HELLO, stream=True)
                async for chunk in stream:
                    received.append(chunk)
            assert not [c for c in received if c.choices and c.choices[0].finish_reason], "never a finish_reason"
            fake_vllm.script(Scripted(pieces, **fault))
            with pytest.raises(APIError) as caught:
                await client.chat.completions.create(model=model, messages=HELLO)
            assert caught.value.status_code == 502


async def test_in_band_error_reaches_the_client_as_an_sse_error_event(
    client: AsyncOpenAI, fake_vllm: FakeVllmServer
) -> None:
    fake_vllm.script(Scripted(["Once", " upon", " a", " time"], error_after=3))
    with pytest.raises(APIError) as caught:
        stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        async for _ in stream:
            pass
    assert "Internal server error" in caught.value.message


async def test_client_disconnect_cancels_the_upstream_request(client: AsyncOpenAI, fake_vllm: FakeVllmServer) -> None:
    fake_vllm.script(Scripted(["tick"] * 200, delay=0.05))
    async with aiohttp.ClientSession() as session:
        body = {"model": MODEL, "messages": HELLO, "stream": True, "max_tokens": 500}
        async with session.post(str(client.base_url) + "chat/completions", json=body) as response:
            assert response.status == 200
            await response.content.readline()
    await fake_vllm.wait_cancelled(1, timeout=5)
    assert fake_vllm.cancelled == 1


async def test_health(fake_vllm: FakeVllmServer) -> None:
    backends = [
        VllmBackend("v", HttpSettings(fake_vllm.url)),
        OpenAICompletionsBackend("o", HttpSettings(fake_vllm.url)),
    ]
    down = VllmBackend("down", HttpSettings(f"http://127.0.0.1:{free_port()}"))
    try:
        assert [await b.health() for b in backends] == [True, True]
        fake_vllm.dead = True
        assert await backends[0].health() is False, "vLLM's /health answers 503 once the engine is dead"
        assert await down.health() is False
    finally:
        for backend in (*backends, down):
            await backend.close()


# --------------------------------------------------------------------------------------------------
# The fake speaks vLLM's wire format
# --------------------------------------------------------------------------------------------------


async def raw_post(url: str, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url + path, json=body) as response:
        return response.status, await response.read()


async def test_fake_stream_wire_format(fake_vllm: FakeVllmServer) -> None:
    fake_vllm.script(Scripted(["Hi", " there", "<|im_end|>"]))
    request = {
        "model": UPSTREAM,
        "prompt": "<|im_start|>user\nhi<|im_end|>\n",
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["STOP"],
    }
    status, raw = await raw_post(fake_vllm.url, "/v1/completions", request)
    events = raw.split(b"\n\n")
    assert status == 200 and events[-2:] == [b"data: [DONE]", b""]
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    first = chunks[0]
    assert list(first) == ["id", "object", "created", "model", "choices"] and first["id"].startswith("cmpl-")
    assert list(first["choices"][0]) == [
        "index",
        "text",
        "logprobs",
        "finish_reason",
        "stop_reason",
        "prompt_token_ids",
        "token_ids",
    ]
    texts = [c["choices"][0]["text"] for c in chunks[:-1]]
    assert texts == ["", "Hi th", "ere"], "the last len('STOP') - 1 characters are held back until the end"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, "stop"]
    n_prompt = len(fake_vllm.prompt_ids[-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": n_prompt, "total_tokens": n_prompt + 3, "completion_tokens": 3}
    status, raw = await raw_post(fake_vllm.url, "/v1/completions", {**request, "stream": False})
    assert (
        status == 400
        and "Stream options can only be defined when `stream=True`." in orjson.loads(raw)["error"]["message"]
    )
    fake_vllm.script(Scripted(["Hi", " there", "<|im_end|>"]))
    status, raw = await raw_post(fake_vllm.url, "/v1/completions", {**request, "stream": False, "stream_options": None})
    whole = orjson.loads(raw)
    assert status == 200 and whole["object"] == "text_completion"
    assert (whole["choices"][0]["text"], whole["choices"][0]["finish_reason"]) == ("Hi there", "stop")
    assert whole["usage"]["completion_tokens"] == 3 and whole["usage"]["prompt_tokens_details"] is None
    fake_vllm.script(Scripted(["Hi"], error_after=1))
    _, raw = await raw_post(fake_vllm.url, "/v1/completions", request)
    assert raw.endswith(
        b'data: {"error": {"message": "Internal server error", "type": "InternalServerError", '
        b'"param": null, "code": 500}}\n\ndata: [DONE]\n\n'
    )


async def test_fake_errors_and_side_routes(fake_vllm: FakeVllmServer) -> None:
    status, raw = await raw_post(fake_vllm.url, "/v1/completions", {"model": "x", "prompt": "hi"})
    assert (status, orjson.loads(raw)) == (
        404,
        {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "param": None, "code": 404}},
    )
    status, raw = await raw_post(fake_vllm.url, "/tokenize", {"model": UPSTREAM, "prompt": "<|im_start|>hi"})
    assert status == 200 and list(orjson.loads(raw)) == ["count", "max_model_len", "tokens", "token_strs"]
    async with aiohttp.ClientSession() as session, session.get(fake_vllm.url + "/v1/models") as response:
        card = (await response.json())["data"][0]
    assert (card["id"], card["owned_by"], card["max_model_len"]) == (UPSTREAM, "vllm", 32768)
