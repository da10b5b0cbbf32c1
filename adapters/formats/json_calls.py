"""Incremental scanner for tool calls written as JSON: `{"name": ..., "arguments": {...}}` or a
list of such objects. The scanner validates the JSON as it arrives, one chunk at a time, and never looks at a
character twice: string contents are skipped with one regex search, structure is walked with a
small state machine. It announces a call as soon as its name is known and passes the arguments
through as they are written, so a long argument streams instead of arriving whole at the end.
"""

from __future__ import annotations

import re
from enum import IntEnum

from .call_body import CallBodyScanner
from .events import ToolCallArgs, ToolCallEnd, ToolCallStart
from .json_call_object import ArgumentsProblem, JsonCallObject, decode_string
from .scanning import CallIndexer, ScanResult, ScanStatus

# Inside a string only a quote, a backslash or a raw control character needs attention.
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')
_SCALAR_CHARS = re.compile(r"[-+.0-9a-zA-Z]*")
_VALID_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")
_WHITESPACE = " \t\r\n"
_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = frozenset('"\\/bfnrt')
# Raw control characters that models put inside strings, and the escapes that make them JSON.
_CONTROL_ESCAPES = {chr(code): f"\\u{code:04x}" for code in range(0x20)} | {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class _Expect(IntEnum):
    """What the next character must be (or what is being read)."""

    VALUE, VALUE_OR_CLOSE, KEY_OR_CLOSE, KEY, COLON, COMMA_OR_CLOSE, STRING, ESCAPE, UNICODE, SCALAR, DONE = range(11)


class JsonCallScanner(CallBodyScanner):
    """Scans one call body: a JSON call object, or a JSON list of them (the first character decides).

    With `known_names`, a call to any other name is not a call: for bodies that begin with no
    marker, where `{"name": "Bob"}` may just be an answer written in JSON.

    With `call_name`, the body is only the arguments object of a call already named (a format that
    writes `name ... {arguments}`): the call is announced at once and ended by `finish()`.
    """

    def __init__(
        self,
        indexer: CallIndexer,
        *,
        name_keys: tuple[str, ...] = ("name",),
        argument_keys: tuple[str, ...] = ("arguments", "parameters"),
        known_names: frozenset[str] | None = None,
        id_keys: tuple[str, ...] = (),
        call_name: str | None = None,
        written_id: str = "",
    ) -> None:
        super().__init__(indexer)
        # Keys of the call's own id (Mistral's "id"): the call is announced once it is read (or
        # when the call ends without one), so the id the model wrote is the call's id.
        self._id_keys = id_keys
        self._known_names = known_names
        self._call_depth = 1  # 2 once the body turns out to be a list of calls
        self._name_keys = name_keys
        self._argument_keys = argument_keys
        self._stack: list[str] = []
        self._expect = _Expect.VALUE
        self._after_string = _Expect.COMMA_OR_CLOSE
        self._unicode_left = 0
        self._scalar: list[str] = []
        # What the string being read is for: a key at call depth, the call's name, or nothing kept.
        self._capture: list[str] | None = None
        self._capture_role = ""
        self._key = ""
        self._call: JsonCallObject | None = None
        self._in_arguments = False
        self._arguments_only = call_name is not None
        if call_name is not None:
            # The call object is implicit: its arguments are the top level.
            self._call_depth = 0
            self._call = JsonCallObject(name_keys, argument_keys, name=call_name, arguments_kind="{", written_id=written_id)
            self._in_arguments = True
            self._announce_if_ready()

    @property
    def current_call_index(self) -> int | None:
        """Index of the announced call being scanned, if one is open."""
        return self._call.index if self._call is not None else None

    def finish(self) -> ScanResult:
        """Arguments mode: end the call once its arguments closed."""
        problem = self._finish_call()
        return self._with_events(ScanResult(ScanStatus.FAILED if problem else ScanStatus.DONE, 0, problem))

    def _with_events(self, result: ScanResult) -> ScanResult:
        events, self._events = self._events, []
        return ScanResult(result.status, result.end, result.reason, events)

    # -- the state machine -------------------------------------------------------------

    def _scan(self, text: str) -> ScanResult:
        i = 0
        n = len(text)
        args_from = 0 if self._in_arguments else -1
        while i < n:
            expect = self._expect
            if expect == _Expect.STRING:
                match = _STRING_STOP.search(text, i)
                stop = match.start() if match else n
                if self._capture is not None:
                    self._capture.append(text[i:stop])
                if match is None:
                    i = n
                    break
                char = text[stop]
                if self._capture is not None and char != '"':
                    self._capture.append(char if char == "\\" else _CONTROL_ESCAPES[char])
                if char == '"':
                    i = stop + 1
                    self._expect = self._after_string
                    problem = self._end_string()
                    if problem:
                        return self._fail(stop, problem, text, args_from)
                    if self._in_arguments and len(self._stack) < self._arguments_depth():
                        # A string was the whole arguments value.
                        args_from = self._close_arguments(text, args_from, i)
                    continue
                if char == "\\":
                    self._expect = _Expect.ESCAPE
                    i = stop + 1
                    continue
                # A raw control character: invalid JSON, but models write them; escape it.
                if args_from >= 0:
                    self._emit_arguments(text[args_from:stop] + _CONTROL_ESCAPES[char])
                    args_from = stop + 1
                i = stop + 1
                continue
            char = text[i]
            if expect == _Expect.ESCAPE:
                if char == "u":
                    self._expect = _Expect.UNICODE
                    self._unicode_left = 4
                elif char in _SIMPLE_ESCAPES:
                    self._expect = _Expect.STRING
                else:
                    return self._fail(i, f"invalid escape '\\{char}'", text, args_from)
                if self._capture is not None:
                    self._capture.append(char)
                i += 1
                continue
            if expect == _Expect.UNICODE:
                if char not in _HEX:
                    return self._fail(i, "invalid \\u escape", text, args_from)
                if self._capture is not None:
                    self._capture.append(char)
                self._unicode_left -= 1
                if self._unicode_left == 0:
                    self._expect = _Expect.STRING
                i += 1
                continue
            if expect == _Expect.SCALAR:
                match = _SCALAR_CHARS.match(text, i)
                end = match.end() if match else i
                self._scalar.append(text[i:end])
                if end == n:
                    i = n
                    break
                token = "".join(self._scalar)
                self._scalar.clear()
                if not _VALID_SCALAR.fullmatch(token):
                    return self._fail(end, f"invalid JSON value {token!r}", text, args_from, valid_to=end - len(token))
                self._expect = _Expect.COMMA_OR_CLOSE
                i = end
                if self._call is not None and self._in_arguments and len(self._stack) < self._arguments_depth():
                    if self._call.arguments_kind == "n" and token != "null":
                        return self._fail(end, "arguments must be an object")
                    args_from = self._close_arguments(text, args_from, i)
                continue
            if char in _WHITESPACE:
                i += 1
                continue
            if expect == _Expect.DONE:
                break
            if expect in (_Expect.VALUE, _Expect.VALUE_OR_CLOSE):
                if expect == _Expect.VALUE_OR_CLOSE and char == "]":
                    i += 1
                    closed = self._close_container(text, args_from, i)
                    if isinstance(closed, ScanResult):
                        return closed
                    args_from = closed
                    continue
                problem = self._check_value_start(char)
                if problem:
                    return self._fail(i, problem, text, args_from)
                if self._call is not None and not self._in_arguments and len(self._stack) == self._call_depth:
                    # A value of the call object: the name, the arguments or something ignored.
                    if self._key in self._argument_keys:
                        self._in_arguments = True
                        if char not in '{"n':
                            return self._fail(i, "arguments must be an object", text, args_from)
                        self._call.arguments_kind = char
                        args_from = i if char != '"' else -1
                        if char == '"':
                            self._begin_capture("arguments")
                    elif self._key in self._name_keys:
                        if char != '"':
                            return self._fail(i, "the call's name must be a string", text, args_from)
                        self._begin_capture("name")
                    elif self._key in self._id_keys and char == '"':
                        self._begin_capture("id")
                if char == "{":
                    self._stack.append("{")
                    self._expect = _Expect.KEY_OR_CLOSE
                    if len(self._stack) == self._call_depth:
                        self._call = JsonCallObject(self._name_keys, self._argument_keys)
                        self._key = ""
                elif char == "[":
                    self._stack.append("[")
                    self._expect = _Expect.VALUE_OR_CLOSE
                elif char == '"':
                    self._expect = _Expect.STRING
                    self._after_string = _Expect.COMMA_OR_CLOSE
                else:
                    self._expect = _Expect.SCALAR
                    continue  # the scalar branch reads this character
                i += 1
                continue
            if expect in (_Expect.KEY_OR_CLOSE, _Expect.KEY):
                if char == "}" and expect == _Expect.KEY_OR_CLOSE:
                    i += 1
                    closed = self._close_container(text, args_from, i)
                    if isinstance(closed, ScanResult):
                        return closed
                    args_from = closed
                    continue
                if char != '"':
                    return self._fail(i, "expected a quoted key", text, args_from)
                self._expect = _Expect.STRING
                self._after_string = _Expect.COLON
                if self._call is not None and not self._in_arguments and len(self._stack) == self._call_depth:
                    self._begin_capture("key")
                i += 1
                continue
            if expect == _Expect.COLON:
                if char != ":":
                    return self._fail(i, "expected ':' after a key", text, args_from)
                self._expect = _Expect.VALUE
                i += 1
                continue
            # COMMA_OR_CLOSE
            if char == ",":
                self._expect = _Expect.KEY if self._stack[-1] == "{" else _Expect.VALUE
                i += 1
                continue
            if (char == "}" and self._stack[-1] == "{") or (char == "]" and self._stack[-1] == "["):
                i += 1
                closed = self._close_container(text, args_from, i)
                if isinstance(closed, ScanResult):
                    return closed
                args_from = closed
                continue
            return self._fail(i, f"unexpected {char!r}", text, args_from)
        if args_from >= 0 and args_from < i:
            self._emit_arguments(text[args_from:i])
        if self._expect == _Expect.DONE:
            return ScanResult(ScanStatus.DONE, i)
        return ScanResult(ScanStatus.MORE, i)

    def _arguments_depth(self) -> int:
        """Stack depth inside the arguments value; below it, the value is complete."""
        return self._call_depth + 1

    def _check_value_start(self, char: str) -> str:
        depth = len(self._stack)
        if depth == 0 and self._arguments_only:
            return "" if char == "{" else "arguments must be an object"
        if depth == 0:
            if char not in "{[":
                return "a tool call must be a JSON object or a list of them"
            self._call_depth = 2 if char == "[" else 1
        elif depth < self._call_depth and char != "{":
            return "a tool call must be a JSON object"
        if char in '{["' or char == "-" or char.isdigit() or char in "tfn":
            return ""
        return f"unexpected {char!r}"

    def _begin_capture(self, role: str) -> None:
        self._capture = []
        self._capture_role = role

    def _end_string(self) -> str:
        """Settle a captured string; returns a problem that fails the call, or ""."""
        if self._capture is None:
            return ""
        text = '"' + "".join(self._capture) + '"'
        role = self._capture_role
        self._capture = None
        if role == "key":
            self._key = decode_string(text) or ""
        elif role == "name":
            assert self._call is not None
            name = decode_string(text)
            if self._known_names is not None and name not in self._known_names:
                return f"{name!r} is not one of the tools on offer"
            self._call.name = name
            self._announce_if_ready()
        elif role == "arguments":
            assert self._call is not None
            self._call.arguments.append(text)
        elif role == "id":
            assert self._call is not None
            self._call.written_id = decode_string(text) or ""
            self._announce_if_ready()
        return ""

    def _announce_if_ready(self) -> None:
        call = self._call
        if call is None or call.index is not None or not call.name:
            return
        if call.arguments_kind not in (None, "{") and self._in_arguments:
            return
        if self._id_keys and not call.written_id:
            return  # the id may still come
        call.index, call_id = self._indexer.next(call.written_id)
        self._events.append(ToolCallStart(call.index, call_id, call.name))
        if call.unsent:
            self._events.append(ToolCallArgs(call.index, "".join(call.unsent)))
            call.unsent.clear()

    def _emit_arguments(self, text: str) -> None:
        call = self._call
        if call is None or not text or call.arguments_kind != "{":
            return
        call.arguments.append(text)
        if call.index is None:
            call.unsent.append(text)
        else:
            self._events.append(ToolCallArgs(call.index, text))

    def _close_arguments(self, text: str, args_from: int, end: int) -> int:
        """The arguments value ended at `end`: flush what is left of it."""
        if args_from >= 0:
            self._emit_arguments(text[args_from:end])
        self._in_arguments = False
        self._announce_if_ready()
        return -1

    def _close_container(self, text: str, args_from: int, end: int) -> int | ScanResult:
        self._stack.pop()
        depth = len(self._stack)
        if self._in_arguments and depth < self._arguments_depth():
            args_from = self._close_arguments(text, args_from, end)
        if self._call is not None and depth == self._call_depth - 1:
            problem = self._finish_call()
            if problem:
                return self._fail(end - 1, problem)
            self._restart_raw(end)
        self._expect = _Expect.DONE if depth == 0 else _Expect.COMMA_OR_CLOSE
        return args_from

    def _finish_call(self) -> str:
        call = self._call
        assert call is not None
        if not call.name:
            return "the call has no name"
        arguments = call.final_arguments()
        if isinstance(arguments, ArgumentsProblem):
            return arguments.reason
        if call.index is None:
            call.index, call_id = self._indexer.next(call.written_id)
            self._events.append(ToolCallStart(call.index, call_id, call.name))
            self._events.append(ToolCallArgs(call.index, arguments))
        elif call.arguments_kind != "{":
            self._events.append(ToolCallArgs(call.index, arguments))
        self._events.append(ToolCallEnd(call.index, arguments))
        self._indexer.completed += 1
        self._call = None
        return ""

    def _fail(
        self, position: int, reason: str, text: str = "", args_from: int = -1, valid_to: int | None = None
    ) -> ScanResult:
        valid_to = position if valid_to is None else valid_to
        if 0 <= args_from < valid_to:
            # The arguments read in this chunk before the fault were valid: send them (without a
            # dangling comma), so a repair can keep them. Without repair the call is dropped anyway.
            self._emit_arguments(text[args_from:valid_to].rstrip().removesuffix(",").rstrip())
        # Nothing more of a failed call is sent: the caller turns its raw text into content.
        return ScanResult(ScanStatus.FAILED, position, reason)

