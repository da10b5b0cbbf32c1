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
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class JsonPrefix:
    """Where the start of a JSON object leaves off: the containers still open (outermost first) and
    what must come next (`value`, `key`, `colon`, `comma` after a value, `key_or_close`,
    `value_or_close`), inside a string (a key or not, and how far into an escape) or a scalar."""

    stack: list[str] = field(default_factory=list)
    expect: str = "value"
    in_string: bool = False
    is_key: bool = False
    escape: int = 0  # 1 after a backslash; 2..5 inside a \\u escape (hex digits still to read + 1)
    scalar: str = ""

    @property
    def complete(self) -> bool:
        return not self.stack and self.expect == "comma" and not self.scalar and not self.in_string


def scan_json_prefix(prefix: str) -> JsonPrefix | None:
    """The state `prefix` (the start of a JSON object or list) leaves off in; None when it is not
    the start of one. An empty prefix expects the value."""
    state = JsonPrefix()
    text = prefix.strip()
    if text and text[0] not in "{[":
        return None
    for char in text:
        if state.in_string:
            if state.escape == 1:
                state.escape = 5 if char == "u" else 0
            elif state.escape > 1:
                state.escape = state.escape - 1 if state.escape > 2 else 0
            elif char == "\\":
                state.escape = 1
            elif char == '"':
                state.in_string = False
                state.expect = "colon" if state.is_key else "comma"
            continue
        if state.scalar:
            if char.isalnum() or char in "+-.":
                state.scalar += char
                continue
            state.scalar = ""
            state.expect = "comma"
        if char in " \t\r\n":
            continue
        stack, expect = state.stack, state.expect
        if not stack and expect == "comma":
            return None  # text after the complete object
        if expect in ("value", "value_or_close"):
            if char == "]" and expect == "value_or_close":
                stack.pop()
                state.expect = "comma"
            elif char in "{[":
                stack.append(char)
                state.expect = "key_or_close" if char == "{" else "value_or_close"
            elif char == '"':
                state.in_string, state.is_key = True, False
            elif char.isalnum() or char == "-":
                state.scalar = char
            else:
                return None
        elif expect in ("key", "key_or_close"):
            if char == "}" and expect == "key_or_close":
                stack.pop()
                state.expect = "comma"
            elif char == '"':
                state.in_string, state.is_key = True, True
            else:
                return None
        elif expect == "colon":
            if char != ":":
                return None
            state.expect = "value"
        else:  # comma
            if char == ",":
                state.expect = "key" if stack and stack[-1] == "{" else "value"
            elif stack and char == {"{": "}", "[": "]"}[stack[-1]]:
                stack.pop()
            else:
                return None
    return state


def json_completion(prefix: str) -> str | None:
    """The shortest text that makes `prefix` (the start of a JSON object) one complete object;
    None when `prefix` is not the start of one."""
    text = prefix.strip()
    if not text:
        return "{}"
    state = scan_json_prefix(text) if text[0] == "{" else None
    if state is None:
        return None
    if state.complete:
        return ""  # complete already
    tail = ""
    expect = state.expect
    if state.in_string:
        tail += "\\" if state.escape == 1 else ""
        tail += "0" * (state.escape - 1) if state.escape > 1 else ""
        tail += '"'
        expect = "colon" if state.is_key else "comma"
    elif state.scalar:
        tail += _complete_scalar(state.scalar)
        expect = "comma"
    if expect == "colon":
        tail += ": null"
    elif expect == "value":
        tail += "null"
    elif expect == "key":
        tail += '"": null'
    for opened in reversed(state.stack):
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
