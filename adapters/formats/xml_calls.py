"""Incremental scanner for Qwen3-Coder's XML tool calls (Qwen3-Coder, Qwen3.5).

The engine finds `<tool_call>` and `</tool_call>`; this reads what lies between:

    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>

Values are plain text, so their JSON type comes from the tool's parameter schema. A string value
streams as a JSON string while it is written; any other type is parsed whole at `</parameter>`.
The arguments are a JSON object text built on the fly. Each character is read once; the only text
held back is the tail of a value that could be the start of `\\n</parameter>`.
"""

from __future__ import annotations

import json
import math
import re
from enum import IntEnum
from typing import Any

import orjson

from .conversation import ToolSpec
from .events import ParseEvent, ToolCallArgs, ToolCallEnd, ToolCallStart
from .json_calls import CallIndexer, ScanResult, ScanStatus
from .markers import partial_marker_length
from .python_literals import json_chars
from .pythonic_calls import python_literal_json

FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
PARAMETER_OPEN = "<parameter="
PARAMETER_CLOSE = "</parameter>"
# The template writes a newline on each side of a value: the one before the close tag is not the
# value's, so a trailing newline is held back until we know whether the close tag follows it.
_VALUE_ENDS = ("\n" + PARAMETER_CLOSE, PARAMETER_CLOSE)
# A name ends at `>`; a newline or another tag before it means this is not a call.
_NAME_STOP = re.compile(r"[>\n<]")
_WHITESPACE = " \t\r\n"


class _State(IntEnum):
    TAG = 0  # between elements: whitespace, then one of the expected tags
    NAME = 1  # the name inside `<function=...>` or `<parameter=...>`, up to `>`
    VALUE = 2  # a parameter's value, up to `</parameter>`


class _Malformed(Exception):
    def __init__(self, reason: str, at: int | None = None) -> None:
        super().__init__(reason)
        self.at = at  # where in the chunk the text went wrong, if not at the current character


class XmlCallScanner:
    """Scans the body of one `<tool_call>` block: one `<function=...>` element."""

    def __init__(self, indexer: CallIndexer, events: list[ParseEvent], tools: tuple[ToolSpec, ...]) -> None:
        self._indexer = indexer
        self._events = events
        self._tools = {tool.name: tool for tool in tools}
        self._state = _State.TAG
        self._expected: tuple[str, ...] = (FUNCTION_OPEN,)
        self._tag = ""  # the part of a tag read so far: tags may be split across chunks
        self._naming = ""  # which tag the name being read belongs to
        self._name: list[str] = []
        self._properties: dict[str, Any] = {}
        self._index: int | None = None
        self._arguments: list[str] = []
        self._parameters = 0
        # The value being read.
        self._held = ""
        self._fresh = True  # nothing of it kept yet: its leading newline is the template's
        self._as_string = True
        self._typed: list[str] = []  # a non-string value's text, parsed whole at its close tag
        self._typed_types: frozenset[str] = frozenset()
        self._typed_prefix = ""
        self.raw: list[str] = []
        self.completed_any = False  # one call per block: the raw text is always its own

    @property
    def current_call_index(self) -> int | None:
        return self._index

    def feed(self, text: str) -> ScanResult:
        result = self._scan(text)
        self.raw.append(text[: result.end])
        return result

    def _scan(self, text: str) -> ScanResult:
        i, n = 0, len(text)
        try:
            while i < n:
                if self._state == _State.VALUE:
                    i = self._read_value(text, i)
                elif self._state == _State.NAME:
                    i = self._read_name(text, i)
                else:
                    char = text[i]
                    if not self._tag and char in _WHITESPACE:
                        i += 1
                        continue
                    self._tag += char
                    if not any(tag.startswith(self._tag) for tag in self._expected):
                        raise _Malformed(f"expected {' or '.join(self._expected)}")
                    i += 1
                    if self._tag in self._expected and self._on_tag():
                        return ScanResult(ScanStatus.DONE, i)
        except _Malformed as error:
            return ScanResult(ScanStatus.FAILED, i if error.at is None else error.at, str(error))
        return ScanResult(ScanStatus.MORE, n)

    def _on_tag(self) -> bool:
        """A complete tag was read; True when it ends the call."""
        tag, self._tag = self._tag, ""
        if tag == FUNCTION_CLOSE:
            self._end_call()
            return True
        self._naming = tag
        self._name = []
        self._state = _State.NAME
        return False

    def _read_name(self, text: str, i: int) -> int:
        stop = _NAME_STOP.search(text, i)
        if stop is None:
            self._name.append(text[i:])
            return len(text)
        self._name.append(text[i : stop.start()])
        if text[stop.start()] != ">":
            raise _Malformed("a tag's name must end with '>' on its line", stop.start())
        name = "".join(self._name).strip()
        if not name:
            raise _Malformed("a tag with an empty name", stop.start())
        if self._naming == FUNCTION_OPEN:
            self._start_call(name)
        else:
            self._start_parameter(name)
        return stop.start() + 1

    def _start_call(self, name: str) -> None:
        self._index, call_id = self._indexer.next()
        self._events.append(ToolCallStart(self._index, call_id, name))
        tool = self._tools.get(name)
        properties = tool.parameters.get("properties") if tool else None
        self._properties = properties if isinstance(properties, dict) else {}
        self._emit("{")
        self._state = _State.TAG
        self._expected = (PARAMETER_OPEN, FUNCTION_CLOSE)

    def _start_parameter(self, name: str) -> None:
        prefix = (", " if self._parameters else "") + orjson.dumps(name).decode() + ": "
        self._parameters += 1
        types = _schema_types(self._properties.get(name))
        self._as_string = not types or "string" in types
        if self._as_string:
            self._emit(prefix + '"')
        else:
            self._typed_prefix, self._typed_types, self._typed = prefix, types, []
        self._held, self._fresh = "", True
        self._state = _State.VALUE

    def _read_value(self, text: str, i: int) -> int:
        chunk = self._held + text[i:]
        start = i - len(self._held)  # where `chunk` begins in `text` (before it, if held text leads)
        position = chunk.find(PARAMETER_CLOSE)
        if position < 0:
            keep = partial_marker_length(chunk, _VALUE_ENDS)
            self._value_piece(chunk[: len(chunk) - keep])
            self._held = chunk[len(chunk) - keep :]
            return len(text)
        value = chunk[:position]
        self._value_piece(value.removesuffix("\n"))
        self._held = ""
        if self._as_string:
            self._emit('"')
        else:
            self._emit(self._typed_prefix + _typed_json("".join(self._typed), self._typed_types))
        self._state = _State.TAG
        return start + position + len(PARAMETER_CLOSE)

    def _value_piece(self, piece: str) -> None:
        if self._fresh and piece:
            self._fresh = False
            piece = piece.removeprefix("\n")
        if not piece:
            return
        if self._as_string:
            self._emit(json_chars(piece))
        else:
            self._typed.append(piece)

    def _emit(self, text: str) -> None:
        assert self._index is not None
        self._arguments.append(text)
        self._events.append(ToolCallArgs(self._index, text))

    def _end_call(self) -> None:
        assert self._index is not None
        self._emit("}")
        self._events.append(ToolCallEnd(self._index, "".join(self._arguments)))
        self._indexer.completed += 1
        self._index = None


def _schema_types(schema: Any) -> frozenset[str]:
    """The JSON types a parameter schema allows (from `type`, `anyOf`, `oneOf`); empty if unknown."""
    if not isinstance(schema, dict):
        return frozenset()
    kind = schema.get("type")
    found = {kind} if isinstance(kind, str) else {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        for option in options if isinstance(options, list) else ():
            found |= _schema_types(option)
    return frozenset(found)


def _typed_json(raw: str, types: frozenset[str]) -> str:
    """A non-string value as JSON: JSON first, then a Python literal (`True`, `{'a': 1}`), else the
    text itself as a string, so the arguments stay valid whatever the model wrote."""
    text = raw.strip()
    try:
        # The standard library keeps big integers exact; NaN and Infinity are not JSON.
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except ValueError:
        pass
    else:
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # beyond 64 bits, or a lone surrogate: ASCII escapes are safe
            return json.dumps(value)
    lowered = text.lower()
    if "boolean" in types and lowered in ("true", "false"):
        return lowered
    if "null" in types and lowered in ("null", "none"):
        return "null"
    literal = python_literal_json(text)
    return literal if literal is not None else '"' + json_chars(raw) + '"'


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # `1e999` would be written as null
        raise ValueError(f"{text} is out of range")
    return value
