"""The "name, then a JSON object of arguments" formats (Mistral, DeepSeek, gpt-oss, Functionary v3.2)
on the shared name-args scanner: history rendered by each family's real templates, a corpus of model
outputs split at every position, and the running gateway with the real `openai` SDK."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from openai import AsyncOpenAI

from adapters.formats import get_format
from adapters.formats.conversation import Conversation, Message, ToolCall, ToolSpec
from adapters.formats.events import (
    ParseEvent,
    ReasoningDelta,
    ToolCallArgs,
    ToolCallStart,
)
from adapters.formats.mistral import mistral_id
from gateway.core.chat_template import load_template_file
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.test_stream_parser import Outcome, collect

WEATHER = ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
TIME = ToolSpec("get_time", "The current time")
TOOLS = (WEATHER, TIME)

# Fullwidth bars and U+2581, exactly as in the DeepSeek templates.
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
DS_BOS, DS_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
R1_PROMPT = "<｜Assistant｜><think>\n"
FUNCTIONARY_PROMPT = "<|start_header_id|>assistant<|end_header_id|>\n\n>>>"

# Special tokens per family, with (bos, eos), as the fake llama-server should treat them.
FAMILY_TOKENS = {
    "mistral": (("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]", "[INST]", "[/INST]",
                 "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"), "<s>", "</s>"),
    "deepseek": ((CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP, "<think>", "</think>", "<｜User｜>", "<｜Assistant｜>"),
                 DS_BOS, DS_EOS),
    "gpt_oss": (("<|start|>", "<|channel|>", "<|message|>", "<|constrain|>", "<|end|>", "<|call|>"),
                "<|startoftext|>", "<|return|>"),
    "functionary_v3_2": (("<|start_header_id|>", "<|end_header_id|>"), "<|begin_of_text|>", "<|eot_id|>"),
}


# --- (a) history through the real templates --------------------------------------------------------

HISTORY = Conversation(
    messages=(
        Message("user", "Weather in Paris and the time?"),
        Message("assistant", "", tool_calls=(ToolCall("call_abc123xyz789", "get_weather", '{"city": "Paris"}'),
                                             ToolCall("call_2", "get_time", "{}"))),
        Message("tool", "sunny", tool_call_id="call_abc123xyz789"),
        Message("tool", "noon", tool_call_id="call_2"),
    ),
    tools=TOOLS,
)
ID1, ID2 = mistral_id("call_abc123xyz789"), mistral_id("call_2")

# template -> (format, bos, eos, texts the rendered history must contain, written as the template teaches)
ROUND_TRIP = {
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("mistral", "<s>", "</s>", [
        (f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {{"city": "Paris"}}, "id": "{ID1}"}}, '
        f'{{"name": "get_time", "arguments": {{}}, "id": "{ID2}"}}]</s>'),
        f'[TOOL_RESULTS]{{"content": sunny, "call_id": "{ID1}"}}[/TOOL_RESULTS]',
        f'[TOOL_RESULTS]{{"content": noon, "call_id": "{ID2}"}}[/TOOL_RESULTS]',
        '[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather"']),
    "tool_chat_template_mistral3.jinja": ("mistral", "<s>", "</s>", [
        f'[TOOL_CALLS] [{{"name": "get_weather", "arguments": {{"city": "Paris"}}, "id": "{ID1}"}}',
        f'[TOOL_RESULTS] {{"content": sunny, "call_id": "{ID1}"}}[/TOOL_RESULTS]',
        "[AVAILABLE_TOOLS] ["]),
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": ("mistral", "<s>", "</s>", [
        f'[TOOL_CALLS]get_weather[CALL_ID]{ID1}[ARGS]{{"city": "Paris"}}[TOOL_CALLS]get_time[CALL_ID]{ID2}[ARGS]{{}}</s>',
        f"[TOOL_RESULTS]{ID1}[TOOL_CONTENT]sunny[/TOOL_RESULTS][TOOL_RESULTS]{ID2}[TOOL_CONTENT]noon[/TOOL_RESULTS]",
        "[AVAILABLE_TOOLS]["]),
    "unsloth-mistral-Devstral-Small-2507.jinja": ("mistral", "<s>", "</s>", [
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}</s>',
        "[TOOL_RESULTS]sunny[/TOOL_RESULTS][TOOL_RESULTS]noon[/TOOL_RESULTS]"]),
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": ("mistral", "<s>", "</s>", [
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}</s>',
        "[TOOL_RESULTS]sunny[/TOOL_RESULTS][TOOL_RESULTS]noon[/TOOL_RESULTS]"]),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": ("deepseek", DS_BOS, DS_EOS, [
        (f'<｜Assistant｜>{CALLS_BEGIN}{CALL_BEGIN}function{SEP}get_weather\n```json\n{{"city": "Paris"}}\n```{CALL_END}\n'
        f"{CALL_BEGIN}function{SEP}get_time\n```json\n{{}}\n```{CALL_END}{CALLS_END}{DS_EOS}"),
        "<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>",
        # The original R1 template lists no tools: the system prompt teaches the V3 syntax.
        f"Example function tool call syntax:\n\n{CALLS_BEGIN}{CALL_BEGIN}function{SEP}example_function_name"]),
    "llama-cpp-deepseek-r1.jinja": ("deepseek", DS_BOS, DS_EOS, [
        f'{CALL_BEGIN}function{SEP}get_weather\n```json\n{{"city": "Paris"}}\n```{CALL_END}',
        "<｜tool▁output▁begin｜>noon<｜tool▁output▁end｜>"]),
    "tool_chat_template_deepseekv3.jinja": ("deepseek", DS_BOS, DS_EOS, [
        f'{CALLS_BEGIN}{CALL_BEGIN}function{SEP}get_weather\n```json\n{{"city": "Paris"}}\n```{CALL_END}',
        "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>"]),
    "deepseek-ai-DeepSeek-V3.1.jinja": ("deepseek", DS_BOS, DS_EOS, [
        f'{CALLS_BEGIN}{CALL_BEGIN}get_weather{SEP}{{"city": "Paris"}}{CALL_END}{CALL_BEGIN}get_time{SEP}{{}}{CALL_END}{CALLS_END}',
        "<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜><｜tool▁output▁begin｜>noon<｜tool▁output▁end｜>"]),
    # Harmony has one call per message: parallel calls become call, result, call, result.
    "openai-gpt-oss-120b.jinja": ("gpt_oss", "<|startoftext|>", "<|return|>", [
        ('<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>'
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"sunny"<|end|>'
        "<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>"
        '<|start|>functions.get_time to=assistant<|channel|>commentary<|message|>"noon"<|end|><|start|>assistant'),
        "type get_weather = (_: {\ncity?: string,\n}) => any;"]),
    "meetkai-functionary-medium-v3.2.jinja": ("functionary_v3_2", "<|begin_of_text|>", "<|eot_id|>", [
        '<|start_header_id|>assistant<|end_header_id|>\n\n>>>get_weather\n{"city": "Paris"}>>>get_time\n{}<|eot_id|>',
        "<|start_header_id|>tool<|end_header_id|>\n\nsunny<|eot_id|>",
        "type get_weather = (_: {\ncity?: string,\n}) => any;"]),
}


@pytest.mark.parametrize("template_name", list(ROUND_TRIP))
def test_history_renders_as_the_template_teaches(template_name: str) -> None:
    format_name, bos, eos, expected = ROUND_TRIP[template_name]
    template = load_template_file(TEMPLATES / template_name, bos_token=bos, eos_token=eos)
    fmt = get_format(format_name)
    data = fmt.template_input(HISTORY, template.caps)
    prompt = template.render(data.messages, tools=data.tools, add_generation_prompt=True)
    for text in expected:
        assert text in prompt
    assert "Weather for a city" in prompt, "the tools are described"
    # A first turn renders too, ending with the generation prompt the parser starts from.
    first = fmt.template_input(Conversation((Message("user", "Hi"),), tools=TOOLS), template.caps)
    assert template.render(first.messages, tools=first.tools).endswith(template.caps.generation_prompt)


def test_mistral_ids_are_nine_alphanumerics_and_stable() -> None:
    assert re.fullmatch(r"[A-Za-z0-9]{9}", ID1) and ID1 == mistral_id("call_abc123xyz789") and ID1 != ID2
    assert mistral_id("abc123XYZ") == "abc123XYZ", "an id that already fits is kept"
    assert re.fullmatch(r"[A-Za-z0-9]{9}", get_format("mistral").new_call_id())


def test_deepseek_renders_a_call_beside_text() -> None:
    """The R1 templates draw a call only when content is none: the call wins over the text."""
    template = load_template_file(TEMPLATES / "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", bos_token=DS_BOS)
    history = Conversation((Message("user", "Time?"), Message("assistant", "Checking.", tool_calls=(
        ToolCall("c1", "get_time", "{}"),)), Message("tool", "noon", tool_call_id="c1")), tools=TOOLS)
    data = get_format("deepseek").template_input(history, template.caps)
    assert f"{CALL_BEGIN}function{SEP}get_time\n```json\n{{}}\n```" in template.render(data.messages, tools=data.tools)


# --- (b) model outputs, split at every position ------------------------------------------------------


def run_parser(format_name: str, chunks: list[str], prompt: str = "", parse_calls: bool = True) -> tuple[str, Outcome]:
    parser = get_format(format_name).new_parser(prompt, parse_calls=parse_calls, tools=TOOLS)
    events: list[ParseEvent] = [event for chunk in chunks for event in parser.feed(chunk)] + parser.close()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    outcome = collect([e for e in events if not isinstance(e, ReasoningDelta)])
    assert parser.completed_calls == len(outcome.calls)
    return reasoning, outcome


PARIS = [("get_weather", {"city": "Paris"})]
BOTH = [("get_weather", {"city": "Paris"}), ("get_time", {})]
TRICKY = {"city": 'Zürich "Altstadt"\n東京 é 😀', "note": "tab\there \\ back"}
TRICKY_JSON = '{"city": "Zürich \\"Altstadt\\"\\n東京 \\u00e9 \\ud83d\\ude00", "note": "tab\there \\\\ back"}'


def ds_v3(name: str, arguments: str) -> str:
    return f"{CALL_BEGIN}function{SEP}{name}\n```json\n{arguments}\n```{CALL_END}"


def harmony(name: str, arguments: str) -> str:
    return f"<|start|>assistant<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{arguments}<|call|>"


# (format, case, output, prompt, expected reasoning, expected outcome)
CORPUS: list[tuple[str, str, str, str, str, Outcome]] = [
    ("mistral", "v11 single call", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', "", "", Outcome("", PARIS)),
    ("mistral", "v11 parallel calls", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}', "", "",
     Outcome("", BOTH)),
    ("mistral", "v11 text before and after", 'Let me check.[TOOL_CALLS]get_time[ARGS]{} Done.', "", "",
     Outcome("Let me check.Done.", [("get_time", {})])),
    ("mistral", "v11 call id copied from history", '[TOOL_CALLS]get_weather[CALL_ID]abc123XYZ[ARGS]{"city": "Paris"}', "", "",
     Outcome("", PARIS)),
    ("mistral", "v3 list", ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123XYZ"}, '
     '{"name": "get_time", "arguments": {}, "id": "def456UVW"}]'), "", "", Outcome("", BOTH)),
    ("mistral", "v7 list after a space", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]', "", "",
     Outcome("", PARIS)),
    ("mistral", "v3 arguments as a JSON string", '[TOOL_CALLS][{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]',
     "", "", Outcome("", PARIS)),
    ("mistral", "unicode, escapes, raw newline", f"[TOOL_CALLS]get_weather[ARGS]{TRICKY_JSON}", "", "",
     Outcome("", [("get_weather", TRICKY)])),
    ("mistral", "a tool not on offer is still a call", '[TOOL_CALLS]send_email[ARGS]{"to": "ann"}', "", "",
     Outcome("", [("send_email", {"to": "ann"})])),
    ("mistral", "reasoning, and a call drafted in it is not a call",
     "[THINK]Maybe [TOOL_CALLS]get_time[ARGS]{}? No.[/THINK]" + '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', "",
     "Maybe [TOOL_CALLS]get_time[ARGS]{}? No.", Outcome("", PARIS)),
    ("mistral", "plain text", "It is sunny in Paris.", "", "", Outcome("It is sunny in Paris.")),
    ("mistral", "no [ARGS] is text", '[TOOL_CALLS]get_weather{"city": "Paris"}', "", "",
     Outcome('[TOOL_CALLS]get_weather{"city": "Paris"}')),
    ("mistral", "prose after the marker is text", "[TOOL_CALLS] Sure, I can help.", "", "",
     Outcome("[TOOL_CALLS] Sure, I can help.")),
    ("mistral", "a name too long is text", "[TOOL_CALLS]" + "x" * 200 + "[ARGS]{}", "", "",
     Outcome("[TOOL_CALLS]" + "x" * 200 + "[ARGS]{}")),
    ("mistral", "malformed arguments", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris",}', "", "",
     Outcome('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris",}', failed=1)),
    ("mistral", "arguments not an object", "[TOOL_CALLS]get_weather[ARGS][1]", "", "",
     Outcome("[TOOL_CALLS]get_weather[ARGS][1]")),
    ("mistral", "truncated arguments", '[TOOL_CALLS]get_weather[ARGS]{"city": "Par', "", "",
     Outcome('[TOOL_CALLS]get_weather[ARGS]{"city": "Par', failed=1)),
    ("mistral", "truncated name", "[TOOL_CALLS]get_wea", "", "", Outcome("[TOOL_CALLS]get_wea")),
    ("mistral", "valid call after a malformed list", '[TOOL_CALLS][oops][TOOL_CALLS]get_time[ARGS]{}', "", "",
     Outcome("[TOOL_CALLS][oops]", [("get_time", {})])),

    ("deepseek", "v3 single call", CALLS_BEGIN + ds_v3("get_weather", '{"city": "Paris"}') + CALLS_END, "", "",
     Outcome("", PARIS)),
    ("deepseek", "v3 parallel calls with text before",
     "Let me look." + CALLS_BEGIN + ds_v3("get_weather", '{"city": "Paris"}') + "\n" + ds_v3("get_time", "{}") + CALLS_END,
     "", "", Outcome("Let me look.", BOTH)),
    ("deepseek", "v3.1 calls", (f'{CALLS_BEGIN}{CALL_BEGIN}get_weather{SEP}{{"city": "Paris"}}{CALL_END}'
     f"{CALL_BEGIN}get_time{SEP}{{}}{CALL_END}{CALLS_END}"), "", "", Outcome("", BOTH)),
    ("deepseek", "v3.1 name starting like the type", f"{CALL_BEGIN}functional{SEP}{{}}{CALL_END}", "", "",
     Outcome("", [("functional", {})])),
    ("deepseek", "R1: forced-open thinking, then a call",
     "The user wants weather.\n</think>\n\n" + CALLS_BEGIN + ds_v3("get_weather", '{"city": "Paris"}') + CALLS_END,
     R1_PROMPT, "The user wants weather.", Outcome("", PARIS)),
    ("deepseek", "R1: a call drafted in thinking is not a call",
     f"Maybe {ds_v3('get_time', '{}')}\n</think>\n\nIt is noon.", R1_PROMPT,
     f"Maybe {ds_v3('get_time', '{}')}", Outcome("It is noon.")),
    ("deepseek", "unicode and escapes", CALLS_BEGIN + ds_v3("get_weather", TRICKY_JSON) + CALLS_END, "", "",
     Outcome("", [("get_weather", TRICKY)])),
    ("deepseek", "fence closed on its own line", f"{CALL_BEGIN}function{SEP}get_time\n```json\n{{}}\n```\n{CALL_END}", "", "",
     Outcome("", [("get_time", {})])),
    ("deepseek", "fence never closed", f"{CALL_BEGIN}function{SEP}get_time\n```json\n{{}}{CALL_END}", "", "",
     Outcome("", [("get_time", {})])),
    ("deepseek", "a tool not on offer", CALLS_BEGIN + ds_v3("send_email", '{"to": "ann"}') + CALLS_END, "", "",
     Outcome("", [("send_email", {"to": "ann"})])),
    ("deepseek", "no fence and no separator is text", f'{CALL_BEGIN}function{SEP}get_weather\n{{"city": "Paris"}}{CALL_END}',
     "", "", Outcome(f'{CALL_BEGIN}function{SEP}get_weather\n{{"city": "Paris"}}{CALL_END}')),
    ("deepseek", "malformed arguments", ds_v3("get_weather", '{"city": Paris}'), "", "",
     Outcome(f'{CALL_BEGIN}function{SEP}get_weather\n```json\n{{"city": Paris}}\n```{CALL_END}', failed=1)),
    ("deepseek", "truncated arguments", f'{CALL_BEGIN}function{SEP}get_weather\n```json\n{{"city": "Pa', "", "",
     Outcome(f'{CALL_BEGIN}function{SEP}get_weather\n```json\n{{"city": "Pa', failed=1)),
    # Arguments complete, only the fence's closing (optional, as in llama.cpp) is missing: a call.
    ("deepseek", "ended before the fence closes", f"{CALL_BEGIN}function{SEP}get_time\n```json\n{{}}\n", "", "",
     Outcome("", [("get_time", {})])),

    ("gpt_oss", "analysis then a call",
     '<|channel|>analysis<|message|>Need the weather.<|end|>' + harmony("get_weather", '{"city":"Paris"}'), "",
     "Need the weather.", Outcome("", PARIS)),
    ("gpt_oss", "call cut at the <|call|> stop string",
     ('<|channel|>analysis<|message|>Need it.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather '
     '<|constrain|>json<|message|>{"city":"Paris"}'), "", "Need it.", Outcome("", PARIS)),
    ("gpt_oss", "recipient first, at the very start",
     ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>', "", "", Outcome("", PARIS)),
    ("gpt_oss", "recipient first, after analysis",
     ('<|channel|>analysis<|message|>Hm.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json'
     '<|message|>{"city": "Paris"}<|call|>'), "", "Hm.", Outcome("", PARIS)),
    ("gpt_oss", "final answer", ("<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>"
     "Hello!<|return|>"), "", "Easy.", Outcome("Hello!")),
    ("gpt_oss", "final answer alone", "<|channel|>final<|message|>Hello!", "", "", Outcome("Hello!")),
    ("gpt_oss", "a preamble, then a call",
     "<|channel|>commentary<|message|>Checking.<|end|>" + harmony("get_time", "{}"), "", "",
     Outcome("Checking.", [("get_time", {})])),
    ("gpt_oss", "two calls when not stopped", harmony("get_weather", '{"city":"Paris"}') + harmony("get_time", "{}"), "", "",
     Outcome("", BOTH)),
    ("gpt_oss", "a call drafted in analysis is not a call",
     (f"<|channel|>analysis<|message|>Call {harmony('get_time', '{}')}?<|end|><|start|>assistant<|channel|>final"
     "<|message|>Noon."), "", ("Call <|start|>assistant<|channel|>commentary to=functions.get_time <|constrain|>json"
     "<|message|>{}<|call|>?"), Outcome("Noon.")),
    ("gpt_oss", "unicode and escapes", harmony("get_weather", TRICKY_JSON), "", "", Outcome("", [("get_weather", TRICKY)])),
    ("gpt_oss", "a tool not on offer", harmony("send_email", '{"to":"ann"}'), "", "", Outcome("", [("send_email", {"to": "ann"})])),
    ("gpt_oss", "malformed arguments", harmony("get_weather", '{"city":}'), "", "",
     Outcome('<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":}<|call|>', failed=1)),
    ("gpt_oss", "truncated arguments", '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"ci', "", "",
     Outcome('<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"ci', failed=1)),

    ("functionary_v3_2", "single call", 'get_weather\n{"city": "Paris"}', FUNCTIONARY_PROMPT, "", Outcome("", PARIS)),
    ("functionary_v3_2", "text", "all\nHello there!", FUNCTIONARY_PROMPT, "", Outcome("Hello there!")),
    ("functionary_v3_2", "text then calls", 'all\nLet me check.>>>get_weather\n{"city": "Paris"}>>>get_time\n{}',
     FUNCTIONARY_PROMPT, "", Outcome("Let me check.", BOTH)),
    ("functionary_v3_2", "unicode and escapes", f"get_weather\n{TRICKY_JSON}", FUNCTIONARY_PROMPT, "",
     Outcome("", [("get_weather", TRICKY)])),
    ("functionary_v3_2", "a tool not on offer", 'send_email\n{"to": "ann"}', FUNCTIONARY_PROMPT, "",
     Outcome("", [("send_email", {"to": "ann"})])),
    ("functionary_v3_2", "python code is text", "python\nprint(1)", FUNCTIONARY_PROMPT, "", Outcome("python\nprint(1)")),
    ("functionary_v3_2", "malformed arguments", 'get_weather\n{"city": Paris}', FUNCTIONARY_PROMPT, "",
     Outcome('get_weather\n{"city": Paris}', failed=1)),
    ("functionary_v3_2", "truncated", 'get_weather\n{"city": "Pa', FUNCTIONARY_PROMPT, "",
     Outcome('get_weather\n{"city": "Pa', failed=1)),
]


@pytest.mark.parametrize(("format_name", "case", "text", "prompt", "reasoning", "expected"), CORPUS,
                         ids=[f"{c[0]}-{c[1]}" for c in CORPUS])
def test_corpus_split_at_every_position(
    format_name: str, case: str, text: str, prompt: str, reasoning: str, expected: Outcome
) -> None:
    for cut in range(len(text) + 1):
        assert run_parser(format_name, [text[:cut], text[cut:]], prompt) == (reasoning, expected), f"split at {cut}"
    assert run_parser(format_name, list(text), prompt) == (reasoning, expected), "one character at a time"


def test_functionary_without_tools_still_reads_recipients() -> None:
    assert run_parser("functionary_v3_2", ["all\nHi", " there"], FUNCTIONARY_PROMPT, parse_calls=False) == ("", Outcome("Hi there"))
    assert run_parser("functionary_v3_2", ["get_time\n{}"], FUNCTIONARY_PROMPT, parse_calls=False) == ("", Outcome("get_time\n{}"))


@pytest.mark.parametrize(("format_name", "opening"), [
    ("mistral", "[TOOL_CALLS]get_weather[ARGS]"),
    ("deepseek", f"{CALL_BEGIN}function{SEP}get_weather\n```json\n"),
    ("gpt_oss", "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"),
    ("functionary_v3_2", "get_weather\n"),
])
def test_call_is_announced_early_and_arguments_stream(format_name: str, opening: str) -> None:
    parser = get_format(format_name).new_parser(tools=TOOLS)
    events = parser.feed(opening + '{"city": "')
    assert [type(e) for e in events] == [ToolCallStart, ToolCallArgs] and events[0].name == "get_weather"
    fragments = []
    for _ in range(20):
        fragments += [e.text for e in parser.feed("x" * 100) if isinstance(e, ToolCallArgs)]
    assert fragments == ["x" * 100] * 20, "a long argument streams as it is written"


# A forced call (tool_choice) prefills the opening, and for a named tool the head of the call too;
# the pipeline feeds the prefill to the parser as if the model had written it.
FORCED = {
    "mistral": ('get_weather[ARGS]{"city": "Paris"}', '{"city": "Paris"}'),
    "deepseek": (f'function{SEP}get_weather\n```json\n{{"city": "Paris"}}\n```{CALL_END}{CALLS_END}',
                 f'{{"city": "Paris"}}\n```{CALL_END}{CALLS_END}'),
    "gpt_oss": ('get_weather <|constrain|>json<|message|>{"city": "Paris"}', '{"city": "Paris"}'),
    "functionary_v3_2": ('get_weather\n{"city": "Paris"}', '{"city": "Paris"}'),
}


@pytest.mark.parametrize("format_name", list(FORCED))
@pytest.mark.parametrize("named", [False, True])
def test_forced_call_prefill_parses_with_the_continuation(format_name: str, named: bool) -> None:
    fmt = get_format(format_name)
    prefill = fmt.prefill("get_weather" if named else None)
    continuation = FORCED[format_name][named]
    prompt = FUNCTIONARY_PROMPT if format_name == "functionary_v3_2" else ""
    for cut in range(len(continuation) + 1):
        chunks = [prefill, continuation[:cut], continuation[cut:]]
        assert run_parser(format_name, chunks, prompt) == ("", Outcome("", PARIS)), f"split at {cut}"


# --- (c) through the gateway, with the openai SDK ------------------------------------------------------

# route -> (format, template, family of special tokens)
ROUTES = {
    "mistral-nemo": ("mistral", "mistralai-Mistral-Nemo-Instruct-2407.jinja"),
    "mistral-small-3.2": ("mistral", "Mistral-Small-3.2-24B-Instruct-2506.jinja"),
    "ministral-3-reasoning": ("mistral", "mistralai-Ministral-3-14B-Reasoning-2512.jinja"),
    "deepseek-r1-distill": ("deepseek", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"),
    "deepseek-v3.1": ("deepseek", "deepseek-ai-DeepSeek-V3.1.jinja"),
    "gpt-oss": ("gpt_oss", "openai-gpt-oss-120b.jinja"),
    "functionary": ("functionary_v3_2", "meetkai-functionary-medium-v3.2.jinja"),
}

# route -> [(output, (content, calls, reasoning), finish_reason)]
GATEWAY_CORPUS = {
    "mistral-nemo": [
        ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123XYZ"}]', (None, PARIS, None), "tool_calls"),
        ("It is sunny.", ("It is sunny.", [], None), "stop"),
    ],
    "mistral-small-3.2": [
        ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}', (None, BOTH, None), "tool_calls"),
        # Malformed before the call is announced: text in both (after it, a stream can only end in an error).
        ('[TOOL_CALLS]get_weather{"city": "Paris"}', ('[TOOL_CALLS]get_weather{"city": "Paris"}', [], None), "stop"),
    ],
    "ministral-3-reasoning": [
        ('[THINK]Paris weather needed.[/THINK][TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', (None, PARIS, "Paris weather needed."),
         "tool_calls"),
        ("[THINK]Simple.[/THINK]Hello!", ("Hello!", [], "Simple."), "stop"),
    ],
    "deepseek-r1-distill": [
        ("Weather, so call.\n</think>\n\n" + CALLS_BEGIN + ds_v3("get_weather", '{"city": "Paris"}') + CALLS_END,
         (None, PARIS, "Weather, so call."), "tool_calls"),
        ("Just greet.\n</think>\n\nHi!", ("Hi!", [], "Just greet."), "stop"),
    ],
    "deepseek-v3.1": [
        (f'{CALLS_BEGIN}{CALL_BEGIN}get_weather{SEP}{{"city": "Paris"}}{CALL_END}{CALL_BEGIN}get_time{SEP}{{}}{CALL_END}{CALLS_END}',
         (None, BOTH, None), "tool_calls"),
    ],
    "gpt-oss": [
        ("<|channel|>analysis<|message|>Need weather.<|end|>" + harmony("get_weather", '{"city":"Paris"}'),
         (None, PARIS, "Need weather."), "tool_calls"),
        ("<|channel|>analysis<|message|>Greeting.<|end|><|start|>assistant<|channel|>final<|message|>Hello!",
         ("Hello!", [], "Greeting."), "stop"),
    ],
    "functionary": [
        ('all\nChecking.>>>get_weather\n{"city": "Paris"}>>>get_time\n{}', ("Checking.", BOTH, None), "tool_calls"),
        ("all\nHello!", ("Hello!", [], None), "stop"),
    ],
}

OPENAI_TOOLS = [tool.as_openai() for tool in TOOLS]


@asynccontextmanager
async def serving(route: str) -> AsyncIterator[tuple[AsyncOpenAI, FakeLlamaServer]]:
    format_name, template = ROUTES[route]
    special, bos, eos = FAMILY_TOKENS[format_name]
    fake = FakeLlamaServer(bos_token=bos, eos_token=eos, special_tokens=special)
    await fake.start()
    try:
        backends = [{"name": "fake", "type": "llamacpp", "url": fake.url}]
        models = [{"name": route, "backend": "fake", "tool_format": format_name, "chat_template": str(TEMPLATES / template),
                   "bos_token": bos, "eos_token": eos}]
        async with (
            running_gateway(make_config(backends, models)) as url,
            AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=30) as client,
        ):
            yield client, fake
    finally:
        await fake.stop()


def message_summary(message) -> tuple:  # type: ignore[no-untyped-def]
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    return message.content, calls, (message.model_extra or {}).get("reasoning_content")


def chunks_summary(chunks: list) -> tuple[tuple, str]:  # type: ignore[type-arg]
    content, reasoning, calls, finish = [], [], {}, ""
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            content.append(delta.content or "")
            reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, [call.function.name, ""])
                entry[1] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    parsed = [(name, json.loads(arguments)) for name, arguments in (calls[i] for i in sorted(calls))]
    return ("".join(content) or None, parsed, "".join(reasoning) or None), finish


@pytest.mark.parametrize(("route", "number"), [(r, n) for r, cases in GATEWAY_CORPUS.items() for n in range(len(cases))])
async def test_gateway_stream_and_non_stream_agree(route: str, number: int) -> None:
    output, expected, finish_reason = GATEWAY_CORPUS[route][number]
    format_name, _ = ROUTES[route]
    async with serving(route) as (client, fake):
        pieces = split_text(output, special=FAMILY_TOKENS[format_name][0])
        fake.script(Scripted(pieces), Scripted(pieces))
        ask = {"model": route, "messages": [{"role": "user", "content": "Weather in Paris and the time?"}], "tools": OPENAI_TOOLS}
        whole = await client.chat.completions.create(**ask)
        stream = await client.chat.completions.create(**ask, stream=True)
        streamed = chunks_summary([chunk async for chunk in stream])
    assert (message_summary(whole.choices[0].message), whole.choices[0].finish_reason) == (expected, finish_reason)
    assert streamed == (expected, finish_reason)
    body = fake.requests[-1]
    fmt = get_format(format_name)
    assert set(fmt.preserved_tokens) <= set(body["preserved_tokens"])
    marker_tokens = {"mistral": ["[TOOL_CALLS]", "[ARGS]", "[THINK]"], "deepseek": [CALL_BEGIN, CALL_END, SEP, "<think>"],
                     "gpt_oss": ["<|channel|>", "<|message|>", "<|call|>", "<|end|>"], "functionary_v3_2": [">>>"]}
    assert set(marker_tokens[format_name]) <= set(body["preserved_tokens"])
    for stop in fmt.stop_strings:
        assert stop in body["stop"]
    if route.startswith("deepseek-r1"):
        assert body["prompt"].endswith(R1_PROMPT), "R1 starts in forced-open thinking"


async def test_mistral_history_with_openai_ids_through_the_gateway() -> None:
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_9f8e7d6c5b4a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_9f8e7d6c5b4a", "content": "sunny"},
    ]
    async with serving("mistral-small-3.2") as (client, fake):
        fake.script(Scripted(["It is sunny."]))
        reply = await client.chat.completions.create(model="mistral-small-3.2", messages=history, tools=OPENAI_TOOLS)
        assert reply.choices[0].message.content == "It is sunny."
        short = mistral_id("call_9f8e7d6c5b4a")
        assert f'[TOOL_CALLS]get_weather[CALL_ID]{short}[ARGS]{{"city": "Paris"}}' in fake.requests[-1]["prompt"]
        assert f"[TOOL_RESULTS]{short}[TOOL_CONTENT]sunny[/TOOL_RESULTS]" in fake.requests[-1]["prompt"]
        # A new call gets a 9-alphanumeric id, which the client can send straight back.
        fake.script(Scripted(split_text("[TOOL_CALLS]get_time[ARGS]{}", special=["[TOOL_CALLS]", "[ARGS]"])))
        call = (await client.chat.completions.create(model="mistral-small-3.2", messages=history, tools=OPENAI_TOOLS)
                ).choices[0].message.tool_calls[0]
        assert re.fullmatch(r"[A-Za-z0-9]{9}", call.id)


async def test_named_tool_choice_prefills_the_call_head() -> None:
    async with serving("gpt-oss") as (client, fake):
        fake.script(Scripted(['{"city":', ' "Paris"}', "<|call|>"]))
        reply = await client.chat.completions.create(
            model="gpt-oss", messages=[{"role": "user", "content": "Paris?"}], tools=OPENAI_TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert message_summary(reply.choices[0].message) == (None, PARIS, None)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert fake.requests[-1]["prompt"].endswith(
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>")
