"""Bad input and backend faults end in clean OpenAI-shaped errors with the right status, never
a hang, a crash or a silently truncated answer."""

from __future__ import annotations

import time

import aiohttp
import pytest
from openai import (
    APIError,
    AsyncOpenAI,
    BadRequestError,
    NotFoundError,
)

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, error_body
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port

MODEL = "qwen2.5-7b-instruct"
HELLO = [{"role": "user", "content": "hi"}]


def error_fields(body: dict) -> dict:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def post(url: str, body: bytes | dict, **kwargs) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, bytes) else None
        async with session.post(url + "/chat/completions", data=data, json=None if data else body, **kwargs) as r:
            return r.status, await r.json()


async def test_unknown_model_is_404(client: AsyncOpenAI) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=HELLO)
    assert caught.value.code == "model_not_found" and "nope" in caught.value.message


async def test_malformed_json_is_400(gateway_url: str) -> None:
    status, body = await post(gateway_url, b'{"model": "x", "messages": [')
    assert status == 400
    assert error_fields(body)["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"messages": HELLO}, "model"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": HELLO, "temperature": 9}, "temperature"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": HELLO, "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
         "tools[0].function.name"),
        ({"model": MODEL, "messages": HELLO, "tool_choice": "required"}, "tool_choice"),
        ({"model": MODEL, "messages": HELLO, "n": 3}, "n"),
        ({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content[0]"),
    ],
)
async def test_invalid_fields_are_400_naming_the_field(gateway_url: str, request_body: dict, param: str) -> None:
    status, body = await post(gateway_url, request_body)
    assert status == 400
    error = error_fields(body)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert param.split(".")[-1].split("[")[0] in error["message"] or error["code"] in ("unsupported_content",)


async def test_backend_unreachable_is_502() -> None:
    backends, models = fake_routes(f"http://127.0.0.1:{free_port()}")
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            for stream in (False, True):
                with pytest.raises(APIError) as caught:
                    await client.chat.completions.create(model=MODEL, messages=HELLO, stream=stream)
                assert caught.value.status_code == 502 and caught.value.code == "backend_unreachable"


async def test_backend_silence_is_504_within_the_read_timeout(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url, timeouts={"read": 0.5})
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            fake_llama.script(Scripted([], hang=True))
            started = time.monotonic()
            with pytest.raises(APIError) as caught:
                await client.chat.completions.create(model=MODEL, messages=HELLO)
            assert caught.value.status_code == 504 and caught.value.code == "backend_timeout"
            assert time.monotonic() - started < 3


async def test_backend_http_error_keeps_its_message(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted([], http_error=error_body("the prompt is cursed", "invalid_request_error")))
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert "the prompt is cursed" in caught.value.message


async def test_context_overflow_is_a_400_with_the_openai_code(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted([], http_error=(400, {"error": {
        "code": 400, "message": "request (9000 tokens) exceeds the available context size (4096 tokens)",
        "type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 4096}})))
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.parametrize("fault", ["error_after", "cut_after"])
async def test_fault_mid_stream_ends_with_an_error_event(fake_llama: FakeLlamaServer, fault: str) -> None:
    backends, models = fake_routes(fake_llama.url, timeouts={"read": 0.5})
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            pieces = ["Once", " upon", " a", " time", " there", " was"]
            options = {fault: 2}
            fake_llama.script(Scripted(pieces, **options))
            received = []
            with pytest.raises(APIError):
                stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
                async for chunk in stream:
                    received.append(chunk)
            finishes = [c.choices[0].finish_reason for c in received if c.choices and c.choices[0].finish_reason]
            assert finishes == [], "a broken stream never claims a finish_reason"
            # The same fault without streaming is an HTTP error, not a truncated answer.
            fake_llama.script(Scripted(pieces, **options))
            with pytest.raises(APIError) as caught:
                await client.chat.completions.create(model=MODEL, messages=HELLO)
            assert caught.value.status_code in (400, 502, 504)


async def test_client_disconnect_cancels_the_upstream_request(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(["tick"] * 200, delay=0.05))
    async with aiohttp.ClientSession() as session:
        async with session.post(
            gateway_url + "/chat/completions", json={"model": MODEL, "messages": HELLO, "stream": True}
        ) as response:
            assert response.status == 200
            await response.content.readline()
    await fake_llama.wait_cancelled(1, timeout=5)
    assert fake_llama.cancelled == 1


async def test_unknown_path_and_method_are_openai_shaped(gateway_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway_url + "/nothing-here") as response:
            assert response.status == 404
            error_fields(await response.json())
        async with session.get(gateway_url + "/chat/completions") as response:
            assert response.status == 405
            error_fields(await response.json())


async def test_models_and_health(gateway_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway_url + "/models") as response:
            body = await response.json()
        assert body["object"] == "list"
        assert sorted(m["id"] for m in body["data"]) == ["gemma-3", MODEL]
        assert all(m["object"] == "model" and isinstance(m["created"], int) for m in body["data"])
        async with session.get(gateway_url.removesuffix("/v1") + "/health") as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"


async def test_backend_api_key_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeLlamaServer(api_key="s3cret") as fake:
        for key, works in (("s3cret", True), ("wrong", False)):
            monkeypatch.setenv("LLAMA_KEY", key)
            backends, models = fake_routes(fake.url, api_key="${LLAMA_KEY}")
            async with running_gateway(make_config(backends, models)) as url:
                async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
                    fake.script("hello")
                    if works:
                        reply = await client.chat.completions.create(model=MODEL, messages=HELLO)
                        assert reply.choices[0].message.content == "hello"
                    else:
                        with pytest.raises(APIError) as caught:
                            await client.chat.completions.create(model=MODEL, messages=HELLO)
                        assert caught.value.status_code == 502 and "401" in caught.value.message
