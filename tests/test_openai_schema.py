"""Everything toolwire sends, checked against OpenAI's published OpenAPI document.

The gateway runs as a real HTTP server in front of the fake llama-server; requests go over raw HTTP with
aiohttp, so what is validated is the exact bytes on the wire (strict JSON, SSE framing), not what the
`openai` SDK's lenient parsing makes of them. Schemas: `#/components/schemas/<name>` of
`shared/openai-openapi/openapi.json`, through `tests.support.openapi` (which documents what it converts).

Each case first checks that it exercised what it claims (the calls, the finish reason, the usage chunk),
then validates; a schema mismatch fails the test with every error and its JSON path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support import openapi
from tests.support.gateway import make_config, running_gateway
from tests.support.real_llama import free_port

HERMES_MODEL = "qwen2.5-7b-instruct"
DEFAULT_MODEL = "gemma-3"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "Weather in Paris and the time?"}]

CHAT_RESPONSE = "CreateChatCompletionResponse"
CHAT_CHUNK = "CreateChatCompletionStreamResponse"
MODELS = "ListModelsResponse"
ERROR = "ErrorResponse"


def hermes_call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


@dataclass(frozen=True)
class Case:
    """One scripted model output and what the gateway must make of it."""

    chunks: list[str]
    finish_reason: str
    content: str | None
    calls: list[tuple[str, dict]] = field(default_factory=list)
    model: str = HERMES_MODEL
    request: dict[str, Any] = field(default_factory=dict)


CASES = {
    "text only": Case(split_text("It is sunny in Paris."), "stop", "It is sunny in Paris."),
    "one tool call": Case(
        split_text(hermes_call("get_weather", '{"city": "Paris"}')),
        "tool_calls",
        None,
        [("get_weather", {"city": "Paris"})],
    ),
    "parallel tool calls": Case(
        split_text(hermes_call("get_weather", '{"city": "Paris"}') + "\n" + hermes_call("get_time", "{}"), every=4),
        "tool_calls",
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {})],
    ),
    "text and call": Case(
        split_text(
            "Let me look.\n" + hermes_call("get_weather", '{"city": "Zürich \\"Altstadt\\""}') + "\nOne moment."
        ),
        "tool_calls",
        "Let me look.\n\nOne moment.",
        [("get_weather", {"city": 'Zürich "Altstadt"'})],
    ),
    "default format call": Case(
        split_text('[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST]'),
        "tool_calls",
        None,
        [("get_time", {})],
        model=DEFAULT_MODEL,
    ),
    "finish_reason length": Case(["Hello", " there", " friend"], "length", "Hello there", request={"max_tokens": 2}),
}


# --------------------------------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------------------------------


def strict_json(raw: bytes) -> Any:
    """Parse bytes as strict JSON: no NaN/Infinity, no duplicate keys (both slip past `json.loads`)."""

    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
        return dict(pairs)

    return json.loads(raw.decode("utf-8"), parse_constant=no_constants, object_pairs_hook=no_duplicates)


async def post_raw(base_url: str, body: bytes | dict[str, Any]) -> tuple[int, str, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            base_url + "/chat/completions", data=data, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, response.content_type, await response.read()


async def get_raw(base_url: str, path: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(base_url + path) as response:
        return response.status, response.content_type, await response.read()


def chat_body(case: Case, **extra: Any) -> dict[str, Any]:
    return {"model": case.model, "messages": ASK, "tools": TOOLS, **case.request, **extra}


def sse_events(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, checking the framing: each event is one `data: ` line."""
    assert raw.endswith(b"\n\n"), f"the stream does not end with a complete event: {raw[-80:]!r}"
    events = raw[:-2].split(b"\n\n")
    payloads = []
    for event in events:
        assert event.startswith(b"data: ") and b"\n" not in event, f"not a single `data: ` line: {event[:200]!r}"
        payloads.append(event[len(b"data: ") :])
    return payloads


def assert_all_valid(schema_name: str, instances: list[Any]) -> None:
    """Like `openapi.assert_valid`, for a list (stream chunks): every error of every chunk, numbered."""
    problems = [
        f"chunk {i}: {line}" for i, instance in enumerate(instances) for line in openapi.errors(schema_name, instance)
    ]
    if problems:
        raise AssertionError(
            f"{len(problems)} problem(s) in {len(instances)} chunks against OpenAI's {schema_name}:\n  "
            + "\n  ".join(problems)
        )


def message_summary(message: dict[str, Any]) -> tuple[str | None, list[tuple[str, dict]]]:
    calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls") or []]
    return message.get("content"), calls


# --------------------------------------------------------------------------------------------------
# The loader itself: it must reject what the spec rejects, and accept what it allows.
# --------------------------------------------------------------------------------------------------

GOOD_CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}, "logprobs": None, "finish_reason": None}],
    "usage": None,
}


def test_loader_accepts_what_the_spec_allows() -> None:
    # `logprobs`, `finish_reason` and `usage` are `nullable: true` in the spec: null must pass.
    openapi.assert_valid(CHAT_CHUNK, GOOD_CHUNK)
    openapi.assert_valid(ERROR, {"error": {"message": "m", "type": "t", "param": None, "code": None}})
    openapi.assert_valid(MODELS, {"object": "list", "data": []})


def test_loader_reports_every_error_with_its_path() -> None:
    bad = {
        **GOOD_CHUNK,
        "object": "chat.completion",
        "usage": {"prompt_tokens": "3", "completion_tokens": 1, "total_tokens": 4},
        "choices": [
            {"index": 0, "delta": {"role": "bot", "tool_calls": [{"id": "x"}]}, "logprobs": 1, "finish_reason": "done"}
        ],
    }
    with pytest.raises(AssertionError) as caught:
        openapi.assert_valid(CHAT_CHUNK, bad)
    report = str(caught.value)
    for path in (
        "$.object:",
        "$.usage.prompt_tokens:",
        "$.choices[0].delta.role:",
        "$.choices[0].delta.tool_calls[0]: 'index' is a required property",
        "$.choices[0].logprobs:",
        "$.choices[0].finish_reason:",
    ):
        assert path in report, f"{path!r} missing from:\n{report}"
    with pytest.raises(AssertionError, match=r"\$\.error: 'param' is a required property"):
        openapi.assert_valid(ERROR, {"error": {"message": "m", "type": "t", "code": None}})
    with pytest.raises(KeyError):
        openapi.validator("NoSuchSchema")


def test_loader_converts_openapi_isms() -> None:
    schemas = openapi.spec()["components"]["schemas"]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("enum", "default", "example", "const"):
                    continue
                yield key, value
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    leftovers = {key for key, value in walk(schemas) if key in ("nullable", "$recursiveRef", "$recursiveAnchor")}
    leftovers |= {key for key, value in walk(schemas) if key.startswith("exclusiveM") and isinstance(value, bool)}
    assert not leftovers
    # exclusiveMinimum: true + minimum: 0 means "> 0", not "> True (== 1)".
    assert openapi.errors("FineTuneDPOHyperparameters", {"beta": 0.5}) == []
    assert openapi.errors("FineTuneDPOHyperparameters", {"beta": 0})
    # $recursiveRef "#" is the filter itself: a bad filter nested two deep is still caught.
    assert (
        openapi.errors(
            "CompoundFilter",
            {"type": "and", "filters": [{"type": "or", "filters": [{"type": "eq", "key": "a", "value": 1}]}]},
        )
        == []
    )
    assert openapi.errors(
        "CompoundFilter", {"type": "and", "filters": [{"type": "or", "filters": [{"type": "bogus"}]}]}
    )


# --------------------------------------------------------------------------------------------------
# chat.completion
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
async def test_chat_completion_matches_spec(gateway_url: str, fake_llama: FakeLlamaServer, name: str) -> None:
    case = CASES[name]
    fake_llama.script(Scripted(case.chunks))
    status, content_type, raw = await post_raw(gateway_url, chat_body(case))
    assert (status, content_type) == (200, "application/json"), raw[:500]
    body = strict_json(raw)
    choice = body["choices"][0]
    assert message_summary(choice["message"]) == (case.content, case.calls)
    assert choice["finish_reason"] == case.finish_reason
    usage = body["usage"]
    assert (
        usage["completion_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )
    openapi.assert_valid(CHAT_RESPONSE, body)


# --------------------------------------------------------------------------------------------------
# chat.completion.chunk
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True], ids=["no usage", "include_usage"])
@pytest.mark.parametrize("name", list(CASES))
async def test_chat_completion_stream_matches_spec(
    gateway_url: str, fake_llama: FakeLlamaServer, name: str, include_usage: bool
) -> None:
    case = CASES[name]
    fake_llama.script(Scripted(case.chunks))
    request = chat_body(case, stream=True, **({"stream_options": {"include_usage": True}} if include_usage else {}))
    status, content_type, raw = await post_raw(gateway_url, request)
    assert (status, content_type) == (200, "text/event-stream"), raw[:500]
    payloads = sse_events(raw)
    assert payloads[-1] == b"[DONE]", "the stream ends with data: [DONE]"
    assert b"[DONE]" not in payloads[:-1]
    chunks = [strict_json(payload) for payload in payloads[:-1]]

    # The case happened: assemble the stream as a client would.
    if include_usage:
        *chunks_with_choices, usage_chunk = chunks
        assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] > 0
    else:
        chunks_with_choices = chunks
        assert all(chunk.get("usage") is None for chunk in chunks)
    assert all(len(chunk["choices"]) == 1 for chunk in chunks_with_choices)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks_with_choices]
    finishes = [chunk["choices"][0]["finish_reason"] for chunk in chunks_with_choices]
    assert finishes[:-1] == [None] * (len(finishes) - 1) and finishes[-1] == case.finish_reason
    text = "".join(delta.get("content") or "" for delta in deltas)
    calls: dict[int, list[str]] = {}
    for delta in deltas:
        for call in delta.get("tool_calls") or []:
            if call["index"] not in calls:
                calls[call["index"]] = [call["function"]["name"], ""]
            calls[call["index"]][1] += call["function"].get("arguments", "")
    assert (text or None, [(n, json.loads(a)) for _, (n, a) in sorted(calls.items())]) == (case.content, case.calls)

    assert_all_valid(CHAT_CHUNK, chunks)


async def test_stream_fault_event_matches_spec(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    """A backend fault after a call's fragments went out ends the stream with a `data: {"error": ...}` event."""
    pieces = split_text(hermes_call("get_weather", '{"city": "Paris"}'))
    fake_llama.script(Scripted(pieces, error_after=pieces.index("Paris")))
    request = {"model": HERMES_MODEL, "messages": ASK, "tools": TOOLS, "stream": True}
    status, content_type, raw = await post_raw(gateway_url, request)
    assert (status, content_type) == (200, "text/event-stream"), raw[:500]
    *chunks, last = [strict_json(payload) for payload in sse_events(raw)]
    assert set(last) == {"error"}, "the stream ends with the error event"
    assert any(delta.get("tool_calls") for chunk in chunks for delta in [chunk["choices"][0]["delta"]])
    openapi.assert_valid(ERROR, last)
    assert_all_valid(CHAT_CHUNK, chunks)


async def test_length_cut_call_stream_matches_spec(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    """A call the token limit cut: valid chunks, `finish_reason: "length"`, then `[DONE]`."""
    pieces = split_text(hermes_call("get_weather", '{"city": "Paris"}'))
    fake_llama.script(Scripted(pieces))
    request = {"model": HERMES_MODEL, "messages": ASK, "tools": TOOLS, "stream": True, "max_tokens": pieces.index("Paris")}
    status, content_type, raw = await post_raw(gateway_url, request)
    assert (status, content_type) == (200, "text/event-stream"), raw[:500]
    assert raw.rstrip().endswith(b"data: [DONE]")
    chunks = [strict_json(payload) for payload in sse_events(raw) if payload != b"[DONE]"]
    assert_all_valid(CHAT_CHUNK, chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["length"]


# --------------------------------------------------------------------------------------------------
# /v1/models
# --------------------------------------------------------------------------------------------------


async def test_models_list_matches_spec(gateway_url: str) -> None:
    status, content_type, raw = await get_raw(gateway_url, "/models")
    assert (status, content_type) == (200, "application/json"), raw[:500]
    body = strict_json(raw)
    assert sorted(model["id"] for model in body["data"]) == sorted([HERMES_MODEL, DEFAULT_MODEL])
    openapi.assert_valid(MODELS, body)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

GOOD = {"model": HERMES_MODEL, "messages": ASK}
ERRORS = {
    "unknown model": (404, {"model": "nope", "messages": ASK}, "model"),
    "unknown model, stream": (404, {"model": "nope", "messages": ASK, "stream": True}, "model"),
    "malformed JSON": (400, b'{"model": "x", "messages": [', None),
    "body not an object": (400, b"[1, 2]", None),
    "invalid field": (400, {**GOOD, "temperature": 9}, "temperature"),
    "missing field": (400, {"messages": ASK}, "model"),
    "invalid nested field": (400, {**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
}


@pytest.mark.parametrize("name", list(ERRORS))
async def test_request_errors_match_spec(gateway_url: str, name: str) -> None:
    expected_status, body, param = ERRORS[name]
    status, content_type, raw = await post_raw(gateway_url, body)
    assert (status, content_type) == (expected_status, "application/json"), raw[:500]
    error = strict_json(raw)
    assert error["error"]["param"] == param
    openapi.assert_valid(ERROR, error)


@pytest.mark.parametrize(
    ("method", "path", "expected_status"), [("GET", "/nope", 404), ("GET", "/chat/completions", 405)]
)
async def test_http_errors_match_spec(gateway_url: str, method: str, path: str, expected_status: int) -> None:
    async with aiohttp.ClientSession() as session, session.request(method, gateway_url + path) as response:
        status, content_type, raw = response.status, response.content_type, await response.read()
    assert (status, content_type) == (expected_status, "application/json"), raw[:500]
    openapi.assert_valid(ERROR, strict_json(raw))


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_backend_unreachable_matches_spec(stream: bool) -> None:
    backends, models = fake_routes(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    async with running_gateway(make_config(backends, models)) as url:
        status, content_type, raw = await post_raw(url, {**GOOD, "stream": stream})
    assert (status, content_type) == (502, "application/json"), raw[:500]
    error = strict_json(raw)
    assert error["error"]["code"] == "backend_unreachable"
    openapi.assert_valid(ERROR, error)
