"""MCP tools run by the gateway (Responses API `mcp` tools), end to end: a real MCP server built with
the `mcp` SDK (streamable HTTP in the test's loop, and a stdio subprocess), the gateway as a real
HTTP server in front of the fake llama-server, and the official `openai` SDK as the client.

The scripted model reads its prompt as a model would: without a tool result it calls `add`, with
one it answers from it. Every response and streamed event is validated against OpenAI's spec, and
the stream's order is checked item by item.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import make_config, running_gateway
from tests.support.mcp_server import (
    ROOT,
    STDIO_COMMAND,
    HttpServing,
    build_server,
    serving_http,
)
from tests.support.openapi import assert_valid, errors
from tests.support.responses import TERMINAL, get, post, stream

MODEL = "qwen2.5-7b-instruct"
Calls = list[tuple[str, dict[str, object]]]


def hermes_call(name: str, arguments: dict[str, Any]) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def results_in(prompt: str) -> list[str]:
    return re.findall(r"<tool_response>\n(.*?)\n</tool_response>", prompt, re.DOTALL)


def model(call: str = "add", arguments: dict[str, Any] | None = None) -> Callable[[str], str]:
    """A model that calls `call` until its prompt holds a result, then answers from that result."""

    def reply(prompt: str) -> str:
        results = results_in(prompt)
        if results:
            return f"The tool said: {results[-1]}"
        if "<tools>" not in prompt:
            return "I have no tools to use."
        return hermes_call(call, arguments if arguments is not None else {"a": 2, "b": 40})

    return reply


@pytest.fixture
async def mcp_calls() -> Calls:
    return []


@pytest.fixture
async def mcp_url(mcp_calls: Calls) -> AsyncIterator[str]:
    async with serving_http(build_server(mcp_calls)) as url:
        yield url


def config_for(fake: FakeLlamaServer, tmp_path: Path, mcp: dict[str, Any], **extra: Any):  # type: ignore[no-untyped-def]
    backends, models = fake_routes(fake.url)
    return make_config(backends, models, responses={"sqlite_path": str(tmp_path / "r.sqlite3")}, mcp=mcp, **extra)


def declared(url: str, **mcp: Any) -> dict[str, Any]:
    return {"servers": [{"label": "calc", "url": url},
                        {"label": "calc-stdio", "command": STDIO_COMMAND, "cwd": str(ROOT)}], **mcp}


@pytest.fixture
async def gateway_url(fake_llama: FakeLlamaServer, mcp_url: str, tmp_path: Path) -> AsyncIterator[str]:
    async with running_gateway(config_for(fake_llama, tmp_path, declared(mcp_url, call_timeout=1.0,
                                                                         max_result_bytes=1000))) as url:
        yield url


CALC = {"type": "mcp", "server_label": "calc", "require_approval": "never"}
ASK = {"model": MODEL, "input": "What is 2 plus 40?", "tools": [CALC]}


def check_mcp_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAI's order, item by item (items may interleave: a call stays open while it runs), every
    event between its item's added and done, deltas adding up; returns the final response."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in TERMINAL
    opened: dict[int, dict[str, Any]] = {}
    finished: dict[int, dict[str, Any]] = {}
    seen: dict[int, list[str]] = {}
    arguments: dict[int, str] = {}
    failed = False
    for event in events[2:-1]:
        kind, index = event["type"], event.get("output_index")
        if kind == "error":  # a fault mid-stream: only response.failed follows
            assert event is events[-2] and events[-1]["type"] == "response.failed"
            failed = True
            break
        if kind == "response.output_item.added":
            assert index == len(opened) + len(finished) and event["item"].get("status", "in_progress") == "in_progress"
            opened[index], seen[index], arguments[index] = event["item"], [], ""
            continue
        assert index in opened, f"{kind} outside its item"
        item = opened[index]
        if kind == "response.output_item.done":
            assert event["item"]["id"] == item["id"] and event["item"]["type"] == item["type"]
            finished[index] = opened.pop(index)
            finished[index] = event["item"]
            continue
        assert event.get("item_id", item["id"]) == item["id"]
        seen[index].append(kind.removeprefix("response."))
        if kind == "response.mcp_call_arguments.delta":
            arguments[index] += event["delta"]
        if kind == "response.mcp_call_arguments.done":
            assert event["arguments"] == arguments[index]
    assert failed or not opened, "every item is done"
    patterns = {
        "mcp_list_tools": r"mcp_list_tools\.in_progress mcp_list_tools\.completed",
        "mcp_call": r"mcp_call\.in_progress( (mcp_call_arguments\.delta )+mcp_call_arguments\.done)? mcp_call\.(completed|failed)",
        "mcp_approval_request": r"",
        "message": r"content_part\.added( output_text\.delta)+ output_text\.done content_part\.done",
    }
    for index, item in finished.items():
        assert re.fullmatch(patterns[item["type"]], " ".join(seen[index])), (item["type"], seen[index])
        if item["type"] == "mcp_call" and arguments[index]:
            assert item["arguments"] == arguments[index]
    final = events[-1]["response"]
    assert final["output"] == [finished[index] for index in sorted(finished)], "the items done, and only those"
    return final


def assert_listing_valid(listing: dict[str, Any]) -> None:
    """`ResponseItemList` as published, but for one defect: the spec requires a `request_id` of
    `mcp_approval_response` items that it never defines (the openai SDK's type has no such field)."""
    approvals = [item for item in listing["data"] if item["type"] == "mcp_approval_response"]
    assert_valid("ResponseItemList", {**listing, "data": [item for item in listing["data"] if item not in approvals]})
    for item in approvals:
        assert errors("MCPApprovalResponseResource", item) == ["$: 'request_id' is a required property [schema: required]"]


def kinds(output: list[Any]) -> list[str]:
    return [item["type"] if isinstance(item, dict) else item.type for item in output]


async def test_lists_calls_and_answers(
    client: AsyncOpenAI, gateway_url: str, fake_llama: FakeLlamaServer, mcp_calls: Calls
) -> None:
    fake_llama.script(model(), model())
    status, whole = await post(gateway_url, ASK)
    assert status == 200, whole
    assert_valid("Response", whole)
    assert kinds(whole["output"]) == ["mcp_list_tools", "mcp_call", "message"]
    listing, call, answer = whole["output"]
    assert listing["server_label"] == "calc" and {t["name"] for t in listing["tools"]} == {
        "add", "shout", "explode", "huge", "slow", "die"}
    add = next(t for t in listing["tools"] if t["name"] == "add")
    assert add["description"] == "Add two integers and return the sum."
    assert add["input_schema"]["properties"]["a"]["type"] == "integer"
    assert call["name"] == "add" and json.loads(call["arguments"]) == {"a": 2, "b": 40}
    assert call["output"] == "42" and call["error"] is None and call["status"] == "completed"
    assert answer["content"][0]["text"] == "The tool said: 42"
    assert mcp_calls == [("add", {"a": 2, "b": 40})]
    first, second = fake_llama.prompts[-2:]
    assert "Add two integers and return the sum." in first, "the server's tools are offered to the model"
    assert results_in(second) == ["42"] and '"name": "add"' in second
    prompt_tokens = sum(len(fake_llama.vocab.tokenize(p, add_bos=False, parse_special=True)) for p in (first, second))
    assert whole["usage"]["input_tokens"] == prompt_tokens, "usage counts every round"
    assert whole["tools"] == [{**CALC, "headers": None}]

    fake_llama.script(model(), model())
    final = check_mcp_stream(await stream(gateway_url, ASK))
    assert final["status"] == "completed"
    assert kinds(final["output"]) == ["mcp_list_tools", "mcp_call", "message"]
    assert final["output"][1]["output"] == "42" and final["output"][2]["content"][0]["text"] == "The tool said: 42"

    fake_llama.script(model(), model())
    sdk = await client.responses.create(**ASK)  # type: ignore[call-overload]
    assert kinds(sdk.output) == ["mcp_list_tools", "mcp_call", "message"] and sdk.output_text == "The tool said: 42"
    fake_llama.script(model(), model())
    async with client.responses.stream(**ASK) as events:  # type: ignore[call-overload]
        types = [event.type async for event in events]
        streamed = await events.get_final_response()
    assert "response.mcp_call_arguments.delta" in types and "response.mcp_call.completed" in types
    assert kinds(streamed.output) == kinds(sdk.output) and streamed.output_text == sdk.output_text
    assert len(mcp_calls) == 4


async def test_stdio_server(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    tools = [{"type": "mcp", "server_label": "calc-stdio", "require_approval": "never",
              "allowed_tools": ["shout"]}]
    fake_llama.script(model("shout", {"text": "hello"}), model())
    whole = await client.responses.create(model=MODEL, input="Shout hello.", tools=tools)  # type: ignore[arg-type]
    assert kinds(whole.output) == ["mcp_list_tools", "mcp_call", "message"]
    assert [t.name for t in whole.output[0].tools] == ["shout"], "allowed_tools filters the listing"  # type: ignore[union-attr]
    assert whole.output[1].output == "HELLO" and whole.output_text == "The tool said: HELLO"  # type: ignore[union-attr]
    assert "explode" not in fake_llama.prompts[-2], "only the allowed tools are offered"
    fake_llama.script(model("shout", {"text": "again"}), model())
    raw = str(client.base_url).rstrip("/")
    final = check_mcp_stream(await stream(raw, {"model": MODEL, "input": "Shout again.", "tools": tools}))
    assert final["output"][1]["output"] == "AGAIN"


async def test_server_dying_mid_call_is_a_failed_call(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    tools = [{"type": "mcp", "server_label": "calc-stdio", "require_approval": "never"}]
    fake_llama.script(model("die", {}), model())
    whole = await client.responses.create(model=MODEL, input="Die.", tools=tools)  # type: ignore[arg-type]
    assert kinds(whole.output) == ["mcp_list_tools", "mcp_call", "message"]
    call = whole.output[1]
    assert call.status == "failed" and call.error is not None and call.output is None  # type: ignore[union-attr]
    assert whole.output_text.startswith("The tool said: Error: ")


async def test_parallel_calls_and_text_in_one_round(gateway_url: str, fake_llama: FakeLlamaServer, mcp_calls: Calls) -> None:
    both = "Let me work.\n" + hermes_call("add", {"a": 1, "b": 2}) + "\n" + hermes_call("shout", {"text": "hi"})

    def reply(prompt: str) -> str:
        return f"Results: {', '.join(results_in(prompt))}" if results_in(prompt) else both

    for _ in range(2):
        fake_llama.script(reply, reply)
    status, whole = await post(gateway_url, ASK)
    assert status == 200 and kinds(whole["output"]) == ["mcp_list_tools", "message", "mcp_call", "mcp_call", "message"]
    assert [item.get("output") for item in whole["output"][2:4]] == ["3", "HI"]
    assert whole["output"][4]["content"][0]["text"] == "Results: 3, HI"
    assert_valid("Response", whole)
    final = check_mcp_stream(await stream(gateway_url, ASK))
    assert kinds(final["output"]) == kinds(whole["output"])
    assert [name for name, _ in mcp_calls] == ["add", "shout", "add", "shout"]


@pytest.mark.parametrize(("call", "arguments", "expected"), [
    ("explode", {}, {"type": "mcp_tool_execution_error"}),
    ("huge", {"size": 5000}, {"type": "mcp_protocol_error", "message": "exceeds the gateway's limit of 1000 bytes"}),
    ("slow", {"seconds": 5}, {"type": "mcp_protocol_error", "message": "longer than the gateway's limit of 1s"}),
])
async def test_failed_calls_are_reported_to_the_model(
    gateway_url: str, fake_llama: FakeLlamaServer, call: str, arguments: dict[str, Any], expected: dict[str, str]
) -> None:
    fake_llama.script(model(call, arguments), model())
    status, whole = await post(gateway_url, ASK)
    assert status == 200, whole
    assert_valid("Response", whole)
    failed = whole["output"][1]
    assert failed["type"] == "mcp_call" and failed["status"] == "failed" and failed["output"] is None
    assert failed["error"]["type"] == expected["type"]
    assert expected.get("message", "") in failed["error"].get("message", "")
    told = results_in(fake_llama.prompts[-1])[-1]
    assert told.startswith("Error: ") and whole["output"][2]["content"][0]["text"] == f"The tool said: {told}"
    if call == "explode":
        assert "the fuse was lit" in told or "explode" in told


async def test_approval_flow(client: AsyncOpenAI, fake_llama: FakeLlamaServer, mcp_calls: Calls) -> None:
    tools = [{"type": "mcp", "server_label": "calc"}]  # require_approval defaults to "always"
    fake_llama.script(model())
    first = await client.responses.create(model=MODEL, input="What is 2 plus 40?", tools=tools)  # type: ignore[arg-type]
    assert kinds(first.output) == ["mcp_list_tools", "mcp_approval_request"] and mcp_calls == []
    request = first.output[1]
    assert request.name == "add" and json.loads(request.arguments) == {"a": 2, "b": 40}  # type: ignore[union-attr,arg-type]
    assert request.server_label == "calc" and request.id.startswith("mcpr_")  # type: ignore[union-attr]

    fake_llama.script(model())
    approve = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
    second = await client.responses.create(model=MODEL, previous_response_id=first.id, tools=tools,  # type: ignore[arg-type]
                                           input=[approve])  # type: ignore[list-item]
    assert kinds(second.output) == ["mcp_call", "message"], "the listing is not repeated"
    assert second.output[0].approval_request_id == request.id and second.output[0].output == "42"  # type: ignore[union-attr]
    assert second.output_text == "The tool said: 42" and mcp_calls == [("add", {"a": 2, "b": 40})]
    assert len(fake_llama.prompts) == 2, "the approved call ran before the model was asked again"

    # Going on from there renders the call once and runs nothing again.
    fake_llama.script("Anything else?")
    third = await client.responses.create(model=MODEL, previous_response_id=second.id, tools=tools,  # type: ignore[arg-type]
                                          input="Thanks.")
    assert third.output_text == "Anything else?" and len(mcp_calls) == 1
    base = str(client.base_url).rstrip("/")
    for response in (first, second, third):
        status, stored = await get(base, f"/responses/{response.id}")
        assert status == 200
        assert_valid("Response", stored)
        status, listing = await get(base, f"/responses/{response.id}/input_items?order=asc")
        assert status == 200
        assert_listing_valid(listing)
    assert [item.type async for item in client.responses.input_items.list(third.id, order="asc")] == [
        "message", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "mcp_call", "message", "message"]
    assert fake_llama.prompts[-1].count('<tool_call>\n{"name": "add"') == 1 and results_in(fake_llama.prompts[-1]) == ["42"]


async def test_approval_stateless_streamed_and_denied(
    gateway_url: str, fake_llama: FakeLlamaServer, mcp_calls: Calls
) -> None:
    tools = [{"type": "mcp", "server_label": "calc", "require_approval": {"never": {"tool_names": ["shout"]}}}]
    question = {"role": "user", "content": "What is 2 plus 40?"}
    fake_llama.script(model())
    events = await stream(gateway_url, {"model": MODEL, "input": [question], "tools": tools, "store": False})
    first = check_mcp_stream(events)
    assert kinds(first["output"]) == ["mcp_list_tools", "mcp_approval_request"]
    assert not [e for e in events if "mcp_call" in e["type"]], "an approval request streams no call events"
    request = first["output"][1]

    fake_llama.script(model())
    approve = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    replay = [question, *first["output"], approve]
    second = check_mcp_stream(await stream(gateway_url, {"model": MODEL, "input": replay, "tools": tools, "store": False}))
    assert kinds(second["output"]) == ["mcp_call", "message"] and second["output"][0]["output"] == "42"
    assert second["output"][0]["approval_request_id"] == request["id"]

    # Replaying that whole exchange does not run the call again.
    fake_llama.script("Fine.")
    status, third = await post(gateway_url, {"model": MODEL, "tools": tools, "store": False,
                                             "input": [*replay, *second["output"], {"role": "user", "content": "ok"}]})
    assert status == 200 and len(mcp_calls) == 1 and third["output"][0]["content"][0]["text"] == "Fine."

    fake_llama.script(model())
    deny = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": False,
            "reason": "not today"}
    status, denied = await post(gateway_url, {"model": MODEL, "tools": tools, "input": [question, *first["output"], deny]})
    assert status == 200 and kinds(denied["output"]) == ["message"] and len(mcp_calls) == 1
    assert denied["output"][0]["content"][0]["text"] == (
        "The tool said: Error: the user did not approve this call. Reason: not today")


async def test_last_round_may_not_call(fake_llama: FakeLlamaServer, mcp_url: str, tmp_path: Path, mcp_calls: Calls) -> None:
    def always_calls(prompt: str) -> str:
        return hermes_call("add", {"a": 1, "b": 1}) if "<tools>" in prompt else "I must answer now."

    fake_llama.script(*[always_calls] * 3)
    async with running_gateway(config_for(fake_llama, tmp_path, declared(mcp_url, max_rounds=3))) as url:
        status, whole = await post(url, ASK)
        async with aiohttp.ClientSession() as session, session.get(url.removesuffix("/v1") + "/metrics") as reply:
            metrics = await reply.text()
    assert 'toolwire_tool_calls_total{format="hermes"} 2.0' in metrics, "calls of every round are counted"
    assert status == 200
    assert kinds(whole["output"]) == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    assert whole["output"][-1]["content"][0]["text"] == "I must answer now." and len(mcp_calls) == 2
    assert "<tools>" not in fake_llama.prompts[-1] and len(fake_llama.prompts) == 3
    assert whole["usage"]["input_tokens"] > 0


async def test_function_call_ends_the_response(gateway_url: str, fake_llama: FakeLlamaServer, mcp_calls: Calls) -> None:
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    fake_llama.script(hermes_call("add", {"a": 1, "b": 2}) + "\n" + hermes_call("get_weather", {}))
    status, whole = await post(gateway_url, {**ASK, "tools": [CALC, weather]})
    assert status == 200, whole
    assert_valid("Response", whole)
    assert kinds(whole["output"]) == ["mcp_list_tools", "mcp_call", "function_call"]
    assert whole["output"][1]["output"] == "3" and len(fake_llama.prompts) == 1, "the client answers the function"


@pytest.mark.parametrize(("tool", "status", "param", "code"), [
    ({"type": "mcp", "server_label": "evil", "server_url": "http://169.254.169.254/latest"}, 400,
     "tools[0].server_url", "mcp_server_not_declared"),
    ({"type": "mcp", "server_label": "nope"}, 400, "tools[0].server_label", "mcp_server_not_declared"),
    ({"type": "mcp", "server_label": "x", "connector_id": "connector_gmail"}, 400, "tools[0].connector_id",
     "unsupported_parameter"),
    ({"type": "mcp", "server_label": "calc-stdio", "headers": {"X": "1"}}, 400, "tools[0].headers", "invalid_value"),
])
async def test_refused_servers(gateway_url: str, fake_llama: FakeLlamaServer, tool: dict[str, Any], status: int,
                               param: str, code: str) -> None:
    before = len(fake_llama.requests)
    got, error = await post(gateway_url, {**ASK, "tools": [tool]})
    assert got == status, error
    assert_valid("ErrorResponse", error)
    assert (error["error"]["param"], error["error"]["code"]) == (param, code)
    assert len(fake_llama.requests) == before


async def test_any_url_when_allowed_and_keys_per_server(
    fake_llama: FakeLlamaServer, mcp_url: str, tmp_path: Path
) -> None:
    undeclared = {"type": "mcp", "server_label": "mine", "server_url": mcp_url, "require_approval": "never",
                  "headers": {"X-Trace": "1"}}
    mcp = {"servers": [{"label": "calc", "url": mcp_url + "/"}], "allow_any_url": True}
    auth = {"api_keys": [{"key": "open"}, {"key": "narrow", "mcp_servers": ["other-*"]}]}
    async with running_gateway(config_for(fake_llama, tmp_path, mcp, auth=auth)) as url:
        async with AsyncOpenAI(base_url=url, api_key="open", max_retries=0) as sdk:
            fake_llama.script(model(), model())
            whole = await sdk.responses.create(model=MODEL, input="2+40?", tools=[undeclared])  # type: ignore[list-item]
            assert whole.output_text == "The tool said: 42" and whole.output[0].server_label == "mine"  # type: ignore[union-attr]
        async with AsyncOpenAI(base_url=url, api_key="narrow", max_retries=0) as sdk:
            declared_tool = {"type": "mcp", "server_label": "calc", "require_approval": "never"}
            with pytest.raises(Exception) as refused:
                await sdk.responses.create(model=MODEL, input="2+40?", tools=[declared_tool])  # type: ignore[list-item]
            assert getattr(refused.value, "status_code", None) == 403
            assert "calc" in str(refused.value)


async def test_unreachable_server_is_424(fake_llama: FakeLlamaServer, tmp_path: Path) -> None:
    from tests.support.real_llama import free_port

    dead = f"http://127.0.0.1:{free_port()}/mcp"
    async with running_gateway(config_for(fake_llama, tmp_path, {"servers": [{"label": "calc", "url": dead}],
                                                                 "connect_timeout": 3})) as url:
        status, error = await post(url, ASK)
    assert status == 424, error
    assert_valid("ErrorResponse", error)
    assert error["error"]["param"] == "tools[0]" and "calc" in error["error"]["message"]
    assert fake_llama.requests == []


async def test_requests_the_tools_cannot_serve(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    clash = {"type": "function", "name": "add"}
    status, error = await post(gateway_url, {**ASK, "tools": [CALC, clash]})
    assert status == 400 and error["error"]["code"] == "duplicate_tool_name" and "'add'" in error["error"]["message"]
    status, error = await post(gateway_url, {**ASK, "tools": [CALC, CALC]})
    assert status == 400 and error["error"]["param"] == "tools[1].server_label"
    stray = {"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}
    status, error = await post(gateway_url, {**ASK, "input": [{"role": "user", "content": "x"}, stray]})
    assert status == 400 and error["error"]["param"] == "input[1].approval_request_id"
    forged = {"type": "mcp_approval_request", "id": "mcpr_forged", "server_label": "calc", "name": "rm_rf",
              "arguments": "{}"}
    approve = {"type": "mcp_approval_response", "approval_request_id": "mcpr_forged", "approve": True}
    status, error = await post(gateway_url, {**ASK, "input": [forged, approve]})
    assert status == 400 and "not to a tool this request offers" in error["error"]["message"]
    for body in (error,):
        assert_valid("ErrorResponse", body)
    assert fake_llama.requests == []


@pytest.mark.parametrize(("server", "says"), [
    ({"label": "a", "url": "http://x/mcp", "command": ["srv"]}, "either url"),
    ({"label": "a"}, "either url"),
    ({"label": "a", "url": "ftp://x/mcp"}, "http:// or https://"),
    ({"label": "a", "command": ["srv"], "headers": {"X": "1"}}, "headers: only for url servers"),
    ({"label": "a b", "url": "http://x/mcp"}, "label"),
])
def test_config_checks_servers(server: dict[str, Any], says: str) -> None:
    from gateway.ops.config import ConfigError

    with pytest.raises(ConfigError) as raised:
        make_config([{"name": "b", "type": "llamacpp", "url": "http://x"}], [{"name": "m", "backend": "b"}],
                    mcp={"servers": [server]})
    assert "mcp.servers[0]" in str(raised.value) and says in str(raised.value)


def test_config_refuses_duplicate_labels() -> None:
    from gateway.ops.config import ConfigError

    with pytest.raises(ConfigError, match="duplicate label 'a'"):
        make_config([{"name": "b", "type": "llamacpp", "url": "http://x"}], [{"name": "m", "backend": "b"}],
                    mcp={"servers": [{"label": "a", "url": "http://x/mcp"}, {"label": "a", "url": "http://y/mcp"}]})


async def test_backend_fault_in_a_later_round(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    broken = Scripted(split_text("The tool said"), error_after=1)
    fake_llama.script(model(), broken)
    status, error = await post(gateway_url, ASK)
    assert status in (400, 502), error  # the backend's own fault, as without MCP tools: never a 500
    assert_valid("ErrorResponse", error)
    fake_llama.script(model(), Scripted(split_text("The tool said"), error_after=1))
    events = await stream(gateway_url, ASK)
    final = check_mcp_stream(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert kinds(final["output"]) == ["mcp_list_tools", "mcp_call"], "what was done stays in the failed response"
    assert final["output"][1]["output"] == "42"


async def test_tool_choice_mcp(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script('{"name": "shout", "arguments": {"text": "yo"}}', model())
    choice = {"type": "mcp", "server_label": "calc", "name": "shout"}
    status, whole = await post(gateway_url, {**ASK, "tool_choice": choice})
    assert status == 200, whole
    assert_valid("Response", whole)
    assert fake_llama.requests[0]["json_schema"]["properties"]["name"] == {"const": "shout"}
    assert "json_schema" not in fake_llama.requests[1], "the forced call holds for the first round only"
    assert whole["output"][1]["output"] == "YO" and whole["tool_choice"] == choice
    for bad, param in (({**choice, "server_label": "other"}, "tool_choice.server_label"),
                       ({**choice, "name": "nope"}, "tool_choice.name")):
        status, error = await post(gateway_url, {**ASK, "tool_choice": bad})
        assert (status, error["error"]["param"]) == (400, param)


async def test_broken_call_awaiting_approval_is_repaired(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    broken = 'Let me add.\n<tool_call>\n{"name": "add", "arguments": {"a": 2,}}\n</tool_call>'
    body = {**ASK, "tools": [{"type": "mcp", "server_label": "calc"}]}
    fake_llama.script(broken, broken)
    status, whole = await post(gateway_url, body)
    assert status == 200, whole
    assert_valid("Response", whole)
    final = check_mcp_stream(await stream(gateway_url, body))
    for response in (whole, final):
        assert kinds(response["output"]) == ["mcp_list_tools", "message", "mcp_approval_request"]
        assert response["status"] == "completed"
        approval = response["output"][2]
        assert approval["name"] == "add" and json.loads(approval["arguments"]) == {"a": 2}, "repaired, then asked"


async def test_broken_call_awaiting_approval_is_text_without_repair(fake_llama: FakeLlamaServer, mcp_url: str,
                                                                   tmp_path: Path) -> None:
    broken = 'Let me add.\n<tool_call>\n{"name": "add", "arguments": {"a": 2,}}\n</tool_call>'
    body = {**ASK, "tools": [{"type": "mcp", "server_label": "calc"}]}
    backends, models = fake_routes(fake_llama.url)
    models = [{**model, "repair": "off"} for model in models]
    config = make_config(backends, models, responses={"sqlite_path": str(tmp_path / "r.sqlite3")},
                         mcp=declared(mcp_url))
    fake_llama.script(broken, broken)
    async with running_gateway(config) as url:
        status, whole = await post(url, body)
        assert status == 200, whole
        assert_valid("Response", whole)
        final = check_mcp_stream(await stream(url, body))
    for response in (whole, final):
        assert kinds(response["output"]) == ["mcp_list_tools", "message"] and response["status"] == "completed"
        text = response["output"][1]["content"][0]["text"]
        assert text.startswith("Let me add.") and '"a": 2,}' in text, "the model's slip is its text, not a failure"


async def test_http_server_gone_mid_response(fake_llama: FakeLlamaServer, tmp_path: Path) -> None:
    serving = HttpServing(build_server())
    await serving.start()
    stopped: list[asyncio.Task[None]] = []

    def call_after_the_server_went_away(prompt: str) -> Scripted:
        stopped.append(asyncio.get_running_loop().create_task(serving.stop()))
        return Scripted(split_text(hermes_call("add", {"a": 2, "b": 40}), every=200), delay=0.3)

    fake_llama.script(call_after_the_server_went_away, model())
    try:
        async with running_gateway(config_for(fake_llama, tmp_path, {"servers": [{"label": "calc", "url": serving.url}]})) as url:
            events = await stream(url, ASK)
    finally:
        await serving.stop()
    final = check_mcp_stream(events)
    assert final["status"] == "completed" and kinds(final["output"]) == ["mcp_list_tools", "mcp_call", "message"]
    call = final["output"][1]
    assert call["status"] == "failed" and call["error"]["type"] == "mcp_protocol_error"
    assert final["output"][2]["content"][0]["text"].startswith("The tool said: Error: ")
