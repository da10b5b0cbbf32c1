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

from .events import ParseEvent, ToolCallArgs, ToolCallEnd, ToolCallStart
from .markers import partial_marker_length
from .python_literals import json_chars
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
    # Optional markers before that (DeepSeek's `<｜tool▁call▁begin｜>` after a section opener), dropped.
    lead_markers: tuple[str, ...] = ()
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
    # In the header, this marker puts the call's own id before the argument marker (Mistral v11's
    # `NAME[CALL_ID]a1B2c3D4e[ARGS]`): it is kept.
    id_marker: str = ""
    # Recipients whose block is source code, not JSON: a call of the offered tool of that name with
    # `{"code": <the text>}` (Functionary v3.2's `>>>python\n<code>`); the code runs to `code_end`.
    code_names: tuple[str, ...] = ()
    code_end: str = ""

    def scanner(self, context: ScanContext) -> NameArgsScanner:
        return NameArgsScanner(self, context)


class _Stage(IntEnum):
    LEAD = 0  # whitespace before the name
    NAME = 1
    HEADER = 2  # between the name and `{`
    ARGUMENTS = 3
    FENCE = 4  # after the arguments, the fence's closing may follow
    LIST = 5  # a JSON list body, handed to the JSON call scanner
    CODE = 6  # a code recipient's source text


class NameArgsScanner:
    """Reads one `name ... {arguments}` body (see `NameArgsSyntax`)."""

    def __init__(self, syntax: NameArgsSyntax, context: ScanContext) -> None:
        self._syntax = syntax
        self._context = context
        self._events: list[ParseEvent] = []  # from the inner scanner, until this feed returns
        self._stage = _Stage.LEAD
        self._name = ""
        # Optional texts before the name, in order: the text so far may still be one of them.
        self._prefixes = tuple(p for p in (*syntax.lead_markers, syntax.name_prefix) if p)
        self._prefix_at = 0
        self._prefix_open = bool(self._prefixes)
        self._header = ""
        self._fenced = False
        self._fence_seen = 0  # characters of the fence's closing matched so far
        self._code_held = ""  # the code's tail that may begin `code_end`
        self._code_index: int | None = None
        self._code_arguments = ""
        self._inner: BodyScanner | None = None
        self._arguments: ArgumentsScanner | None = None
        self.raw: list[str] = []
        self.completed_any = False  # one call per body: its raw text is always its own

    @property
    def current_call_index(self) -> int | None:
        if self._code_index is not None:
            return self._code_index
        return self._inner.current_call_index if self._inner is not None else None

    def end(self) -> ScanResult:
        """The output ended here: arguments complete but for the fence's closing, or code, are a call."""
        if self._stage == _Stage.FENCE:
            result = self._finish(0)
        elif self._stage == _Stage.CODE and self._code_index is not None:
            self._code_piece(self._code_held.rstrip())
            result = self._end_code(0)
        else:
            result = self._fail(0, "the output ended inside a tool call")
        events, self._events = self._events, []
        return ScanResult(result.status, result.end, result.reason, events, result.replay)

    def feed(self, text: str) -> ScanResult:
        result = self._scan(text)
        self.raw.append(text[: result.end])
        events, self._events = self._events, []
        return ScanResult(result.status, result.end, result.reason, events, result.replay)

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
            if stage == _Stage.CODE:
                return self._read_code(text, i)
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
                for at in range(self._prefix_at, len(self._prefixes)):
                    prefix = self._prefixes[at]
                    if prefix.startswith(taken):
                        whole = taken == prefix
                        self._name = "" if whole else taken
                        self._prefix_at = at + 1 if whole else at
                        self._prefix_open = self._prefix_at < len(self._prefixes)
                        return None
                # Not a prefix after all: what was taken for it is the name's start.
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
            if char == "\n" and self._name in self._syntax.code_names and self._offers(self._name):
                self._stage = _Stage.CODE
                return None
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
        marker = next((m for m in self._syntax.args_markers if header.endswith(m)), "")
        if self._syntax.written_id:
            written = self._syntax.name_prefix + self._name + header[: len(header) - len(marker)].strip()
        elif self._syntax.id_marker and self._syntax.id_marker in header:
            written = header[header.index(self._syntax.id_marker) + len(self._syntax.id_marker) : len(header) - len(marker)].strip()
        self._inner = self._arguments = self._context.json_arguments(self._name, written)
        return None

    def _offers(self, name: str) -> bool:
        return any(tool.name == name for tool in self._context.tools)

    def _read_code(self, text: str, i: int) -> ScanResult:
        """Source text up to `code_end`; JSON arguments (`{`) instead are read as usual."""
        if self._code_index is None:
            while i < len(text) and text[i] in _WHITESPACE and not self._code_held:
                i += 1
            if i == len(text):
                return ScanResult(ScanStatus.MORE, i)
            if text[i] == "{":
                self._stage = _Stage.HEADER
                stepped = self._step("{", i)
                return stepped if stepped is not None else self._scan_rest(text, i)
            self._code_index, call_id = self._context.indexer.next()
            self._events.append(ToolCallStart(self._code_index, call_id, self._name))
            self._emit_code('{"code": "')
        held = len(self._code_held)
        chunk = self._code_held + text[i:]
        end_marker = self._syntax.code_end
        position = chunk.find(end_marker) if end_marker else -1
        if position < 0:
            keep = partial_marker_length(chunk, (end_marker,)) if end_marker else 0
            # Whitespace before it waits too: before the next block it is the layout's, not the code's.
            body = chunk[: len(chunk) - keep]
            keep += len(body) - len(body.rstrip())
            self._code_piece(chunk[: len(chunk) - keep])
            self._code_held = chunk[len(chunk) - keep :]
            return ScanResult(ScanStatus.MORE, len(text))
        self._code_piece(chunk[:position].rstrip())
        self._code_held = ""
        if position >= held:
            return self._end_code(i + position - held)
        # The marker began in text held from earlier pieces: give that part back to the engine.
        ended = self._end_code(i)
        return ScanResult(ended.status, ended.end, ended.reason, replay=chunk[position:held])

    def _scan_rest(self, text: str, i: int) -> ScanResult:
        result = self._scan(text[i:])
        return ScanResult(result.status, i + result.end, result.reason)

    def _code_piece(self, piece: str) -> None:
        if piece:
            self._emit_code(json_chars(piece))

    def _emit_code(self, text: str) -> None:
        assert self._code_index is not None
        self._code_arguments += text
        self._events.append(ToolCallArgs(self._code_index, text))

    def _end_code(self, end: int) -> ScanResult:
        assert self._code_index is not None
        self._emit_code('"}')
        self._events.append(ToolCallEnd(self._code_index, self._code_arguments))
        self._context.indexer.completed += 1
        self._code_index = None
        self.completed_any = True
        return ScanResult(ScanStatus.DONE, end)

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
