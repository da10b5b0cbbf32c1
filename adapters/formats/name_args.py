"""Scanner for calls written as a function name, then a JSON object of arguments.

Mistral v11 `get_weather[ARGS]{...}`, DeepSeek `function<｜tool▁sep｜>get_weather\\n```json\\n{...}\\n````
(V3.1: `get_weather<｜tool▁sep｜>{...}`), gpt-oss `get_weather <|constrain|>json<|message|>{...}`,
Functionary `get_weather\\n{...}`. The name runs to the first character a function name cannot
hold; the short header after it must end with one of the format's argument markers; the `{...}`
is validated and streamed by the JSON scanner the engine supplies, as the arguments of a call
already named.
Name and header are bounded, so each character is still looked at a constant number of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .events import ParseEvent
from .scanning import ArgumentsScanner, BodyScanner, ScanContext, ScanResult, ScanStatus

MAX_NAME = 128  # longer is not a function name but prose after a marker
MAX_HEADER = 64  # `<|channel|>commentary json<|message|>` and the like
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class NameArgsSyntax:
    """How a format writes `name ... {arguments}`. Its `scanner` method is a `CallSyntax.scanner`."""

    # The text between the name and `{` must end with one of these ("[ARGS]", "<|message|>").
    args_markers: tuple[str, ...] = ()
    # Only whitespace may stand between the name and `{` (Functionary's `name\n{...}`).
    bare_args: bool = False
    # Optional text before the name, dropped (DeepSeek's call type `function<｜tool▁sep｜>`).
    name_prefix: str = ""
    # (opening, closing): a header ending with the opening puts the arguments in a fence that
    # the closing ends (DeepSeek's ```json ... ```); a missing closing is forgiven.
    fence: tuple[str, str] | None = None
    # A body starting with `[` is a JSON list of call objects instead (Mistral before v11).
    list_body: bool = False
    # Recipient names that mean "plain text follows", not a call (Functionary's `all`).
    content_names: tuple[str, ...] = ()
    # False: a block naming a function is not a call but text (no tools on offer).
    calls: bool = True
    # The prefix, name and header before the argument marker are the call's own id (Kimi's
    # `functions.NAME:IDX`): it is kept.
    written_id: bool = False

    def scanner(self, context: ScanContext) -> NameArgsScanner:
        return NameArgsScanner(self, context)


class _Stage(IntEnum):
    LEAD = 0  # whitespace before the name
    NAME = 1
    HEADER = 2  # between the name and `{`
    ARGUMENTS = 3
    FENCE = 4  # after the arguments, the fence's closing may follow
    LIST = 5  # a JSON list body, handed to the JSON call scanner


class NameArgsScanner:
    """Reads one `name ... {arguments}` body (see `NameArgsSyntax`)."""

    def __init__(self, syntax: NameArgsSyntax, context: ScanContext) -> None:
        self._syntax = syntax
        self._context = context
        self._events: list[ParseEvent] = []  # from the inner scanner, until this feed returns
        self._stage = _Stage.LEAD
        self._name = ""
        self._prefix_open = bool(syntax.name_prefix)  # the text so far may still be the prefix
        self._header = ""
        self._fenced = False
        self._fence_seen = 0  # characters of the fence's closing matched so far
        self._inner: BodyScanner | None = None
        self._arguments: ArgumentsScanner | None = None
        self.raw: list[str] = []
        self.completed_any = False  # one call per body: its raw text is always its own

    @property
    def current_call_index(self) -> int | None:
        return self._inner.current_call_index if self._inner is not None else None

    def feed(self, text: str) -> ScanResult:
        result = self._scan(text)
        self.raw.append(text[: result.end])
        events, self._events = self._events, []
        return ScanResult(result.status, result.end, result.reason, events)

    def _scan(self, text: str) -> ScanResult:
        i, n = 0, len(text)
        while i < n:
            stage = self._stage
            if stage in (_Stage.ARGUMENTS, _Stage.LIST):
                assert self._inner is not None
                result = self._inner.feed(text[i:] if i else text)
                self._events.extend(result.events)
                if result.status != ScanStatus.DONE or stage == _Stage.LIST:
                    return ScanResult(result.status, i + result.end, result.reason)
                i += result.end
                if not self._fenced:
                    return self._finish(i)
                self._stage = _Stage.FENCE
                continue
            char = text[i]
            if stage == _Stage.FENCE:
                closing = self._syntax.fence[1]  # type: ignore[index]
                if char in _WHITESPACE and not self._fence_seen:
                    i += 1
                elif char == closing[self._fence_seen]:
                    i += 1
                    self._fence_seen += 1
                    if self._fence_seen == len(closing):
                        return self._finish(i)
                else:
                    return self._finish(i)  # no closing: the arguments were complete anyway
                continue
            if stage == _Stage.LEAD:
                if char in _WHITESPACE:
                    i += 1
                    continue
                if char == "[" and self._syntax.list_body:
                    self._stage = _Stage.LIST
                    self._inner = self._context.json_calls()
                    continue
                self._stage = _Stage.NAME
            stepped = self._step(char, i)
            if stepped is not None:
                return stepped
            if self._stage != _Stage.ARGUMENTS:  # else `{` began the arguments: the JSON scanner reads it
                i += 1
        return ScanResult(ScanStatus.MORE, n)

    def _step(self, char: str, i: int) -> ScanResult | None:
        """One character of the name or header; a result ends the scan here."""
        if self._stage == _Stage.NAME:
            if self._prefix_open:
                taken = self._name + char
                if self._syntax.name_prefix.startswith(taken):
                    self._name = "" if taken == self._syntax.name_prefix else taken
                    self._prefix_open = taken != self._syntax.name_prefix
                    return None
                # Not the prefix after all: what was taken for it is the name's start.
                self._prefix_open = False
                if not all(_is_name_char(c) for c in self._name):
                    return self._fail(i, "not a function name")
            if _is_name_char(char):
                self._name += char
                return self._fail(i, "the function name is too long") if len(self._name) > MAX_NAME else None
            if not self._name:
                return self._fail(i, "a call must begin with a function name")
            if self._name in self._syntax.content_names:
                # A text block: what follows the recipient line is content.
                return ScanResult(ScanStatus.DONE, i + 1 if char == "\n" else i)
            if not self._syntax.calls:
                return self._fail(i, "no tools are on offer")
            self._stage = _Stage.HEADER
        # HEADER
        if char != "{":
            self._header += char
            if len(self._header) > MAX_HEADER:
                return self._fail(i, "no arguments follow the function name")
            if self._syntax.bare_args and not self._syntax.args_markers and char not in _WHITESPACE:
                return self._fail(i, "expected arguments after the function name")
            return None
        header = self._header.rstrip()
        fence = self._syntax.fence
        self._fenced = bool(fence and header.endswith(fence[0]))
        if not (self._fenced or any(header.endswith(m) for m in self._syntax.args_markers)
                or (self._syntax.bare_args and not header)):
            return self._fail(i, "no argument marker after the function name")
        self._stage = _Stage.ARGUMENTS
        written = ""
        if self._syntax.written_id:
            marker = next((m for m in self._syntax.args_markers if header.endswith(m)), "")
            written = self._syntax.name_prefix + self._name + header[: len(header) - len(marker)].strip()
        self._inner = self._arguments = self._context.json_arguments(self._name, written)
        return None

    def _finish(self, end: int) -> ScanResult:
        assert self._arguments is not None
        finished = self._arguments.finish()
        self._events.extend(finished.events)
        if finished.status == ScanStatus.FAILED:
            return self._fail(end, finished.reason)
        self._inner = self._arguments = None
        return ScanResult(ScanStatus.DONE, end)

    @staticmethod
    def _fail(position: int, reason: str) -> ScanResult:
        return ScanResult(ScanStatus.FAILED, position, reason)


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char in "_-."
