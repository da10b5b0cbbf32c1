"""Several backends behind one model, through the real gateway and the `openai` SDK: balancing,
retries before the first byte, fallbacks, circuit breaking, and streams that survive their backend
(on fakes of every backend type that continue a prefilled answer as a model does)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from openai import APIError, AsyncOpenAI

from tests.fakes import llamacpp
from tests.fakes.model import echo_text
from tests.fakes.server import LoopbackServer
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port
from tests.support.router import (
    KINDS,
    MODEL,
    backend,
    chat,
    failing_reply,
    get_json,
    get_text,
    new_fake,
    prompts,
    qwen_route,
)


def paris_call(call_id_and_rest: tuple[str, str, dict]) -> tuple[str, dict]:
    return call_id_and_rest[1], call_id_and_rest[2]


async def started(*fakes: LoopbackServer) -> list[LoopbackServer]:
    for fake in fakes:
        await fake.start()
    return list(fakes)


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[list[LoopbackServer]]:
    kind = getattr(request, "param", "llamacpp")
    fakes = await started(new_fake(kind), new_fake(kind))
    yield fakes
    for fake in fakes:
        await fake.stop()


def two_backends(kind: str, fakes: list[LoopbackServer], **route: object) -> tuple[list[dict], list[dict]]:
    backends = [backend(kind, "a", fakes[0].url), backend(kind, "b", fakes[1].url)]
    return backends, [qwen_route(kind, ["a", "b"], **route)]


# -- a stream that survives its backend ----------------------------------------------------------


@pytest.mark.parametrize("pair", KINDS, indirect=True)
@pytest.mark.parametrize("how", ["cut", "error"])
@pytest.mark.parametrize("stream", [True, False])
async def test_answer_resumes_on_another_backend(pair: list[LoopbackServer], how: str, stream: bool,
                                                  request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["pair"]
    first, second = pair
    backends, models = two_backends(kind, pair, balance="round_robin")
    for question, want_content, want_call in [
        ("echo alpha bravo charlie delta echo", echo_text("alpha bravo charlie delta echo"), None),
        ("weather in Reykjavik", "", ("get_weather", {"city": "Reykjavik"})),
    ]:
        # The first backend writes 12 tokens of the model's answer, then fails.
        first.script(lambda prompt: failing_reply(kind, first, prompt, how, 12))  # type: ignore[attr-defined]
        async with running_gateway(make_config(backends, models)) as url:
            async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
                content, calls, finish = await chat(client, question, stream=stream)
            status, metrics = await get_text(url.removesuffix("/v1") + "/metrics")
        assert content == want_content
        assert [paris_call(c) for c in calls] == ([want_call] if want_call else [])
        assert finish == ("tool_calls" if want_call else "stop")
        # The second backend got the same prompt plus what the first had sent (a backend may hold
        # back a few characters that could start a stop string), as a prefill.
        prompt = prompts(first)[-1]
        assert prompts(second)[-1].startswith(prompt)
        written = prompts(second)[-1].removeprefix(prompt)
        assert written and MODEL(prompt).startswith(written) and len(written) < len(MODEL(prompt))
        assert 'toolwire_stream_resumes_total{backend="b",model="qwen"} 1.0' in metrics


async def test_silence_past_the_read_timeout_resumes(pair: list[LoopbackServer]) -> None:
    first, second = pair
    backends = [backend("llamacpp", "a", first.url, timeouts={"read": 0.3}), backend("llamacpp", "b", second.url)]
    models = [qwen_route("llamacpp", ["a", "b"], balance="round_robin")]
    first.script(lambda prompt: failing_reply("llamacpp", first, prompt, "stall", 4))  # type: ignore[attr-defined]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            content, calls, _ = await chat(client, "echo slow lorris", stream=True)
    assert (content, calls) == (echo_text("slow lorris"), [])
    assert len(second.requests) == 1  # type: ignore[attr-defined]


async def test_resume_can_be_turned_off_per_route(pair: list[LoopbackServer]) -> None:
    first, _ = pair
    backends, models = two_backends("llamacpp", pair, balance="round_robin", resume=False)
    first.script(lambda prompt: failing_reply("llamacpp", first, prompt, "cut", 6))  # type: ignore[attr-defined]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            with pytest.raises(APIError, match="closed the connection mid-answer"):
                await chat(client, "echo never finished", stream=True)


async def test_when_no_backend_can_continue_the_client_gets_the_error_event(pair: list[LoopbackServer]) -> None:
    first, second = pair
    backends, models = two_backends("llamacpp", pair, balance="round_robin")
    first.script(lambda prompt: failing_reply("llamacpp", first, prompt, "cut", 6))  # type: ignore[attr-defined]
    second.script(lambda prompt: failing_reply("llamacpp", second, prompt, "error", 2))  # type: ignore[attr-defined]
    async with running_gateway(make_config(backends, models)) as url:
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
            with pytest.raises(APIError, match="Compute error"):
                await chat(client, "echo doomed twice", stream=True)
