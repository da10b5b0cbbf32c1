"""GBNF grammars for tool calls: each schema feature checked by matching texts against the
generated grammar (a small GBNF matcher below), then the grammars handed to a real llama-server,
which must accept them and generate calls that toolwire's own parser reads and the schema accepts."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import jsonschema
import pytest

from adapters.formats import get_format
from adapters.formats.base import ToolFormat
from adapters.formats.conversation import ToolCall, ToolSpec
from adapters.formats.events import ToolCallEnd, ToolCallStart
from adapters.formats.grammar import (
    GbnfRules,
    call_grammar,
    json_schema_to_gbnf,
    lazy_trigger,
    literal,
)
from adapters.formats.syntax import CallSyntax
from tests.support.real_llama import RunningServer

# -- a small GBNF matcher: enough of the language to check what grammar.py writes ------------

_TOKEN = re.compile(r'\s*("(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[A-Za-z0-9_-]+|[()|*+?])')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> list[str]:
    chars, position = [], 0
    while position < len(text):
        char = text[position]
        if char == "\\":
            code = text[position + 1]
            if code in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[code]
                chars.append(chr(int(text[position + 2 : position + 2 + width], 16)))
                position += 2 + width
                continue
            chars.append(_ESCAPES.get(code, code))
            position += 2
            continue
        chars.append(char)
        position += 1
    return chars


def _parse_alternatives(tokens: list[str], at: int) -> tuple[tuple, int]:
    alternatives, sequence = [], []
    while at < len(tokens) and tokens[at] != ")":
        token = tokens[at]
        at += 1
        if token == "|":
            alternatives.append(tuple(sequence))
            sequence = []
        elif token in "*+?":
            sequence[-1] = ("repeat", sequence[-1], token)
        elif token == "(":
            group, at = _parse_alternatives(tokens, at)
            sequence.append(group)
            at += 1  # the ")"
        elif token.startswith('"'):
            sequence.append(("text", "".join(_unescape(token[1:-1]))))
        elif token.startswith("["):
            body = _unescape(token[1:-1])
            negated = bool(body) and body[0] == "^" and not token.startswith("[\\^")
            body = body[1:] if negated else body
            ranges = []
            while body:
                if len(body) >= 3 and body[1] == "-":
                    ranges.append((body[0], body[2]))
                    body = body[3:]
                else:
                    ranges.append((body[0], body[0]))
                    body = body[1:]
            sequence.append(("class", negated, tuple(ranges)))
        else:
            sequence.append(("rule", token))
    alternatives.append(tuple(sequence))
    return ("alt", tuple(alternatives)), at


class Grammar:
    """Parses a grammar into rules and tells whether a whole text matches `root`."""

    def __init__(self, text: str) -> None:
        self.rules: dict[str, tuple] = {}
        for line in text.strip().splitlines():
            name, body = line.split(" ::= ", 1)
            assert re.fullmatch(r"[A-Za-z0-9-]+", name), name
            tokens = _TOKEN.findall(body)
            assert "".join(tokens).replace(" ", "") == body.replace(" ", ""), f"unparsed text in {line!r}"
            self.rules[name], _ = _parse_alternatives(tokens, 0)

    def matches(self, text: str) -> bool:
        memo: dict[tuple[str, int], frozenset[int]] = {}

        def ends(node: tuple, at: int) -> frozenset[int]:
            kind = node[0]
            if kind == "text":
                return frozenset({at + len(node[1])}) if text.startswith(node[1], at) else frozenset()
            if kind == "class":
                if at >= len(text):
                    return frozenset()
                inside = any(low <= text[at] <= high for low, high in node[2])
                return frozenset({at + 1}) if inside != node[1] else frozenset()
            if kind == "rule":
                if (node[1], at) not in memo:
                    memo[(node[1], at)] = ends(self.rules[node[1]], at)
                return memo[(node[1], at)]
            if kind == "alt":
                found: set[int] = set()
                for sequence in node[1]:
                    positions = {at}
                    for item in sequence:
                        positions = {end for position in positions for end in ends(item, position)}
                    found |= positions
                return frozenset(found)
            inner, operator = node[1], node[2]
            if operator == "?":
                return frozenset({at}) | ends(inner, at)
            reached, frontier = set(), {at} if operator == "*" else set(ends(inner, at))
            while frontier:
                reached |= frontier
                frontier = {end for position in frontier for end in ends(inner, position)} - reached
            return frozenset(reached)

        return len(text) in ends(("rule", "root"), 0)


def accepts(grammar_text: str, *texts: str) -> bool:
    grammar = Grammar(grammar_text)
    return all(grammar.matches(text) for text in texts)


def schema_grammar(schema: dict[str, Any]) -> Grammar:
    text = json_schema_to_gbnf(schema)
    assert not re.search(r"\{\d", text), "bounded repetitions are rejected by llama-server"
    return Grammar(text)


def test_the_matcher_itself() -> None:
    grammar = Grammar('root ::= "a" ( b | [x-z]+ ) "\\n"?\nb ::= [^a-y]')
    assert grammar.matches("az") and grammar.matches("axyz\n") and not grammar.matches("aa") and not grammar.matches("a")


# -- literals and names -------------------------------------------------------------------------


def test_literals_escape_quotes_backslashes_and_control_characters() -> None:
    assert literal('say "hi"\\\n\t\x01') == '"say \\"hi\\"\\\\\\n\\t\\x01"'
    text = 'a"b\\\\c\nd é\x7f'
    assert accepts("root ::= " + literal(text), text)


def test_rule_names_from_any_text_are_valid_and_unique() -> None:
    rules = GbnfRules()
    names = [rules.reserve(hint) for hint in ("get.weather", "get_weather", "root", "ws", "über/x", "")]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9-]+", name) for name in names)
    assert "root" not in names and "ws" not in names


# -- schema features ----------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string"}},
    "required": ["name"],
}


def test_object_required_keys_in_order_and_optional_ones_optional() -> None:
    grammar = schema_grammar(PERSON)
    for good in ({"name": "Ann"}, {"name": "Ann", "age": 3}, {"name": "Ann", "email": "a@b"},
                 {"name": "Ann", "age": 3, "email": "a@b"}):  # fmt: skip
        assert grammar.matches(json.dumps(good)), good
    for bad in ('{"age": 3}', "{}", '{"age": 3, "name": "Ann"}', '{"name": "Ann", "nick": "A"}',
                '{"name": "Ann",}', '{"name": "Ann" "age": 3}'):  # fmt: skip
        assert not grammar.matches(bad), bad


def test_object_with_no_required_keys_allows_any_subset_without_stray_commas() -> None:
    grammar = schema_grammar({"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}}})
    assert all(grammar.matches(text) for text in ("{}", '{"a": true}', '{"b": null}', '{"a": false, "b": null}'))
    assert not any(grammar.matches(text) for text in ('{,"b": null}', '{"b": null, "a": true}', '{"a": true,}'))


def test_additional_properties() -> None:
    # Declared keys only unless the schema opens the object; a bare object schema is open.
    open_object = schema_grammar({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": True})
    assert open_object.matches('{"a": 1, "x": [1, {"y": null}], "z": "w"}') and open_object.matches('{"q": 1}')
    typed = schema_grammar({"type": "object", "additionalProperties": {"type": "number"}})
    assert typed.matches('{"x": 1.5, "y": -2}') and not typed.matches('{"x": "no"}')
    assert schema_grammar({"type": "object"}).matches('{"anything": [true, "goes"]}')
    assert not schema_grammar({"type": "object", "properties": {}}).matches('{"x": 1}')


def test_strings_with_escapes_enum_const_and_ignored_pattern() -> None:
    grammar = schema_grammar({"type": "string", "pattern": "^[a-z]+$", "format": "email"})
    assert grammar.matches(json.dumps('say "hi"\\ é\n\u0001')) and grammar.matches('"\\u00e9"')
    assert not grammar.matches('"raw\nnewline"') and not grammar.matches('"bad \\q escape"')
    enum = schema_grammar({"type": "string", "enum": ["c", "f", 'a"b']})
    assert enum.matches('"c"') and enum.matches('"a\\"b"') and not enum.matches('"k"')
    assert schema_grammar({"const": "only"}).matches('"only"') and not schema_grammar({"const": "only"}).matches('"other"')


def test_enum_and_const_of_any_json_value() -> None:
    grammar = schema_grammar({"enum": [1, 2.5, True, None, "x", [1, 2], {"k": "v"}]})
    for good in ("1", "2.5", "true", "null", '"x"', "[1, 2]", '{"k": "v"}'):
        assert grammar.matches(good), good
    assert not grammar.matches("3") and not grammar.matches("false")


def test_numbers_integers_booleans_null() -> None:
    number, integer = schema_grammar({"type": "number"}), schema_grammar({"type": "integer", "minimum": 0})
    for good in ("0", "-3", "2.50", "1e9", "-1.5E-3"):
        assert number.matches(good), good
    assert not any(number.matches(bad) for bad in ("01", "1.", ".5", "+1", "1e", "NaN"))
    assert integer.matches("42") and integer.matches("-7") and not integer.matches("4.2")
    assert schema_grammar({"type": "boolean"}).matches("false") and not schema_grammar({"type": "boolean"}).matches("1")
    assert schema_grammar({"type": "null"}).matches("null")


def test_arrays_items_and_min_items_without_bounded_repetition() -> None:
    grammar = schema_grammar({"type": "array", "items": {"type": "integer"}, "maxItems": 500})
    assert all(grammar.matches(text) for text in ("[]", "[1]", "[1, 2,3]", "[\n  1,\n  2\n]"))
    assert not grammar.matches('[1, "x"]') and not grammar.matches("[1,]")
    non_empty = schema_grammar({"type": "array", "items": {"type": "string"}, "minItems": 1})
    assert non_empty.matches('["a"]') and not non_empty.matches("[]")
    assert schema_grammar({"type": "array"}).matches('[1, "two", {"three": [null]}]')


def test_any_of_one_of_type_lists_nullable_and_all_of() -> None:
    any_of = schema_grammar({"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["auto"]}]})
    assert any_of.matches("7") and any_of.matches('"auto"') and not any_of.matches('"other"')
    one_of = schema_grammar({"oneOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                                       {"type": "array", "items": {"type": "boolean"}}]})  # fmt: skip
    assert one_of.matches('{"a": 1}') and one_of.matches("[true]") and not one_of.matches('{"b": 1}')
    listed = schema_grammar({"type": ["string", "null"]})
    assert listed.matches('"s"') and listed.matches("null") and not listed.matches("1")
    nullable = schema_grammar({"type": "integer", "nullable": True})
    assert nullable.matches("null") and nullable.matches("3")
    all_of = schema_grammar({"allOf": [PERSON, {"properties": {"id": {"type": "integer"}}, "required": ["id"]}]})
    assert all_of.matches('{"name": "A", "id": 1}') and not all_of.matches('{"name": "A"}')


def test_refs_to_defs_and_definitions_including_recursive_ones() -> None:
    tree = {
        "$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"},
                                                            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                           "required": ["value"]}},
        "$ref": "#/$defs/node",
    }  # fmt: skip
    grammar = schema_grammar(tree)
    assert grammar.matches('{"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}, {"value": 4}]}')
    assert not grammar.matches('{"value": 1, "children": [{"children": []}]}')
    old_style = schema_grammar({"definitions": {"unit": {"enum": ["c", "f"]}}, "type": "object",
                                "properties": {"unit": {"$ref": "#/definitions/unit"}}, "required": ["unit"]})  # fmt: skip
    assert old_style.matches('{"unit": "f"}') and not old_style.matches('{"unit": "k"}')
    with pytest.raises(ValueError, match="unresolvable"):
        json_schema_to_gbnf({"$ref": "#/$defs/missing"})


def test_empty_schema_is_any_json_value() -> None:
    grammar = schema_grammar({})
    assert all(grammar.matches(text) for text in ('"s"', "-1.5", "null", '{"a": [1, {"b": false}]}', "[]", "{}"))
    assert not grammar.matches("{a: 1}") and not grammar.matches("[1 2]")


def test_whitespace_is_bounded() -> None:
    grammar = schema_grammar(PERSON)
    assert grammar.matches(json.dumps({"name": "Ann", "age": 3}, indent=2))
    assert grammar.matches('{\n\t"name" : "Ann" ,\n\t"age" : 3\n}')
    assert not grammar.matches('{\n\n"name": "Ann"}') and not grammar.matches('{  "name": "Ann"}')
    assert not grammar.matches("{\n" + " " * 21 + '"name": "Ann"}')


# -- whole calls --------------------------------------------------------------------------------

WEATHER = ToolSpec("get_weather", "Current weather for a city", {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city"],
})  # fmt: skip
ALARM = ToolSpec("set.alarm-v2", "Set an alarm", {
    "type": "object", "properties": {"hour": {"type": "integer"}, "label": {"type": "string"}}, "required": ["hour"],
})  # fmt: skip


def call_text(name: str, arguments: dict[str, Any]) -> str:
    return json.dumps({"name": name, "arguments": arguments})


def test_hermes_call_after_the_prefilled_opening() -> None:
    grammar = Grammar(call_grammar(get_format("hermes"), (WEATHER, ALARM), lazy=False))
    assert grammar.matches(call_text("get_weather", {"city": "Paris"}) + "\n</tool_call>")
    assert grammar.matches(call_text("set.alarm-v2", {"hour": 7, "label": "up"}) + "</tool_call>")
    # The name decides which arguments may follow.
    assert not grammar.matches(call_text("get_weather", {"hour": 7}) + "</tool_call>")
    assert not grammar.matches(call_text("get_time", {}) + "</tool_call>")
    assert not grammar.matches(call_text("get_weather", {"city": "Paris"}))  # the close marker is due
    # The prefilled opening already holds the marker and its newline.
    assert not grammar.matches("<tool_call>\n" + call_text("get_weather", {"city": "Paris"}) + "</tool_call>")
    assert not grammar.matches("\n" + call_text("get_weather", {"city": "Paris"}) + "</tool_call>")
    one = call_text("get_weather", {"city": "Paris"}) + "\n</tool_call>"
    assert not grammar.matches(f"{one}\n<tool_call>\n{one}")  # one call unless parallel
    parallel = Grammar(call_grammar(get_format("hermes"), (WEATHER, ALARM), lazy=False, parallel=True))
    assert parallel.matches(f"{one}\n<tool_call>\n{call_text('set.alarm-v2', {'hour': 7})}\n</tool_call>")


def test_lazy_grammar_starts_at_the_trigger() -> None:
    default = get_format("default")
    assert lazy_trigger(default) == "[TOOL_REQUEST]" and lazy_trigger(get_format("hermes")) == "<tool_call>"
    grammar = Grammar(call_grammar(default, (WEATHER,), lazy=True, parallel=True))
    block = "[TOOL_REQUEST]" + call_text("get_weather", {"city": "Oslo", "unit": "c"}) + "[END_TOOL_REQUEST]"
    assert grammar.matches(block) and grammar.matches(f"{block}\n{block}")
    assert not grammar.matches(call_text("get_weather", {"city": "Oslo"}) + "[END_TOOL_REQUEST]")
    hermes = Grammar(call_grammar(get_format("hermes"), (WEATHER,), lazy=True))
    assert hermes.matches("<tool_call>\n" + call_text("get_weather", {"city": "Oslo"}) + "\n</tool_call>")


def test_formats_without_a_close_marker_and_other_keys() -> None:
    llama3 = Grammar(call_grammar(get_format("llama3_json"), (WEATHER,), lazy=False, parallel=True))
    one = call_text("get_weather", {"city": "Rome"})
    assert llama3.matches(one) and llama3.matches(f"{one}; {one}") and not llama3.matches(f"{one} {one}")
    command_r = Grammar(call_grammar(get_format("command_r7b"), (WEATHER,), lazy=False))
    assert command_r.matches('{"tool_name": "get_weather", "parameters": {"city": "Rome"}}<|END_ACTION|>')


def test_tool_without_parameters_and_rejected_inputs() -> None:
    grammar = Grammar(call_grammar(get_format("default"), (ToolSpec("ping"),), lazy=False))
    assert grammar.matches('{"name": "ping", "arguments": {}}[END_TOOL_REQUEST]')
    assert not grammar.matches('{"name": "ping", "arguments": {"x": 1}}[END_TOOL_REQUEST]')

    class XmlFormat(ToolFormat):
        name = "xml"
        syntax = CallSyntax(open_markers=("<x>",), scanner=lambda *args: None)  # type: ignore[arg-type,return-value]

    with pytest.raises(ValueError, match="JSON objects"):
        call_grammar(XmlFormat(), (WEATHER,), lazy=False)
    with pytest.raises(ValueError, match="at least one tool"):
        call_grammar(get_format("hermes"), (), lazy=False)


# -- a real llama-server ------------------------------------------------------------------------

EVENT = ToolSpec("create_event", "Add an event to the calendar", {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "when": {"type": "object", "properties": {"day": {"type": "integer"}, "month": {"enum": ["jan", "feb", "mar"]}},
                 "required": ["day", "month"]},
        "attendees": {"type": "array", "items": {"type": "string"}},
        "all_day": {"type": "boolean"},
        "priority": {"type": ["number", "null"]},
    },
    "required": ["title", "when"],
})  # fmt: skip
REAL_TOOLS = (EVENT, ALARM)
FEW_SHOT = ToolCall("call_1", "create_event", json.dumps(
    {"title": "Lunch", "when": {"day": 5, "month": "jan"}, "attendees": ["Bob"], "all_day": False, "priority": 1}))


def complete(server: RunningServer, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + "/completion", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def prompt_for(tool_format: ToolFormat, question: str) -> str:
    # An example call in the format's own syntax keeps the tiny model's calls short (a base model
    # left alone can fill an array until n_predict runs out).
    return (
        f"{tool_format.describe_tools(REAL_TOOLS)}\n\nUser: Lunch with Bob on January 5th.\n"
        f"Assistant: {tool_format.write_call(FEW_SHOT)}\nUser: {question}\nAssistant: "
    )


def test_real_server_accepts_every_grammar_and_rejects_a_broken_one(llama_server: RunningServer) -> None:
    schemas = [PERSON, EVENT.parameters, {}, {"type": "object"}, {"enum": [1, "a\"b", None, {"k": [1]}]},
               {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
               {"$defs": {"n": {"type": "object", "properties": {"c": {"type": "array", "items": {"$ref": "#/$defs/n"}}}}},
                "$ref": "#/$defs/n"},
               {"type": "object", "properties": {'we"ird\\ key\n': {"type": ["string", "null"]}}, "additionalProperties": True}]  # fmt: skip
    bodies = [{"grammar": json_schema_to_gbnf(schema)} for schema in schemas]
    for name in ("default", "hermes", "llama3_json", "command_r7b"):
        tool_format = get_format(name)
        bodies.append({"grammar": call_grammar(tool_format, REAL_TOOLS, lazy=False, parallel=True)})
        bodies.append({"grammar": call_grammar(tool_format, REAL_TOOLS, lazy=True, parallel=True), "grammar_lazy": True,
                       "grammar_triggers": [{"type": 1, "value": lazy_trigger(tool_format)}]})  # fmt: skip
    for body in bodies:
        status, answer = complete(llama_server, {"prompt": "JSON:", "n_predict": 2, **body})
        assert status == 200, (body["grammar"], answer)
    # The server does check grammars: this build rejects `_` in rule names, for one.
    status, _ = complete(llama_server, {"prompt": "JSON:", "n_predict": 2, "grammar": 'root ::= a_b\na_b ::= "x"'})
    assert status == 400


@pytest.mark.parametrize("format_name", ["default", "hermes"])
def test_real_server_generates_parseable_schema_valid_calls(llama_server: RunningServer, format_name: str) -> None:
    tool_format = get_format(format_name)
    grammar = call_grammar(tool_format, REAL_TOOLS, lazy=False)
    prompt = prompt_for(tool_format, "Dinner with Ann on February 2nd.") + tool_format.opening()
    schemas = {tool.name: tool.parameters for tool in REAL_TOOLS}
    for seed in (1, 2, 3):
        body = {"prompt": prompt, "grammar": grammar, "n_predict": 96, "temperature": 0.8, "seed": seed}
        status, answer = complete(llama_server, body)
        assert status == 200, answer
        assert answer["stop_type"] == "eos", answer["content"]  # the grammar ended the reply
        parser = tool_format.new_parser(tools=REAL_TOOLS)
        events = parser.feed(tool_format.opening() + answer["content"]) + parser.close()
        starts = [event for event in events if isinstance(event, ToolCallStart)]
        ends = [event for event in events if isinstance(event, ToolCallEnd)]
        assert len(starts) == len(ends) == 1, (answer["content"], events)
        jsonschema.validate(json.loads(ends[0].arguments), schemas[starts[0].name])


def test_real_server_accepts_a_lazy_grammar(llama_server: RunningServer) -> None:
    tool_format = get_format("default")
    body = {
        "prompt": prompt_for(tool_format, "Wake me at 7 tomorrow."),
        "grammar": call_grammar(tool_format, REAL_TOOLS, lazy=True),
        "grammar_lazy": True,
        "grammar_triggers": [{"type": 1, "value": lazy_trigger(tool_format)}],
        "n_predict": 64,
        "temperature": 0.8,
        "seed": 1,
    }
    status, answer = complete(llama_server, body)
    assert status == 200, answer
    text, trigger = answer["content"], lazy_trigger(tool_format)
    if trigger in text and answer["stop_type"] == "eos":
        # Everything from the trigger on was generated under the grammar: one complete call.
        assert Grammar(body["grammar"]).matches(text[text.index(trigger) :])
        parser = tool_format.new_parser(tools=REAL_TOOLS)
        ends = [event for event in parser.feed(text) + parser.close() if isinstance(event, ToolCallEnd)]
        assert len(ends) == 1
