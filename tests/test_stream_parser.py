"""The shared incremental parser, driven directly: every output split at every position must
parse to the same result, and that result must be the right one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from adapters.formats import get_format
from adapters.formats.events import (
    ParseEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)


@dataclass
class Outcome:
    content: str = ""
    calls: list[tuple[str, dict]] = field(default_factory=list)
    failed: int = 0


def collect(events: list[ParseEvent]) -> Outcome:
    """What a client ends up with, checking the event stream's own rules on the way."""
    outcome = Outcome()
    started: dict[int, tuple[str, list[str]]] = {}
    ended: dict[int, str] = {}
    for event in events:
        if isinstance(event, TextDelta):
            assert event.text, "no empty text events"
            outcome.content += event.text
        elif isinstance(event, ToolCallStart):
            assert event.index == len(started), "indexes count from 0 in announcement order"
            assert event.id and event.id not in {i for i, _ in started.values()}
            # The name goes first in the list; argument fragments follow it.
            started[event.index] = (event.id, [event.name])
        elif isinstance(event, ToolCallArgs):
            assert event.index in started and event.index not in ended
            started[event.index][1].append(event.text)
        elif isinstance(event, ToolCallEnd):
            streamed = "".join(started[event.index][1][1:])
            assert streamed == event.arguments, "streamed fragments add up to the final arguments"
            ended[event.index] = event.arguments
        elif isinstance(event, ToolCallFailed):
            outcome.failed += 1
            started.pop(event.index)
            outcome.content += event.raw
    for index, arguments in sorted(ended.items()):
        outcome.calls.append((started[index][1][0], json.loads(arguments)))
    return outcome


def parse(format_name: str, chunks: list[str]) -> Outcome:
    parser = get_format(format_name).new_parser()
    events: list[ParseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    outcome = collect(events)
    assert parser.completed_calls == len(outcome.calls)
    return outcome


HERMES = [
    ("plain text", "Hello! How can I help?", Outcome("Hello! How can I help?")),
    (
        "single call",
        '<tool_call>\n{"name": "get_delivery_date", "arguments": {"order_id": "123"}}\n</tool_call>',
        Outcome("", [("get_delivery_date", {"order_id": "123"})]),
    ),
    (
        "parallel calls with text around",
        'Checking both.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {"x": [1, 2.5e3, true, null, {"y": "z"}]}}\n</tool_call>\nDone.',
        Outcome("Checking both.\n\n\nDone.", [("a", {}), ("b", {"x": [1, 2.5e3, True, None, {"y": "z"}]})]),
    ),
    (
        "unicode and escapes",
        '<tool_call>{"name": "say", "arguments": {"text": "naïve \\"quoted\\" \\\\ back\\nslash 日本語 \\ud83d\\ude00"}}</tool_call>',
        Outcome("", [("say", {"text": 'naïve "quoted" \\ back\nslash 日本語 😀'})]),
    ),
    (
        "raw newline inside a string is repaired",
        '<tool_call>{"name": "write", "arguments": {"body": "line1\nline2\ttab"}}</tool_call>',
        Outcome("", [("write", {"body": "line1\nline2\ttab"})]),
    ),
    (
        "arguments before name",
        '<tool_call>{"arguments": {"q": "x"}, "name": "search"}</tool_call>',
        Outcome("", [("search", {"q": "x"})]),
    ),
    (
        "arguments as a JSON string are decoded once",
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>',
        Outcome("", [("f", {"a": 1})]),
    ),
    ("no arguments", '<tool_call>{"name": "now"}</tool_call>', Outcome("", [("now", {})])),
    ("null arguments", '<tool_call>{"name": "now", "arguments": null}</tool_call>', Outcome("", [("now", {})])),
    (
        "two calls in one block",
        '<tool_call>\n{"name": "a", "arguments": {}}\n{"name": "b", "arguments": {"k": 1}}\n</tool_call>',
        Outcome("", [("a", {}), ("b", {"k": 1})]),
    ),
    (
        "missing close marker at the end",
        '<tool_call>{"name": "a", "arguments": {"k": 1}}',
        Outcome("", [("a", {"k": 1})]),
    ),
    (
        "malformed call before its name stays text",
        '<tool_call>\n["name": "get_delivery_date", function: "date"]\n</tool_call>',
        Outcome('<tool_call>\n["name": "get_delivery_date", function: "date"]\n</tool_call>'),
    ),
    (
        "malformed arguments after the name fail the call",
        '<tool_call>{"name": "x", "arguments": {"a": 1,}}</tool_call>',
        Outcome('<tool_call>{"name": "x", "arguments": {"a": 1,}}</tool_call>', failed=1),
    ),
    (
        "a call that breaks after its name keeps the text around it in order",
        'Checking.\n<tool_call>{"name": "x", "arguments": {"a": 1,}}</tool_call>\nDone.',
        Outcome('Checking.\n<tool_call>{"name": "x", "arguments": {"a": 1,}}</tool_call>\nDone.', failed=1),
    ),
    (
        "truncated call",
        '<tool_call>{"name": "x", "arguments": {"a": "unfinish',
        Outcome('<tool_call>{"name": "x", "arguments": {"a": "unfinish', failed=1),
    ),
    ("truncated before the name", '<tool_call>{"na', Outcome('<tool_call>{"na')),
    ("marker prefix at the end is text", "see <tool_ca", Outcome("see <tool_ca")),
    ("a marker-like word", "use <tool> tags", Outcome("use <tool> tags")),
    (
        "valid call after a malformed one",
        '<tool_call>oops</tool_call>\n<tool_call>{"name": "ok", "arguments": {}}</tool_call>',
        Outcome("<tool_call>oops</tool_call>", [("ok", {})]),
    ),
    (
        "a call with no name",
        '<tool_call>{"arguments": {}}</tool_call>',
        Outcome('<tool_call>{"arguments": {}}</tool_call>'),
    ),
    (
        "the call's name is not a string",
        '<tool_call>{"name": 5, "arguments": {}}</tool_call>',
        Outcome('<tool_call>{"name": 5, "arguments": {}}</tool_call>'),
    ),
]

DEFAULT = [
    (
        "LM Studio example",
        '[TOOL_REQUEST]{"name": "get_delivery_date", "arguments": {"order_id": "123"}}[END_TOOL_REQUEST]',
        Outcome("", [("get_delivery_date", {"order_id": "123"})]),
    ),
    (
        "two requests",
        '[TOOL_REQUEST]{"name": "send_email", "arguments": {"to": "John"}}[END_TOOL_REQUEST]\n'
        '[TOOL_REQUEST]{"name": "open_browser", "arguments": {}}[END_TOOL_REQUEST]',
        Outcome("", [("send_email", {"to": "John"}), ("open_browser", {})]),
    ),
    ("bracket text", "[TOOL is not a marker] [END]", Outcome("[TOOL is not a marker] [END]")),
]


def _cases():
    for name, text, expected in HERMES:
        yield pytest.param("hermes", text, expected, id=f"hermes-{name}")
    for name, text, expected in DEFAULT:
        yield pytest.param("default", text, expected, id=f"default-{name}")


@pytest.mark.parametrize(("format_name", "text", "expected"), list(_cases()))
def test_whole_and_split_at_every_position(format_name: str, text: str, expected: Outcome) -> None:
    assert parse(format_name, [text]) == expected
    for cut in range(1, len(text)):
        assert parse(format_name, [text[:cut], text[cut:]]) == expected, f"split at {cut}"
    assert parse(format_name, list(text)) == expected, "one character at a time"


def test_arguments_stream_while_written() -> None:
    """A long argument arrives in many fragments, not in one piece at the end."""
    parser = get_format("hermes").new_parser()
    parser.feed('<tool_call>{"name": "write", "arguments": {"body": "')
    fragments = []
    for _ in range(50):
        events = parser.feed("x" * 100)
        fragments += [e.text for e in events if isinstance(e, ToolCallArgs)]
    assert len(fragments) == 50 and all(f == "x" * 100 for f in fragments)


def test_name_is_announced_before_arguments_finish() -> None:
    parser = get_format("hermes").new_parser()
    events = parser.feed('<tool_call>{"name": "write", "arguments": {"body": "abc')
    assert [type(e) for e in events] == [ToolCallStart, ToolCallArgs]
    assert events[0].name == "write" and events[1].text == '{"body": "abc'


def reasoning_of(format_name: str, chunks: list[str], prompt: str = "", parse_calls: bool = True) -> tuple[str, Outcome]:
    parser = get_format(format_name).new_parser(prompt, parse_calls=parse_calls)
    events: list[ParseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return reasoning, collect([e for e in events if not isinstance(e, ReasoningDelta)])


REASONING_CASES = [
    (
        "think then call; a call drafted inside the thinking is not a call",
        '<think>\nMaybe <tool_call>{"name": "draft", "arguments": {}}</tool_call>?\n</think>\n\n'
        '<tool_call>\n{"name": "real", "arguments": {"a": 1}}\n</tool_call>',
        "",
        ('Maybe <tool_call>{"name": "draft", "arguments": {}}</tool_call>?', Outcome("", [("real", {"a": 1})])),
    ),
    (
        "forced-open think from the prompt",
        "I should answer.\n</think>\n\nHello!",
        "<|im_start|>assistant\n<think>\n",
        ("I should answer.", Outcome("Hello!")),
    ),
    ("no reasoning", "Hello!", "", ("", Outcome("Hello!"))),
]


@pytest.mark.parametrize(("name", "text", "prompt", "expected"), REASONING_CASES, ids=[c[0] for c in REASONING_CASES])
def test_reasoning_is_split_off_first(name: str, text: str, prompt: str, expected: tuple[str, Outcome]) -> None:
    for cut in range(len(text) + 1):
        assert reasoning_of("hermes", [text[:cut], text[cut:]], prompt) == expected, f"split at {cut}"


def test_reasoning_is_split_without_tools_and_calls_stay_text() -> None:
    text = '<think>hm</think>\n<tool_call>{"name": "x", "arguments": {}}</tool_call>'
    reasoning, outcome = reasoning_of("hermes", [text], parse_calls=False)
    assert reasoning == "hm"
    assert outcome == Outcome('<tool_call>{"name": "x", "arguments": {}}</tool_call>')
