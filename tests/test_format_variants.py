"""Outputs real models write, beyond each format's textbook form: a call the token limit cut, ids the
model wrote itself, calls in a code fence, Functionary's `python` recipient, and the variants the
peers' own parser tests hold (vLLM's tests/tool_parsers/, llama.cpp's tests/test-chat.cpp).

Each is checked on the parser (whole, and split at every position) and, where it is end-to-end
behaviour, through the running gateway with the real `openai` SDK, streamed and not, agreeing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI

from adapters.formats import format_names, get_format
from adapters.formats.conversation import ToolCall
from adapters.formats.events import (
    ParseEvent,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.responses import check_order, post, stream
from tests.test_format_xml_pythonic import TOOLS

# -- a call cut by the token limit -------------------------------------------------------------


def _events(format_name: str, chunks: list[str], *, cut: bool) -> list[ParseEvent]:
    parser = get_format(format_name).new_parser(tools=TOOLS)
    events: list[ParseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close(cut=cut)


def _cut_outcome(events: list[ParseEvent]) -> tuple[list[tuple[str, str, bool]], int]:
    """(name, arguments, truncated) per call, and the failed calls; streamed fragments must add up."""
    names: dict[int, str] = {}
    streamed: dict[int, str] = {}
    calls = []
    failed = 0
    for event in events:
        if isinstance(event, ToolCallStart):
            names[event.index], streamed[event.index] = event.name, ""
        elif isinstance(event, ToolCallArgs):
            streamed[event.index] += event.text
        elif isinstance(event, ToolCallEnd):
            assert streamed[event.index] == event.arguments, "the fragments add up to the call's arguments"
            calls.append((names[event.index], event.arguments, event.truncated))
        elif isinstance(event, ToolCallFailed):
            failed += 1
    return calls, failed


@pytest.mark.parametrize("format_name", format_names())
def test_a_call_cut_after_its_name_stays_a_call_as_written(format_name: str) -> None:
    """At every cut of a written call: once the call is announced, the cut leaves it a call whose
    arguments are the text written so far (never a failure); before that, no call at all."""
    tool_format = get_format(format_name)
    written = tool_format.write_call(ToolCall("call_1", "get_weather", json.dumps({"city": "Paris", "days": 3})))
    announced_at = None
    for end in range(1, len(written)):
        events = _events(format_name, [written[:end]], cut=True)
        calls, failed = _cut_outcome(events)
        assert failed == 0, f"a cut is never a malformed call ({written[:end]!r})"
        if any(isinstance(e, ToolCallStart) for e in events):
            announced_at = end if announced_at is None else announced_at
            [(name, _, truncated)] = calls
            assert name == "get_weather"
            if truncated:
                # Split anywhere, the same call and text.
                assert _cut_outcome(_events(format_name, list(written[:end]), cut=True))[0] == calls
        else:
            assert announced_at is None, "once announced, a call stays a call"
            assert calls == []
    assert announced_at is not None


@pytest.mark.parametrize("format_name", ["hermes", "default", "mistral", "qwen3_coder", "pythonic", "kimi_k2"])
def test_without_a_cut_an_unfinished_call_is_not_a_truncated_call(format_name: str) -> None:
    written = get_format(format_name).write_call(ToolCall("call_1", "get_weather", '{"city": "Paris"}'))
    calls, _ = _cut_outcome(_events(format_name, [written[: written.index("Paris") + 2]], cut=False))
    assert not any(truncated for _, _, truncated in calls)


HERMES_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
RESPONSES_ASK = {
    "model": "qwen2.5-7b-instruct",
    "input": "Weather in Paris?",
    "tools": [{"type": "function", "name": "get_weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
}  # fmt: skip


async def test_responses_length_cut_call_is_an_incomplete_function_call(gateway_url: str, fake_llama: FakeLlamaServer) -> None:
    pieces = split_text(HERMES_CALL)
    cut = pieces.index("Paris")
    fake_llama.script(Scripted(pieces), Scripted(pieces))
    ask = {**RESPONSES_ASK, "max_output_tokens": cut}
    status, whole = await post(gateway_url, ask)
    assert status == 200
    assert whole["status"] == "incomplete" and whole["incomplete_details"] == {"reason": "max_output_tokens"}
    [item] = whole["output"]
    assert (item["type"], item["name"], item["arguments"], item["status"]) == ("function_call", "get_weather", '{"city": "', "incomplete")
    events = await stream(gateway_url, ask)
    final = check_order(events)
    assert events[-1]["type"] == "response.incomplete"
    assert [(i["type"], i["arguments"], i["status"]) for i in final["output"]] == [("function_call", '{"city": "', "incomplete")]


async def test_chat_length_cut_stream_equals_non_stream(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    output = "Let me check.\n" + HERMES_CALL.replace("}}", "}}\n</tool_call>\n<tool_call>\n" + '{"name": "get_weather", "arguments": {"city": "Rome"}}', 1)
    pieces = split_text(output)
    cut = pieces.index("Rome") + 1  # inside the second call's string
    fake_llama.script(Scripted(pieces), Scripted(pieces))
    messages = [{"role": "user", "content": "Weather?"}]
    tools: Any = [{"type": "function", "function": {k: v for k, v in RESPONSES_ASK["tools"][0].items() if k != "type"}}]
    whole = await client.chat.completions.create(model="qwen2.5-7b-instruct", messages=messages, tools=tools, max_tokens=cut)
    message = whole.choices[0].message
    collected = (message.content, [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []])
    assert whole.choices[0].finish_reason == "length"
    assert collected[0] == "Let me check."
    assert collected[1][0][2] == '{"city": "Paris"}'
    assert collected[1][1][2] == '{"city": "Rome'
    chunks = [c async for c in await client.chat.completions.create(
        model="qwen2.5-7b-instruct", messages=messages, tools=tools, max_tokens=cut, stream=True)]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, ["", "", ""])
            entry[0] += delta.id or ""
            entry[1] += delta.function.name or "" if delta.function else ""
            entry[2] += delta.function.arguments or "" if delta.function else ""
    assert content == collected[0]
    assert [(n, a) for _, n, a in calls.values()] == [(n, a) for _, n, a in collected[1]]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
