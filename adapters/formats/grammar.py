"""GBNF grammars (llama.cpp's grammar language) for tool calls: a JSON schema as grammar rules, and
the whole call block of a JSON-object format, for backends that constrain decoding with `grammar`.

Built to be safe on llama-server: no bounded repetitions (`{m,n}` hits its repetition limit, so
`minItems`/`maxItems`/`maxLength` are not expanded), rule names of letters, digits and dashes only,
and whitespace that cannot run away (one space, or one newline and a short indent).

Schema subset: `type` (one or a list), object `properties`/`required`/`additionalProperties`,
array `items` (`minItems` >= 1 means "not empty"), `enum`/`const` of any JSON value, `anyOf`/
`oneOf`/`allOf`, `nullable`, `$ref` to `#/...` in the same document (recursion allowed), and `{}`
for any value. Constraints with no cheap grammar (`pattern`, `format`, lengths, numeric bounds,
`not`, conditionals) are dropped: the grammar is looser there, never stricter than the schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import reduce
from types import MappingProxyType
from typing import Any

from .base import ToolFormat
from .conversation import ToolSpec

Schema = Mapping[str, Any]

# Up to 20 spaces or tabs after a newline, as nested optionals: the same bound as a `{0,20}`
# without a repetition count.
_INDENT = "( [ \\t] " * 20 + ")? " * 20

# Shared JSON rules: name -> (body, rules it uses). Added to a grammar only when used.
_PRIMITIVES: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType({
    "ws": ('( " " | "\\n" ws-indent )?', ("ws-indent",)),
    "ws-indent": (_INDENT.strip(), ()),
    "hex": ("[0-9a-fA-F]", ()),
    "json-char": ('[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" hex hex hex hex )', ("hex",)),
    "json-string": ('"\\"" json-char* "\\""', ("json-char",)),
    "json-integer": ('"-"? ( "0" | [1-9] [0-9]* )', ()),
    "json-number": ('json-integer ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?', ("json-integer",)),
    "json-boolean": ('"true" | "false"', ()),
    "json-null": ('"null"', ()),
    "json-array": ('"[" ws ( json-value ws ( "," ws json-value ws )* )? "]"', ("ws", "json-value")),
    "json-member": ('json-string ws ":" ws json-value ws', ("json-string", "ws", "json-value")),
    "json-object": ('"{" ws ( json-member ( "," ws json-member )* )? "}"', ("ws", "json-member")),
    "json-value": ("json-object | json-array | json-string | json-number | json-boolean | json-null",
                   ("json-object", "json-array", "json-string", "json-number", "json-boolean", "json-null")),
})  # fmt: skip
_TYPES = frozenset({"string", "number", "integer", "boolean", "null"})  # each has a json-<type> rule
_RESERVED = frozenset({"root", "call", *_PRIMITIVES})


# What a GBNF string literal must escape: its quote, backslash, and control characters.
_LITERAL_ESCAPES = MappingProxyType({
    **{code: f"\\x{code:02X}" for code in [*range(0x20), 0x7F]},
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord('"'): '\\"', ord("\\"): "\\\\",
})  # fmt: skip


def literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    return '"' + text.translate(_LITERAL_ESCAPES) + '"'


def _json_literal(value: Any) -> str:
    # The exact JSON text the model must write for a fixed value, spaced like the templates' tojson.
    return literal(json.dumps(value, ensure_ascii=False))


class GbnfRules:
    """The rules of one grammar being built. `value()` turns a schema into a rule name; `render()`
    writes the grammar. One instance per grammar: it keeps the names it handed out."""

    def __init__(self) -> None:
        self._rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        # (id of the document, $ref) -> rule; the documents are kept so that no id is reused.
        self._refs: dict[tuple[int, str], str] = {}
        self._documents: list[Schema] = []

    def use(self, name: str) -> str:
        """A shared JSON rule (`ws`, `json-string`, ...), with the rules it needs."""
        if name not in self._rules:
            body, needs = _PRIMITIVES[name]
            self._rules[name] = body
            for need in needs:
                self.use(need)
        return name

    def reserve(self, hint: str) -> str:
        """A fresh rule name made from `hint` (any text: tool and property names included)."""
        base = re.sub(r"[^A-Za-z0-9]+", "-", hint).strip("-") or "rule"
        name, counter = base, 1
        while name in self._rules or name in _RESERVED:
            counter += 1
            name = f"{base}-{counter}"
        self._rules[name] = ""
        return name

    def define(self, name: str, body: str) -> str:
        self._rules[name] = body
        self._by_body.setdefault(body, name)
        return name

    def rule(self, hint: str, body: str) -> str:
        """A named rule for `body`, reusing an identical one (many properties share a shape)."""
        existing = self._by_body.get(body)
        return existing if existing is not None else self.define(self.reserve(hint), body)

    def render(self, root: str) -> str:
        """The grammar text, with `root` (an expression) as the start rule."""
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self._rules.items()]
        return "\n".join(lines) + "\n"

    # -- JSON schema --------------------------------------------------------------------

    def value(self, schema: Schema | bool, hint: str, document: Schema | None = None) -> str:
        """A rule name matching one JSON value valid for `schema`; `$ref`s resolve in `document`
        (default: the schema itself)."""
        if not isinstance(schema, Mapping):
            return self.use("json-value")  # `true` (or not a schema at all): anything goes
        document = schema if document is None else document
        if "$ref" in schema:
            return self._ref(schema["$ref"], document)
        if "const" in schema:
            return self.rule(hint, _json_literal(schema["const"]))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rule(hint, " | ".join(_json_literal(item) for item in schema["enum"]))
        if "allOf" in schema:
            merged = reduce(_merge, schema["allOf"], {key: item for key, item in schema.items() if key != "allOf"})
            return self.value(merged, hint, document)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                # Keywords beside the alternatives (an object's `properties`) apply to each of them.
                base = {name: item for name, item in schema.items() if name != key}
                names = [self.value(_merge(base, part), f"{hint}-{n}", document) for n, part in enumerate(schema[key])]
                return self.rule(hint, " | ".join(dict.fromkeys(names)))
        kind = schema.get("type")
        kinds = [*(kind if isinstance(kind, list) else [kind]), *(["null"] if schema.get("nullable") is True else [])]
        if len(kinds) > 1:
            rest = {key: item for key, item in schema.items() if key not in ("type", "nullable")}
            names = [self.value({**rest, "type": one}, f"{hint}-{one}", document) for one in dict.fromkeys(kinds)]
            return self.rule(hint, " | ".join(dict.fromkeys(names)))
        kind = kinds[0] if kinds else None
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if kind == "object":
            return self._object(schema, hint, document)
        if kind == "array":
            return self._array(schema, hint, document)
        return self.use(f"json-{kind}" if kind in _TYPES else "json-value")

    def _ref(self, ref: str, document: Schema) -> str:
        key = (id(document), ref)
        if key not in self._refs:
            if not ref.startswith("#"):
                return self.use("json-value")  # remote references are not fetched
            target: Any = document
            for part in filter(None, ref[1:].split("/")):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
            if target is None:
                raise ValueError(f"unresolvable $ref {ref!r}")
            # Named before its body is built, so a recursive reference finds the rule.
            self._refs[key] = name = self.reserve("ref-" + ref.rsplit("/", 1)[-1])
            self._documents.append(document)
            self.define(name, self.value(target, name, document))
        return self._refs[key]

    def _object(self, schema: Schema, hint: str, document: Schema) -> str:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        # Only declared keys by default: a model should not invent arguments. A bare
        # {"type": "object"} declares nothing, so it stays open.
        extra = schema.get("additionalProperties", "properties" not in schema)
        ws = self.use("ws")
        pairs = [(self._pair(key, properties[key], f"{hint}-{key}", document), key in required) for key in properties]
        pairs += [(self._pair(key, {}, f"{hint}-{key}", document), True) for key in required if key not in properties]
        # `later`: the members from here on when one came before (each needs a comma);
        # `first`: the same when none did. Built from the end; declared order is kept.
        later, first = "", ""
        if extra is not False:
            value = self.value(extra, f"{hint}-extra", document)
            other = self.rule(f"{hint}-other", f'{self.use("json-string")} {ws} ":" {ws} {value} {ws}')
            later, first = f'( "," {ws} {other} )*', f'( {other} ( "," {ws} {other} )* )?'
        for pair, is_required in reversed(pairs):
            if is_required:
                first, later = _seq(pair, later), _seq('","', ws, pair, later)
            else:
                first = f"( {_seq(pair, later)} | {first} )" if first else f"( {_seq(pair, later)} )?"
                later = _seq(f'( "," {ws} {pair} )?', later)
        return self.rule(hint, _seq('"{"', ws, first, '"}"'))

    def _pair(self, key: str, schema: Any, hint: str, document: Schema) -> str:
        ws = self.use("ws")
        return self.rule(f"{hint}-kv", f'{_json_literal(key)} {ws} ":" {ws} {self.value(schema, hint, document)} {ws}')

    def _array(self, schema: Schema, hint: str, document: Schema) -> str:
        items = schema.get("items")
        item = self.value(items if isinstance(items, (Mapping, bool)) else {}, f"{hint}-item", document)
        ws = self.use("ws")
        elements = f'{item} {ws} ( "," {ws} {item} {ws} )*'
        # A non-empty array needs no counting; larger minimums are left to the schema check.
        elements = elements if (schema.get("minItems") or 0) >= 1 else f"( {elements} )?"
        return self.rule(hint, f'"[" {ws} {elements} "]"')


def _seq(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _merge(base: Schema, part: Any) -> dict[str, Any]:
    """`part` applied on top of `base` (for allOf, and for keywords beside anyOf): properties
    merge, required lists join, other keywords of `part` win."""
    if not isinstance(part, Mapping):
        return dict(base)
    merged = {**base, **part}
    if "properties" in base and "properties" in part:
        merged["properties"] = {**base["properties"], **part["properties"]}
    if "required" in base and "required" in part:
        merged["required"] = list(dict.fromkeys([*base["required"], *part["required"]]))
    return merged


def json_schema_to_gbnf(schema: Schema) -> str:
    """A complete grammar whose root is one JSON value valid for `schema`."""
    rules = GbnfRules()
    return rules.render(rules.value(schema, "value"))


def lazy_trigger(tool_format: ToolFormat) -> str:
    """The trigger word of a lazy call grammar: the first open marker, where the grammar starts."""
    if not tool_format.syntax.open_markers:  # xLAM's bare list: nothing to wait for
        raise ValueError(f"format {tool_format.name!r} has no marker for a lazy grammar to start at")
    return tool_format.syntax.open_markers[0]


def call_grammar(
    tool_format: ToolFormat, tools: tuple[ToolSpec, ...], *, lazy: bool, parallel: bool = False
) -> str:
    """A grammar for a reply made of tool calls in a JSON-object format.

    Not lazy: the output after the prefilled `tool_format.opening()` (the gateway prefills it for
    a forced call): one call object, then the close marker if the format has one. Lazy: llama.cpp
    applies the grammar from the start of the trigger text (`lazy_trigger`), so it begins there.
    `parallel`: more calls may follow, each as a whole new block (or, for formats with no close
    marker, as further objects after the format's separator).
    """
    syntax = tool_format.syntax
    if not syntax.json_objects:
        raise ValueError(f"format {tool_format.name!r} does not write calls as JSON objects")
    if not tools:
        raise ValueError("a call grammar needs at least one tool")
    rules = GbnfRules()
    ws = rules.use("ws")
    name_key, arguments_key = _json_literal(syntax.name_keys[0]), _json_literal(syntax.argument_keys[0])
    calls = []
    for tool in tools:
        arguments = rules.value(tool.parameters or {"type": "object"}, f"{tool.name}-arguments")
        head = f'"{{" {ws} {name_key} {ws} ":" {ws} {_json_literal(tool.name)} {ws} "," {ws} {arguments_key} {ws} ":"'
        calls.append(rules.rule(f"call-{tool.name}", f'{head} {ws} {arguments} {ws} "}}"'))
    # The name comes first, so it decides which arguments grammar follows.
    call = rules.define("call", " | ".join(calls))
    marker = literal(lazy_trigger(tool_format)) if lazy or (parallel and syntax.close_marker) else ""
    # After the prefilled opening no whitespace is added (the opening carries the format's own);
    # after a bare marker the model writes its own (hermes' newline).
    body = _seq(call, ws, literal(syntax.close_marker)) if syntax.close_marker else call
    first = f"{marker} {ws} {body}" if lazy else body
    if not parallel:
        return rules.render(first)
    if syntax.close_marker:
        more = f"( {ws} {marker} {ws} {body} )*"
    else:  # further objects in the same block, after the format's separator if it has one
        more = f"( {_seq(ws, literal(syntax.call_separator) if syntax.call_separator else '', ws, call)} )*"
    return rules.render(f"{first} {more}")
