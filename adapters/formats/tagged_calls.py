"""Incremental scanner for calls written as tags: a function name, then one tagged value per argument.

One description covers the families that spell it differently:

    Qwen3-Coder / Seed-OSS  <function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n</function>
    MiniMax-M2              <invoke name="NAME">\\n<parameter name="KEY">VALUE</parameter>\\n</invoke>
    DeepSeek V3.2 (DSML)    <｜DSML｜invoke name="NAME">\\n<｜DSML｜parameter name="KEY" string="true">VALUE</｜DSML｜parameter>
    GLM-4.5 / 4.7           NAME\\n<arg_key>KEY</arg_key>\\n<arg_value>VALUE</arg_value>\\n</tool_call>

The engine finds the block's open marker; this reads what follows it. Values are plain text, so their
JSON type comes from an attribute the format writes (`string="false"`, `type="number"`) or else from
the tool's parameter schema. A string value streams as a JSON string while it is written; any other
type is parsed whole at its close tag. Each character is read once: names, keys and attributes are
bounded, and a value holds back only a tail that could be the start of its close tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from .call_body import CallBodyScanner
from .events import ToolCallStart
from .markers import partial_marker_length
from .python_literals import json_chars
from .scanning import ScanContext, ScanResult, ScanStatus
from .typed_values import is_text, property_types, typed_json

MAX_NAME = 128  # a name, a key: longer is not a call but prose after a marker
MAX_ATTRIBUTES = 256
_WHITESPACE = " \t\r\n"
_BARE_NAME_CHARS = frozenset("_-.:")
# `string="true"` (DSML) or `type="number"` (Kimi K3) in a key's attributes: how to read its value.
_TYPE_ATTRIBUTE = re.compile(r'\b(string|type)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class TagSyntax:
    """How a format spells a call as tags. Its `scanner` method is a `CallSyntax.scanner`."""

    # Before the function name ("<function=", '<invoke name="'); "": the name follows the block's marker.
    call_open: str
    # After the name (">", '"'); "": the name ends at whitespace or at the next tag.
    name_end: str
    # Around an argument's name: "<parameter=" ... ">", '<parameter name="' ... '"', "<arg_key>" ... "</arg_key>".
    key_open: str
    key_end: str
    # After an argument's value.
    value_close: str
    # After the call's last argument; "": the call ends with its block (GLM).
    call_close: str = ""
    # Before a value, after optional whitespace (GLM's "<arg_value>").
    value_open: str = ""
    # Ends the attributes that may follow a name or a key (the `>` of `name="x" string="true">`).
    attributes_end: str = ""
    # The block's close, when the scanner reads it: a block that holds several calls, or whose calls
    # have no close of their own. "": one call per block, and the engine reads the block's close.
    block_close: str = ""
    # The template writes a newline on each side of a value (Qwen3-Coder): those are not the value's.
    padded_values: bool = False

    def scanner(self, context: ScanContext) -> TaggedCallScanner:
        return TaggedCallScanner(self, context)

    def write(self, name: str, arguments: dict[str, Any], *, separator: str = "\n",
              attributes: Callable[[Any], str] | None = None) -> str:
        """A call as the model writes it (without the block's markers): strings as they are, other
        values as JSON; `attributes` adds a key's attributes for its value (DSML's ` string="true"`)."""
        pad = "\n" if self.padded_values else ""
        parts = [f"{self.call_open}{name}{self.name_end}{self.attributes_end}"]
        for key, value in arguments.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            extra = attributes(value) if attributes else ""
            parts.append(
                f"{self.key_open}{key}{self.key_end}{extra}{self.attributes_end}{self.value_open}{pad}{text}{pad}{self.value_close}"
            )
        if self.call_close:
            parts.append(self.call_close)
        return separator.join(parts)

    @property
    def ends(self) -> str:
        """What ends a call: its own close, else the block's."""
        return self.call_close or self.block_close


class _State(IntEnum):
    TAG = 0  # whitespace, then one of the expected tags
    NAME = 1  # a function name
    KEY = 2  # an argument's name
    ATTRIBUTES = 3  # the attributes after a name or key
    VALUE = 4  # an argument's value, up to its close tag


class _Malformed(Exception):
    pass


class TaggedCallScanner(CallBodyScanner):
    """Scans one block: one call, or (with `block_close`) calls up to the block's close."""

    def __init__(self, syntax: TagSyntax, context: ScanContext) -> None:
        super().__init__(context.indexer)
        self._syntax = syntax
        self._types = {tool.name: property_types(tool.parameters) for tool in context.tools}
        self._state = _State.TAG
        self._expected: tuple[str, ...] = ()
        self._after_tag = ""  # which tag was read (for TAG), or whose text is read (NAME, KEY, ATTRIBUTES)
        self._text = ""  # the tag, name, key or attributes read so far: they may be split across chunks
        self._key_types: dict[str, frozenset[str]] = {}
        self._key = ""
        self._count = 0  # arguments written so far
        # The value being read.
        self._held = ""
        self._fresh = True  # nothing of it kept yet: a leading newline is the template's
        self._as_string = True
        self._typed: list[str] = []  # a non-string value's text, parsed whole at its close tag
        self._value_types: frozenset[str] = frozenset()
        self._expect_call()

    def _scan(self, text: str) -> ScanResult:
        i, n = 0, len(text)
        try:
            while i < n:
                state = self._state
                if state == _State.VALUE:
                    i = self._read_value(text, i)
                    continue
                char = text[i]
                i += 1
                if state == _State.TAG:
                    if not self._text and char in _WHITESPACE:
                        continue
                    self._text += char
                    if not any(tag.startswith(self._text) for tag in self._expected):
                        raise _Malformed(f"expected {' or '.join(repr(tag) for tag in self._expected)}")
                    if self._text in self._expected and self._on_tag(i):
                        return ScanResult(ScanStatus.DONE, i)
                elif state == _State.NAME and not self._syntax.name_end and (char in _WHITESPACE or char == "<"):
                    if self._text:  # (whitespace before the name is skipped)
                        self._on_name(self._text)
                        i -= 1  # the character begins what follows the name
                    elif char == "<":
                        raise _Malformed("a call with no function name")
                else:
                    self._read_bounded(char)
        except _Malformed as error:
            return ScanResult(ScanStatus.FAILED, max(i - 1, 0), str(error))
        return ScanResult(ScanStatus.MORE, n)

    # -- tags ----------------------------------------------------------------------------

    def _expect(self, *tags: str) -> None:
        self._state = _State.TAG
        self._expected = tuple(tag for tag in tags if tag)
        self._text = ""

    def _expect_call(self) -> None:
        if self._syntax.call_open:
            self._expect(self._syntax.call_open, self._syntax.block_close if self.completed_any else "")
        else:
            self._start_reading(_State.NAME, "name")

    def _expect_argument(self) -> None:
        self._expect(self._syntax.key_open, self._syntax.ends)

    def _start_reading(self, state: _State, what: str) -> None:
        self._state, self._after_tag, self._text = state, what, ""

    def _on_tag(self, end: int) -> bool:
        """A complete tag was read; True when it ends the block (the text after `end` is not ours)."""
        tag, syntax = self._text, self._syntax
        if self._index is None:
            if tag == syntax.call_open:
                self._start_reading(_State.NAME, "name")
                return False
            return True  # the block's close, after its last call
        if tag == syntax.key_open:
            self._start_reading(_State.KEY, "key")
        elif tag == syntax.value_open and self._expected == (syntax.value_open,):
            self._start_value()
        else:  # the call's close (or the block's, which closes the call too)
            self._end_call(end)
            if tag == syntax.block_close or not syntax.block_close:
                return True
            self._expect_call()
        return False

    def _read_bounded(self, char: str) -> None:
        """One character of a name, key or attributes, each ending with its own terminator."""
        self._text += char
        what, syntax = self._after_tag, self._syntax
        end = {"name": syntax.name_end, "key": syntax.key_end}.get(what, syntax.attributes_end)
        if end and self._text.endswith(end):
            found = self._text[: -len(end)]
            if what == "name":
                self._on_name(found)
            elif what == "key":
                self._on_key(found)
            else:
                self._on_attributes(found)
            return
        if not end and not (char.isalnum() or char in _BARE_NAME_CHARS):
            raise _Malformed("not a function name")  # a bare name (GLM's) is a name or nothing
        if what.endswith("attributes"):
            if len(self._text) > MAX_ATTRIBUTES:
                raise _Malformed("attributes that never end")
        elif char == "\n" or (char == "<" and not end.startswith("<")) or len(self._text) > MAX_NAME:
            raise _Malformed(f"a {what} must end with {end or 'whitespace'!r} on its line")

    def _on_name(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise _Malformed("a call with no function name")
        self._index, call_id = self._indexer.next()
        self._events.append(ToolCallStart(self._index, call_id, name))
        self._key_types = self._types.get(name, {})
        self._count = 0
        self._send("{")
        if self._syntax.attributes_end:
            self._start_reading(_State.ATTRIBUTES, "call attributes")
        else:
            self._expect_argument()

    def _on_key(self, key: str) -> None:
        self._key = key.strip()
        if not self._key:
            raise _Malformed("an argument with no name")
        if self._syntax.attributes_end:
            self._start_reading(_State.ATTRIBUTES, "key attributes")
        else:
            self._open_value("")

    def _on_attributes(self, attributes: str) -> None:
        if self._after_tag == "call attributes":
            self._expect_argument()
        else:
            self._open_value(attributes)

    # -- values --------------------------------------------------------------------------

    def _open_value(self, attributes: str) -> None:
        written = {kind: value for kind, value in _TYPE_ATTRIBUTE.findall(attributes)}
        if "string" in written:
            types = frozenset({"string"} if written["string"] == "true" else ())
            self._as_string = written["string"] == "true"
        elif "type" in written:
            types = frozenset({written["type"]})
            self._as_string = written["type"] == "string"
        else:
            types = self._key_types.get(self._key, frozenset())
            self._as_string = is_text(types)
        self._value_types = types
        if self._syntax.value_open:
            self._expect(self._syntax.value_open)
        else:
            self._start_value()

    def _start_value(self) -> None:
        prefix = (", " if self._count else "") + orjson.dumps(self._key).decode() + ": "
        self._count += 1
        if self._as_string:
            self._send(prefix + '"')
        else:
            self._typed = [prefix]
        self._held, self._fresh = "", True
        self._state = _State.VALUE

    def _read_value(self, text: str, i: int) -> int:
        close = self._syntax.value_close
        chunk = self._held + text[i:]
        start = i - len(self._held)  # where `chunk` begins in `text` (before it, if held text leads)
        position = chunk.find(close)
        if position < 0:
            ends = ("\n" + close, close) if self._syntax.padded_values else (close,)
            keep = partial_marker_length(chunk, ends)
            self._value_piece(chunk[: len(chunk) - keep])
            self._held = chunk[len(chunk) - keep :]
            return len(text)
        value = chunk[:position]
        self._value_piece(value.removesuffix("\n") if self._syntax.padded_values else value)
        self._held = ""
        if self._as_string:
            self._send('"')
        else:
            self._send(self._typed[0] + typed_json("".join(self._typed[1:]), self._value_types))
        self._expect_argument()
        return start + position + len(close)

    def _value_piece(self, piece: str) -> None:
        if self._fresh and piece:
            self._fresh = False
            if self._syntax.padded_values:
                piece = piece.removeprefix("\n")
        if not piece:
            return
        if self._as_string:
            self._send(json_chars(piece))
        else:
            self._typed.append(piece)

    # -- calls ---------------------------------------------------------------------------

    def _end_call(self, end: int) -> None:
        self._send("}")
        self._call_ended()
        # What follows belongs to the next call: this call's text is no longer given back.
        self._restart_raw(end)
