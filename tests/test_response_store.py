"""The response stores: SQLite directly (bounds, reopening the file) and Redis against a real
redis-server, including two gateways that share one Redis and so each other's responses."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.core.response_store import RedisStore, ResponseStore, SqliteStore
from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port
from tests.support.responses import get, post, stream


def response(number: int) -> dict:
    return {"id": f"resp_{number}", "object": "response", "output": [{"type": "message", "n": number}]}


def items(number: int) -> list[dict]:
    return [{"id": f"msg_{number}", "type": "message", "role": "user", "content": []}]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def check_basics(store: ResponseStore) -> None:
    await store.put(response(1), items(1))
    assert await store.get("resp_1") == response(1)
    assert await store.input_items("resp_1") == items(1)
    assert await store.get("resp_2") is None and await store.input_items("resp_2") is None
    assert await store.delete("resp_1") is True
    assert await store.get("resp_1") is None and await store.input_items("resp_1") is None
    assert await store.delete("resp_1") is False


async def test_sqlite_basics_and_eviction_by_count(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3", max_responses=3, max_age_seconds=3600)
    await check_basics(store)
    for number in range(2, 7):
        await store.put(response(number), items(number))
    assert [await store.get(f"resp_{n}") is not None for n in range(2, 7)] == [False, False, True, True, True]
    await store.close()


async def test_sqlite_eviction_by_age(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(tmp_path / "r.sqlite3", max_responses=100, max_age_seconds=60, clock=clock)
    await store.put(response(1), items(1))
    clock.now += 30
    await store.put(response(2), items(2))
    clock.now += 40  # the first is 70 s old now, the second 40 s
    assert await store.get("resp_1") is None, "expired responses are never returned"
    assert await store.get("resp_2") == response(2)
    await store.put(response(3), items(3))  # and the next write removes them
    clock.now -= 1000
    assert await store.get("resp_1") is None and await store.get("resp_2") == response(2)
    await store.close()


async def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "r.sqlite3"
    first = SqliteStore(path, max_responses=10, max_age_seconds=3600)
    assert not path.exists(), "the file is created on first use, not before"
    await first.put(response(1), items(1))
    await first.close()
    second = SqliteStore(path, max_responses=10, max_age_seconds=3600)
    assert await second.get("resp_1") == response(1) and await second.input_items("resp_1") == items(1)
    await second.close()


async def test_sqlite_concurrent_writers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3", max_responses=1000, max_age_seconds=3600)
    await asyncio.gather(*(store.put(response(n), items(n)) for n in range(50)))
    assert all([await store.get(f"resp_{n}") == response(n) for n in range(50)])
    await store.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH (make install-test installs it)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, server)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait_for_port(port: int, server: subprocess.Popen) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert server.poll() is None, "redis-server exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start listening")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


async def test_redis_basics_ttl_and_eviction_by_count(redis: Redis, redis_url: str) -> None:
    store = RedisStore(redis_url, max_responses=3, max_age_seconds=120)
    await check_basics(store)
    for number in range(2, 7):
        await store.put(response(number), items(number))
    assert [await store.get(f"resp_{n}") is not None for n in range(2, 7)] == [False, False, True, True, True]
    assert await store.input_items("resp_2") is None, "an evicted response's input goes with it"
    assert 0 < await redis.ttl("toolwire:responses:resp_6") <= 120
    assert 0 < await redis.ttl("toolwire:responses:resp_6:input") <= 120
    assert await redis.zcard("toolwire:responses:index") == 3
    await store.close()


async def test_redis_expiry(redis: Redis, redis_url: str) -> None:
    store = RedisStore(redis_url, max_responses=10, max_age_seconds=1)
    await store.put(response(1), items(1))
    assert await store.get("resp_1") == response(1)
    await asyncio.sleep(1.5)
    assert await store.get("resp_1") is None and await store.input_items("resp_1") is None
    await store.close()


async def test_two_gateways_share_one_redis(redis: Redis, redis_url: str, fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, models, responses={"store": "redis", "redis_url": redis_url})
    call = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    fake_llama.script(Scripted(split_text(call)), Scripted(["It is noon."]))
    tools = [{"type": "function", "name": "get_time"}]
    async with running_gateway(config) as first_url, running_gateway(config) as second_url:
        status, first = await post(first_url, {"model": "qwen2.5-7b-instruct", "input": "Time?", "tools": tools})
        assert status == 200
        assert await get(second_url, f"/responses/{first['id']}") == (200, first)
        status, second = await post(second_url, {
            "model": "qwen2.5-7b-instruct", "previous_response_id": first["id"], "tools": tools,
            "input": [{"type": "function_call_output", "call_id": first["output"][0]["call_id"], "output": "noon"}],
        })
        assert status == 200 and second["output"][0]["content"][0]["text"] == "It is noon."
        assert "Time?" in fake_llama.requests[-1]["prompt"] and "<tool_response>\nnoon" in fake_llama.requests[-1]["prompt"]
        status, listing = await get(first_url, f"/responses/{second['id']}/input_items?order=asc")
        assert [item["type"] for item in listing["data"]] == ["message", "function_call", "function_call_output"]
        assert (await get(first_url, f"/responses/{second['id']}", method="DELETE"))[0] == 200
        assert (await get(second_url, f"/responses/{second['id']}"))[0] == 404


async def test_unreachable_store_fails_only_requests_that_store(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = make_config(backends, models, responses={"store": "redis", "redis_url": dead})
    fake_llama.script(Scripted(["Hi."]), Scripted(["Hi."]), Scripted(["Hi."]))
    async with running_gateway(config) as url:
        status, unstored = await post(url, {"model": "qwen2.5-7b-instruct", "input": "Hello", "store": False})
        assert status == 200 and unstored["output"][0]["content"][0]["text"] == "Hi."
        status, error = await post(url, {"model": "qwen2.5-7b-instruct", "input": "Hello"})
        assert status == 500 and error["error"]["code"] == "response_store_error"
        assert "127.0.0.1" not in error["error"]["message"], "the store's details stay in the log"
        events = await stream(url, {"model": "qwen2.5-7b-instruct", "input": "Hello"})
        assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
        assert events[-2]["code"] == "response_store_error"


# --- The reasoning of call turns, kept beside the responses (gateway.core.reasoning_memory) ---


async def check_reasoning(store: ResponseStore) -> None:
    await store.remember(["call_a", "call_b"], "Paris first, then the time.")
    assert await store.recall(["call_b"]) == "Paris first, then the time."
    assert await store.recall(["call_x", "call_a"]) == "Paris first, then the time.", "any of the turn's ids finds it"
    assert await store.recall(["call_x"]) is None and await store.recall([]) is None


async def test_sqlite_keeps_reasoning_within_its_bounds(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(tmp_path / "r.sqlite3", max_responses=3, max_age_seconds=60, clock=clock)
    await check_reasoning(store)
    for number in range(3):
        await store.remember([f"call_{number}"], f"thought {number}")
    assert await store.recall(["call_a"]) is None and await store.recall(["call_0"]) == "thought 0", "oldest out first"
    clock.now += 61
    assert await store.recall(["call_2"]) is None, "expired reasoning is never returned"
    await store.close()
    reopened = SqliteStore(tmp_path / "r.sqlite3", max_responses=3, max_age_seconds=3600, clock=clock)
    clock.now -= 61
    assert await reopened.recall(["call_2"]) == "thought 2", "it survives a restart"
    await reopened.close()


async def test_redis_keeps_reasoning_with_a_ttl(redis: Redis, redis_url: str) -> None:
    store = RedisStore(redis_url, max_responses=3, max_age_seconds=120)
    await check_reasoning(store)
    assert 0 < await redis.ttl("toolwire:responses:reasoning:call_a") <= 120
    await store.close()


async def test_local_reasoning_memory_is_bounded() -> None:
    from gateway.core.reasoning_memory import LocalReasoningMemory

    memory = LocalReasoningMemory(max_turns=2)
    await memory.remember(["a"], "one")
    await memory.remember(["b"], "two")
    assert await memory.recall(["a"]) == "one"  # used: now the most recent
    await memory.remember(["c"], "three")
    assert [await memory.recall([key]) for key in "abc"] == ["one", None, "three"]


async def test_chat_reasoning_goes_to_the_shared_redis(redis: Redis, redis_url: str, fake_llama: FakeLlamaServer) -> None:
    from openai import AsyncOpenAI

    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, models, responses={"store": "redis", "redis_url": redis_url})
    call = '<think>Time first.</think><tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    fake_llama.script(Scripted(split_text(call)))
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
    async with running_gateway(config) as url, AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        reply = await client.chat.completions.create(model="qwen2.5-7b-instruct", tools=tools,  # type: ignore[arg-type]
                                                     messages=[{"role": "user", "content": "Time?"}])
    call_id = (reply.choices[0].message.tool_calls or [])[0].id
    assert await redis.get(f"toolwire:responses:reasoning:{call_id}") == b"Time first."


async def test_redis_keeps_its_bound_under_concurrent_writes(redis: Redis, redis_url: str) -> None:
    """Many writers at once (several replicas, or one busy gateway): exactly max_responses remain,
    the newest ones, with nothing left behind for the evicted."""
    stores = [RedisStore(redis_url, max_responses=50, max_age_seconds=600) for _ in range(4)]
    await asyncio.gather(*(stores[n % 4].put(response(n), items(n)) for n in range(96)))
    assert await redis.zcard("toolwire:responses:index") == 50
    kept = [n for n in range(96) if await stores[0].get(f"resp_{n}") is not None]
    assert len(kept) == 50
    assert len(await redis.keys("toolwire:responses:resp_*")) == 100, "a response and its input, no more"
    for store in stores:
        await store.close()
