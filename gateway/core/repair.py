"""Never fail a turn for a model's formatting slip: a call that breaks after its name was sent is
ended with valid JSON instead of failing the stream.

The parser has already sent the call's name and the argument text it validated; those fragments
are out and cannot be taken back. So the repair keeps that prefix exactly and appends the shortest
text that makes it a complete JSON object (closing an open string, completing a cut literal,
giving a dangling key a `null`, closing every bracket), ends the call there, and logs what the model
wrote that could not be used. Calls before the broken one are untouched, and parsing goes on after
its block.

A continuation that asks the backend to finish the call under a constraint would slot in where
`_close` is called: it has the same inputs (the call's name and its valid prefix) and the same
output (the argument text that completes it).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import structlog

from adapters.formats.events import (
    ParseEvent,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)

log = structlog.get_logger("toolwire.repair")

_LITERALS = ("true", "false", "null")


class CallRepair:
    """Passes parser events through; with `enabled`, a broken call becomes a finished one."""

    def __init__(self, *, enabled: bool, format_name: str, request_id: str = "") -> None:
        self._enabled = enabled
        self._format = format_name
        self._request_id = request_id
        self._names: dict[int, str] = {}
        self._arguments: dict[int, list[str]] = {}
        self.repaired = 0

    def check(self, events: Iterable[ParseEvent]) -> list[ParseEvent]:
        out: list[ParseEvent] = []
        for event in events:
            if isinstance(event, ToolCallStart):
                self._names[event.index], self._arguments[event.index] = event.name, []
            elif isinstance(event, ToolCallArgs) and event.index in self._arguments:
                self._arguments[event.index].append(event.text)
            elif isinstance(event, ToolCallFailed) and self._enabled and event.index in self._arguments:
                closed = self._close(event)
                if closed:
                    out += closed
                    continue
            out.append(event)
        return out

    def _close(self, failed: ToolCallFailed) -> list[ParseEvent]:
        written = "".join(self._arguments[failed.index])
        suffix = json_completion(written)
        if suffix is None:
            # The scanners stream only validated text, so this is not expected; if it happens the
            # fragments sent cannot be made JSON, and the call fails as it would unrepaired.
            log.error("tool_call_unrepairable", request_id=self._request_id, format=self._format, arguments=written)
            return []
        self.repaired += 1
        log.warning(
            "tool_call_repaired",
            request_id=self._request_id,
            format=self._format,
            name=self._names[failed.index],
            reason=failed.reason,
            malformed=failed.raw,
            completion=suffix,
        )
        arguments = written + suffix
        events: list[ParseEvent] = [ToolCallArgs(failed.index, suffix)] if suffix else []
        return [*events, ToolCallEnd(failed.index, arguments, repaired=True)]


def json_completion(prefix: str) -> str | None:
    """The shortest text that makes `prefix` (the start of a JSON object) one complete object;
    None when `prefix` is not the start of one."""
    stack: list[str] = []
    in_string = False
    escape = 0  # 1 after a backslash; 2..5 inside a \\u escape (hex digits still to read + 1)
    expect = "value"  # value, key, colon, comma (after a value), key_or_close, value_or_close
    is_key = False
    scalar = ""
    text = prefix.strip()
    if not text:
        return "{}"
    if text[0] != "{":
        return None
    for char in text:
        if in_string:
            if escape == 1:
                escape = 5 if char == "u" else 0
            elif escape > 1:
                escape = escape - 1 if escape > 2 else 0
            elif char == "\\":
                escape = 1
            elif char == '"':
                in_string = False
                expect = "colon" if is_key else "comma"
            continue
        if scalar:
            if char.isalnum() or char in "+-.":
                scalar += char
                continue
            scalar = ""
            expect = "comma"
        if char in " \t\r\n":
            continue
        if not stack and expect == "comma":
            return None  # text after the complete object
        if expect in ("value", "value_or_close"):
            if char == "]" and expect == "value_or_close":
                stack.pop()
                expect = "comma"
            elif char in "{[":
                stack.append(char)
                expect = "key_or_close" if char == "{" else "value_or_close"
            elif char == '"':
                in_string, is_key = True, False
            elif char.isalnum() or char == "-":
                scalar = char
            else:
                return None
        elif expect in ("key", "key_or_close"):
            if char == "}" and expect == "key_or_close":
                stack.pop()
                expect = "comma"
            elif char == '"':
                in_string, is_key = True, True
            else:
                return None
        elif expect == "colon":
            if char != ":":
                return None
            expect = "value"
        else:  # comma
            if char == ",":
                expect = "key" if stack and stack[-1] == "{" else "value"
            elif stack and char == {"{": "}", "[": "]"}[stack[-1]]:
                stack.pop()
            else:
                return None
    if not stack and expect == "comma" and not scalar:
        return ""  # complete already
    tail = ""
    if in_string:
        tail += "\\" if escape == 1 else ""
        tail += "0" * (escape - 1) if escape > 1 else ""
        tail += '"'
        expect = "colon" if is_key else "comma"
    elif scalar:
        tail += _complete_scalar(scalar)
        expect = "comma"
    if expect == "colon":
        tail += ": null"
    elif expect == "value":
        tail += "null"
    elif expect == "key":
        tail += '"": null'
    for opened in reversed(stack):
        tail += "}" if opened == "{" else "]"
    try:
        orjson.loads(text + tail)
    except orjson.JSONDecodeError:
        return None
    return tail


def _complete_scalar(scalar: str) -> str:
    for literal in _LITERALS:
        if literal.startswith(scalar):
            return literal[len(scalar) :]
    return "0" if scalar[-1] in "-+.eE" else ""
