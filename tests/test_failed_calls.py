"""A call the parser gives up on, in a collected answer: its events give way to the text the model
wrote for it, in its place (gateway/api/failed_calls.py), on the Messages surface end to end too."""

from __future__ import annotations

import pytest
from anthropic import APIStatusError, AsyncAnthropic

from adapters.formats import events as ev
from gateway.api.failed_calls import FailedCallsAsText
from tests.conftest import fake_routes
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import make_config, running_gateway


def fed(events: list[ev.ParseEvent]) -> list[ev.ParseEvent]:
    calls_as_text = FailedCallsAsText[ev.ParseEvent]()
    out = [ready for event in events for ready in calls_as_text.feed(event)]
    return out + calls_as_text.flush()


def test_events_outside_calls_pass_at_once() -> None:
    calls_as_text = FailedCallsAsText[ev.ParseEvent]()
    assert calls_as_text.feed(ev.TextDelta("a")) == [ev.TextDelta("a")]
    assert calls_as_text.feed(ev.ReasoningDelta("r")) == [ev.ReasoningDelta("r")]


def test_a_call_is_held_until_it_ends_then_passes_whole() -> None:
    calls_as_text = FailedCallsAsText[ev.ParseEvent]()
    start, args, end = ev.ToolCallStart(0, "call_1", "f"), ev.ToolCallArgs(0, "{}"), ev.ToolCallEnd(0, "{}")
    assert calls_as_text.feed(start) == [] and calls_as_text.feed(args) == []
    assert calls_as_text.feed(end) == [start, args, end]


def test_a_failed_call_becomes_its_text_in_its_place() -> None:
    good = [ev.ToolCallStart(1, "call_2", "g"), ev.ToolCallEnd(1, "{}")]
    events = [ev.TextDelta("Checking.\n"), ev.ToolCallStart(0, "call_1", "f"), ev.ToolCallArgs(0, '{"a": '),
              *good, ev.ToolCallFailed(0, '<tool_call>{"name": "f", "arguments": {"a": }', "bad JSON"), ev.TextDelta("Done.")]
    assert fed(events) == [ev.TextDelta("Checking.\n"), ev.TextDelta('<tool_call>{"name": "f", "arguments": {"a": }'), *good,
                           ev.TextDelta("Done.")]


def test_a_failure_for_a_call_never_announced_is_text_where_it_comes() -> None:
    assert fed([ev.TextDelta("a"), ev.ToolCallFailed(3, "raw", "why")]) == [ev.TextDelta("a"), ev.TextDelta("raw")]


def test_a_call_left_open_comes_out_at_the_end() -> None:
    start = ev.ToolCallStart(0, "call_1", "f")
    assert fed([ev.TextDelta("a"), start]) == [ev.TextDelta("a"), start]


BROKEN = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris",}}\n</tool_call>'
WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


async def test_messages_without_repair_return_a_broken_call_as_text(fake_llama: FakeLlamaServer) -> None:
    backends, models = fake_routes(fake_llama.url)
    config = make_config(backends, [{**model, "repair": False} for model in models])
    fake_llama.script(*(Scripted(split_text("Checking.\n" + BROKEN), delay=0.002) for _ in range(2)))
    params = {"model": "qwen2.5-7b-instruct", "max_tokens": 64, "tools": [WEATHER],
              "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    async with running_gateway(config) as url, AsyncAnthropic(
        base_url=url.removesuffix("/v1"), api_key="k", max_retries=0, timeout=30
    ) as claude:
        whole = await claude.messages.create(**params)  # type: ignore[call-overload]
        assert [block.type for block in whole.content] == ["text"]  # one block: the text the call interrupted, rejoined
        text = whole.content[0].text  # type: ignore[union-attr]
        assert text.startswith("Checking.") and '"city": "Paris",' in text
        assert whole.stop_reason == "end_turn"
        with pytest.raises(APIStatusError, match="broke off"):  # streamed, the fragments were out: the stream ends in an error
            async for _ in await claude.messages.create(stream=True, **params):  # type: ignore[call-overload]
                pass
