"""The families added for today's models: Gemma 4, FunctionGemma, GLM-4.5/4.7, Kimi K2, MiniMax-M2,
Seed-OSS, DeepSeek V3.2 (DSML), LFM2, xLAM, Nemotron Nano v2, Apriel, Command R+, Functionary v3.1.

(a) a corpus of model outputs per format (single, parallel, text around calls, reasoning, unicode and
    escapes, typed values, a malformed block, a token-limit cut), each parsed whole, split at every
    position and one character at a time;
(b) every format's written call parses back to the same call, and a named prefill opens the call;
(c) each family's real template renders a tool-call history, byte for byte as the family writes it,
    and the call it wrote parses back;
(d) the running gateway (`tool_format: auto`, real `openai` SDK, fake llama-server): stream and
    non-stream give the same answer for every family.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from adapters.formats import get_format
from adapters.formats.conversation import Conversation, Message, ToolCall
from adapters.formats.detect import detect_format
from adapters.formats.events import ToolCallStart
from adapters.formats.grammar import call_grammar
from gateway.core.chat_template import load_template_file
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.ollama import Scripted as OllamaScript
from tests.fakes.vllm import FakeVllmServer
from tests.fakes.vllm import Scripted as VllmScript
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.test_chat_template import SPECIAL_TOKENS
from tests.test_chat_tools import ask, ask_streamed, summary
from tests.test_format_xml_pythonic import TIME, TOOLS, WEATHER, parse
from tests.test_grammar import Grammar
from tests.test_stream_parser import Outcome

PARIS = ("get_weather", {"city": "Paris"})
NOW = ("get_time", {})
TRICKY = 'Zürich "Alt" \\ 東京 😀\n{x}, [y] </tag> \t'
CONFIG_ARGS = {"temperature": 0.25, "verbose": True, "options": {"depth": 2, "names": ["a", "b"], "on": None},
               "tags": ["x"], "zip": "01234", "limit": None}  # fmt: skip


def case(format_name: str, name: str, text: str, expected: Outcome, reasoning: str = "", prompt: str = "") -> object:
    return pytest.param(format_name, text, prompt, (reasoning, expected), id=f"{format_name}-{name}")


# -- (a) the corpus -------------------------------------------------------------------------


def g4(name: str, body: str) -> str:
    return f"<|tool_call>call:{name}{{{body}}}<tool_call|>"


Q = '<|"|>'
GEMMA4 = [
    case("gemma4", "single", g4("get_weather", f"city:{Q}Paris{Q}"), Outcome("", [PARIS])),
    case("gemma4", "parallel, back to back", g4("get_weather", f"city:{Q}Paris{Q},days:3") + g4("get_time", ""),
         Outcome("", [("get_weather", {"city": "Paris", "days": 3}), NOW])),
    case("gemma4", "text around", "Let me check.\n" + g4("get_time", "") + "\nDone.", Outcome("Let me check.\n\nDone.", [NOW])),
    case("gemma4", "reasoning, a drafted call in it is not a call",
         "<|channel>thought\nMaybe " + g4("get_time", "") + " first.<channel|>" + g4("get_weather", f"city:{Q}Paris{Q}"),
         Outcome("", [PARIS]), reasoning="Maybe " + g4("get_time", "") + " first.", prompt="<|turn>model\n"),
    case("gemma4", "the empty thought of the generation prompt", "It is sunny.", Outcome("It is sunny."),
         prompt="<|turn>model\n<|channel>thought\n<channel|>"),
    case("gemma4", "unicode and escapes are raw text", g4("get_weather", f"city:{Q}{TRICKY}{Q}"),
         Outcome("", [("get_weather", {"city": TRICKY})])),
    case("gemma4", "typed values",
         g4("set_config", f"limit:None,options:{{depth:2,names:[{Q}a{Q},{Q}b{Q}],on:null}},tags:[{Q}x{Q}],"
                          f"temperature:0.25,verbose:true,zip:{Q}01234{Q}"),
         Outcome("", [("set_config", CONFIG_ARGS)])),
    case("gemma4", "nested lists and empty containers", g4("set_config", f"options:{{a:[[1,-2.5],[],{{}}],b:{Q}{Q}}}"),
         Outcome("", [("set_config", {"options": {"a": [[1, -2.5], [], {}], "b": ""}})])),
    case("gemma4", "a malformed block is content", g4("get_weather", "city Paris"),
         Outcome(g4("get_weather", "city Paris"), failed=1)),
    case("gemma4", "no call: prefix", "<|tool_call>get_time{}<tool_call|>", Outcome("<|tool_call>get_time{}<tool_call|>")),
    case("gemma4", "cut inside a value", f"<|tool_call>call:get_weather{{city:{Q}Par",
         Outcome(f"<|tool_call>call:get_weather{{city:{Q}Par", failed=1)),
    case("gemma4", "cut before the name is complete", "<|tool_call>call:get_wea", Outcome("<|tool_call>call:get_wea")),
]

E = "<escape>"
FUNCTIONGEMMA = [
    case("functiongemma", "single", f"<start_function_call>call:get_weather{{city:{E}Paris{E}}}<end_function_call>",
         Outcome("", [PARIS])),
    case("functiongemma", "every value quoted, typed by the schema",
         f"<start_function_call>call:get_weather{{city:{E}Oslo{E},days:{E}3{E}}}<end_function_call>"
         f"<start_function_call>call:set_config{{verbose:{E}True{E},options:{E}{{'a': (1, 2)}}{E},zip:{E}007{E}}}<end_function_call>",
         Outcome("", [("get_weather", {"city": "Oslo", "days": 3}),
                      ("set_config", {"verbose": True, "options": {"a": [1, 2]}, "zip": "007"})])),
    case("functiongemma", "bare numbers as Google's guide writes them",
         f"<start_function_call>call:get_weather{{city:{E}Oslo{E},days:2}}<end_function_call>",
         Outcome("", [("get_weather", {"city": "Oslo", "days": 2})])),
    case("functiongemma", "text before, unicode",
         f"Sure.\n<start_function_call>call:get_weather{{city:{E}{TRICKY}{E}}}<end_function_call>",
         Outcome("Sure.", [("get_weather", {"city": TRICKY})])),
    case("functiongemma", "cut inside a value", f"<start_function_call>call:get_weather{{city:{E}Os",
         Outcome(f"<start_function_call>call:get_weather{{city:{E}Os", failed=1)),
]


def glm(name: str, *pairs: tuple[str, str], compact: bool = False) -> str:
    if compact:
        return f"<tool_call>{name}" + "".join(f"<arg_key>{k}</arg_key><arg_value>{v}</arg_value>" for k, v in pairs) + "</tool_call>"
    body = "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n" for k, v in pairs)
    return f"<tool_call>{name}\n{body}</tool_call>"


GLM = [
    case("glm45", "single (4.5/4.6)", glm("get_weather", ("city", "Paris")), Outcome("", [PARIS])),
    case("glm45", "single, compact (4.7)", glm("get_weather", ("city", "Paris"), compact=True), Outcome("", [PARIS])),
    case("glm45", "no arguments (4.7)", "<tool_call>get_time</tool_call>", Outcome("", [NOW])),
    case("glm45", "parallel, with text before",
         "Checking both.\n" + glm("get_weather", ("city", "Paris"), ("days", "3")) + "\n" + glm("get_time"),
         Outcome("Checking both.", [("get_weather", {"city": "Paris", "days": 3}), NOW])),
    case("glm45", "reasoning opened by 4.7's generation prompt",
         "The user wants weather.</think>" + glm("get_weather", ("city", "Paris"), compact=True),
         Outcome("", [PARIS]), reasoning="The user wants weather.", prompt="[gMASK]<sop><|user|>Hi<|assistant|><think>"),
    case("glm45", "reasoning written by the model (4.6)",
         "\n<think>Easy.</think>\n" + glm("get_time"), Outcome("", [NOW]), reasoning="Easy."),
    case("glm45", "unicode and escapes", glm("get_weather", ("city", TRICKY)), Outcome("", [("get_weather", {"city": TRICKY})])),
    case("glm45", "typed by the schema (values as tojson writes them)",
         glm("set_config", *((k, v if isinstance(v, str) else json.dumps(v)) for k, v in CONFIG_ARGS.items())),
         Outcome("", [("set_config", CONFIG_ARGS)])),
    case("glm45", "Hermes JSON inside the block is not this format",
         '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
         Outcome('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')),
    case("glm45", "a malformed block is content", "<tool_call>get_weather\ncity=Paris\n</tool_call>",
         Outcome("<tool_call>get_weather\ncity=Paris\n</tool_call>", failed=1)),
    case("glm45", "cut after the name", "<tool_call>get_weather\n<arg_key>ci",
         Outcome("<tool_call>get_weather\n<arg_key>ci", failed=1)),
    case("glm45", "cut inside the name", "<tool_call>get_wea", Outcome("<tool_call>get_wea")),
]


def invoke(name: str, *pairs: tuple[str, str]) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in pairs)
    return f'<invoke name="{name}">\n{body}</invoke>\n'


def minimax(*invokes: str) -> str:
    return "<minimax:tool_call>\n" + "".join(invokes) + "</minimax:tool_call>"


MINIMAX_PROMPT = "]~b]ai\n<think>\n"
MINIMAX = [
    case("minimax_m2", "thinks, then one call", "Weather first.\n</think>\n\n" + minimax(invoke("get_weather", ("city", "Paris"))),
         Outcome("", [PARIS]), reasoning="Weather first.", prompt=MINIMAX_PROMPT),
    case("minimax_m2", "parallel calls in one block",
         "ok\n</think>\n\nBoth.\n" + minimax(invoke("get_weather", ("city", "Paris"), ("days", "2")), invoke("get_time")),
         Outcome("Both.", [("get_weather", {"city": "Paris", "days": 2}), NOW]), reasoning="ok", prompt=MINIMAX_PROMPT),
    case("minimax_m2", "two blocks", minimax(invoke("get_time")) + "\n" + minimax(invoke("get_weather", ("city", "Paris"))),
         Outcome("", [NOW, PARIS])),
    case("minimax_m2", "unicode and escapes", minimax(invoke("get_weather", ("city", TRICKY))),
         Outcome("", [("get_weather", {"city": TRICKY})])),
    case("minimax_m2", "typed by the schema",
         minimax(invoke("set_config", *((k, v if isinstance(v, str) else json.dumps(v)) for k, v in CONFIG_ARGS.items()))),
         Outcome("", [("set_config", CONFIG_ARGS)])),
    case("minimax_m2", "text after the block", minimax(invoke("get_time")) + "\nDone.", Outcome("Done.", [NOW])),
    case("minimax_m2", "a malformed call after a good one",
         minimax(invoke("get_time")) [: -len("</minimax:tool_call>")] + "<invoke>oops</invoke>\n</minimax:tool_call>",
         Outcome("<invoke>oops</invoke>\n</minimax:tool_call>", [NOW])),
    case("minimax_m2", "cut after the name", '<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="city">Pa',
         Outcome('<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="city">Pa', failed=1)),
    case("minimax_m2", "cut inside the name", '<minimax:tool_call>\n<invoke name="get_wea',
         Outcome('<minimax:tool_call>\n<invoke name="get_wea')),
]


def seed(name: str, *pairs: tuple[str, str]) -> str:
    body = "".join(f"<parameter={k}>{v}</parameter>\n" for k, v in pairs)
    return f"<seed:tool_call>\n<function={name}>\n{body}</function>\n</seed:tool_call>"


SEED = [
    case("seed_oss", "single", seed("get_weather", ("city", "Paris")), Outcome("", [PARIS])),
    case("seed_oss", "reasoning, text, parallel blocks",
         "<seed:think>Two calls.</seed:think>Checking.\n" + seed("get_weather", ("city", "Paris"), ("days", "3")) + "\n" + seed("get_time"),
         Outcome("Checking.", [("get_weather", {"city": "Paris", "days": 3}), NOW]), reasoning="Two calls."),
    case("seed_oss", "Python literals, as the template writes history",
         seed("set_config", ("verbose", "True"), ("options", "{'depth': 2, 'names': ['a', 'b'], 'on': None}"),
              ("tags", "['x']"), ("limit", "None"), ("zip", "01234")),
         Outcome("", [("set_config", {"verbose": True, "options": {"depth": 2, "names": ["a", "b"], "on": None},
                                      "tags": ["x"], "limit": None, "zip": "01234"})])),
    case("seed_oss", "values padded with newlines as Qwen3-Coder writes them", seed("get_weather", ("city", "\nParis\n")),
         Outcome("", [PARIS])),
    case("seed_oss", "unicode and escapes", seed("get_weather", ("city", TRICKY)), Outcome("", [("get_weather", {"city": TRICKY})])),
    case("seed_oss", "a malformed block is content", "<seed:tool_call>\nget_weather(Paris)\n</seed:tool_call>",
         Outcome("<seed:tool_call>\nget_weather(Paris)\n</seed:tool_call>")),
    case("seed_oss", "cut after the name", "<seed:tool_call>\n<function=get_weather>\n<parameter=ci",
         Outcome("<seed:tool_call>\n<function=get_weather>\n<parameter=ci", failed=1)),
]

DSML = "｜DSML｜"


def dsml(*invokes: str) -> str:
    return f"<{DSML}function_calls>\n" + "".join(invokes) + f"</{DSML}function_calls>"


def dsml_invoke(name: str, *params: tuple[str, str, bool | None]) -> str:
    body = "".join(
        f'<{DSML}parameter name="{k}"' + ("" if raw is None else f' string="{str(raw).lower()}"') + f">{v}</{DSML}parameter>\n"
        for k, v, raw in params
    )
    return f'<{DSML}invoke name="{name}">\n{body}</{DSML}invoke>\n'


DEEPSEEK_V32 = [
    case("deepseek_v32", "single, after content", "Sure.\n\n" + dsml(dsml_invoke("get_weather", ("city", "Paris", True))),
         Outcome("Sure.", [PARIS])),
    case("deepseek_v32", "thinking mode, parallel",
         "Both.</think>" + dsml(dsml_invoke("get_weather", ("city", "Paris", True), ("days", "3", False)), dsml_invoke("get_time")),
         Outcome("", [("get_weather", {"city": "Paris", "days": 3}), NOW]), reasoning="Both.",
         prompt="<｜User｜>Hi<｜Assistant｜><think>"),
    case("deepseek_v32", "string= decides the type, not the schema",
         dsml(dsml_invoke("set_config", ("zip", "01234", True), ("options", '{"a": [1, null]}', False), ("tags", '["x"]', False),
                          ("verbose", "true", False), ("temperature", "0.5", True))),
         Outcome("", [("set_config", {"zip": "01234", "options": {"a": [1, None]}, "tags": ["x"], "verbose": True,
                                      "temperature": "0.5"})])),
    case("deepseek_v32", "no string= attribute: the schema decides",
         dsml(dsml_invoke("get_weather", ("city", "Oslo", None), ("days", "4", None))),
         Outcome("", [("get_weather", {"city": "Oslo", "days": 4})])),
    case("deepseek_v32", "unicode and escapes", dsml(dsml_invoke("get_weather", ("city", TRICKY, True))),
         Outcome("", [("get_weather", {"city": TRICKY})])),
    case("deepseek_v32", "a malformed block is content", f"<{DSML}function_calls>\nget_time()\n</{DSML}function_calls>",
         Outcome(f"<{DSML}function_calls>\nget_time()\n</{DSML}function_calls>")),
    case("deepseek_v32", "cut after the name", f'<{DSML}function_calls>\n<{DSML}invoke name="get_time">\n<{DSML}para',
         Outcome(f'<{DSML}function_calls>\n<{DSML}invoke name="get_time">\n<{DSML}para', failed=1)),
]


def kimi(*calls: tuple[str, int, str]) -> str:
    body = "".join(
        f"<|tool_call_begin|>functions.{name}:{index}<|tool_call_argument_begin|>{arguments}<|tool_call_end|>"
        for name, index, arguments in calls
    )
    return f"<|tool_calls_section_begin|>{body}<|tool_calls_section_end|>"


KIMI = [
    case("kimi_k2", "single", kimi(("get_weather", 0, '{"city": "Paris"}')), Outcome("", [PARIS])),
    case("kimi_k2", "parallel, text before", "Checking.\n" + kimi(("get_weather", 3, '{"city": "Paris"}'), ("get_time", 4, "{}")),
         Outcome("Checking.", [PARIS, NOW])),
    case("kimi_k2", "reasoning (K2-Thinking)", "<think>Need weather.</think>" + kimi(("get_weather", 0, '{"city": "Paris"}')),
         Outcome("", [PARIS]), reasoning="Need weather."),
    case("kimi_k2", "unicode and escapes", kimi(("get_weather", 0, json.dumps({"city": TRICKY}))),
         Outcome("", [("get_weather", {"city": TRICKY})])),
    case("kimi_k2", "typed values are JSON", kimi(("set_config", 0, json.dumps(CONFIG_ARGS))), Outcome("", [("set_config", CONFIG_ARGS)])),
    case("kimi_k2", "a malformed call is content",
         "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_time:0 {}<|tool_call_end|><|tool_calls_section_end|>",
         Outcome("<|tool_call_begin|>functions.get_time:0 {}<|tool_call_end|>")),
    case("kimi_k2", "cut inside the arguments",
         '<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Pa',
         Outcome('<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Pa', failed=1)),
]

LFM2 = [
    case("lfm2", "single", '<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>', Outcome("", [PARIS])),
    case("lfm2", "parallel, single quotes, text after (LFM2.5's history habit)",
         "<|tool_call_start|>[get_weather(city='Paris', days=3), get_time()]<|tool_call_end|>Checking.",
         Outcome("Checking.", [("get_weather", {"city": "Paris", "days": 3}), NOW])),
    case("lfm2", "reasoning (LFM2.5)", "<think>Tool time.</think>\n<|tool_call_start|>[get_time()]<|tool_call_end|>",
         Outcome("", [NOW]), reasoning="Tool time."),
    case("lfm2", "typed values",
         '<|tool_call_start|>[set_config(temperature=0.25, verbose=True, options={"depth": 2, "names": ["a", "b"], "on": None}, '
         "tags=['x'], zip='01234', limit=None)]<|tool_call_end|>",
         Outcome("", [("set_config", CONFIG_ARGS)])),
    case("lfm2", "unicode and escapes", '<|tool_call_start|>[get_weather(city="Zürich \\"Alt\\" \\\\ 東京 😀\\n")]<|tool_call_end|>',
         Outcome("", [("get_weather", {"city": 'Zürich "Alt" \\ 東京 😀\n'})])),
    case("lfm2", "a malformed call is content", "<|tool_call_start|>[get_weather(city=)]<|tool_call_end|>",
         Outcome("<|tool_call_start|>[get_weather(city=)]<|tool_call_end|>", failed=1)),
    case("lfm2", "cut inside a string", '<|tool_call_start|>[get_weather(city="Pa',
         Outcome('<|tool_call_start|>[get_weather(city="Pa', failed=1)),
]

XLAM = [
    case("xlam", "a list of calls", '[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]',
         Outcome("", [PARIS, NOW])),
    case("xlam", "one call object", '{"name": "get_time", "arguments": {}}', Outcome("", [NOW])),
    case("xlam", "unicode, typed values", json.dumps([{"name": "set_config", "arguments": CONFIG_ARGS},
                                                      {"name": "get_weather", "arguments": {"city": TRICKY}}]),
         Outcome("", [("set_config", CONFIG_ARGS), ("get_weather", {"city": TRICKY})])),
    case("xlam", "a plain answer", "No tool fits, sorry.", Outcome("No tool fits, sorry.")),
    case("xlam", "JSON that calls no offered tool is text", '[{"name": "Bob", "age": 3}]', Outcome('[{"name": "Bob", "age": 3}]')),
    case("xlam", "a list not at the start is text", 'Here: [{"name": "get_time", "arguments": {}}]',
         Outcome('Here: [{"name": "get_time", "arguments": {}}]')),
    case("xlam", "cut in the second call: the first stands",
         '[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"ci',
         Outcome(', {"name": "get_weather", "arguments": {"ci', [NOW], failed=1)),
]

NEMOTRON_PROMPT = "<SPECIAL_11>Assistant\n<think>\n"
OTHERS = [
    case("nemotron", "thinks, then calls", 'Tools.\n</think>\n<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
         '{"name": "get_time", "arguments": {}}]</TOOLCALL>', Outcome("", [PARIS, NOW]), reasoning="Tools.", prompt=NEMOTRON_PROMPT),
    case("nemotron", "unicode, cut", '<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Zü',
         Outcome('<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Zü', failed=1)),
    case("apriel", "reasoning from the generation prompt, then a call",
         'The user wants the time.\n[BEGIN FINAL RESPONSE]\n<tool_calls>[{"name": "get_time", "arguments": {}}]</tool_calls>',
         Outcome("", [NOW]), reasoning="The user wants the time.", prompt="<|begin_assistant|>\nHere are my reasoning steps:\n"),
    case("apriel", "an answer", "Easy.\n[BEGIN FINAL RESPONSE]\nIt is noon.", Outcome("It is noon."), reasoning="Easy.",
         prompt="<|begin_assistant|>\nHere are my reasoning steps:\n"),
    case("command_r_plus", "an action list",
         'I will search.\nAction: ```json\n[\n    {\n        "tool_name": "get_weather",\n        "parameters": {\n            "city": "Paris"\n'
         '        }\n    },\n    {\n        "tool_name": "get_time",\n        "parameters": {}\n    }\n]\n```',
         Outcome("I will search.", [PARIS, NOW])),
    case("command_r_plus", "the fence on its own line", 'Action:\n```json\n[{"tool_name": "get_time", "parameters": {}}]```',
         Outcome("", [NOW])),
    case("command_r_plus", "prose about actions", "Action: none needed. It is noon.", Outcome("Action: none needed. It is noon.")),
    case("functionary_v3_1", "calls one after another",
         'Sure. <function=get_weather>{"city": "Paris"}</function><function=get_time>{}</function>', Outcome("Sure.", [PARIS, NOW])),
    case("functionary_v3_1", "unicode", f"<function=get_weather>{json.dumps({'city': TRICKY})}</function>",
         Outcome("", [("get_weather", {"city": TRICKY})])),
    case("functionary_v3_1", "a malformed call is content", "<function=get_weather>city=Paris</function>",
         Outcome("<function=get_weather>city=Paris</function>")),
    case("functionary_v3_1", "cut inside the arguments", '<function=get_weather>{"city": "Pa',
         Outcome('<function=get_weather>{"city": "Pa', failed=1)),
]

CORPUS = [*GEMMA4, *FUNCTIONGEMMA, *GLM, *MINIMAX, *SEED, *DEEPSEEK_V32, *KIMI, *LFM2, *XLAM, *OTHERS]


@pytest.mark.parametrize(("format_name", "text", "prompt", "expected"), CORPUS)
def test_corpus_whole_and_split_at_every_position(format_name: str, text: str, prompt: str, expected: tuple[str, Outcome]) -> None:
    assert parse(format_name, [text], prompt) == expected
    for cut in range(1, len(text)):
        assert parse(format_name, [text[:cut], text[cut:]], prompt) == expected, f"split at {cut}"
    assert parse(format_name, list(text), prompt) == expected, "one character at a time"


NEW_FORMATS = ["gemma4", "functiongemma", "glm45", "kimi_k2", "minimax_m2", "seed_oss", "deepseek_v32", "lfm2", "xlam",
               "nemotron", "apriel", "command_r_plus", "functionary_v3_1"]  # fmt: skip


def test_every_new_format_has_a_corpus() -> None:
    covered = {param.values[0] for param in CORPUS}  # type: ignore[attr-defined]
    assert covered == set(NEW_FORMATS)


# -- (b) writers and prefills -----------------------------------------------------------------


@pytest.mark.parametrize("format_name", NEW_FORMATS)
@pytest.mark.parametrize("arguments", [{"city": "Paris", "days": 3}, {}, {"city": TRICKY, "days": -2}, CONFIG_ARGS],
                         ids=["plain", "empty", "unicode", "typed"])
def test_written_calls_parse_back(format_name: str, arguments: dict) -> None:
    tool_format = get_format(format_name)
    name = "set_config" if "zip" in arguments else "get_weather"
    calls = (ToolCall(f"functions.{name}:0", name, json.dumps(arguments)), ToolCall("functions.get_time:1", "get_time", "{}"))
    assert parse(format_name, [tool_format.write_call(calls[0])])[1] == Outcome("", [(name, arguments)])
    assert parse(format_name, [tool_format.write_calls(calls)])[1] == Outcome("", [(name, arguments), NOW])


# format -> (what a forced call to get_weather is prefilled with, how the model goes on)
PREFILLS = {
    "gemma4": ("<|tool_call>call:get_weather{", f"city:{Q}Paris{Q}}}<tool_call|>"),
    "functiongemma": ("<start_function_call>call:get_weather{", f"city:{E}Paris{E}}}<end_function_call>"),
    "glm45": ("<tool_call>get_weather", "\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"),
    "kimi_k2": ("<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:",
                '0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>'),
    "minimax_m2": ('<minimax:tool_call>\n<invoke name="get_weather">\n', '<parameter name="city">Paris</parameter>\n</invoke>\n</minimax:tool_call>'),
    "seed_oss": ("<seed:tool_call>\n<function=get_weather>\n", "<parameter=city>Paris</parameter>\n</function>\n</seed:tool_call>"),
    "deepseek_v32": (f'<{DSML}function_calls>\n<{DSML}invoke name="get_weather">\n',
                     f'<{DSML}parameter name="city" string="true">Paris</{DSML}parameter>\n</{DSML}invoke>\n</{DSML}function_calls>'),
    "lfm2": ("<|tool_call_start|>[get_weather(", 'city="Paris")]<|tool_call_end|>'),
    "xlam": ('{"name": "get_weather", "arguments": ', '{"city": "Paris"}}'),
    "nemotron": ('<TOOLCALL>{"name": "get_weather", "arguments": ', '{"city": "Paris"}}</TOOLCALL>'),
    "apriel": ('<tool_calls>{"name": "get_weather", "arguments": ', '{"city": "Paris"}}</tool_calls>'),
    "command_r_plus": ('Action:\n```json\n{"tool_name": "get_weather", "parameters": ', '{"city": "Paris"}}\n```'),
    "functionary_v3_1": ("<function=get_weather>", '{"city": "Paris"}</function>'),
}


@pytest.mark.parametrize("format_name", NEW_FORMATS)
def test_prefill_for_a_named_tool_opens_its_call(format_name: str) -> None:
    tool_format = get_format(format_name)
    prefill, rest = PREFILLS[format_name]
    assert tool_format.prefill("get_weather") == prefill
    assert prefill.startswith(tool_format.opening())
    assert parse(format_name, [prefill, rest])[1] == Outcome("", [PARIS])


# -- (c) the real templates -------------------------------------------------------------------

DESCRIBED_TIME = type(TIME)("get_time", "The current time", TIME.parameters)
HISTORY = Conversation(
    messages=(
        Message("system", "Be brief."),
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris", "days": 3}'),
                                             ToolCall("call_2", "get_time", "{}"))),
        Message("tool", "sunny, 21C", tool_call_id="call_1"),
        Message("tool", "noon", tool_call_id="call_2"),
        Message("assistant", "It is sunny."),
        Message("user", "And tomorrow?"),
    ),
    tools=(WEATHER, DESCRIBED_TIME),
)
BOTH_CALLS = [("get_weather", {"city": "Paris", "days": 3}), NOW]
QWEN_CALLS = ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
              "</function>\n</tool_call><tool_call>\n<function=get_time>\n</function>\n</tool_call>")  # fmt: skip
KIMI_CALLS = kimi(("get_weather", 0, '{"city": "Paris", "days": 3}'), ("get_time", 1, "{}"))
GEMMA4_CALLS = g4("get_weather", f"city:{Q}Paris{Q},days:3") + g4("get_time", "")
JSON_LIST = '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}, {"name": "get_time", "arguments": {}}]'
LFM_CALLS = '<|tool_call_start|>[get_weather(city="Paris", days=3), get_time()]<|tool_call_end|>'
# fixture -> (the format auto picks, the past calls as the template writes them, the first result as it writes it)
RENDERED = {
    "GLM-4.6": ("glm45", glm("get_weather", ("city", "Paris"), ("days", "3")) + "\n" + glm("get_time"),
                "<|observation|>\n<tool_response>\nsunny, 21C\n</tool_response>"),
    "GLM-4.7-Flash": ("glm45", glm("get_weather", ("city", "Paris"), ("days", "3"), compact=True) + "<tool_call>get_time</tool_call>",
                      "<|observation|><tool_response>sunny, 21C</tool_response>"),
    "MiniMax-M2": ("minimax_m2", minimax(invoke("get_weather", ("city", "Paris"), ("days", "3")), invoke("get_time")),
                   "]~b]tool\n<response>sunny, 21C</response>"),
    "ByteDance-Seed-OSS": ("seed_oss", seed("get_weather", ("city", "Paris"), ("days", "3")) + "\n" + seed("get_time"),
                           "<seed:bos>tool\nsunny, 21C<seed:eos>"),
    "deepseek-ai-DeepSeek-V3.2": ("deepseek_v32", dsml(dsml_invoke("get_weather", ("city", "Paris", True), ("days", "3", False)),
                                                       dsml_invoke("get_time")),
                                  "\n\n<function_results>\n<result>sunny, 21C</result>\n<result>noon</result>\n</function_results>"),
    "Kimi-K2-Instruct": ("kimi_k2", KIMI_CALLS, "## Return of functions.get_weather:0\nsunny, 21C"),
    "Kimi-K2-Thinking": ("kimi_k2", KIMI_CALLS, "## Return of functions.get_weather:0\nsunny, 21C"),
    "moonshotai-Kimi-K2": ("kimi_k2", KIMI_CALLS, "## Return of functions.get_weather:0\\nsunny, 21C"),  # (sic: a literal \n)
    "google-gemma-4-31B-it": ("gemma4", GEMMA4_CALLS, f"<|tool_response>response:get_weather{{value:{Q}sunny, 21C{Q}}}<tool_response|>"),
    "google-gemma-4-31B-it-interleaved": ("gemma4", GEMMA4_CALLS, "<|turn>tool\nsunny, 21C<turn|>"),
    "gemma4": ("gemma4", GEMMA4_CALLS, "<|turn>tool\nsunny, 21C<turn|>"),
    "tool_chat_template_functiongemma": (
        "functiongemma",
        (f"<start_function_call>call:get_weather{{city:{E}Paris{E},days:{E}3{E}}}<end_function_call>"
        "<start_function_call>call:get_time{}<end_function_call>"),
        "<start_of_turn>user\nFunction result for get_weather: sunny, 21C<end_of_turn>",
    ),
    # This template draws no past calls: they are written as the model writes them.
    "LFM2-8B-A1B": ("lfm2", LFM_CALLS, "<|tool_response_start|>sunny, 21C<|tool_response_end|>"),
    "LFM2.5-8B-A1B": ("lfm2", "<|tool_call_start|>[get_weather(city='Paris', days=3), get_time()]<|tool_call_end|>",
                      "<|im_start|>tool\nsunny, 21C<|im_end|>"),
    "LFM2.5-Instruct": ("lfm2", LFM_CALLS, "<|im_start|>tool\nsunny, 21C<|im_end|>"),
    "tool_chat_template_xlam_llama": ("xlam", JSON_LIST, "<|start_header_id|>ipython<|end_header_id|>\n\nsunny, 21C<|eot_id|>"),
    "tool_chat_template_xlam_qwen": ("xlam", JSON_LIST, "<|im_start|>tool\nsunny, 21C<|im_end|>"),
    "NVIDIA-Nemotron-Nano-v2": ("nemotron", f"<TOOLCALL>{JSON_LIST}</TOOLCALL>", "<TOOL_RESPONSE>[sunny, 21C, noon]</TOOL_RESPONSE>"),
    "Apriel-1.6-15b-Thinker-fixed": (
        "apriel",
        ('<tool_calls>[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}, "id": "call_1"}, '
        '{"name": "get_time", "arguments": {}, "id": "call_2"}]</tool_calls>'),
        "<|begin_tool_result|>\nsunny, 21C\n",
    ),
    "CohereForAI-c4ai-command-r-plus-tool_use": (
        "command_r_plus",
        ('Action:\n```json\n[\n    {\n        "tool_name": "get_weather",\n        "parameters": {\n            "city": "Paris",\n'
        '            "days": 3\n        }\n    },\n    {\n        "tool_name": "get_time",\n        "parameters": {}\n    }\n]```'),
        "<results>\nsunny, 21C</results>",
    ),
    "meetkai-functionary-medium-v3.1": ("functionary_v3_1", '<function=get_weather>{"city": "Paris", "days": 3}</function><function=get_time>{}</function>',
                                        "<|start_header_id|>ipython<|end_header_id|>\n\nsunny, 21C<|eot_id|>"),
    "StepFun3.5-Flash": ("qwen3_coder", QWEN_CALLS, "<tool_response>sunny, 21C</tool_response><tool_response>noon</tool_response>"),
    "Qwen3.5-4B": ("qwen3_coder", QWEN_CALLS.replace("</tool_call><tool_call>", "</tool_call>\n<tool_call>"),
                   "<tool_response>\nsunny, 21C\n</tool_response>"),
}


def render(fixture: str, conversation: Conversation = HISTORY) -> tuple[str, str]:
    """(the format `auto` names, the prompt the family's template renders for `conversation`)."""
    bos, eos = SPECIAL_TOKENS[fixture]
    template = load_template_file(TEMPLATES / f"{fixture}.jinja", bos_token=bos, eos_token=eos)
    format_name = detect_format(template.source).format
    data = get_format(format_name).template_input(conversation, template.caps)
    return format_name, template.render(data.messages, tools=data.tools, add_generation_prompt=True)


@pytest.mark.parametrize("fixture", list(RENDERED))
def test_family_templates_render_calls_and_results(fixture: str) -> None:
    format_name, calls, result = RENDERED[fixture]
    detected, prompt = render(fixture)
    assert detected == format_name
    assert calls in prompt
    assert result in prompt
    for text in ("Be brief.", "It is sunny.", "And tomorrow?", "The current time"):
        assert text in prompt
    # What the template wrote for the past calls, written again by the model, is the same calls.
    assert parse(format_name, [calls])[1] == Outcome("", BOTH_CALLS)


EXTRA_KWARGS = {"fireworks-ai-llama-3-firefunction-v2": {"functions": "[]", "datetime": "2025-01-01"}}


@pytest.mark.parametrize("fixture", sorted(SPECIAL_TOKENS))
def test_every_fixture_renders_a_tool_call_history(fixture: str) -> None:
    bos, eos = SPECIAL_TOKENS[fixture]
    template = load_template_file(TEMPLATES / f"{fixture}.jinja", bos_token=bos, eos_token=eos)
    tool_format = get_format(detect_format(template.source).format)
    data = tool_format.template_input(HISTORY, template.caps)
    prompt = template.render(data.messages, tools=data.tools, add_generation_prompt=True, **EXTRA_KWARGS.get(fixture, {}))
    for text in ("Weather in Paris?", "sunny, 21C", "noon", "It is sunny.", "And tomorrow?"):
        assert text in prompt
    assert "get_weather" in prompt and "Paris" in prompt, "the past call is in the prompt"


# -- (d) through the gateway -------------------------------------------------------------------

SPECIAL = {
    "<|tool_call>", "<tool_call|>", '<|"|>', "<|channel>", "<channel|>", "<|tool_response>", "<tool_response|>",
    "<start_function_call>", "<end_function_call>", "<escape>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>",
    "<arg_value>", "</arg_value>", "<think>", "</think>", "<|observation|>", "<|tool_calls_section_begin|>",
    "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_end|>", "<|tool_call_argument_begin|>",
    "<minimax:tool_call>", "</minimax:tool_call>", "<seed:tool_call>", "</seed:tool_call>", "<seed:think>", "</seed:think>",
    "<|tool_call_start|>", "<TOOLCALL>", "</TOOLCALL>", "<|im_start|>",
}  # fmt: skip
EOG = ("<|im_end|>", "<|eot_id|>", "<turn|>", "<end_of_turn>", "[e~[", "<seed:eos>", "<SPECIAL_12>", "<|END_OF_TURN_TOKEN|>")
# fixture -> (an output with calls, the content and calls the client gets, an answer in words)
GATEWAY = {
    "google-gemma-4-31B-it": ("<|channel>thought\nweather<channel|>" + g4("get_weather", f"city:{Q}Paris{Q}") + g4("get_time", ""),
                              None, [PARIS, NOW], "Sunny."),
    "tool_chat_template_functiongemma": (f"<start_function_call>call:get_weather{{city:{E}Paris{E}}}<end_function_call>",
                                         None, [PARIS], "Sunny."),
    "GLM-4.6": ("\n<think>hmm</think>\n" + glm("get_weather", ("city", "Paris")) + glm("get_time"), None, [PARIS, NOW],
                "\n<think></think>\nSunny."),
    "GLM-4.7-Flash": ("Weather.</think>" + glm("get_weather", ("city", "Paris"), compact=True), None, [PARIS], "</think>Sunny."),
    "Kimi-K2-Thinking": ("<think>x</think>" + kimi(("get_weather", 0, '{"city": "Paris"}')), None, [PARIS], "<think></think>Sunny."),
    "MiniMax-M2": ("Weather.\n</think>\n\n" + minimax(invoke("get_weather", ("city", "Paris")), invoke("get_time")), None,
                   [PARIS, NOW], "Easy.\n</think>\n\nSunny."),
    "ByteDance-Seed-OSS": ("<seed:think>x</seed:think>" + seed("get_weather", ("city", "Paris")), None, [PARIS], "Sunny."),
    "deepseek-ai-DeepSeek-V3.2": ("Sure.\n\n" + dsml(dsml_invoke("get_weather", ("city", "Paris", True))), "Sure.", [PARIS], "Sunny."),
    "LFM2.5-8B-A1B": ("<|tool_call_start|>[get_weather(city='Paris'), get_time()]<|tool_call_end|>", None, [PARIS, NOW], "Sunny."),
    "tool_chat_template_xlam_qwen": ('[{"name": "get_weather", "arguments": {"city": "Paris"}}]', None, [PARIS], "Sunny."),
    "NVIDIA-Nemotron-Nano-v2": ('ok</think><TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</TOOLCALL>',
                                None, [PARIS], "ok</think>Sunny."),
    "Apriel-1.6-15b-Thinker-fixed": ('x\n[BEGIN FINAL RESPONSE]\n<tool_calls>[{"name": "get_time", "arguments": {}}]</tool_calls>',
                                     None, [NOW], "x\n[BEGIN FINAL RESPONSE]\nSunny."),
    "CohereForAI-c4ai-command-r-plus-tool_use": (
        'Action: ```json\n[{"tool_name": "get_weather", "parameters": {"city": "Paris"}}]\n```', None, [PARIS], "Sunny."),
    "meetkai-functionary-medium-v3.1": ('<function=get_weather>{"city": "Paris"}</function>', None, [PARIS], "Sunny."),
}
OPENAI_TOOLS = [tool.as_openai() for tool in (*TOOLS, DESCRIBED_TIME) if tool.name != "get_time" or tool.description]


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
        {"name": fixture, "backend": "fake", "tool_format": "auto", "chat_template": str(TEMPLATES / f"{fixture}.jinja"),
         "bos_token": SPECIAL_TOKENS[fixture][0], "eos_token": SPECIAL_TOKENS[fixture][1]}
        for fixture in GATEWAY
    ]  # fmt: skip
    async with (
        running_gateway(make_config(backends, models)) as url,
        AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0, timeout=30) as client,
    ):
        yield client


@pytest.mark.parametrize("fixture", list(GATEWAY))
async def test_gateway_stream_and_non_stream_agree(sdk: AsyncOpenAI, fake: FakeLlamaServer, fixture: str) -> None:
    output, content, calls, answer = GATEWAY[fixture]
    messages = [{"role": "user", "content": "Weather in Paris, and the time?"}]
    for text, expected, finish_reason in ((output, (content, calls), "tool_calls"), (answer, ("Sunny.", []), "stop")):
        pieces = split_text(text, special=SPECIAL)
        fake.script(Scripted(pieces), Scripted(pieces))
        whole = await ask(sdk, model=fixture, messages=messages, tools=OPENAI_TOOLS)
        _, streamed = await ask_streamed(sdk, model=fixture, messages=messages, tools=OPENAI_TOOLS)
        for response in (whole, streamed):
            assert summary(response.choices[0].message) == expected
            assert response.choices[0].finish_reason == finish_reason
    body = fake.requests[-1]
    format_name = detect_format((TEMPLATES / f"{fixture}.jinja").read_text()).format
    assert set(get_format(format_name).preserved_tokens) <= set(body.get("preserved_tokens", ()))
    assert "get_weather" in body["prompt"], "the template lists the tools"


# -- constrained calls for the JSON-object formats ------------------------------------------------


@pytest.mark.parametrize("format_name", ["xlam", "nemotron", "apriel", "command_r_plus"])
def test_json_formats_constrain_a_forced_call_and_read_it_back(format_name: str) -> None:
    tool_format = get_format(format_name)
    grammar = Grammar(call_grammar(tool_format, (WEATHER,), lazy=False))
    keys = tool_format.syntax.name_keys[0], tool_format.syntax.argument_keys[0]
    body = json.dumps({keys[0]: "get_weather", keys[1]: {"city": "Paris"}})
    close = tool_format.syntax.close_marker or ""
    written = body + close
    assert grammar.matches(written) and not grammar.matches(body.replace("get_weather", "get_time") + close)
    # After the prefilled opening the model writes what the grammar admits: that is the call.
    assert parse(format_name, [tool_format.opening(), written])[1] == Outcome("", [PARIS])
    schema = tool_format.call_schema((WEATHER,))
    assert schema is not None and schema["properties"][keys[0]] == {"const": "get_weather"}


def test_a_format_with_no_marker_has_no_lazy_grammar() -> None:
    with pytest.raises(ValueError, match="no marker"):
        call_grammar(get_format("xlam"), (WEATHER,), lazy=True)
    lazy = Grammar(call_grammar(get_format("nemotron"), (WEATHER,), lazy=True, parallel=True))
    one = '<TOOLCALL>{"name": "get_weather", "arguments": {"city": "Oslo"}}</TOOLCALL>'
    assert lazy.matches(one) and lazy.matches(one + "\n" + one)


@pytest.mark.parametrize("backend", ["vllm", "ollama"])
async def test_every_family_on_vllm_and_ollama(backend: str) -> None:
    """The same outputs through the other two backends: vLLM keeps special tokens when asked, and on
    Ollama the families' markers arrive as user-defined tokens (it never prints control tokens)."""
    if backend == "vllm":
        server: FakeVllmServer | FakeOllama = FakeVllmServer(model="m", eos_token="<eos>", eog_tokens=EOG, special_tokens=SPECIAL)
    else:
        server = FakeOllama(models=[FakeModel(name="m", parameters={})], special_tokens={"<eos>"}, eog_tokens={"<eos>"})
    async with server:
        models = [
            {"name": fixture, "backend": "b", "upstream_model": "m", "tool_format": "auto",
             "chat_template": str(TEMPLATES / f"{fixture}.jinja"), "bos_token": SPECIAL_TOKENS[fixture][0],
             "eos_token": SPECIAL_TOKENS[fixture][1]}
            for fixture in GATEWAY
        ]  # fmt: skip
        config = make_config([{"name": "b", "type": backend, "url": server.url}], models)
        script = VllmScript if backend == "vllm" else OllamaScript
        messages = [{"role": "user", "content": "Weather in Paris, and the time?"}]
        async with (
            running_gateway(config) as url,
            AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0, timeout=30) as client,
        ):
            for fixture, (output, content, calls, _) in GATEWAY.items():
                pieces = split_text(output, special=SPECIAL)
                server.script(script(pieces), script(pieces))
                whole = await ask(client, model=fixture, messages=messages, tools=OPENAI_TOOLS)
                _, streamed = await ask_streamed(client, model=fixture, messages=messages, tools=OPENAI_TOOLS)
                for response in (whole, streamed):
                    assert summary(response.choices[0].message) == (content, calls), fixture
                    assert response.choices[0].finish_reason == "tool_calls"


def test_kimi_keeps_the_ids_the_model_writes() -> None:
    text = kimi(("get_weather", 3, '{"city": "Paris"}'), ("get_time", 4, "{}"), ("get_time", 4, "{}"))
    for cut in range(len(text) + 1):
        parser = get_format("kimi_k2").new_parser(tools=TOOLS)
        events = parser.feed(text[:cut]) + parser.feed(text[cut:]) + parser.close()
        ids = [event.id for event in events if isinstance(event, ToolCallStart)]
        # The model's own ids; one written twice in a reply is not reused.
        assert ids[:2] == ["functions.get_weather:3", "functions.get_time:4"], f"split at {cut}"
        assert len(ids) == 3 and ids[2].startswith("call_")
    # Written back, the ids the client returns are the model's.
    history = Conversation((Message("user", "x"), Message("assistant", "", tool_calls=(ToolCall("functions.get_time:4", "get_time", "{}"),)),
                            Message("tool", "noon", tool_call_id="functions.get_time:4")))  # fmt: skip
    _, prompt = render("Kimi-K2-Instruct", history)
    assert "<|tool_call_begin|>functions.get_time:4<|tool_call_argument_begin|>{}" in prompt
    assert "## Return of functions.get_time:4\nnoon" in prompt
