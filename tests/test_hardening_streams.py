"""A stream that has begun is never corrupted: whatever fails after the headers, the body ends with
an error event and a clean end of the chunked encoding (issue 13, item 3), read as raw HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted
from tests.support.gateway import make_config, running_gateway
from tests.support.raw_http import RawReply, raw_post, sse_data

MODEL = "qwen2.5-7b-instruct"


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def assert_clean(reply: RawReply) -> None:
    """Either an HTTP error before the stream, or a stream that ends properly."""
    assert b"HTTP/1.1" not in reply.body, "a second response was written inside the stream"
    assert reply.clean_end, "the chunked body did not end with its last chunk"
    if reply.status == 200:
        events = sse_data(reply.body)
        assert events, "a stream with no events"
        last = events[-1]
        assert last == "[DONE]" or (isinstance(last, dict) and (
            "error" in last or last.get("type") in ("response.completed", "response.failed", "error"))), last
    else:
        assert 400 <= reply.status < 600 and "error" in json.loads(reply.body)


@pytest.mark.parametrize("depth", [20, 200, 252, 260])
async def test_deeply_nested_tools_never_corrupt_a_responses_stream(
    fake_llama: FakeLlamaServer, tmp_path: Path, depth: int
) -> None:
    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, models, responses={"sqlite_path": str(tmp_path / "r.sqlite3")})
    fake_llama.script(Scripted(["Hi."]))
    body = {"model": MODEL, "input": "hi", "stream": True,
            "tools": [{"type": "function", "name": "f", "parameters": nested(depth)}]}
    async with running_gateway(config) as url:
        reply = await raw_post(url + "/responses", json.dumps(body).encode(), timeout=20)
    assert_clean(reply)
    if depth <= 20:
        assert reply.status == 200 and sse_data(reply.body)[-1]["type"] == "response.completed"  # type: ignore[index]


@pytest.mark.parametrize("fault", [{"error_after": 2}, {"cut_after": 2}, {"delay": 0.3}])
@pytest.mark.parametrize("surface", ["chat", "responses"])
async def test_backend_faults_mid_stream_end_cleanly(
    fake_llama: FakeLlamaServer, tmp_path: Path, fault: dict[str, Any], surface: str
) -> None:
    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, models, limits={"request_timeout": 1.0},
                         responses={"sqlite_path": str(tmp_path / "r.sqlite3")})
    fake_llama.script(Scripted(["one ", "two ", "three ", "four ", "five"], **fault))
    if surface == "chat":
        body: dict[str, Any] = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    else:
        body = {"model": MODEL, "stream": True, "input": "hi"}
    async with running_gateway(config) as url:
        reply = await raw_post(f"{url}/{'chat/completions' if surface == 'chat' else 'responses'}", body)
    assert reply.status == 200
    assert_clean(reply)
    last = sse_data(reply.body)[-1]
    assert isinstance(last, dict) and ("error" in last or last.get("type") == "response.failed")
