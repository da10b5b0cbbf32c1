"""The one streaming parser every tool format configures.

It reads the model's text chunk by chunk and turns it into events: content, reasoning, and tool
calls found between the format's markers. Each chunk is scanned once; the only text held back is
a tail that could be the start of a marker (bounded by the marker's length) and whitespace that
may turn out to sit between calls. That keeps the work linear in the length of the output.

Reasoning is split off first: a call drafted inside `<think>...</think>` is not a call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import IntEnum

from .conversation import ToolSpec
from .events import (
    ParseEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)
from .json_calls import JsonCallScanner
from .markers import find_first, partial_marker_length
from .scanning import BodyScanner, CallIndexer, ScanContext, ScanStatus
from .syntax import CallSyntax

# A code fence around calls (models often wrap them in one): its opener, and the language tag and
# line break after it.
FENCE = "```"
_FENCE_HEAD = re.compile(r"[A-Za-z_]*[ \t]*(?:\r?\n[ \t\r\n]*)?")
_MAX_FENCE_LOOKAHEAD = 64


class _Mode(IntEnum):
    TEXT = 0
    BODY = 1
    AFTER_BODY = 2
    REASONING = 3
    SKIP = 4  # the rest of a broken call's block, up to its close marker


class StreamParser:
    """Feed it the model's text as it arrives; it returns the events each piece completes."""

    def __init__(
        self,
        syntax: CallSyntax,
        new_call_id: Callable[[], str],
        *,
        starts_in_reasoning: bool = False,
        parse_calls: bool = True,
        tools: tuple[ToolSpec, ...] = (),
        repairing: bool = False,
    ) -> None:
        self._syntax = syntax
        # A call that breaks after it was announced will be repaired, not shown as text: the rest
        # of its block is dropped up to the block's close marker.
        self._repairing = repairing
        self._tools = tools
        self._reasoning_open, self._reasoning_close = syntax.reasoning or ("", "")
        # Without tools on offer, call syntax is just text; reasoning is still split off.
        self._blocks = (syntax, *syntax.also) if parse_calls else ()
        self._open_markers = tuple(marker for block in self._blocks for marker in block.open_markers)
        self._start_bodies = syntax.start_bodies if parse_calls else ()
        # A fence may wrap calls, unless the format's own markers hold one (Command R+).
        self._fences = parse_calls and not any(FENCE in marker for marker in self._open_markers)
        self._text_markers = tuple(
            m for m in (*self._open_markers, self._reasoning_open, *syntax.drop_markers, FENCE if self._fences else "") if m
        )
        self._block = syntax  # the syntax of the call block being read
        self._fence_open = False  # a fence opened around calls: its closer is dropped too
        self._fence_head = ""  # that fence's opener, given back with a call that fails
        self._space_before_body = ""
        self._skip_to = "\n"
        self._indexer = CallIndexer(new_call_id)
        self._events: list[ParseEvent] = []
        self._mode = _Mode.REASONING if starts_in_reasoning and self._reasoning_close else _Mode.TEXT
        self._carry = ""  # text held back: a possible marker start, or an unfinished close marker
        self._pending_space = ""  # trailing whitespace that is content only if text follows it
        self._content_started = False
        self._trim_leading = False  # after a call or reasoning, leading whitespace is not content
        self._at_start = True  # no content yet: a marker-less body may begin here
        self._reasoning_started = False
        self._reasoning_space = ""
        self._scanner: BodyScanner | None = None
        self._body_prefix = ""  # the open marker of the body being scanned, for its raw text
        self._open_arguments: list[str] = []  # the argument text sent so far for the announced call
        self.failed_calls = 0
        self._fed = 0  # characters fed so far: the text being consumed ends here
        self._json_from = -1  # where the JSON body being scanned began (-1: not JSON, or not yet)
        self._json_body = False

    @property
    def completed_calls(self) -> int:
        return self._indexer.completed

    def feed(self, text: str) -> list[ParseEvent]:
        if text:
            self._fed += len(text)
            self._consume(self._carry + text if self._carry else text)
        return self._take_events()

    def close(self, *, cut: bool = False) -> list[ParseEvent]:
        """The model has stopped: settle whatever is still open. `cut`: the token limit stopped it,
        so a call already announced ends as written so far (a call not yet named is text)."""
        if self._mode == _Mode.BODY and cut and self._scanner is not None and self._scanner.current_call_index is not None:
            index = self._scanner.current_call_index
            self._scanner = None
            self._mode = _Mode.TEXT
            self._events.append(ToolCallEnd(index, "".join(self._open_arguments), truncated=True))
        elif self._mode == _Mode.BODY:
            assert self._scanner is not None
            ended = self._scanner.end()
            if ended.status == ScanStatus.DONE:
                self._events.extend(ended.events)
                self._scanner = None
                self._mode = _Mode.AFTER_BODY
            else:
                self._abandon_body(ended.reason, self._fed)
        elif self._mode == _Mode.TEXT and self._carry:
            self._emit_text(self._carry)
        elif self._mode == _Mode.REASONING and self._carry:
            self._emit_reasoning(self._carry)
        self._carry = ""
        if self._pending_space and not self._trim_leading:
            self._events.append(TextDelta(self._pending_space))
        self._pending_space = ""
        return self._take_events()

    # -- modes -------------------------------------------------------------------------

    def _consume(self, text: str) -> None:
        self._carry = ""
        while text:
            if self._mode == _Mode.TEXT:
                text = self._consume_text(text)
            elif self._mode == _Mode.BODY:
                text = self._consume_body(text)
            elif self._mode == _Mode.AFTER_BODY:
                text = self._consume_after_body(text)
            elif self._mode == _Mode.SKIP:
                text = self._consume_skip(text)
            else:
                text = self._consume_reasoning(text)

    def _consume_text(self, text: str) -> str:
        if self._at_start and self._start_bodies:
            stripped = text.lstrip()
            if not stripped:
                self._carry = text  # only whitespace so far: the answer has not begun
                return ""
            self._at_start = False
            if stripped[0] in self._start_bodies:
                self._trim_leading = True
                self._start_body("", bare=True)
                return stripped
        found = find_first(text, self._text_markers) if self._text_markers else None
        if found is None:
            keep = partial_marker_length(text, self._text_markers) if self._text_markers else 0
            self._emit_text(text[: len(text) - keep])
            self._carry = text[len(text) - keep :]
            return ""
        position, marker = found
        self._emit_text(text[:position])
        rest = text[position + len(marker) :]
        if marker == self._reasoning_open:
            self._mode = _Mode.REASONING
            if not self._content_started:
                self._pending_space = ""  # GLM-4.6 opens every answer with "\n<think>": not content
        elif marker == FENCE:
            return self._on_fence(rest)
        elif marker in self._open_markers:
            self._start_body(marker)
        return rest

    def _on_fence(self, rest: str) -> str:
        """A fence: dropped when it wraps calls (opener and closer), else text."""
        if self._fence_open:
            self._fence_open = False
            # The fence's line goes with it: only the space before the call stands.
            self._pending_space = self._space_before_body
            return rest
        head = _FENCE_HEAD.match(rest)
        after = rest[head.end() if head else 0 :]
        undecided = not after or any(m.startswith(after) and m != after for m in self._open_markers)
        if undecided and len(rest) < _MAX_FENCE_LOOKAHEAD:
            self._carry = FENCE + rest  # the next piece tells whether a call follows
            return ""
        opener = FENCE + rest[: len(rest) - len(after)]
        if any(after.startswith(marker) for marker in self._open_markers):
            self._fence_open, self._fence_head = True, opener
            return after
        if self._syntax.fenced_json and after[0] in "{[":
            self._fence_open, self._fence_head = True, ""
            self._trim_leading = True
            self._start_body(opener, bare=True)
            return after
        self._emit_text(FENCE)
        return rest

    def _consume_reasoning(self, text: str) -> str:
        position = text.find(self._reasoning_close)
        if position < 0:
            keep = partial_marker_length(text, (self._reasoning_close,))
            self._emit_reasoning(text[: len(text) - keep])
            self._carry = text[len(text) - keep :]
            return ""
        self._emit_reasoning(text[:position])
        self._mode = _Mode.TEXT
        self._trim_leading = True
        self._at_start = not self._content_started
        self._reasoning_space = ""
        return text[position + len(self._reasoning_close) :]

    def _start_body(self, prefix: str, *, bare: bool = False) -> None:
        self._mode = _Mode.BODY
        self._trim_leading = True
        self._body_prefix = self._fence_head + prefix
        self._space_before_body = self._pending_space
        self._fence_head = ""
        syntax = next((block for block in self._blocks if prefix in block.open_markers), self._syntax)
        self._block = syntax
        self._json_body, self._json_from = syntax.json_objects, -1
        # Where a broken call's block ends: its close marker; with none, or for a body that opened
        # with no marker of its own (a bare or fenced call), the end of its line.
        self._skip_to = (syntax.close_marker if prefix in syntax.open_markers else "") or "\n"
        if syntax.json_objects:
            self._scanner = JsonCallScanner(
                self._indexer,
                name_keys=syntax.name_keys,
                argument_keys=syntax.argument_keys,
                id_keys=syntax.id_keys,
                # With no marker, only a call to an offered tool counts as a call.
                known_names=frozenset(tool.name for tool in self._tools) if bare else None,
            )
        else:
            assert syntax.scanner is not None
            self._scanner = syntax.scanner(self._scan_context())

    def _scan_context(self) -> ScanContext:
        indexer = self._indexer
        return ScanContext(
            indexer,
            self._tools,
            json_calls=lambda: JsonCallScanner(indexer, id_keys=self._block.id_keys),
            json_arguments=lambda name, written_id: JsonCallScanner(indexer, call_name=name, written_id=written_id),
        )

    def _consume_body(self, text: str) -> str:
        assert self._scanner is not None
        if self._json_body and self._json_from < 0:
            self._json_from = self._fed - len(text)  # the text consumed is always a suffix of all fed
        result = self._scanner.feed(text)
        self._track_arguments(result.events)
        self._events.extend(result.events)
        if result.status == ScanStatus.MORE:
            return ""
        if result.status == ScanStatus.DONE:
            self._mode = _Mode.AFTER_BODY
            self._scanner = None
            return result.replay + text[result.end :]
        self._abandon_body(result.reason, self._fed - len(text) + result.end)
        return text[result.end :]

    def _consume_after_body(self, text: str) -> str:
        stripped = text.lstrip()
        separator = self._block.call_separator
        if separator and stripped.startswith(separator):
            stripped = stripped[len(separator) :].lstrip()
        if not stripped:
            return ""
        close = self._block.close_marker
        if close:
            if stripped.startswith(close):
                self._mode = _Mode.TEXT
                return stripped[len(close) :]
            if close.startswith(stripped):
                self._carry = stripped  # the close marker may be split across chunks
                return ""
        if self._block.bare_repeat and self._block.json_objects and stripped[0] in "{[":
            # Several calls inside one block (or one after another with no markers).
            self._start_body("")
            return stripped
        # No close marker: the call is already complete, so what follows is plain text.
        self._mode = _Mode.TEXT
        return stripped

    def _track_arguments(self, events: list[ParseEvent]) -> None:
        """Keep the argument text of the call being written: a cut call ends with it."""
        for event in events:
            if isinstance(event, ToolCallStart):
                self._open_arguments = []
            elif isinstance(event, ToolCallArgs):
                self._open_arguments.append(event.text)
            elif isinstance(event, ToolCallEnd):
                self._open_arguments = []

    def _consume_skip(self, text: str) -> str:
        close = self._skip_to
        position = text.find(close)
        if position < 0:
            keep = partial_marker_length(text, (close,))
            self._carry = text[len(text) - keep :]
            return ""
        self._mode = _Mode.TEXT
        return text[position + len(close) :]

    def _abandon_body(self, reason: str, at: int = -1) -> None:
        """The body is not a well-formed call: give its text back as content."""
        assert self._scanner is not None
        # After a completed call in the same block, the marker belongs to that call.
        prefix = "" if self._scanner.completed_any else self._body_prefix
        if prefix.startswith(FENCE):
            self._fence_open = False  # the fence is given back as text: its closer is text too
        raw = prefix + "".join(self._scanner.raw)
        announced = self._scanner.current_call_index
        self._scanner = None
        self._mode = _Mode.TEXT
        self.failed_calls += 1
        if announced is not None and self._repairing:
            # The call will be repaired: its text is not content, and the rest of its block goes too.
            self._events.append(ToolCallFailed(announced, raw, reason, at, self._json_from))
            self._mode = _Mode.SKIP
        elif announced is not None:
            # The raw text takes the call's place in the content, after the space before it.
            lead = self._pending_space if self._content_started else ""
            self._pending_space = ""
            self._content_started = True
            self._events.append(ToolCallFailed(announced, lead + raw, reason))
        else:
            self._emit_text(raw)

    # -- text --------------------------------------------------------------------------

    def _emit_text(self, text: str) -> None:
        """Send text as content; whitespace at the edges of content, next to calls, is dropped."""
        if not text:
            return
        self._at_start = False
        if not self._content_started and self._trim_leading:
            text = text.lstrip()
            if not text:
                return
        body = text.rstrip()
        if not body:
            self._pending_space += text
            return
        if self._pending_space:
            body = self._pending_space + body
        self._pending_space = text[len(text.rstrip()) :]
        self._content_started = True
        self._events.append(TextDelta(body))

    def _emit_reasoning(self, text: str) -> None:
        """Reasoning without the blank lines that templates put around it."""
        if not self._reasoning_started:
            text = text.lstrip()
        if not text:
            return
        body = text.rstrip()
        if not body:
            self._reasoning_space += text
            return
        self._reasoning_started = True
        self._events.append(ReasoningDelta(self._reasoning_space + body))
        self._reasoning_space = text[len(body) :]

    def _take_events(self) -> list[ParseEvent]:
        events, self._events = self._events, []
        return events
