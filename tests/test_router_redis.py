"""Two gateway replicas sharing one real Redis behave as one router: a key's requests per minute
are counted across both, a backend one replica took out is out for the other too, and a session
goes to the same backend whichever replica it reaches. And a Redis that goes away is no outage."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
from openai import AsyncOpenAI, RateLimitError

from gateway.ops.config import GatewayConfig
from tests.fakes.model import echo_text
from tests.fakes.server import LoopbackServer
from tests.support.gateway import make_config
from tests.support.real_llama import free_port
from tests.support.redis_server import redis_server
from tests.support.router import (
    backend,
    chat,
    gateway_client,
    get_json,
    get_text,
    new_fake,
    prompts,
    qwen_route,
)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
async def fakes() -> AsyncIterator[list[LoopbackServer]]:
    pair = [new_fake("llamacpp"), new_fake("llamacpp")]
    for fake in pair:
        await fake.start()
    yield pair
    for fake in pair:
        await fake.stop()


def replica_config(fakes: list[LoopbackServer], redis_url: str) -> GatewayConfig:
    backends = [backend("llamacpp", "a", fakes[0].url), backend("llamacpp", "b", fakes[1].url),
                backend("llamacpp", "dead", f"http://127.0.0.1:{free_port()}")]
    models = [qwen_route("llamacpp", ["a", "b"], balance="affinity"),
              qwen_route("llamacpp", ["dead", "b"], name="flaky", balance="round_robin")]
    auth = {"api_keys": [{"key": "shared-key", "requests_per_minute": 4}, {"key": "other"}]}
    return make_config(backends, models, auth=auth,
                       router={"redis_url": redis_url, "breaker": {"failures": 2, "cooldown": 30}})


async def test_two_replicas_share_limits_breakers_and_sessions(fakes: list[LoopbackServer], redis_url: str) -> None:
    config = replica_config(fakes, redis_url)
    async with AsyncExitStack() as stack:
        (url1, _), (url2, _) = [await stack.enter_async_context(gateway_client(config)) for _ in range(2)]
        one = await stack.enter_async_context(AsyncOpenAI(base_url=url1 + "/v1", api_key="shared-key", max_retries=0))
        two = await stack.enter_async_context(AsyncOpenAI(base_url=url2 + "/v1", api_key="shared-key", max_retries=0))
        free1 = await stack.enter_async_context(AsyncOpenAI(base_url=url1 + "/v1", api_key="other", max_retries=0))
        free2 = await stack.enter_async_context(AsyncOpenAI(base_url=url2 + "/v1", api_key="other", max_retries=0))

        # Requests per minute: 4 for the key, wherever they arrive.
        for client in (one, two, one, two):
            await chat(client, "echo counted", stream=False)
        for client in (one, two):
            with pytest.raises(RateLimitError):
                await chat(client, "echo one too many", stream=False)

        # Replica 1 finds the dead backend and takes it out; replica 2 never tries it.
        for i in range(2):
            reply = await free1.chat.completions.create(model="flaky", messages=[{"role": "user", "content": f"echo f{i}"}])
            assert reply.choices[0].message.content == echo_text(f"f{i}")
        status, ready = await get_json(url2 + "/health/ready")
        assert status == 200 and ready["circuits"]["dead"] == "open"
        for i in range(4):
            reply = await free2.chat.completions.create(model="flaky", messages=[{"role": "user", "content": f"echo g{i}"}])
            assert reply.choices[0].message.content == echo_text(f"g{i}")
        _, metrics2 = await get_text(url2 + "/metrics")
        assert "toolwire_backend_retries_total" not in re.sub(r"#.*\n", "", metrics2)
        assert 'toolwire_backend_circuit_state{backend="dead"} 2.0' in metrics2

        # A user's session sticks to one backend across replicas.
        for i, client in enumerate((free1, free2, free1, free2, free2)):
            await chat(client, f"echo session turn {i}", stream=i % 2 == 0, user="alice")
    homes = [sum("echo session turn" in p for p in prompts(fake)) for fake in fakes]
    assert sorted(homes) == [0, 5]


async def test_a_redis_that_goes_away_is_no_outage(fakes: list[LoopbackServer]) -> None:
    with redis_server() as url:
        config = replica_config(fakes, url)
    # The server is gone now: the gateway keeps routing with its own, in-process state.
    async with gateway_client(config, api_key="shared-key") as (_, client):
        for i in range(3):
            content, _, _ = await chat(client, f"echo without redis {i}", stream=i == 1, user="bob")
            assert content == echo_text(f"without redis {i}")
