"""Outputs real models write, beyond each format's textbook form: a call the token limit cut, ids the
model wrote itself, calls in a code fence, Functionary's `python` recipient, and the variants the
peers' own parser tests hold (vLLM's tests/tool_parsers/, llama.cpp's tests/test-chat.cpp).

Each is checked on the parser (whole, and split at every position) and, where it is end-to-end
behaviour, through the running gateway with the real `openai` SDK, streamed and not, agreeing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from adapters.formats import format_names, get_format
from adapters.formats.conversation import ToolCall, ToolSpec
from adapters.formats.events import (
    ParseEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)
from gateway.core.repair import CallRepair, json_completion
from tests.conftest import GEMMA3, QWEN25
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.ollama import Scripted as OllamaScript
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.support.responses import check_order, post, stream
from tests.test_chat_template import SPECIAL_TOKENS
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


# -- the variants real models write ----------------------------------------------------------------

C, S, E = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"
PARIS_ARGS = '{"city": "Paris"}'
HERMES_JSON = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
PYTHON_TOOL = ToolSpec("python", "Run Python code", {"type": "object", "properties": {"code": {"type": "string"}}})


@dataclass(frozen=True)
class Seen:
    """What a client gets: content, reasoning, and (id, name, arguments) per finished call."""

    content: str
    calls: tuple[tuple[str, str, str], ...]
    reasoning: str = ""
    failed: int = 0


def seen(format_name: str, chunks: list[str], tools: tuple[ToolSpec, ...], prompt: str = "") -> Seen:
    parser = get_format(format_name).new_parser(prompt, tools=tools)
    events: list[ParseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    starts = {e.index: e for e in events if isinstance(e, ToolCallStart)}
    return Seen(
        "".join(e.text for e in events if isinstance(e, TextDelta)),
        tuple((starts[e.index].id, starts[e.index].name, e.arguments) for e in events if isinstance(e, ToolCallEnd)),
        "".join(e.text for e in events if isinstance(e, ReasoningDelta)),
        sum(isinstance(e, ToolCallFailed) for e in events),
    )


ANY_ID = "*"  # a generated id: any, but the same in every split


def variant(format_name: str, name: str, text: str, content: str, calls: list[tuple[str, str, str]], reasoning: str = "",
            tools: tuple[ToolSpec, ...] = TOOLS) -> object:  # fmt: skip
    return pytest.param(format_name, text, tools, Seen(content, tuple(calls), reasoning), id=f"{format_name}-{name}")


VARIANTS = [
    # (4) ids the model wrote are the calls' ids
    variant("mistral", "list form with ids",
            '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1B2c3D4e"}, '
            '{"name": "get_time", "arguments": {}, "id": "Zz9Yy8Xx7"}]',
            "", [("a1B2c3D4e", "get_weather", PARIS_ARGS), ("Zz9Yy8Xx7", "get_time", "{}")]),
    variant("mistral", "list form, id first", '[TOOL_CALLS][{"id": "q1w2e3r4t", "name": "get_time", "arguments": {}}]',
            "", [("q1w2e3r4t", "get_time", "{}")]),
    variant("mistral", "v11 with [CALL_ID]", f"[TOOL_CALLS]get_weather[CALL_ID]k8J7h6G5f[ARGS]{PARIS_ARGS}[TOOL_CALLS]get_time[ARGS]{{}}",
            "", [("k8J7h6G5f", "get_weather", PARIS_ARGS), (ANY_ID, "get_time", "{}")]),
    variant("kimi_k2", "functions.NAME:IDX",
            "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:3<|tool_call_argument_begin|>"
            f"{PARIS_ARGS}<|tool_call_end|><|tool_calls_section_end|>",
            "", [("functions.get_weather:3", "get_weather", PARIS_ARGS)]),
    # (5) a fence that held only calls leaves nothing behind
    variant("hermes", "fenced tagged call with text around",
            f"Sure.\n```json\n<tool_call>\n{HERMES_JSON}\n</tool_call>\n```\nDone.", "Sure.\n\nDone.",
            [(ANY_ID, "get_weather", PARIS_ARGS)]),
    variant("default", "fenced call, no language",
            '```\n[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST]\n```', "", [(ANY_ID, "get_time", "{}")]),
    variant("mistral", "fenced v11 call", f"```\n[TOOL_CALLS]get_weather[ARGS]{PARIS_ARGS}\n```", "",
            [(ANY_ID, "get_weather", PARIS_ARGS)]),
    variant("hermes", "a code fence that holds no call stays", "Run:\n```python\nprint(1)\n```", "Run:\n```python\nprint(1)\n```", []),
    # (6) Functionary v3.2's python recipient
    variant("functionary_v3_2", "python code", 'python\nimport math\nprint(math.pi)\n>>>all\nDone.', "Done.",
            [(ANY_ID, "python", '{"code": "import math\\nprint(math.pi)"}')], tools=(*TOOLS, PYTHON_TOOL)),
    variant("functionary_v3_2", "python code at the end, after text", "all\nLet me run it.\n>>>python\n1 + 1\n", "Let me run it.",
            [(ANY_ID, "python", '{"code": "1 + 1"}')], tools=(*TOOLS, PYTHON_TOOL)),
    variant("functionary_v3_2", "python with JSON arguments", 'python\n{"code": "2 * 3"}', "",
            [(ANY_ID, "python", '{"code": "2 * 3"}')], tools=(*TOOLS, PYTHON_TOOL)),
    # (10) Granite
    variant("granite", "3.1 string prefix", f"<tool_call>[{HERMES_JSON}]", "", [(ANY_ID, "get_weather", PARIS_ARGS)]),
    variant("granite", "3.3 thinking", f"<think>The user wants Paris.</think><response>Checking.</response><|tool_call|>[{HERMES_JSON}]",
            "Checking.", [(ANY_ID, "get_weather", PARIS_ARGS)], reasoning="The user wants Paris."),
    variant("granite", "3.3 thinking, an answer", "<think>Easy.</think><response>It is sunny.</response>", "It is sunny.", [],
            reasoning="Easy."),
    # (10) DeepSeek R1 distills' spellings of the section opener (llama.cpp's list)
    *[variant("deepseek", f"opener {opener!r}", f"{opener}function{S}get_weather\n```json\n{PARIS_ARGS}\n```{E}<｜tool▁calls▁end｜>", "",
              [(ANY_ID, "get_weather", PARIS_ARGS)])
      for opener in ("<｜tool_calls_begin｜>", "<｜tool calls begin｜>", "<｜tool\\_calls\\_begin｜>", "<｜tool▁calls｜>")],
    variant("deepseek", "spelled opener, then the call token", f"Ok.<｜tool_calls_begin｜>{C}get_time{S}{{}}{E}<｜tool_calls_end｜>",
            "Ok.", [(ANY_ID, "get_time", "{}")]),
    variant("deepseek", "ended before the fence closes", f"<｜tool▁calls▁begin｜>{C}function{S}get_time\n```json\n{{}}\n", "",
            [(ANY_ID, "get_time", "{}")]),
    # (10) gpt-oss: a call addressed from the analysis channel
    variant("gpt_oss", "call from the analysis channel",
            "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>analysis to=functions.get_weather "
            f"<|constrain|>json<|message|>{PARIS_ARGS}<|call|>", "", [(ANY_ID, "get_weather", PARIS_ARGS)],
            reasoning="Need the weather."),
    # (10) Hermes-family lenient forms
    variant("hermes", "<function=NAME> tag", f"<function=get_weather>{PARIS_ARGS}</function>", "", [(ANY_ID, "get_weather", PARIS_ARGS)]),
    variant("hermes", "fenced JSON call", f"```json\n{HERMES_JSON}\n```", "", [(ANY_ID, "get_weather", PARIS_ARGS)]),
    variant("hermes", "bare call object", HERMES_JSON, "", [(ANY_ID, "get_weather", PARIS_ARGS)]),
    variant("hermes", "bare JSON naming no tool is text", '{"name": "Bob", "age": 3}', '{"name": "Bob", "age": 3}', []),
    variant("hermes", "fenced JSON naming no tool is text", '```json\n{"name": "Bob"}\n```', '```json\n{"name": "Bob"}\n```', []),
    variant("llama3_json", "fenced JSON call", '```json\n{"name": "get_time", "parameters": {}}\n```', "", [(ANY_ID, "get_time", "{}")]),
]


def _same(got: Seen, expected: Seen) -> bool:
    ids_match = all(e[0] in (ANY_ID, g[0]) for g, e in zip(got.calls, expected.calls, strict=False))
    return ids_match and (got.content, _unnamed(got.calls), got.reasoning, got.failed) == (
        expected.content, _unnamed(expected.calls), expected.reasoning, expected.failed)  # fmt: skip


def _unnamed(calls: tuple[tuple[str, str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name, arguments) for _, name, arguments in calls)


@pytest.mark.parametrize(("format_name", "text", "tools", "expected"), VARIANTS)
def test_variants_whole_and_split_at_every_position(format_name: str, text: str, tools: tuple[ToolSpec, ...], expected: Seen) -> None:
    whole = seen(format_name, [text], tools)
    assert _same(whole, expected), whole
    for cut in range(1, len(text)):
        assert _same(seen(format_name, [text[:cut], text[cut:]], tools), expected), f"split at {cut}"
    assert _same(seen(format_name, list(text), tools), expected), "one character at a time"


def test_python_recipient_without_a_python_tool_is_not_a_call() -> None:
    got = seen("functionary_v3_2", ["python\nprint(1)"], TOOLS)
    assert got.calls == () and "print(1)" in got.content


# -- through the gateway, streamed and not ---------------------------------------------------------

ASK_WEATHER: Any = [{"role": "user", "content": "Weather in Paris?"}]
EOG = ("</s>", "[EOS]", "<|eot_id|>", "<|end_of_text|>", "<|im_end|>", "<｜end▁of▁sentence｜>", "<|return|>")
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": {"type": "object", "properties": {}}}}
PYTHON = {"type": "function", "function": {"name": "python", "description": "Run Python code",
          "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}}
# fixture -> (what the model writes, the content and (id or ANY_ID, name, arguments) the client gets)
THROUGH_GATEWAY: dict[str, tuple[str, str | None, list[tuple[str, str, str]]]] = {
    "mistralai-Mistral-Nemo-Instruct-2407": (
        f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {PARIS_ARGS}, "id": "a1B2c3D4e"}}]', None,
        [("a1B2c3D4e", "get_weather", PARIS_ARGS)]),
    "Mistral-Small-3.2-24B-Instruct-2506": (
        f"[TOOL_CALLS]get_weather[CALL_ID]k8J7h6G5f[ARGS]{PARIS_ARGS}", None, [("k8J7h6G5f", "get_weather", PARIS_ARGS)]),
    "Kimi-K2-Instruct": (
        ("<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
         f"{PARIS_ARGS}<|tool_call_end|><|tool_calls_section_end|>"), None, [("functions.get_weather:0", "get_weather", PARIS_ARGS)]),
    "meetkai-functionary-medium-v3.2": ("all\nRunning it.\n>>>python\nprint(6 * 7)\n", "Running it.",
                                        [(ANY_ID, "python", '{"code": "print(6 * 7)"}')]),
    "ibm-granite-granite-3.3-2B-Instruct": (f"<think>Paris.</think><response>Checking.</response><tool_call>[{HERMES_JSON}]",
                                            "Checking.", [(ANY_ID, "get_weather", PARIS_ARGS)]),
    "Qwen-Qwen2.5-7B-Instruct": (f"Sure.\n```json\n<tool_call>\n{HERMES_JSON}\n</tool_call>\n```\n<function=get_time>{{}}</function>",
                                 "Sure.", [(ANY_ID, "get_weather", PARIS_ARGS), (ANY_ID, "get_time", "{}")]),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": (f"```json\n{HERMES_JSON}\n```", None, [(ANY_ID, "get_weather", PARIS_ARGS)]),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": (
        f"Fine.</think>\n\n<｜tool calls begin｜>function{S}get_weather\n```json\n{PARIS_ARGS}\n```{E}<｜tool calls end｜>",
        None, [(ANY_ID, "get_weather", PARIS_ARGS)]),
    "openai-gpt-oss-120b": (
        ("<|channel|>analysis<|message|>Weather.<|end|><|start|>assistant<|channel|>analysis to=functions.get_weather "
         f"<|constrain|>json<|message|>{PARIS_ARGS}<|call|>"), None, [(ANY_ID, "get_weather", PARIS_ARGS)]),
}


@pytest.fixture
async def fake_plain() -> AsyncIterator[FakeLlamaServer]:
    server = FakeLlamaServer(bos_token="", eos_token="<eos>", eog_tokens=EOG)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sdk(fake_plain: FakeLlamaServer) -> AsyncIterator[AsyncOpenAI]:
    backends = [{"name": "fake", "type": "llamacpp", "url": fake_plain.url}]
    models = [
        {"name": fixture, "backend": "fake", "tool_format": "auto", "chat_template": str(TEMPLATES / f"{fixture}.jinja"),
         "bos_token": SPECIAL_TOKENS[fixture][0], "eos_token": SPECIAL_TOKENS[fixture][1]}
        for fixture in THROUGH_GATEWAY
    ]  # fmt: skip
    async with (
        running_gateway(make_config(backends, models)) as url,
        AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0, timeout=30) as client,
    ):
        yield client


async def _streamed(sdk: AsyncOpenAI, **request: Any) -> tuple[str | None, list[tuple[str, str, str]], str | None]:
    content: list[str] = []
    calls: dict[int, list[str]] = {}
    finish = None
    async for chunk in await sdk.chat.completions.create(**request, stream=True):
        delta = chunk.choices[0].delta
        content += [delta.content] if delta.content else []
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, ["", "", ""])
            entry[0] += call.id or ""
            entry[1] += call.function.name or "" if call.function else ""
            entry[2] += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    return "".join(content) or None, [(i, n, a) for i, n, a in calls.values()], finish


@pytest.mark.parametrize("fixture", list(THROUGH_GATEWAY))
async def test_variants_through_the_gateway(sdk: AsyncOpenAI, fake_plain: FakeLlamaServer, fixture: str) -> None:
    output, content, calls = THROUGH_GATEWAY[fixture]
    request: dict[str, Any] = {"model": fixture, "messages": [{"role": "user", "content": "Weather in Paris?"}],
                               "tools": [WEATHER_TOOL, TIME_TOOL, PYTHON]}  # fmt: skip
    pieces = split_text(output)
    fake_plain.script(Scripted(pieces), Scripted(pieces))
    whole = await sdk.chat.completions.create(**request)
    message = whole.choices[0].message
    collected = (message.content, [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []])
    streamed = await _streamed(sdk, **request)
    # Ids the model wrote, exactly; generated ids differ per request.
    masked = [(c[0] if wanted == ANY_ID else wanted, *c[1:]) for c, (wanted, _, _) in zip(collected[1], calls, strict=True)]
    assert (collected[0], masked) == (content, [(got[0], *want[1:]) for got, want in zip(collected[1], calls, strict=True)])
    assert (streamed[0], [c[1:] for c in streamed[1]], streamed[2]) == (
        collected[0], [c[1:] for c in collected[1]], whole.choices[0].finish_reason), "stream and non-stream agree"
    assert [c[0] for c in streamed[1] if c[0] in [w for w, _, _ in calls]] == [w for w, _, _ in calls if w != ANY_ID]
    assert whole.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("fixture", ["mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506", "Kimi-K2-Instruct"])
async def test_model_written_ids_come_back_into_the_history(sdk: AsyncOpenAI, fake_plain: FakeLlamaServer, fixture: str) -> None:
    output, _, [(call_id, _, _)] = THROUGH_GATEWAY[fixture]
    fake_plain.script(Scripted(split_text(output)), Scripted(["Sunny."]))
    ask: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await sdk.chat.completions.create(model=fixture, messages=ask, tools=[WEATHER_TOOL])
    [call] = first.choices[0].message.tool_calls or []
    assert call.id == call_id
    history = [*ask, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]  # fmt: skip
    second = await sdk.chat.completions.create(model=fixture, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Sunny."
    prompt = fake_plain.requests[-1]["prompt"]
    assert prompt.count(call_id) >= 1 and "sunny, 21C" in prompt


# -- never fail a turn: a call broken after its name is ended with valid JSON ------------------------

# format -> a call that breaks after its name (a stray comma, a missing value, a wandering model)
BROKEN = {
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris",}}\n</tool_call>',
    "default": '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Par\\x"}}[END_TOOL_REQUEST]',
    "mistral": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris" "days": 3}',
    "qwen3_coder": "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<oops>\n</tool_call>",
    "gemma4": '<|tool_call>call:get_weather{city:<|"|>Paris<|"|> days}<tool_call|>',
    "pythonic": '[get_weather(city="Paris", 3 4)]',
    "kimi_k2": ("<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
                '{"city": "Paris", }<|tool_call_end|><|tool_calls_section_end|>'),
}


def repaired(format_name: str, chunks: list[str]) -> tuple[str, list[tuple[str, str]], int]:
    parser = get_format(format_name).new_parser(tools=TOOLS, repairing=True)
    repair = CallRepair(enabled=True, format_name=format_name)
    events: list[ParseEvent] = []
    for chunk in chunks:
        events += repair.check(parser.feed(chunk))
    events += repair.check(parser.close())
    assert not any(isinstance(e, ToolCallFailed) for e in events), "no call fails"
    calls, _ = _cut_outcome(events)  # checks that the fragments add up to each call's arguments
    return "".join(e.text for e in events if isinstance(e, TextDelta)), [(n, a) for n, a, _ in calls], repair.repaired


@pytest.mark.parametrize("format_name", list(BROKEN))
def test_a_broken_call_is_ended_with_valid_json_at_every_split(format_name: str) -> None:
    text = BROKEN[format_name] + "\nAnything else?"
    for chunks in ([text], list(text), *([text[:cut], text[cut:]] for cut in range(1, len(text)))):
        content, calls, count = repaired(format_name, chunks)
        [(name, arguments)] = calls
        assert name == "get_weather" and isinstance(json.loads(arguments), dict), arguments
        assert count == 1
        assert content in ("Anything else?", "\nAnything else?".lstrip()), content


def test_json_completion_keeps_the_prefix() -> None:
    for prefix, whole in [('{"a": "x', '{"a": "x"}'), ('{"a": [1, {"b": tr', '{"a": [1, {"b": true}]}'), ('{"a"', '{"a": null}'),
                          ('{"a": "\\u00', '{"a": "\\u0000"}'), ('{"a": 1}', '{"a": 1}')]:  # fmt: skip
        suffix = json_completion(prefix)
        assert suffix is not None and prefix + suffix == whole
    assert json_completion('{"a": 1}}') is None and json_completion("[1") is None


async def test_repair_on_three_backends_counted_in_metrics(fake_llama: FakeLlamaServer) -> None:
    broken = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris",}}\n</tool_call>'
    broken_default = '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris" x}}[END_TOOL_REQUEST]'
    async with (
        FakeVllmServer(model="Qwen/Qwen2.5-7B-Instruct", eos_token="<|im_end|>", max_model_len=32768) as vllm,
        FakeOllama(models=[FakeModel(name="gemma3:270m", context_length=32768)]) as ollama,
    ):
        backends = [{"name": "llama", "type": "llamacpp", "url": fake_llama.url},
                    {"name": "vllm", "type": "vllm", "url": vllm.url},
                    {"name": "ollama", "type": "ollama", "url": ollama.url}]  # fmt: skip
        models = [
            {"name": "on-llama", "backend": "llama", "tool_format": "hermes", "chat_template": str(QWEN25)},
            {"name": "on-vllm", "backend": "vllm", "upstream_model": "Qwen/Qwen2.5-7B-Instruct", "tool_format": "hermes",
             "chat_template": str(QWEN25)},
            {"name": "on-ollama", "backend": "ollama", "upstream_model": "gemma3:270m", "tool_format": "default",
             "chat_template": str(GEMMA3), "bos_token": "<bos>", "eos_token": "<eos>"},
        ]  # fmt: skip
        scripts = {
            "on-llama": lambda: fake_llama.script(Scripted(split_text(broken))),
            "on-vllm": lambda: vllm.script(VllmScript(split_text(broken))),
            "on-ollama": lambda: ollama.script(OllamaScript(split_text(broken_default))),
        }
        async with running_gateway(make_config(backends, models)) as url:
            async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
                for model, script in scripts.items():
                    script()
                    whole = await client.chat.completions.create(model=model, messages=ASK_WEATHER, tools=[WEATHER_TOOL])
                    script()
                    streamed = await _streamed(client, model=model, messages=ASK_WEATHER, tools=[WEATHER_TOOL])
                    [call] = whole.choices[0].message.tool_calls or []
                    assert json.loads(call.function.arguments)["city"] == "Paris", model
                    assert whole.choices[0].finish_reason == streamed[2] == "tool_calls"
                    assert [c[1:] for c in streamed[1]] == [(call.function.name, call.function.arguments)]
            async with aiohttp.ClientSession() as session, session.get(url.removesuffix("/v1") + "/metrics") as reply:
                metrics = await reply.text()
        assert 'toolwire_repaired_tool_calls_total{format="hermes",how="closed"} 4.0' in metrics
        # Only brackets were missing: closed, on every backend (no second generation).
        assert 'toolwire_repaired_tool_calls_total{format="default",how="closed"} 2.0' in metrics


async def test_a_call_left_unfinished_at_the_end_is_repaired(client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    """The model stops (EOS, not the token limit) inside a call: a finished call, not an error event."""
    output = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'
    pieces = split_text(output)
    # Each reply is continued under a grammar (a second generation): the model finishes the city.
    fake_llama.script(Scripted(pieces), 'is"}}', Scripted(pieces), 'is"}}')
    tools: Any = [WEATHER_TOOL]
    whole = await client.chat.completions.create(model="qwen2.5-7b-instruct", messages=ASK_WEATHER, tools=tools)
    streamed = await _streamed(client, model="qwen2.5-7b-instruct", messages=ASK_WEATHER, tools=tools)
    [call] = whole.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == ("Let me check.", "tool_calls")
    assert (streamed[0], [c[1:] for c in streamed[1]], streamed[2]) == (
        "Let me check.", [("get_weather", call.function.arguments)], "tool_calls")  # fmt: skip
