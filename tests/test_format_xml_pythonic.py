"""The two formats whose call bodies are not JSON: qwen3_coder (XML, Qwen3-Coder / Qwen3.5) and
pythonic (Llama 3.2 / Llama 4 / Gemma 3).

(a) the real templates render tools, past calls and results as each family teaches them;
(b) a corpus of model outputs, parsed by the shared parser split at every position;
(c) the running gateway, with the real `openai` SDK against a fake llama-server: stream and
    non-stream give the same answer, and the markers are preserved upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI, LengthFinishReasonError

from adapters.formats import get_format
from adapters.formats.conversation import Conversation, Message, ToolCall, ToolSpec
from adapters.formats.events import (
    ParseEvent,
    ReasoningDelta,
    ToolCallArgs,
    ToolCallStart,
)
from gateway.core.chat_template import load_template_file
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.test_chat_tools import ask, ask_streamed, summary
from tests.test_stream_parser import Outcome, collect

WEATHER = ToolSpec(
    "get_weather",
    "Current weather for a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
TIME = ToolSpec("get_time", parameters={"type": "object", "properties": {}})
CONFIG = ToolSpec(
    "set_config",
    parameters={
        "type": "object",
        "properties": {
            "temperature": {"type": "number"},
            "verbose": {"type": "boolean"},
            "options": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "zip": {"type": "string", "description": "looks like a number, is a string"},
            "limit": {"type": ["integer", "null"]},
            "retries": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
    },
)
TOOLS = (WEATHER, TIME, CONFIG)

# family -> (template file, format, bos, eos)
FAMILIES = {
    "qwen3-coder": ("Qwen3-Coder.jinja", "qwen3_coder", "", "<|im_end|>"),
    "qwen3.5": ("Qwen3.5-4B.jinja", "qwen3_coder", "", "<|im_end|>"),
    "llama-3.2": ("tool_chat_template_llama3.2_pythonic.jinja", "pythonic", "<|begin_of_text|>", "<|eot_id|>"),
    "llama-4": ("tool_chat_template_llama4_pythonic.jinja", "pythonic", "<|begin_of_text|>", "<|eot|>"),
    "gemma-3": ("tool_chat_template_gemma3_pythonic.jinja", "pythonic", "<bos>", "<eos>"),
}


def parse(format_name: str, chunks: list[str], prompt: str = "", tools: tuple[ToolSpec, ...] = TOOLS) -> tuple[str, Outcome]:
    """(reasoning, outcome) for the model's text arriving in `chunks`."""
    parser = get_format(format_name).new_parser(prompt, tools=tools)
    events: list[ParseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    outcome = collect([e for e in events if not isinstance(e, ReasoningDelta)])
    assert parser.completed_calls == len(outcome.calls)
    return reasoning, outcome


# -- (a) the templates --------------------------------------------------------------------

HISTORY = Conversation(
    messages=(
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris", "days": 3}'),)),
        Message("tool", "sunny, 21C", tool_call_id="call_1"),
    ),
    tools=(WEATHER, TIME),
)

# What each template writes for the past call and its result, byte for byte.
RENDERED = {
    "qwen3-coder": (
        ("<|im_start|>assistant\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
         "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call><|im_end|>\n"),
        "<|im_start|>user\n<tool_response>\nsunny, 21C\n</tool_response>\n<|im_end|>\n",
    ),
    "qwen3.5": (
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
         "</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call><|im_end|>\n"),
        "<|im_start|>user\n<tool_response>\nsunny, 21C\n</tool_response><|im_end|>\n",
    ),
    # The template prints values with "%s": strings come out unquoted.
    "llama-3.2": (
        "<|start_header_id|>assistant<|end_header_id|>\n\n[get_weather(city=Paris, days=3)]<|eot_id|>",
        '<|start_header_id|>ipython<|end_header_id|>\n\n{"output": "sunny, 21C"}<|eot_id|>',
    ),
    # Every value is quoted, numbers included.
    "llama-4": (
        '<|header_start|>assistant<|header_end|>\n\n[get_weather(city="Paris", days="3")]<|eot|>',
        '<|header_start|>ipython<|header_end|>\n\n"sunny, 21C"<|eot|>',
    ),
    # A Jinja scoping slip in the template drops the comma between keyword arguments.
    "gemma-3": (
        '<start_of_turn>model\n[get_weather(city="Paris"days=3)]<end_of_turn>\n',
        "<start_of_turn>user\n<tool_response>\nsunny, 21C</tool_response><end_of_turn>\n",
    ),
}
TOOLS_SECTION = {
    "qwen3-coder": "<function>\n<name>get_weather</name>\n<description>Current weather for a city</description>",
    "qwen3.5": '{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city"',
    "llama-3.2": '"name": "get_weather",',
    "llama-4": '"name": "get_weather",',
    "gemma-3": '"name": "get_weather",',
}
GENERATION_PROMPT = {
    "qwen3-coder": "<|im_start|>assistant\n",
    "qwen3.5": "<|im_start|>assistant\n<think>\n",
    "llama-3.2": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "llama-4": "<|header_start|>assistant<|header_end|>\n\n",
    "gemma-3": "<start_of_turn>model\n",
}


def render(family: str, conversation: Conversation) -> str:
    file, format_name, bos, eos = FAMILIES[family]
    template = load_template_file(TEMPLATES / file, bos_token=bos, eos_token=eos)
    template_input = get_format(format_name).template_input(conversation, template.caps)
    return template.render(template_input.messages, tools=template_input.tools, add_generation_prompt=True)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_templates_render_tools_calls_and_results(family: str) -> None:
    file, _, bos, eos = FAMILIES[family]
    caps = load_template_file(TEMPLATES / file, bos_token=bos, eos_token=eos).caps
    # Every one of these renders tools, calls and results itself, from object arguments.
    assert (caps.supports_tools, caps.supports_tool_calls, caps.supports_tool_role) == (True, True, True)
    assert caps.requires_object_arguments, "the templates iterate the arguments' items"
    prompt = render(family, HISTORY)
    call, result = RENDERED[family]
    assert call in prompt
    assert result in prompt
    assert TOOLS_SECTION[family] in prompt
    assert prompt.endswith(GENERATION_PROMPT[family])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_rendered_history_parses_back_to_the_call(family: str) -> None:
    """What the template wrote for a past call, written again by the model, is the same call
    (as far as the template kept the types: Llama 4 quotes numbers)."""
    format_name = FAMILIES[family][1]
    call_text = RENDERED[family][0]
    start = call_text.index("<tool_call>" if format_name == "qwen3_coder" else "[")
    end = call_text.index("</tool_call>") + len("</tool_call>") if format_name == "qwen3_coder" else call_text.index("]") + 1
    days: Any = "3" if family == "llama-4" else 3
    assert parse(format_name, [call_text[start:end]])[1] == Outcome("", [("get_weather", {"city": "Paris", "days": days})])


@pytest.mark.parametrize(
    ("template_file", "format_name", "call", "teaches"),
    [
        (
            "google-gemma-2-2b-it.jinja",
            "qwen3_coder",
            ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
             "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"),
            "<function=example_function_name>",
        ),
        ("google-gemma-2-2b-it.jinja", "pythonic", '[get_weather(city="Paris", days=3)]', "[func_name1(param1=value1"),
    ],
)
def test_templates_without_tools_get_them_from_the_format(template_file: str, format_name: str, call: str, teaches: str) -> None:
    template = load_template_file(TEMPLATES / template_file, bos_token="<bos>", eos_token="<eos>")
    tool_format = get_format(format_name)
    template_input = tool_format.template_input(HISTORY, template.caps)
    prompt = template.render(template_input.messages, tools=template_input.tools, add_generation_prompt=True)
    assert teaches in prompt and '"name":"get_weather"' in prompt.replace(" ", "").replace("\n", "")
    assert call in prompt
    assert "<tool_response>\nsunny, 21C\n</tool_response>" in prompt


@pytest.mark.parametrize("format_name", ["qwen3_coder", "pythonic"])
@pytest.mark.parametrize(
    "arguments",
    [
        {"city": "Paris", "days": 3},
        {},
        {"city": 'Zürich "Alt"\nstadt \\ 東京 😀', "days": -2},
        {"temperature": 0.5, "verbose": True, "options": {"a": [1, None, "x"]}, "tags": ["a", "b"], "zip": "01234", "limit": None},
    ],
)
def test_written_calls_parse_back(format_name: str, arguments: dict) -> None:
    tool_format = get_format(format_name)
    name = "set_config" if "zip" in arguments else "get_weather"
    text = tool_format.write_call(ToolCall("call_1", name, json.dumps(arguments)))
    assert parse(format_name, [text])[1] == Outcome("", [(name, arguments)])


@pytest.mark.parametrize(
    ("format_name", "prefill", "rest"),
    [
        ("qwen3_coder", "<tool_call>\n<function=get_weather>\n", "<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"),
        ("pythonic", "[get_weather(", 'city="Paris")]'),
    ],
)
def test_prefill_for_a_named_tool_opens_its_call(format_name: str, prefill: str, rest: str) -> None:
    assert get_format(format_name).prefill("get_weather") == prefill
    assert parse(format_name, [prefill, rest])[1] == Outcome("", [("get_weather", {"city": "Paris"})])


# -- (b) the corpus ------------------------------------------------------------------------


def xml_call(name: str, *parameters: tuple[str, str]) -> str:
    body = "".join(f"<parameter={key}>\n{value}\n</parameter>\n" for key, value in parameters)
    return f"<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"


PARIS = xml_call("get_weather", ("city", "Paris"))

XML = [
    ("single call", PARIS, Outcome("", [("get_weather", {"city": "Paris"})])),
    (
        "parallel calls",
        PARIS + "\n" + xml_call("get_time") + "\n" + xml_call("get_weather", ("city", "Rome"), ("days", "2")),
        Outcome("", [("get_weather", {"city": "Paris"}), ("get_time", {}), ("get_weather", {"city": "Rome", "days": 2})]),
    ),
    ("text before the call", "Let me check.\n\n" + PARIS, Outcome("Let me check.", [("get_weather", {"city": "Paris"})])),
    (
        "unicode, quotes, backslashes and newlines in a string",
        xml_call("get_weather", ("city", 'Zürich "Altstadt"\n\tline two \\ 東京 😀 </para')),
        Outcome("", [("get_weather", {"city": 'Zürich "Altstadt"\n\tline two \\ 東京 😀 </para'})]),
    ),
    (
        "only the template's newlines are stripped",
        xml_call("get_weather", ("city", "\nParis\n")) + xml_call("get_weather", ("city", "")),
        Outcome("", [("get_weather", {"city": "\nParis\n"}), ("get_weather", {"city": ""})]),
    ),
    (
        "a value written without the newlines",
        "<tool_call><function=get_weather><parameter=city>Paris</parameter><parameter=days> 4 </parameter></function></tool_call>",
        Outcome("", [("get_weather", {"city": "Paris", "days": 4})]),
    ),
    (
        "typed values by the schema",
        xml_call(
            "set_config",
            ("temperature", "0.25"),
            ("verbose", "true"),
            ("options", '{"depth": 2, "names": ["a", "b"], "on": null}'),
            ("tags", '["x", "y"]'),
            ("zip", "01234"),
            ("limit", "10"),
            ("retries", "null"),
        ),
        Outcome(
            "",
            [
                (
                    "set_config",
                    {
                        "temperature": 0.25,
                        "verbose": True,
                        "options": {"depth": 2, "names": ["a", "b"], "on": None},
                        "tags": ["x", "y"],
                        "zip": "01234",
                        "limit": 10,
                        "retries": None,
                    },
                )
            ],
        ),
    ),
    (
        "Python-style typed values",
        xml_call("set_config", ("verbose", "True"), ("options", "{'a': (1, 2), 'b': None}"), ("tags", "['x']"), ("limit", "None")),
        Outcome("", [("set_config", {"verbose": True, "options": {"a": [1, 2], "b": None}, "tags": ["x"], "limit": None})]),
    ),
    (
        "a typed value that does not parse stays a string",
        xml_call("get_weather", ("city", "Oslo"), ("days", "three")) + xml_call("set_config", ("verbose", "TRUE"), ("temperature", "1e999")),
        Outcome("", [("get_weather", {"city": "Oslo", "days": "three"}), ("set_config", {"verbose": True, "temperature": "1e999"})]),
    ),
    (
        "a number that the schema calls a string",
        xml_call("set_config", ("zip", "12345"), ("tags", "[]")),
        Outcome("", [("set_config", {"zip": "12345", "tags": []})]),
    ),
    ("no arguments", xml_call("get_time"), Outcome("", [("get_time", {})])),
    (
        "a tool not on offer is still returned, its values as strings",
        xml_call("search_web", ("query", "42"), ("safe", "true")),
        Outcome("", [("search_web", {"query": "42", "safe": "true"})]),
    ),
    ("missing close marker at the end", PARIS[: -len("</tool_call>")], Outcome("", [("get_weather", {"city": "Paris"})])),
    ("text after the call", PARIS + "\nDone.", Outcome("Done.", [("get_weather", {"city": "Paris"})])),
    ("a marker-like word", "Put <function=x> tags in <tool_call blocks", Outcome("Put <function=x> tags in <tool_call blocks")),
    ("the marker in prose", "Use the <tool_call> tag.", Outcome("Use the <tool_call> tag.")),
    (
        "JSON inside the block is not this format",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        Outcome('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    ),
    (
        "a name broken across lines",
        "<tool_call>\n<function=get\nweather>\n</function>\n</tool_call>",
        Outcome("<tool_call>\n<function=get\nweather>\n</function>\n</tool_call>"),
    ),
    (
        "malformed after the name fails the call",
        "<tool_call>\n<function=get_weather>\ncity: Paris\n</function>\n</tool_call>",
        Outcome("<tool_call>\n<function=get_weather>\ncity: Paris\n</function>\n</tool_call>", failed=1),
    ),
    (
        "truncated inside a value",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar",
        Outcome("<tool_call>\n<function=get_weather>\n<parameter=city>\nPar", failed=1),
    ),
    (
        "truncated after a value",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</func",
        Outcome("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</func", failed=1),
    ),
    ("truncated before the name", "<tool_call>\n<function=get_wea", Outcome("<tool_call>\n<function=get_wea")),
    (
        "a good call after a malformed one",
        "<tool_call>oops</tool_call>\n" + PARIS,
        Outcome("<tool_call>oops</tool_call>", [("get_weather", {"city": "Paris"})]),
    ),
]

PYTHONIC = [
    ("single call", '[get_weather(city="Paris")]', Outcome("", [("get_weather", {"city": "Paris"})])),
    (
        "parallel calls after whitespace",
        '\n  [get_weather(city="Paris", days=3), get_time(), get_weather(city=\'Rome\')]',
        Outcome("", [("get_weather", {"city": "Paris", "days": 3}), ("get_time", {}), ("get_weather", {"city": "Rome"})]),
    ),
    (
        "strings: unicode, quotes, escapes",
        r"""[get_weather(city='Zürich \'Alt\' "stadt"\n\t東京 \\ \x41\u00e9\U0001F600\ud83d\ude00 C:\data', days=1)]""",
        Outcome("", [("get_weather", {"city": "Zürich 'Alt' \"stadt\"\n\t東京 \\ Aé😀😀 C:\\data", "days": 1})]),
    ),
    (
        "triple quotes, empty strings, raw newlines",
        '[set_config(zip="""two\nlines "quoted" ""inside"" """, tags=["", \'\', "a\nb", """"""])]',
        Outcome("", [("set_config", {"zip": 'two\nlines "quoted" ""inside"" ', "tags": ["", "", "a\nb", ""]})]),
    ),
    (
        "numbers and constants",
        "[set_config(temperature=-1.5e-3, limit=1_000, retries=None, verbose=True, options={'hex': 0x1F, 'f': .5, 'n': null, 't': true, 'neg': -7})]",
        Outcome(
            "",
            [
                (
                    "set_config",
                    {
                        "temperature": -0.0015,
                        "limit": 1000,
                        "retries": None,
                        "verbose": True,
                        "options": {"hex": 31, "f": 0.5, "n": None, "t": True, "neg": -7},
                    },
                )
            ],
        ),
    ),
    (
        "nested lists, dicts and tuples",
        "[set_config(options={'a': [1, (2, 3), [], {}], 'b': {'c': (None,), 1: 'one', True: 'yes'}}, tags=('x', 'y',))]",
        Outcome("", [("set_config", {"options": {"a": [1, [2, 3], [], {}], "b": {"c": [None], "1": "one", "true": "yes"}}, "tags": ["x", "y"]})]),
    ),
    ("no arguments", "[get_time()]", Outcome("", [("get_time", {})])),
    (
        "written over several lines with trailing commas",
        "[\n  get_weather(\n    city = 'Paris',\n    days = 2,\n  ),\n  get_time(),\n]",
        Outcome("", [("get_weather", {"city": "Paris", "days": 2}), ("get_time", {})]),
    ),
    (
        "positional arguments follow the schema's order",
        "[get_weather('Paris', 5)]",
        Outcome("", [("get_weather", {"city": "Paris", "days": 5})]),
    ),
    (
        "a tool not on offer is still returned",
        "[brave_search.call(query='toolwire'), get-time()]",
        Outcome("", [("brave_search.call", {"query": "toolwire"}), ("get-time", {})]),
    ),
    (
        "history habits: unquoted strings (Llama 3.2), no commas (Gemma 3)",
        '[get_weather(city=Paris, days=3), get_weather(city="Rome"days=1)]',
        Outcome("", [("get_weather", {"city": "Paris", "days": 3}), ("get_weather", {"city": "Rome", "days": 1})]),
    ),
    ("text after the list", "[get_time()]\nDone.", Outcome("Done.", [("get_time", {})])),
    (
        "Llama 4's python tags",
        '<|python_start|>[get_weather(city="Paris")]<|python_end|>',
        Outcome("", [("get_weather", {"city": "Paris"})]),
    ),
    ("Llama 4's python tags without brackets", "<|python_start|>get_time()<|python_end|>", Outcome("", [("get_time", {})])),
    ("a list of numbers", "[1, 2, 3]", Outcome("[1, 2, 3]")),
    ("a bracketed note", "[Note] The weather is fine.", Outcome("[Note] The weather is fine.")),
    ("a markdown link", "[see here](https://example.com) for more", Outcome("[see here](https://example.com) for more")),
    ("empty brackets", "[]", Outcome("[]")),
    ("a word list", "[a, b]", Outcome("[a, b]")),
    ("a call not at the start is text", 'Sure: [get_weather(city="Paris")]', Outcome('Sure: [get_weather(city="Paris")]')),
    ("a call without brackets is text", 'get_weather(city="Paris")', Outcome('get_weather(city="Paris")')),
    (
        "malformed after the name fails the call",
        "[get_weather(city='Paris' + 'x')]",
        Outcome("[get_weather(city='Paris' + 'x')]", failed=1),
    ),
    (
        "positional after keyword fails the call",
        "[get_weather(city='Paris', 5)]",
        Outcome("[get_weather(city='Paris', 5)]", failed=1),
    ),
    (
        "a positional argument of an unknown tool is not a call",
        "[Update(2024)] New release. [See(below)]",
        Outcome("[Update(2024)] New release. [See(below)]"),
    ),
    ("truncated inside a string", '[get_weather(city="Par', Outcome('[get_weather(city="Par', failed=1)),
    ("truncated before the first name is known", "[get_wea", Outcome("[get_wea")),
    (
        "truncated in the second call: the first stands, the rest is text",
        '[get_weather(city="Paris"), get_weather(ci',
        Outcome("get_weather(ci", [("get_weather", {"city": "Paris"})]),
    ),
    (
        "truncated between calls",
        '[get_weather(city="Paris"), ',
        Outcome("", [("get_weather", {"city": "Paris"})]),
    ),
]


def _corpus():
    for name, text, expected in XML:
        yield pytest.param("qwen3_coder", text, expected, id=f"xml-{name}")
    for name, text, expected in PYTHONIC:
        yield pytest.param("pythonic", text, expected, id=f"pythonic-{name}")


@pytest.mark.parametrize(("format_name", "text", "expected"), list(_corpus()))
def test_corpus_whole_and_split_at_every_position(format_name: str, text: str, expected: Outcome) -> None:
    assert parse(format_name, [text]) == ("", expected)
    for cut in range(1, len(text)):
        assert parse(format_name, [text[:cut], text[cut:]]) == ("", expected), f"split at {cut}"
    assert parse(format_name, list(text)) == ("", expected), "one character at a time"


QWEN35_PROMPT = "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<think>\n"
REASONING = [
    (
        "Qwen3.5 thinks, then calls",
        "The user wants the weather.\n</think>\n\n" + PARIS,
        QWEN35_PROMPT,
        ("The user wants the weather.", Outcome("", [("get_weather", {"city": "Paris"})])),
    ),
    (
        "a call drafted inside the thinking is not a call",
        "Maybe " + xml_call("get_time") + "?\n</think>\n\n" + PARIS,
        QWEN35_PROMPT,
        ("Maybe " + xml_call("get_time") + "?", Outcome("", [("get_weather", {"city": "Paris"})])),
    ),
    (
        "thinking switched off",
        "Hello!",
        QWEN35_PROMPT + "\n\n</think>\n\n",
        ("", Outcome("Hello!")),
    ),
    (
        "Qwen3-Coder writes no thinking",
        "<think>x</think>" + PARIS,
        "<|im_start|>assistant\n",
        ("x", Outcome("", [("get_weather", {"city": "Paris"})])),
    ),
]


@pytest.mark.parametrize(("name", "text", "prompt", "expected"), REASONING, ids=[c[0] for c in REASONING])
def test_reasoning_then_call(name: str, text: str, prompt: str, expected: tuple[str, Outcome]) -> None:
    for cut in range(len(text) + 1):
        assert parse("qwen3_coder", [text[:cut], text[cut:]], prompt) == expected, f"split at {cut}"


@pytest.mark.parametrize(
    ("format_name", "head", "piece", "meaning", "tail"),
    [
        ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\n", 'a<b"\\ ', 'a<b"\\ ', "\n</parameter>\n</function>"),
        ("pythonic", '[get_weather(city="', 'a<b\\"\\\\ ', 'a<b"\\ ', '")]'),
    ],
)
def test_string_arguments_stream_while_written(format_name: str, head: str, piece: str, meaning: str, tail: str) -> None:
    parser = get_format(format_name).new_parser(tools=TOOLS)
    events = parser.feed(head)
    assert [type(e) for e in events][:1] == [ToolCallStart] and events[0].name == "get_weather"
    fragments = 0
    for _ in range(50):
        new = parser.feed(piece * 25)
        fragments += sum(isinstance(e, ToolCallArgs) for e in new)
        events += new
    assert fragments == 50, "one fragment per chunk, not one at the end"
    events += parser.feed(tail) + parser.close()
    assert collect(events).calls == [("get_weather", {"city": meaning * 1250})]


@pytest.mark.parametrize(
    ("format_name", "text"),
    [
        ("qwen3_coder", xml_call("get_weather", ("city", "x" * 20000))),
        ("pythonic", "[" + ", ".join(f"get_weather(city='{'x' * 100}', days={i})" for i in range(200)) + "]"),
    ],
)
def test_long_outputs_in_small_pieces(format_name: str, text: str) -> None:
    """Linear time: a long output fed in 3-character pieces parses (quickly) to the same result."""
    whole = parse(format_name, [text])
    assert parse(format_name, [text[i : i + 3] for i in range(0, len(text), 3)]) == whole
    assert whole[1].calls and not whole[1].content


# -- (c) through the gateway --------------------------------------------------------------

# Markers the fake treats as special tokens: dropped from the output unless the request asks
# llama-server to keep them, as the real one does.
SPECIAL = {"<tool_call>", "</tool_call>", "<think>", "</think>", "<|python_start|>", "<|python_end|>", "<|im_start|>"}
EOG = ("<|im_end|>", "<|eot_id|>", "<|eot|>", "<end_of_turn>")

OPENAI_TOOLS = [tool.as_openai() for tool in TOOLS]
ASK = [{"role": "user", "content": "Weather in Paris and the time?"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeLlamaServer]:
    server = FakeLlamaServer(bos_token="", eos_token="<eos>", eog_tokens=EOG, special_tokens=SPECIAL)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sdk(fake: FakeLlamaServer) -> AsyncIterator[AsyncOpenAI]:
    backends = [{"name": "fake", "type": "llamacpp", "url": fake.url}]
    models = [
        {"name": family, "backend": "fake", "tool_format": format_name, "chat_template": str(TEMPLATES / file),
         "bos_token": bos, "eos_token": eos}
        for family, (file, format_name, bos, eos) in FAMILIES.items()
    ]  # fmt: skip
    async with (
        running_gateway(make_config(backends, models)) as url,
        AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0, timeout=30) as client,
    ):
        yield client


WEATHER_CALL = ("get_weather", {"city": "Paris"})
GATEWAY_CORPUS = {
    "qwen3-coder": [
        (PARIS, (None, [WEATHER_CALL]), "tool_calls"),
        ("Checking.\n" + PARIS + "\n" + xml_call("get_time"), ("Checking.", [WEATHER_CALL, ("get_time", {})]), "tool_calls"),
        (xml_call("set_config", ("temperature", "0.5"), ("zip", "007")), (None, [("set_config", {"temperature": 0.5, "zip": "007"})]), "tool_calls"),
        ("It is sunny.", ("It is sunny.", []), "stop"),
        ("<tool_call>\noops\n</tool_call>", ("<tool_call>\noops\n</tool_call>", []), "stop"),
    ],
    "qwen3.5": [
        ("Weather first.\n</think>\n\n" + PARIS, (None, [WEATHER_CALL]), "tool_calls"),
        ("Just answer.\n</think>\n\nIt is sunny.", ("It is sunny.", []), "stop"),
    ],
    "llama-3.2": [
        ('[get_weather(city="Paris"), get_time()]', (None, [WEATHER_CALL, ("get_time", {})]), "tool_calls"),
        ("[1, 2, 3] are numbers.", ("[1, 2, 3] are numbers.", []), "stop"),
    ],
    "llama-4": [
        ('<|python_start|>[get_weather(city="Paris")]<|python_end|>', (None, [WEATHER_CALL]), "tool_calls"),
        ("[get_time()]", (None, [("get_time", {})]), "tool_calls"),
    ],
    "gemma-3": [
        ("[get_weather(city='Paris')]", (None, [WEATHER_CALL]), "tool_calls"),
        ("[Note] No tool fits.", ("[Note] No tool fits.", []), "stop"),
    ],
}
GATEWAY_CASES = [(family, *case) for family, cases in GATEWAY_CORPUS.items() for case in cases]


@pytest.mark.parametrize(("family", "output", "expected", "finish_reason"), GATEWAY_CASES)
async def test_gateway_stream_and_non_stream_agree(
    sdk: AsyncOpenAI, fake: FakeLlamaServer, family: str, output: str, expected: tuple, finish_reason: str
) -> None:
    pieces = split_text(output, special=SPECIAL)
    fake.script(Scripted(pieces), Scripted(pieces))
    whole = await ask(sdk, model=family, tools=OPENAI_TOOLS)
    _, streamed = await ask_streamed(sdk, model=family, tools=OPENAI_TOOLS)
    for response in (whole, streamed):
        assert summary(response.choices[0].message) == expected
        assert response.choices[0].finish_reason == finish_reason
    ids = [call.id for call in whole.choices[0].message.tool_calls or []]
    assert len(set(ids)) == len(ids) and all(i.startswith("call_") for i in ids)
    body = fake.requests[-1]
    format_name = FAMILIES[family][1]
    markers = ["<tool_call>", "</tool_call>", "<think>", "</think>"] if format_name == "qwen3_coder" else ["<|python_start|>", "<|python_end|>"]
    assert set(markers) <= set(body["preserved_tokens"])
    assert '"get_weather"' in body["prompt"] or "<name>get_weather</name>" in body["prompt"], "the template lists the tools"


async def test_gateway_reasoning_is_split_off(sdk: AsyncOpenAI, fake: FakeLlamaServer) -> None:
    output = "Weather first.\n</think>\n\n" + PARIS
    pieces = split_text(output, special=SPECIAL)
    fake.script(Scripted(pieces), Scripted(pieces))
    whole = await ask(sdk, model="qwen3.5", tools=OPENAI_TOOLS)
    assert (whole.choices[0].message.model_extra or {}).get("reasoning_content") == "Weather first."
    chunks, _ = await ask_streamed(sdk, model="qwen3.5", tools=OPENAI_TOOLS)
    streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert streamed == "Weather first."
    assert fake.requests[-1]["prompt"].endswith("<|im_start|>assistant\n<think>\n")


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_gateway_renders_history_with_the_family_template(sdk: AsyncOpenAI, fake: FakeLlamaServer, family: str) -> None:
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny, 21C"},
    ]  # fmt: skip
    reply = "It is sunny." if family != "qwen3.5" else "Easy.\n</think>\n\nIt is sunny."
    fake.script(Scripted(split_text(reply, special=SPECIAL)))
    answer = await ask(sdk, model=family, messages=history, tools=OPENAI_TOOLS)
    assert answer.choices[0].message.content == "It is sunny."
    prompt = fake.requests[-1]["prompt"]
    call, result = RENDERED[family]
    bos = FAMILIES[family][2]
    assert call in prompt and result in prompt
    assert not (bos and prompt.startswith(bos)), "llama-server adds BOS itself"


async def test_gateway_max_tokens_cut_keeps_the_calls_as_written(sdk: AsyncOpenAI, fake: FakeLlamaServer) -> None:
    output = '[get_weather(city="Paris"), get_weather(city="Rome")]'
    pieces = split_text(output)
    cut = pieces.index("Rome") + 1  # inside the second call's string
    fake.script(Scripted(pieces), Scripted(pieces), Scripted(pieces))
    whole = await ask(sdk, model="gemma-3", tools=OPENAI_TOOLS, max_tokens=cut)
    assert whole.choices[0].finish_reason == "length"
    assert whole.choices[0].message.content is None
    # The second call was named before the cut: it stays, with the arguments written so far.
    assert [c.function.arguments for c in whole.choices[0].message.tool_calls] == ['{"city": "Paris"}', '{"city": "Rome']
    # Streamed, the same calls, and a normal end (the SDK's helper raises its length error).
    stream = await sdk.chat.completions.create(model="gemma-3", messages=ASK, tools=OPENAI_TOOLS, max_tokens=cut, stream=True)
    arguments: dict[int, str] = {}
    async for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            arguments[delta.index] = arguments.get(delta.index, "") + (delta.function.arguments or "" if delta.function else "")
        if chunk.choices[0].finish_reason:
            assert chunk.choices[0].finish_reason == "length"
    assert list(arguments.values()) == [c.function.arguments for c in whole.choices[0].message.tool_calls]
    with pytest.raises(LengthFinishReasonError):
        await ask_streamed(sdk, model="gemma-3", tools=OPENAI_TOOLS, max_tokens=cut)
