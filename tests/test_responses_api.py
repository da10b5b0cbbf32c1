"""The Responses API through the running gateway: the real `openai` SDK and raw HTTP, against the
fake llama-server with scripted hermes output. Every response and every streamed event is validated
against OpenAI's published schema for it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import make_config, running_gateway
from tests.support.openapi import assert_valid
from tests.support.responses import check_order, get, post, stream, summary

MODEL = "qwen2.5-7b-instruct"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"type": "function", "name": "get_time"}  # no parameters, no strict: both optional
TOOLS = [WEATHER, TIME]
ASK = {"model": MODEL, "input": "Weather in Paris and the time?", "tools": TOOLS}


def hermes_call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


PARIS = hermes_call("get_weather", '{"city": "Paris"}')
CORPUS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "text": ("It is sunny in Paris.", [("message", "It is sunny in Paris.")]),
    "single call": (PARIS, [("function_call", "get_weather", {"city": "Paris"})]),
    "parallel calls": (PARIS + "\n" + hermes_call("get_time", "{}"),
                       [("function_call", "get_weather", {"city": "Paris"}), ("function_call", "get_time", {})]),
    "text around a call": ("Let me look.\n" + PARIS + "\nOne moment.",
                           [("message", "Let me look."), ("function_call", "get_weather", {"city": "Paris"}),
                            ("message", "\n\nOne moment.")]),
    "reasoning and a call": ("<think>The user wants Paris.</think>\n\n" + PARIS,
                             [("reasoning", "The user wants Paris."), ("function_call", "get_weather", {"city": "Paris"})]),
    "unicode": (hermes_call("get_weather", '{"city": "Zürich \\"Alt\\"\\n東京"}'),
                [("function_call", "get_weather", {"city": 'Zürich "Alt"\n東京'})]),
}


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "responses.sqlite3"


def gateway_config(fake: FakeLlamaServer, store_path: Path, **responses: Any):  # type: ignore[no-untyped-def]
    backends, models = fake_routes(fake.url)
    return make_config(backends, models, responses={"sqlite_path": str(store_path), **responses})


@pytest.fixture
async def gateway_url(fake_llama: FakeLlamaServer, store_path: Path) -> AsyncIterator[str]:
    # Replaces conftest's gateway_url, so its `client` fixture talks to this gateway.
    async with running_gateway(gateway_config(fake_llama, store_path)) as url:
        yield url


def script(fake: FakeLlamaServer, output: str, times: int = 1) -> None:
    fake.script(*(Scripted(split_text(output)) for _ in range(times)))


@pytest.mark.parametrize("case", list(CORPUS))
async def test_corpus_stream_and_non_stream_agree(
    client: AsyncOpenAI, gateway_url: str, fake_llama: FakeLlamaServer, case: str
) -> None:
    output, expected = CORPUS[case]
    script(fake_llama, output, times=4)
    status, whole = await post(gateway_url, ASK)
    assert status == 200
    assert_valid("Response", whole)
    assert summary(whole["output"]) == expected
    assert whole["status"] == "completed" and whole["object"] == "response" and whole["id"].startswith("resp_")
    assert whole["usage"]["total_tokens"] == whole["usage"]["input_tokens"] + whole["usage"]["output_tokens"] > 0
    for item in whole["output"]:
        assert item["status"] == "completed"
        if item["type"] == "function_call":
            assert item["id"].startswith("fc_") and item["call_id"].startswith("call_")
        if item["type"] == "message":
            assert item["id"].startswith("msg_") and item["role"] == "assistant"
    final = check_order(await stream(gateway_url, ASK))
    assert final["status"] == "completed" and summary(final["output"]) == expected
    sdk = await client.responses.create(**ASK)
    assert summary(sdk.output) == expected
    async with client.responses.stream(**ASK) as helper:
        streamed = await helper.get_final_response()
    assert summary(streamed.output) == summary(sdk.output)


async def test_arguments_stream_as_the_model_writes_them(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    # Paced as a model writes, so the pieces arrive in separate reads (an instant burst is one delta).
    fake_llama.script(Scripted(split_text(hermes_call("get_weather", '{"city": "' + "long " * 40 + '"}'), every=4),
                               delay=0.002))
    events = await stream(gateway_url, ASK)
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) > 10
    assert json.loads("".join(deltas)) == {"city": "long " * 40}
    check_order(events)


async def test_max_output_tokens_cut_is_incomplete(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    script(fake_llama, words, times=2)
    status, whole = await post(gateway_url, {**ASK, "max_output_tokens": 16})
    assert status == 200
    assert_valid("Response", whole)
    assert fake_llama.requests[-1]["n_predict"] == 16
    assert whole["status"] == "incomplete" and whole["incomplete_details"] == {"reason": "max_output_tokens"}
    assert whole["output"][0]["status"] == "incomplete" and whole["max_output_tokens"] == 16
    final = check_order(await stream(gateway_url, {**ASK, "max_output_tokens": 16}))
    assert final["status"] == "incomplete" and summary(final["output"]) == summary(whole["output"])


async def test_broken_call_is_repaired(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    broken = "Checking.\n" + hermes_call("get_weather", '{"city": "Paris",}')
    script(fake_llama, broken, times=2)
    status, whole = await post(gateway_url, ASK)
    assert status == 200 and whole["status"] == "completed"
    assert_valid("Response", whole)
    [message, call] = whole["output"]
    assert (message["type"], message["content"][0]["text"]) == ("message", "Checking.")
    assert call["type"] == "function_call" and json.loads(call["arguments"])["city"] == "Paris"
    events = await stream(gateway_url, ASK)
    final = check_order(events)
    assert events[-1]["type"] == "response.completed"
    assert summary(final["output"]) == summary(whole["output"])


async def test_broken_call_without_repair_is_text_or_a_failed_stream(fake_llama: FakeLlamaServer, store_path: Path) -> None:
    config = gateway_config(fake_llama, store_path)
    config = config.model_copy(update={"models": [m.model_copy(update={"repair": False}) for m in config.models]})
    async with running_gateway(config) as gateway_url:
        await _broken_call_is_text_or_a_failed_stream(gateway_url, fake_llama)


async def _broken_call_is_text_or_a_failed_stream(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    broken = "Checking.\n" + hermes_call("get_weather", '{"city": "Paris",}')
    script(fake_llama, broken, times=2)
    status, whole = await post(gateway_url, ASK)
    assert status == 200
    assert_valid("Response", whole)
    [(kind, text)] = summary(whole["output"])  # one message: the call is returned as the model's text
    assert kind == "message" and text.startswith("Checking.") and '"city": "Paris",' in text
    events = await stream(gateway_url, ASK)
    final = check_order(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "malformed_tool_call" and "broke off" in events[-2]["message"]
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    assert not [e for e in events if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"]


async def test_tool_loop_with_previous_response_id(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text(PARIS)), Scripted(["It is ", "sunny."]))
    first = await client.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER],
                                          instructions="Be brief.")
    call = first.output[0]
    assert call.type == "function_call"
    second = await client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
    )
    assert second.output_text == "It is sunny." and second.previous_response_id == first.id
    prompt = fake_llama.requests[-1]["prompt"]
    assert "Weather in Paris?" in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<tool_response>\nsunny, 21C\n</tool_response>" in prompt
    assert "Be brief." in fake_llama.requests[0]["prompt"] and "Be brief." not in prompt, "instructions are not carried"
    items = [item async for item in client.responses.input_items.list(second.id, order="asc")]
    assert [item.type for item in items] == ["message", "function_call", "function_call_output"]
    status, listing = await get(str(client.base_url).rstrip("/"), f"/responses/{second.id}/input_items")
    assert_valid("ResponseItemList", listing)


async def test_backend_fault_mid_stream(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(Scripted(split_text("It is sunny in Paris today."), error_after=3),
                      Scripted(split_text("It is sunny in Paris today."), error_after=3))
    status, error = await post(gateway_url, ASK)
    assert status in (400, 502), "without streaming the fault is an HTTP error, not a truncated answer"
    assert_valid("ErrorResponse", error)
    events = await stream(gateway_url, ASK)
    final = check_order(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert final["status"] == "failed" and final["output"] == [], "the cut message is not passed off as done"


async def test_chain_survives_a_restart(fake_llama: FakeLlamaServer, store_path: Path) -> None:
    config = gateway_config(fake_llama, store_path)
    fake_llama.script(Scripted(split_text(PARIS)), Scripted(["Sunny."]))
    async with running_gateway(config) as url:
        status, first = await post(url, {"model": MODEL, "input": "Weather in Paris?", "tools": [WEATHER]})
    async with running_gateway(config) as url:
        assert await get(url, f"/responses/{first['id']}") == (200, first)
        call_id = first["output"][0]["call_id"]
        status, second = await post(url, {"model": MODEL, "previous_response_id": first["id"], "tools": [WEATHER],
                                          "input": [{"type": "function_call_output", "call_id": call_id, "output": "21C"}]})
    assert status == 200, second
    assert "Weather in Paris?" in fake_llama.requests[-1]["prompt"]


async def test_get_delete_and_input_items(client: AsyncOpenAI, gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, "Hi.")
    body = {"model": MODEL, "metadata": {"user": "u1"}, "input": [
        {"role": "developer", "content": "Be kind."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
        {"role": "user", "content": "How are you?"},
    ]}
    status, created = await post(gateway_url, body)
    assert status == 200 and created["metadata"] == {"user": "u1"}
    status, fetched = await get(gateway_url, f"/responses/{created['id']}")
    assert (status, fetched) == (200, created)
    status, listing = await get(gateway_url, f"/responses/{created['id']}/input_items")
    assert status == 200
    assert_valid("ResponseItemList", listing)
    assert [i["role"] for i in listing["data"]] == ["user", "assistant", "user", "developer"], "newest first"
    assert listing["has_more"] is False and listing["first_id"] == listing["data"][0]["id"]
    status, page = await get(gateway_url, f"/responses/{created['id']}/input_items?order=asc&limit=2")
    assert [i["role"] for i in page["data"]] == ["developer", "user"] and page["has_more"] is True
    assert_valid("ResponseItemList", page)
    paged = [item async for item in client.responses.input_items.list(created["id"], order="asc", limit=1)]
    assert [item.id for item in paged] == [i["id"] for i in reversed(listing["data"])]
    status, deleted = await get(gateway_url, f"/responses/{created['id']}", method="DELETE")
    assert (status, deleted) == (200, {"id": created["id"], "object": "response", "deleted": True})
    for path in (f"/responses/{created['id']}", f"/responses/{created['id']}/input_items"):
        status, error = await get(gateway_url, path)
        assert status == 404
        assert_valid("ErrorResponse", error)
    with pytest.raises(NotFoundError):
        await client.responses.delete(created["id"])


async def test_unstored_and_unknown_previous_ids(client: AsyncOpenAI, gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, "Hi.")
    unstored = await client.responses.create(model=MODEL, input="Hello", store=False)
    assert unstored.store is False
    with pytest.raises(NotFoundError):
        await client.responses.retrieve(unstored.id)
    for previous in (unstored.id, "resp_nope"):
        status, error = await post(gateway_url, {"model": MODEL, "input": "Again", "previous_response_id": previous})
        assert status == 400
        assert_valid("ErrorResponse", error)
        assert error["error"]["code"] == "previous_response_not_found"
        assert error["error"]["param"] == "previous_response_id"


async def test_consecutive_calls_are_one_assistant_turn(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, "Done.")
    status, _ = await post(gateway_url, {"model": MODEL, "tools": TOOLS, "input": [
        {"role": "user", "content": "Weather and time?"},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "call_b", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "noon"}]},
    ]})
    assert status == 200
    prompt = fake_llama.requests[-1]["prompt"]
    turn = prompt.split("<|im_start|>assistant\n")[1]
    assert turn.count("<tool_call>") == 2 and turn.index("get_time") < turn.index("<|im_end|>")
    assert prompt.count("<|im_start|>assistant") == 2, "one turn with both calls, then the generation prompt"
    assert "<tool_response>\nsunny\n</tool_response>" in prompt and "<tool_response>\nnoon\n</tool_response>" in prompt


async def test_tool_choice_forms(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    script(fake_llama, '{"name": "get_time", "arguments": {}}', times=2)
    status, named = await post(gateway_url, {**ASK, "tool_choice": {"type": "function", "name": "get_time"}})
    assert status == 200 and summary(named["output"]) == [("function_call", "get_time", {})]
    assert fake_llama.requests[-1]["json_schema"]["properties"]["name"] == {"const": "get_time"}
    assert named["tool_choice"] == {"type": "function", "name": "get_time"}
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}
    status, restricted = await post(gateway_url, {**ASK, "tool_choice": allowed})
    assert status == 200 and summary(restricted["output"]) == [("function_call", "get_time", {})]
    assert_valid("Response", restricted)
    body = fake_llama.requests[-1]
    assert "get_weather" not in body["prompt"], "only the allowed tools are offered"
    assert body["prompt"].endswith("<|im_start|>assistant\n<tool_call>\n")
    script(fake_llama, PARIS + "\n" + hermes_call("get_time", "{}"))
    status, single = await post(gateway_url, {**ASK, "parallel_tool_calls": False})
    assert summary(single["output"]) == [("function_call", "get_weather", {"city": "Paris"})]


async def test_text_format_json_schema(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    script(fake_llama, '{"answer": "yes"}', times=2)
    text = {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}}
    status, whole = await post(gateway_url, {"model": MODEL, "input": "Yes?", "text": text})
    assert status == 200 and fake_llama.requests[-1]["json_schema"] == schema
    assert_valid("Response", whole)
    assert whole["text"] == text and whole["output"][0]["content"][0]["text"] == '{"answer": "yes"}'
    await post(gateway_url, {"model": MODEL, "input": "Yes?", "text": {"format": {"type": "json_object"}}})
    assert fake_llama.requests[-1]["json_schema"] == {"type": "object"}


@pytest.mark.parametrize(("body", "param", "says"), [
    ({**ASK, "tools": [{"type": "function", "function": {"name": "get_time"}}]}, "tools[0]", "flat shape"),
    ({**ASK, "tools": [{"type": "web_search"}]}, "tools[0].type", "not supported"),
    ({**ASK, "temperature": 3}, "temperature", "less than or equal to 2"),
    ({**ASK, "max_output_tokens": 5}, "max_output_tokens", "greater than or equal to 16"),
    ({"model": MODEL}, "input", "required"),
    ({"model": MODEL, "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "user"),
    ({"model": MODEL, "input": [{"type": "web_search_call"}]}, "input[0].type", "not supported"),
    ({"model": MODEL, "input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
     "input[0].call_id", "No function_call"),
    ({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]", "not supported"),
    ({**ASK, "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice", "not among"),
    ({**ASK, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "x"}]}},
     "tool_choice.tools[0]", "not among"),
    ({"model": MODEL, "input": "x", "tool_choice": "required"}, "tool_choice", "no tools"),
])
async def test_invalid_requests_name_the_param(gateway_url: str, body: dict, param: str, says: str) -> None:
    status, error = await post(gateway_url, body)
    assert status == 400, error
    assert_valid("ErrorResponse", error)
    assert error["error"]["param"] == param
    assert says in error["error"]["message"]


async def test_sdk_raises_on_chat_shaped_tools(client: AsyncOpenAI) -> None:
    with pytest.raises(BadRequestError, match="flat"):
        await client.responses.create(model=MODEL, input="x", tools=[{"type": "function", "function": {"name": "f"}}])  # type: ignore[list-item]
