"""Incremental scanner for tool calls written as a Python list of calls, as the pythonic templates
(Llama 3.2, Llama 4, Gemma 3) teach: `[get_weather(city="Paris"), get_time()]`.

The text is parsed, never evaluated: a tokenizer and a state machine read the literal subset of
Python (strings with their escapes, numbers, True/False/None, lists, tuples, dicts) and write the
JSON text as they go, so an argument streams while it is written. Each character is read once.

Choices, for the model's sake:
- positional arguments are mapped onto the tool's parameters in schema order (Gemma's template
  writes list arguments that way); with an unknown tool or too many of them the call fails;
- a tuple is a JSON array, `(x)` included; dict keys that are numbers or constants become strings,
  as `json.dumps` writes them; JSON's `true`/`false`/`null` are accepted too;
- after `<|python_start|>` a single call may come without the list brackets (Llama 4);
- habits the templates teach through history are accepted: unquoted words as strings (Llama 3.2
  prints `city=Paris`) and no comma between keyword arguments (Gemma 3 prints `a=1b=2`);
- a call is announced when its first argument is named, so bracketed prose fails as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

import orjson

from .call_body import CallBodyScanner
from .conversation import ToolSpec
from .events import ToolCallStart
from .python_literals import Malformed, json_chars, number_json, word_json
from .scanning import CallIndexer, ScanContext, ScanResult, ScanStatus

_NAME_RUN = re.compile(r"[\w.\-]*")  # dots and hyphens: `brave_search.call`, tools named `get-time`
_NUMBER_RUN = re.compile(r"(?:[eE][+-]?|[\w.])*")  # `1e-5`: an exponent's sign
_STRING_STOP = {"'": re.compile(r"['\\]"), '"': re.compile(r'["\\]')}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
            "v": "\v", "\n": ""}  # fmt: skip
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_CLOSERS = {"C": "]", "A": ")", "[": "]", "(": ")", "{": "}"}
_WHITESPACE = " \t\r\n"


class _Expect(IntEnum):
    CALL = 0  # a call's name, or `]` after a trailing comma
    ARG = 1  # an argument (keyword or positional), or `)`
    ITEM = 2  # a list or tuple item, or the closing bracket
    KEY = 3  # a dict key, or `}`
    VALUE = 4  # a value after `=` or `:`
    PAREN = 5  # the `(` after a call's name
    EQUALS = 6  # after a word among the arguments: `=` makes it a keyword, else it was a value
    COLON = 7
    AFTER = 8  # `,` or the closing bracket


@dataclass(slots=True)
class _Frame:
    kind: str  # "C" the list of calls, "A" a call's arguments, "[", "(", "{", "V" one bare value
    items: int = 0
    at_key: bool = True  # dicts: the next value is a key
    bracketless: bool = False  # a call list with no brackets: ends with its call


@dataclass(slots=True)
class _String:
    quote: str
    opening: int = 1  # quotes seen at its start: two may be an empty string or open a triple-quoted one
    triple: bool = False
    run: int = 0  # closing quotes seen in a row, in a triple-quoted string
    escape: str | None = None  # an escape sequence being read, after its backslash


def pythonic_scanner(context: ScanContext) -> PythonicScanner:
    """A `CallSyntax.scanner` for a pythonic list of calls."""
    return PythonicScanner(context.indexer, context.tools)


class PythonicScanner(CallBodyScanner):
    """Scans one body: a list of calls, or (with `value_only`) one Python literal."""

    def __init__(self, indexer: CallIndexer, tools: tuple[ToolSpec, ...], *, value_only: bool = False) -> None:
        super().__init__(indexer)
        self._tools = {tool.name: tool for tool in tools}
        self._frames: list[_Frame] = [_Frame("V")] if value_only else []
        self._expect = _Expect.VALUE
        self._token: list[str] = []  # a name or number being read
        self._token_kind = ""
        self._word = ""  # a word among the arguments: a keyword's name, or a constant
        self._string: _String | None = None
        self._call_name = ""
        self._positional: list[str] = []  # the tool's parameter names, for positional arguments
        self._keywords = False
        self._done = False
        self._at = 0  # where in the chunk the character being handled is

    @property
    def json_text(self) -> str:
        return "".join(self._out)


    def _scan(self, text: str) -> ScanResult:
        i, n = 0, len(text)
        try:
            while i < n and not self._done:
                if self._string is not None:
                    i = self._read_string(text, i)
                elif self._token:
                    i = self._read_token(text, i)
                elif text[i] in _WHITESPACE:
                    i += 1
                else:
                    self._at = i
                    self._on_char(text[i])
                    i += 1
        except Malformed as error:
            self._flush()  # the JSON written so far is a valid start of the call's arguments
            return ScanResult(ScanStatus.FAILED, i, str(error))
        self._flush()
        return ScanResult(ScanStatus.DONE if self._done else ScanStatus.MORE, i)

    # -- tokens --------------------------------------------------------------------------

    def _read_token(self, text: str, i: int) -> int:
        if self._token_kind == "number" and self._token[-1][-1:] in ("e", "E") and text[i] in "+-":
            self._token.append(text[i])  # an exponent's sign
            i += 1
        run = (_NUMBER_RUN if self._token_kind == "number" else _NAME_RUN).match(text, i)
        end = run.end() if run else i
        self._token.append(text[i:end])
        if end < len(text):
            token, self._token = "".join(self._token), []
            self._end_token(token)
        return end

    def _end_token(self, token: str) -> None:
        if self._token_kind == "number":
            self._scalar(number_json(token))
        elif self._expect == _Expect.CALL:
            if not all(part.replace("-", "_").isidentifier() for part in token.split(".")):
                raise Malformed(f"{token!r} is not a function name")
            self._call_name, self._expect = token, _Expect.PAREN
        elif self._expect == _Expect.ARG:
            self._word, self._expect = token, _Expect.EQUALS
        else:
            self._scalar(word_json(token))

    def _scalar(self, json_text: str) -> None:
        # JSON keys are strings: `{1: "a"}` becomes `{"1": "a"}`, as json.dumps writes it.
        key = self._expect == _Expect.KEY and not json_text.startswith('"')
        self._out.append(f'"{json_text}"' if key else json_text)
        self._value_done(self._frames[-1])

    # -- structure -----------------------------------------------------------------------

    def _on_char(self, char: str) -> None:
        expect = self._expect
        if not self._frames:  # the start of the body
            self._frames.append(_Frame("C", bracketless=char != "["))
            self._expect = _Expect.CALL
            if char == "[":
                return
            expect = _Expect.CALL
        if expect == _Expect.PAREN:
            if char != "(":
                raise Malformed("expected '(' after the function name")
            self._open_call()
        elif expect == _Expect.EQUALS:
            word = self._word
            if char == "=":
                if not word.isidentifier():
                    raise Malformed(f"{word!r} is not an argument name")
                self._keywords = True
                self._key(word)
                self._expect = _Expect.VALUE
                return
            self._positional_key()
            self._scalar(word_json(word))
            self._on_char(char)
        elif expect == _Expect.COLON:
            if char != ":":
                raise Malformed("expected ':' in a dict")
            self._out.append(": ")
            self._expect = _Expect.VALUE
        elif expect == _Expect.AFTER:
            frame = self._frames[-1]
            # Gemma's pythonic template renders past calls with no comma between keyword
            # arguments (a Jinja scoping slip); a model that copies its history does the same.
            if char == "," or (frame.kind == "A" and char.isidentifier()):
                if frame.kind == "C":
                    self._restart_raw(self._at + 1)  # a dangling comma is no one's text
                frame.at_key = True
                self._expect = {"C": _Expect.CALL, "A": _Expect.ARG, "{": _Expect.KEY}.get(frame.kind, _Expect.ITEM)
                if char != ",":
                    self._on_char(char)
            elif char == _CLOSERS.get(frame.kind):
                self._close()
            else:
                raise Malformed(f"unexpected {char!r}")
        elif expect != _Expect.VALUE and char == _CLOSERS.get(self._frames[-1].kind):
            if self._frames[-1].kind == "C" and not self._frames[-1].items:
                raise Malformed("a list with no calls")
            self._close()
        elif expect == _Expect.CALL:
            if not char.isidentifier():
                raise Malformed("expected a function name")
            if self._frames[-1].items:
                self._restart_raw(self._at)
            self._frames[-1].items += 1
            self._start_token("name", char)
        else:
            self._start_value(char)

    def _start_value(self, char: str) -> None:
        frame = self._frames[-1]
        if self._expect == _Expect.ARG and not char.isidentifier():
            self._positional_key()
        elif self._expect in (_Expect.ITEM, _Expect.KEY):
            self._out.append(", " if frame.items else "")
            frame.items += 1
        if char in "'\"":
            self._string = _String(char)
            self._out.append('"')
        elif char.isdigit() or char in "-+.":
            self._start_token("number", char)
        elif char.isidentifier():
            self._start_token("name", char)
        elif char in "[({" and self._expect != _Expect.KEY:
            self._frames.append(_Frame(char))
            self._out.append("{" if char == "{" else "[")
            self._expect = _Expect.KEY if char == "{" else _Expect.ITEM
        else:
            raise Malformed(f"unexpected {char!r}")

    def _start_token(self, kind: str, char: str) -> None:
        self._token_kind, self._token = kind, [char]

    def _value_done(self, frame: _Frame) -> None:
        if frame.kind == "V":
            self._done = True
        elif frame.kind == "{" and frame.at_key:
            frame.at_key = False
            self._expect = _Expect.COLON
        else:
            self._expect = _Expect.AFTER

    def _close(self) -> None:
        frame = self._frames.pop()
        if frame.kind == "C":
            self._done = True
        elif frame.kind == "A":
            self._end_call()
            self._expect = _Expect.AFTER
            self._done = self._frames[-1].bracketless
        else:
            self._out.append("}" if frame.kind == "{" else "]")
            self._value_done(self._frames[-1])

    # -- calls and arguments ---------------------------------------------------------------

    def _open_call(self) -> None:
        # The call is announced once its first argument is named (or it closes), not at `(`:
        # prose such as `[Update(2024)] ...` then fails before any of it streams as a call.
        tool = self._tools.get(self._call_name)
        properties = tool.parameters.get("properties") if tool else None
        self._positional = list(properties) if isinstance(properties, dict) else []
        self._keywords = False
        self._frames.append(_Frame("A"))
        self._out.append("{")
        self._expect = _Expect.ARG

    def _positional_key(self) -> None:
        frame = self._frames[-1]
        if self._keywords:
            raise Malformed("a positional argument after a keyword argument")
        if frame.items >= len(self._positional):
            raise Malformed(f"positional argument {frame.items + 1} matches no parameter of {self._call_name!r}")
        self._key(self._positional[frame.items])

    def _key(self, name: str) -> None:
        frame = self._frames[-1]
        self._out.append((", " if frame.items else "") + orjson.dumps(name).decode() + ": ")
        frame.items += 1
        self._announce()

    def _announce(self) -> None:
        if self._index is None:
            self._index, call_id = self._indexer.next()
            self._events.append(ToolCallStart(self._index, call_id, self._call_name))

    def _end_call(self) -> None:
        self._announce()
        assert self._index is not None
        self._out.append("}")
        self._flush()
        self._call_ended()
        self._restart_raw(self._at + 1)

    # -- strings ---------------------------------------------------------------------------

    def _read_string(self, text: str, i: int) -> int:
        string = self._string
        assert string is not None
        if string.opening:
            if text[i] == string.quote:
                string.triple = string.opening == 2
                string.opening = 0 if string.triple else 2
                return i + 1
            if string.opening == 2:  # `""` was an empty string; this character follows it
                self._end_string()
                return i
            string.opening = 0
        if string.escape is not None:
            self._read_escape(string, text[i])
            return i + 1
        stop = _STRING_STOP[string.quote].search(text, i)
        end = stop.start() if stop else len(text)
        if end > i:
            self._string_text(string.quote * string.run + text[i:end])
            string.run = 0
        if stop is None:
            return end
        if text[end] == "\\":
            self._string_text(string.quote * string.run)
            string.run, string.escape = 0, ""
        elif not string.triple:
            self._end_string()
        else:
            string.run += 1
            if string.run == 3:
                self._end_string()
        return end + 1

    def _read_escape(self, string: _String, char: str) -> None:
        sequence = string.escape or ""
        if not sequence:
            if char in _HEX_DIGITS:
                string.escape = char
                return
            # Other escapes keep their backslash, as in Python (octal ones too: models do not write them).
            self._string_text(_ESCAPES.get(char, "\\" + char))
        else:
            if char not in "0123456789abcdefABCDEF":
                raise Malformed(f"invalid escape '\\{sequence}{char}'")
            string.escape = sequence = sequence + char
            if len(sequence) <= _HEX_DIGITS[sequence[0]]:
                return
            self._string_code(int(sequence[1:], 16))
        string.escape = None

    def _string_code(self, code: int) -> None:
        if code > 0x10FFFF:
            raise Malformed("escape beyond Unicode")
        # A surrogate (half of a `\ud83d\ude00` pair) cannot stand alone in a str; JSON can pair it.
        self._out.append(f"\\u{code:04x}" if 0xD800 <= code <= 0xDFFF else json_chars(chr(code)))

    def _string_text(self, text: str) -> None:
        if text:
            self._out.append(json_chars(text))

    def _end_string(self) -> None:
        self._string = None
        self._out.append('"')
        self._value_done(self._frames[-1])


def python_literal_json(text: str) -> str | None:
    """One complete Python literal (`True`, `{'a': (1, 2)}`) as JSON text; None if `text` is not
    exactly one literal."""
    reader = PythonicScanner(CallIndexer(str), (), value_only=True)
    padded = text + " "  # a space ends a number or a constant at the very end
    result = reader.feed(padded)
    if result.status != ScanStatus.DONE or padded[result.end :].strip():
        return None
    return reader.json_text
