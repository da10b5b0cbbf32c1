"""Several backends behind one model, through the real gateway and the `openai` SDK: balancing,
retries before the first byte, fallbacks, circuit breaking, per-key rate limits, and streams that
survive their backend (on fakes of every backend type that continue a prefilled answer, as a model
does)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from openai import APIError, APIStatusError, AsyncOpenAI, RateLimitError

from tests.fakes import llamacpp
from tests.fakes.model import ContinuingModel, echo_text, weather_or_echo
from tests.fakes.run import QWEN_SPECIAL
from tests.fakes.server import LoopbackServer
from tests.support.gateway import make_config
from tests.support.real_llama import free_port
from tests.support.router import (
    KINDS,
    MODEL,
    backend,
    chat,
    failing_reply,
    gateway_client,
    get_json,
    get_text,
    new_fake,
    prompts,
    qwen_route,
)


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[list[LoopbackServer]]:
    kind = getattr(request, "param", "llamacpp")
    fakes = [new_fake(kind), new_fake(kind)]
    for fake in fakes:
        await fake.start()
    yield fakes
    for fake in fakes:
        await fake.stop()


def two_backends(kind: str, fakes: list[LoopbackServer], **route: object) -> tuple[list[dict], list[dict]]:
    backends = [backend(kind, "a", fakes[0].url), backend(kind, "b", fakes[1].url)]
    return backends, [qwen_route(kind, ["a", "b"], **route)]


def served(fake: LoopbackServer, marker: str) -> int:
    return sum(marker in prompt for prompt in prompts(fake))


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
        async with gateway_client(make_config(backends, models)) as (url, client):
            content, calls, finish = await chat(client, question, stream=stream)
            _, metrics = await get_text(url + "/metrics")
        assert content == want_content
        assert [(name, args) for _, name, args in calls] == ([want_call] if want_call else [])
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
    async with gateway_client(make_config(backends, models)) as (_, client):
        content, calls, _ = await chat(client, "echo slow loris", stream=True)
    assert (content, calls) == (echo_text("slow loris"), [])
    assert len(prompts(second)) == 1


async def test_resume_can_be_turned_off_per_route(pair: list[LoopbackServer]) -> None:
    first, _ = pair
    backends, models = two_backends("llamacpp", pair, balance="round_robin", resume=False)
    first.script(lambda prompt: failing_reply("llamacpp", first, prompt, "cut", 6))  # type: ignore[attr-defined]
    async with gateway_client(make_config(backends, models)) as (_, client):
        with pytest.raises(APIError, match="closed the connection mid-answer"):
            await chat(client, "echo never finished", stream=True)


async def test_when_no_backend_can_continue_the_client_gets_the_error_event(pair: list[LoopbackServer]) -> None:
    first, second = pair
    backends, models = two_backends("llamacpp", pair, balance="round_robin")
    first.script(lambda prompt: failing_reply("llamacpp", first, prompt, "cut", 6))  # type: ignore[attr-defined]
    second.script(lambda prompt: failing_reply("llamacpp", second, prompt, "error", 2))  # type: ignore[attr-defined]
    async with gateway_client(make_config(backends, models)) as (_, client):
        with pytest.raises(APIError, match="Compute error"):
            await chat(client, "echo doomed twice", stream=True)


# -- balancing ------------------------------------------------------------------------------------


async def test_least_in_flight_spreads_concurrent_requests() -> None:
    fakes = [new_fake("llamacpp", token_delay=0.02), new_fake("llamacpp", token_delay=0.02)]
    for fake in fakes:
        await fake.start()
    try:
        backends, models = two_backends("llamacpp", fakes)  # the default strategy
        async with gateway_client(make_config(backends, models)) as (_, client):
            answers = await asyncio.gather(*(chat(client, f"echo n{i}", stream=i % 2 == 0) for i in range(10)))
        assert [content for content, _, _ in answers] == [echo_text(f"n{i}") for i in range(10)]
        assert [len(prompts(fake)) for fake in fakes] == [5, 5]
    finally:
        for fake in fakes:
            await fake.stop()


@pytest.mark.parametrize(("balance", "weights", "expected"), [
    ("round_robin", (1, 1), [4, 4]),
    ("weighted", (3, 1), [6, 2]),
])
async def test_round_robin_and_weighted(pair: list[LoopbackServer], balance: str, weights: tuple[int, int],
                                        expected: list[int]) -> None:
    backends = [backend("llamacpp", "a", pair[0].url), backend("llamacpp", "b", pair[1].url)]
    refs = [{"name": "a", "weight": weights[0]}, {"name": "b", "weight": weights[1]}]
    async with gateway_client(make_config(backends, [qwen_route("llamacpp", refs, balance=balance)])) as (_, client):
        for i in range(8):
            assert (await chat(client, f"echo r{i}", stream=False))[0] == echo_text(f"r{i}")
    assert [len(prompts(fake)) for fake in pair] == expected
    if balance == "weighted":  # smooth: the light backend's turns are spread out, not bunched
        assert [served(pair[1], f"echo r{i}<") for i in range(8)] == [0, 0, 1, 0, 0, 0, 1, 0]


async def test_lowest_latency_prefers_the_faster_backend() -> None:
    slow, fast = new_fake("llamacpp", token_delay=0.03), new_fake("llamacpp")
    slow.script(llamacpp.Scripted(slow.split("I am slow."), delay=0.15))  # type: ignore[attr-defined]
    for fake in (slow, fast):
        await fake.start()
    try:
        backends, models = two_backends("llamacpp", [slow, fast], balance="lowest_latency")
        async with gateway_client(make_config(backends, models)) as (_, client):
            for i in range(8):
                await chat(client, f"echo l{i}", stream=True)
        assert len(prompts(slow)) == 1 and len(prompts(fast)) == 7  # tried once, then avoided
    finally:
        for fake in (slow, fast):
            await fake.stop()


async def test_session_affinity_by_user_and_previous_response(pair: list[LoopbackServer]) -> None:
    backends, models = two_backends("llamacpp", pair, balance="affinity")
    async with gateway_client(make_config(backends, models)) as (_, client):
        for round_ in range(3):
            for user in ("u1", "u2", "u3"):
                await chat(client, f"echo {user} round {round_}", stream=round_ == 1, user=user)
        first = await client.responses.create(model="qwen", input="echo start of a conversation")
        following = first.id
        for turn in range(3):
            response = await client.responses.create(model="qwen", input=f"echo turn {turn}",
                                                     previous_response_id=following)
            following = response.id
    homes = {user: [served(fake, f"echo {user} round") for fake in pair] for user in ("u1", "u2", "u3")}
    assert sorted(homes.values()) == [[0, 3], [3, 0], [3, 0]]  # each user stays; new users spread
    conversation = [served(fake, "echo start of a conversation") for fake in pair]
    assert sorted(conversation) == [0, 4]  # every turn went back to the backend holding the conversation


# -- retries before the first byte, fallbacks -----------------------------------------------------


async def test_failures_before_the_first_byte_are_retried_on_another_backend(pair: list[LoopbackServer]) -> None:
    first, second = pair
    first.script(*(llamacpp.Scripted([], http_error=error) for error in [  # type: ignore[attr-defined]
        llamacpp.error_body("Loading model", "unavailable_error"),
        (429, {"error": {"code": 429, "message": "busy", "type": "rate_limit_error"}}),
        llamacpp.error_body("Compute error.", "server_error"),
    ]))
    backends, models = two_backends("llamacpp", pair, balance="round_robin")
    config = make_config(backends, models, router={"breaker": {"failures": 5}})
    async with gateway_client(config) as (url, client):
        for i in range(6):  # a, b, a, b, a, b: each of a's three faults is retried on b
            assert (await chat(client, f"echo retry {i}", stream=i % 2 == 1))[0] == echo_text(f"retry {i}")
        _, metrics = await get_text(url + "/metrics")
    # a failed three times, and answered whatever else came its way
    assert len(prompts(first)) - 3 + len(prompts(second)) == 6
    assert 'toolwire_backend_retries_total{model="qwen"} 3.0' in metrics


async def test_a_rejected_request_is_not_retried(pair: list[LoopbackServer]) -> None:
    first, second = pair
    first.script(llamacpp.Scripted([], http_error=llamacpp.error_body("bad grammar", "invalid_request_error")))  # type: ignore[attr-defined]
    backends, models = two_backends("llamacpp", pair, balance="round_robin")
    async with gateway_client(make_config(backends, models)) as (_, client):
        with pytest.raises(APIStatusError) as caught:
            await chat(client, "echo rejected", stream=False)
    assert caught.value.status_code == 400 and "bad grammar" in caught.value.message
    assert prompts(second) == []


async def test_fallback_model_when_the_prompt_is_too_long_or_every_backend_fails() -> None:
    small = llamacpp.FakeLlamaServer(bos_token="", eos_token="<|endoftext|>", special_tokens=QWEN_SPECIAL, n_ctx=64,
                                     default_reply=ContinuingModel(weather_or_echo))
    big = new_fake("llamacpp")
    for fake in (small, big):
        await fake.start()
    try:
        backends = [backend("llamacpp", "small", small.url), backend("llamacpp", "big", big.url),
                    backend("llamacpp", "gone", f"http://127.0.0.1:{free_port()}")]
        models = [qwen_route("llamacpp", ["small"], fallbacks=["qwen-big"]),
                  qwen_route("llamacpp", ["gone"], name="qwen-gone", fallbacks=["qwen-big"]),
                  qwen_route("llamacpp", ["big"], name="qwen-big")]
        async with gateway_client(make_config(backends, models)) as (url, client):
            many = " ".join(["much"] * 40)
            content, _, _ = await chat(client, "echo " + many, stream=True)  # too long for 64 tokens
            assert content == echo_text(many)
            gone = await client.chat.completions.create(model="qwen-gone", messages=[
                {"role": "user", "content": "echo nobody home"}])
            assert gone.choices[0].message.content == echo_text("nobody home")
            _, metrics = await get_text(url + "/metrics")
        assert len(prompts(small)) == 1 and len(prompts(big)) == 2
        assert 'toolwire_model_fallbacks_total{fallback="qwen-big",model="qwen"} 1.0' in metrics
        assert 'toolwire_model_fallbacks_total{fallback="qwen-big",model="qwen-gone"} 1.0' in metrics
    finally:
        for fake in (small, big):
            await fake.stop()


# -- circuit breaking -----------------------------------------------------------------------------


async def test_breaker_takes_a_failing_backend_out_and_puts_it_back(pair: list[LoopbackServer]) -> None:
    first, second = pair
    port = int(first.url.rsplit(":", 1)[1])
    await first.stop()  # down: connection refused
    backends, models = two_backends("llamacpp", pair, balance="round_robin")
    config = make_config(backends, models, router={"breaker": {"failures": 2, "cooldown": 0.6}})
    async with gateway_client(config) as (url, client):
        for i in range(6):
            assert (await chat(client, f"echo out {i}", stream=i % 2 == 0))[0] == echo_text(f"out {i}")
        status, ready = await get_json(url + "/health/ready")
        assert status == 200 and ready["circuits"] == {"a": "open", "b": "closed"}
        assert ready["degraded"] == ["model 'qwen': backend 'a' is out after repeated failures (circuit open)"]
        _, metrics = await get_text(url + "/metrics")
        assert 'toolwire_backend_circuit_state{backend="a"} 2.0' in metrics
        assert len(prompts(second)) == 6
        await first.start(port)  # back, on its old address
        await asyncio.sleep(2.1)  # the cooldown (and readiness's cached probe): then one probe, and it is in
        for i in range(4):
            assert (await chat(client, f"echo back {i}", stream=False))[0] == echo_text(f"back {i}")
        status, ready = await get_json(url + "/health/ready")
        assert status == 200 and ready["circuits"] == {"a": "closed", "b": "closed"} and "degraded" not in ready
    assert len(prompts(first)) == 2  # the probe, then its turn among the rest


async def test_readiness_turns_503_only_when_a_model_has_no_backend_left(pair: list[LoopbackServer]) -> None:
    for fake in pair:
        await fake.stop()
    backends, models = two_backends("llamacpp", pair)
    config = make_config(backends, models, router={"breaker": {"failures": 1, "cooldown": 30}})
    async with gateway_client(config) as (url, client):
        with pytest.raises(APIStatusError) as caught:
            await chat(client, "echo anyone", stream=False)
        assert caught.value.status_code == 502
        status, ready = await get_json(url + "/health/ready")
    assert status == 503 and ready["circuits"] == {"a": "open", "b": "open"}
    out = "is out after repeated failures (circuit open)"
    assert ready["problems"] == [f"model 'qwen': backend 'a' {out}; backend 'b' {out}"]


# -- per-key rate limits --------------------------------------------------------------------------


async def test_requests_and_tokens_per_minute_per_key(pair: list[LoopbackServer]) -> None:
    backends, models = two_backends("llamacpp", pair)
    auth = {"api_keys": [{"key": "few-requests", "requests_per_minute": 2},
                         {"key": "few-tokens", "tokens_per_minute": 100}, {"key": "free"}]}
    async with gateway_client(make_config(backends, models, auth=auth)) as (url, _):
        for key, allowed in (("few-requests", 2), ("few-tokens", 1)):
            async with AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as client:
                for _ in range(allowed):
                    await chat(client, "echo within the limit", stream=False)
                with pytest.raises(RateLimitError) as caught:
                    await chat(client, "echo over the limit", stream=True)
                assert caught.value.code == "rate_limit_exceeded"
                assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60
        async with AsyncOpenAI(base_url=url + "/v1", api_key="free", max_retries=0) as client:
            for _ in range(3):
                await chat(client, "echo no limit", stream=False)
    assert Counter(p.count("echo over the limit") for f in pair for p in prompts(f))[1] == 0
