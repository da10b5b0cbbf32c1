"""End to end: the `openai` SDK's Responses client -> toolwire -> a real llama.cpp `llama-server`
with a real model (Gemma 3 270M, a tiny base model), and a real MCP server built with the `mcp`
SDK. `tool_choice` names the MCP tool, so the first round is a (constrained) call; the gateway runs
it on the server and generates again, with tools withheld, until the model answers. The answer's
quality is not judged; the loop's shape and the call's result are."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from tests.support.gateway import make_config, running_gateway
from tests.support.mcp_server import build_server, serving_http
from tests.support.real_llama import RunningServer
from tests.support.responses import stream
from tests.test_mcp_tools import check_mcp_stream, kinds


@pytest.fixture
def mcp_calls() -> list[tuple[str, dict[str, object]]]:
    return []


@pytest.fixture
async def gateway_url(llama_server: RunningServer, mcp_calls: list[tuple[str, dict[str, object]]],
                      tmp_path: Path) -> AsyncIterator[str]:
    backends = [{"name": "llama", "type": "llamacpp", "url": llama_server.url, "timeouts": {"read": 120}}]
    models = [{"name": "gemma", "backend": "llama", "tool_format": "default", "chat_template": "backend",
               "defaults": {"temperature": 0, "seed": 1, "max_tokens": 48}}]
    async with serving_http(build_server(mcp_calls)) as mcp_url:
        config = make_config(backends, models, responses={"sqlite_path": str(tmp_path / "r.sqlite3")},
                             mcp={"servers": [{"label": "calc", "url": mcp_url}], "max_rounds": 2})
        async with running_gateway(config) as url:
            yield url


BODY = {"model": "gemma", "input": "What is 2 plus 3? Use the add tool.",
        "tools": [{"type": "mcp", "server_label": "calc", "require_approval": "never", "allowed_tools": ["add"]}],
        "tool_choice": {"type": "mcp", "server_label": "calc", "name": "add"}}


async def test_mcp_call_with_a_real_model(gateway_url: str, mcp_calls: list[tuple[str, dict[str, object]]]) -> None:
    async with AsyncOpenAI(base_url=gateway_url, api_key="x", max_retries=0, timeout=300) as client:
        response = await client.responses.create(**BODY)  # type: ignore[call-overload]
    assert kinds(response.output) == ["mcp_list_tools", "mcp_call", "message"], response.output
    call = response.output[1]
    arguments = json.loads(call.arguments)
    assert mcp_calls == [("add", arguments)], "the server ran the model's own call"
    assert call.output == str(arguments["a"] + arguments["b"]) and call.error is None
    assert response.status in ("completed", "incomplete")
    print("real model:", call.arguments, "->", call.output, "| answer:", repr(response.output_text))

    events = await stream(gateway_url, BODY)  # every event checked against the spec
    final = check_mcp_stream(events)
    assert kinds(final["output"]) == ["mcp_list_tools", "mcp_call", "message"]
    assert final["output"][1]["arguments"] == call.arguments, "temperature 0: the same call"
    assert len(mcp_calls) == 2
