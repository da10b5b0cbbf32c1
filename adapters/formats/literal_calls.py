"""Incremental scanner for Gemma's call literal: `call:NAME{key:value,...}` (Gemma 4, FunctionGemma).

Keys are bare; strings sit between a quote token and carry no escapes (Gemma 4's `<|"|>`,
FunctionGemma's `<escape>`); anything else is bare: numbers, `true`/`false`/`null` (and the `None`
that Jinja prints), nested `{k:v}` and `[a,b]`. The JSON text is written as the literal is read, so a
long string streams. Templates that quote every value (FunctionGemma's) or print Python values inside
the quotes (`True`, `{'a': 1}`) are met by typing a top-level argument from the tool's schema: a
quoted value of an argument that cannot be a string is parsed whole when it closes.
Each character is read once; the only text held back is a tail that could begin the quote token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import orjson

from .call_body import CallBodyScanner
from .events import ToolCallStart
from .markers import partial_marker_length
from .python_literals import json_chars
from .scanning import ScanContext, ScanResult, ScanStatus
from .typed_values import is_text, property_types, typed_json

MAX_NAME = 128
MAX_BARE = 256  # a bare number or word; longer is not a value
_WHITESPACE = " \t\r\n"
_NAME_CHARS = frozenset("_-.")
_BARE_STOP = ",}]"
_CONSTANTS = {"true": "true", "false": "false", "null": "null", "None": "null", "True": "true", "False": "false"}


@dataclass(frozen=True, slots=True)
class LiteralSyntax:
    """How a format writes its call literal. Its `scanner` method is a `CallSyntax.scanner`."""

    quote: str  # the token around strings
    prefix: str = "call:"  # before the function name

    def scanner(self, context: ScanContext) -> LiteralCallScanner:
        return LiteralCallScanner(self, context)


_CLOSERS = {"{": "}", "[": "]"}


@dataclass(slots=True)
class _Frame:
    bracket: str  # "{" or "["
    items: int = 0


class _Expect(IntEnum):
    PREFIX = 0  # `call:`
    NAME = 1  # the name, up to `{`
    KEY = 2  # a key, or `}`
    COLON = 3  # after a quoted key
    VALUE = 4
    AFTER = 5  # `,` or the closing bracket
    STRING = 6  # inside the quote tokens
    BARE = 7  # a bare key or value


class _Malformed(Exception):
    pass


class LiteralCallScanner(CallBodyScanner):
    """Scans one block: one `call:NAME{...}`."""

    def __init__(self, syntax: LiteralSyntax, context: ScanContext) -> None:
        super().__init__(context.indexer)
        self._syntax = syntax
        self._types = {tool.name: property_types(tool.parameters) for tool in context.tools}
        self._key_types: dict[str, frozenset[str]] = {}
        self._expect = _Expect.PREFIX
        self._text = ""  # the prefix, name, key or bare value read so far
        self._quote = ""  # the part of a quote token read so far (outside strings)
        self._stack: list[_Frame] = []  # the open `{` and `[`
        self._key = ""
        self._string_key = False  # the string being read is a key
        self._typed: list[str] | None = None  # a top-level quoted value parsed whole at its close
        self._typed_types: frozenset[str] = frozenset()
        self._held = ""  # inside a string: a tail that may begin the quote token

    def _scan(self, text: str) -> ScanResult:
        result = self._read(text)
        self._flush()
        return result

    def _read(self, text: str) -> ScanResult:
        i, n = 0, len(text)
        try:
            while i < n:
                if self._expect == _Expect.STRING:
                    i = self._read_string(text, i)
                    continue
                char = text[i]
                i += 1
                if self._on_char(char):
                    return ScanResult(ScanStatus.DONE, i)
        except _Malformed as error:
            return ScanResult(ScanStatus.FAILED, max(i - 1, 0), str(error))
        return ScanResult(ScanStatus.MORE, n)

    # -- characters outside strings -------------------------------------------------------

    def _on_char(self, char: str) -> bool:
        """Read one character; True when the call is complete."""
        expect = self._expect
        if expect == _Expect.PREFIX:
            if not self._text and char in _WHITESPACE:
                return False
            self._text += char
            if not self._syntax.prefix.startswith(self._text):
                raise _Malformed(f"a call must begin with {self._syntax.prefix!r}")
            if self._text == self._syntax.prefix:
                self._expect, self._text = _Expect.NAME, ""
            return False
        if expect == _Expect.NAME:
            if char == "{" and self._text:
                self._start_call(self._text)
            elif char.isalnum() or char in _NAME_CHARS:
                self._text += char
                if len(self._text) > MAX_NAME:
                    raise _Malformed("not a function name")
            else:
                raise _Malformed("a function name must be followed by '{'")
            return False
        if self._quote or (char == "<" and expect in (_Expect.KEY, _Expect.VALUE)):
            return self._on_quote_char(char)
        if expect == _Expect.BARE:
            return self._on_bare_char(char)
        if char in _WHITESPACE:
            return False
        if expect == _Expect.KEY:
            if char == "}":
                return self._close()
            self._start_bare(char)
        elif expect == _Expect.COLON:
            if char != ":":
                raise _Malformed("expected ':' after a key")
            self._expect = _Expect.VALUE
        elif expect == _Expect.VALUE:
            if char in "{[":
                self._open(char)
            elif char == "]" and self._stack[-1].bracket == "[" and not self._stack[-1].items:
                return self._close()  # an empty list
            elif char in ",:}]":
                raise _Malformed(f"expected a value, not {char!r}")
            else:
                self._start_bare(char)
        else:  # AFTER
            if char == ",":
                self._expect = _Expect.KEY if self._stack[-1].bracket == "{" else _Expect.VALUE
            elif char == _CLOSERS[self._stack[-1].bracket]:
                return self._close()
            else:
                raise _Malformed(f"unexpected {char!r}")
        return False

    def _on_quote_char(self, char: str) -> bool:
        quote = self._syntax.quote
        self._quote += char
        if not quote.startswith(self._quote):
            raise _Malformed(f"unexpected {self._quote!r}")
        if self._quote == quote:
            self._quote = ""
            self._start_string()
        return False

    def _start_bare(self, char: str) -> None:
        self._text = char
        self._string_key = self._expect == _Expect.KEY
        self._expect = _Expect.BARE

    def _on_bare_char(self, char: str) -> bool:
        if self._string_key:
            if char != ":":
                self._text += char
                if len(self._text) > MAX_NAME or char in "{}[],\n":
                    raise _Malformed("a key must end with ':'")
                return False
            self._write_key(self._text.strip())
            self._expect = _Expect.VALUE
            return False
        if char not in _BARE_STOP:
            self._text += char
            if len(self._text) > MAX_BARE:
                raise _Malformed("a bare value that never ends")
            return False
        self._write_value(_bare_json(self._text.strip()))
        self._expect = _Expect.AFTER
        return self._on_char(char)

    # -- structure ------------------------------------------------------------------------

    def _start_call(self, name: str) -> None:
        self._index, call_id = self._indexer.next()
        self._events.append(ToolCallStart(self._index, call_id, name))
        self._key_types = self._types.get(name, {})
        self._open("{")

    def _open(self, bracket: str) -> None:
        if self._stack:
            self._begin_value()
        self._out.append(bracket)
        self._stack.append(_Frame(bracket))
        self._expect = _Expect.KEY if bracket == "{" else _Expect.VALUE

    def _close(self) -> bool:
        self._out.append(_CLOSERS[self._stack.pop().bracket])
        if not self._stack:
            self._end_call()
            return True
        self._expect = _Expect.AFTER
        return False

    def _write_key(self, key: str) -> None:
        if not key:
            raise _Malformed("an empty key")
        frame = self._stack[-1]
        self._out.append((", " if frame.items else "") + orjson.dumps(key).decode() + ": ")
        frame.items += 1
        self._key = key

    def _begin_value(self) -> None:
        """Before a value: the comma of a list item (an object's comma came with its key)."""
        frame = self._stack[-1]
        if frame.bracket == "[":
            self._out.append(", " if frame.items else "")
            frame.items += 1

    def _write_value(self, json_text: str) -> None:
        self._begin_value()
        self._out.append(json_text)

    # -- strings --------------------------------------------------------------------------

    def _start_string(self) -> None:
        if self._expect == _Expect.KEY:
            self._string_key, self._text = True, ""
        else:
            self._string_key = False
            self._begin_value()
            types = self._key_types.get(self._key, frozenset()) if len(self._stack) == 1 else frozenset()
            if is_text(types):
                self._typed = None
                self._out.append('"')
            else:
                self._typed, self._typed_types = [], types
        self._held = ""
        self._expect = _Expect.STRING

    def _read_string(self, text: str, i: int) -> int:
        quote = self._syntax.quote
        chunk = self._held + text[i:]
        start = i - len(self._held)
        position = chunk.find(quote)
        if position < 0:
            keep = partial_marker_length(chunk, (quote,))
            self._string_piece(chunk[: len(chunk) - keep])
            self._held = chunk[len(chunk) - keep :]
            return len(text)
        self._string_piece(chunk[:position])
        self._held = ""
        if self._string_key:
            self._write_key(self._text)
            self._expect = _Expect.COLON
        else:
            if self._typed is None:
                self._out.append('"')
            else:
                self._out.append(typed_json("".join(self._typed), self._typed_types))
                self._typed = None
            self._expect = _Expect.AFTER
        return start + position + len(quote)

    def _string_piece(self, piece: str) -> None:
        if not piece:
            return
        if self._string_key:
            self._text += piece
            if len(self._text) > MAX_NAME:
                raise _Malformed("a key that never ends")
        elif self._typed is not None:
            self._typed.append(piece)
        else:
            self._out.append(json_chars(piece))

    # -- output ---------------------------------------------------------------------------

    def _end_call(self) -> None:
        self._flush()
        self._call_ended()


def _bare_json(token: str) -> str:
    """A bare value as JSON: a constant, a number, else its text as a string."""
    if token in _CONSTANTS:
        return _CONSTANTS[token]
    try:
        number = orjson.loads(token)
    except orjson.JSONDecodeError:
        return orjson.dumps(token).decode()
    return token if isinstance(number, (int, float)) and not isinstance(number, bool) else orjson.dumps(token).decode()
