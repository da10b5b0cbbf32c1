"""Parser events -> Anthropic's `message` object and its stream events.

One `ContentBuilder` serves both ways of answering, as in responses_encoding: streaming, it
returns the events that announce each content block as it grows (`content_block_start`, deltas,
`content_block_stop`); collecting, it only builds the blocks. Events are plain dicts serialised
with orjson.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.backends import Usage
from adapters.formats.events import (
    ParseEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)

from ..core.pipeline import Completed
from .errors import ApiError
from .failed_calls import FailedCallsAsText
from .stream_events import StreamEvents

JsonObject = dict[str, Any]
Event = JsonObject
_ID_CHARS = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id in Anthropic's style: `msg_01...`, `toolu_01...` (24 characters after the prefix)."""
    return f"{prefix}_01" + "".join(secrets.choice(_ID_CHARS) for _ in range(22))


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What the message's every form shares."""

    model: str
    stop_sequences: tuple[str, ...]
    thinking: bool  # return the model's reasoning as thinking blocks
    request_id: str = ""
    id: str = field(default_factory=lambda: new_id("msg"))


@dataclass(slots=True)
class _OpenBlock:
    index: int
    block: JsonObject
    parts: list[str] = field(default_factory=list)  # text so far, joined once when the block closes
    sent_json: bool = False  # a tool_use block: whether any input_json_delta went out


class ContentBuilder(StreamEvents):
    """Builds `content` in the order the model wrote it: thinking, text and tool_use blocks."""

    def __init__(self, meta: MessageMeta, *, streaming: bool) -> None:
        self.content: list[JsonObject] = []
        self.calls = 0
        super().__init__(streaming=streaming)
        self._meta = meta
        self._open: _OpenBlock | None = None
        self._calls: dict[int, _OpenBlock] = {}  # parser call index -> its block

    def add(self, event: ParseEvent) -> list[Event]:
        """Take one parser event; returns the stream events it causes (none when collecting)."""
        if isinstance(event, TextDelta):
            self._grow("text", event.text)
        elif isinstance(event, ToolCallArgs):
            call = self._calls[event.index]
            call.sent_json = True
            self._delta(call, {"type": "input_json_delta", "partial_json": event.text})
        elif isinstance(event, ReasoningDelta):
            if self._meta.thinking:
                self._grow("thinking", event.text)
        elif isinstance(event, ToolCallStart):
            block = {"type": "tool_use", "id": new_id("toolu"), "name": event.name, "input": {}}
            self._calls[event.index] = self._start(block)
        elif isinstance(event, ToolCallEnd):
            self._end_call(self._calls[event.index], event.arguments)
        elif isinstance(event, ToolCallFailed):
            self._failed(event)
        return self._drain()

    def finish(self) -> list[Event]:
        self._close()
        return self._drain()

    def _grow(self, kind: str, text: str) -> None:
        if not text:
            return
        current = self._open
        if current is None or current.block["type"] != kind:
            block = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": "", "signature": ""}
            current = self._start(block)
        current.parts.append(text)
        if kind == "text":
            self._delta(current, {"type": "text_delta", "text": text})
        else:
            self._delta(current, {"type": "thinking_delta", "thinking": text})

    def _start(self, block: JsonObject) -> _OpenBlock:
        self._close()
        opened = _OpenBlock(len(self.content), block)
        self.content.append(block)
        self._open = opened
        # A copy: the block grows after its start has been announced.
        self._emit({"type": "content_block_start", "index": opened.index, "content_block": dict(block)})
        return opened

    def _delta(self, block: _OpenBlock, delta: JsonObject) -> None:
        self._emit({"type": "content_block_delta", "index": block.index, "delta": delta})

    def _end_call(self, call: _OpenBlock, arguments: str) -> None:
        parsed = orjson.loads(arguments or "{}")
        call.block["input"] = parsed if isinstance(parsed, dict) else {}
        if not call.sent_json and call.block["input"]:
            # Arguments that arrived whole (no fragments): the client still needs them as JSON.
            self._delta(call, {"type": "input_json_delta", "partial_json": arguments})
        self.calls += 1
        self._close()

    def _close(self) -> None:
        current, self._open = self._open, None
        if current is None:
            return
        kind = current.block["type"]
        if kind in ("text", "thinking"):
            current.block[kind] = "".join(current.parts)
        self._emit({"type": "content_block_stop", "index": current.index})


def stop_reason(meta: MessageMeta, completed: Completed, calls: int) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for how the generation ended."""
    if completed.finish_reason == "length":
        return "max_tokens", None
    if completed.finish_reason == "tool_calls" and calls:
        return "tool_use", None
    if completed.stop_word is not None and completed.stop_word in meta.stop_sequences:
        return "stop_sequence", completed.stop_word
    return "end_turn", None


def usage_body(usage: Usage | None) -> JsonObject:
    """Anthropic counts cached prompt tokens apart: input_tokens are the ones not read from cache."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    cached = usage.cached_tokens or 0
    return {
        "input_tokens": max(0, usage.prompt_tokens - cached),
        "output_tokens": usage.completion_tokens,
        # The backends' prompt caches have no separate write step to report.
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_object(meta: MessageMeta, content: list[JsonObject], completed: Completed | None, calls: int) -> JsonObject:
    reason, sequence = stop_reason(meta, completed, calls) if completed is not None else (None, None)
    return {
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_body(completed.usage if completed is not None else None),
    }


def opening_events(meta: MessageMeta) -> list[Event]:
    # The prompt's token count arrives with the backend's last chunk: message_delta carries it.
    return [{"type": "message_start", "message": message_object(meta, [], None, 0)}, {"type": "ping"}]


def closing_events(meta: MessageMeta, completed: Completed, calls: int) -> list[Event]:
    reason, sequence = stop_reason(meta, completed, calls)
    return [
        {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
         "usage": usage_body(completed.usage)},
        {"type": "message_stop"},
    ]


def error_event(meta: MessageMeta, error: ApiError) -> Event:
    return error.anthropic_body(meta.request_id or None)


def sse(events: list[Event]) -> bytes:
    """Each event framed as Anthropic sends it: `event: <type>` then `data: <json>`."""
    out = bytearray()
    for event in events:
        out += b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
    return bytes(out)


class MessageEvents:
    """The stream encoder the shared driver runs (opening / event / closing / failure)."""

    def __init__(self, meta: MessageMeta) -> None:
        self._meta = meta
        self._builder = ContentBuilder(meta, streaming=True)

    def opening(self) -> bytes:
        return sse(opening_events(self._meta))

    def event(self, event: ParseEvent) -> bytes:
        events = self._builder.add(event)
        return sse(events) if events else b""

    async def closing(self, completed: Completed) -> bytes:
        return sse([*self._builder.finish(), *closing_events(self._meta, completed, self._builder.calls)])

    async def failure(self, error: ApiError) -> bytes:
        return sse([error_event(self._meta, error)])


class MessageCollector:
    """Gathers the same events into one `message`."""

    def __init__(self, meta: MessageMeta) -> None:
        self._meta = meta
        self._builder = ContentBuilder(meta, streaming=False)
        self._calls_as_text = FailedCallsAsText[ParseEvent]()

    def add(self, event: ParseEvent) -> None:
        for ready in self._calls_as_text.feed(event):
            self._builder.add(ready)

    async def result(self, completed: Completed) -> JsonObject:
        for ready in self._calls_as_text.flush():
            self._builder.add(ready)
        self._builder.finish()
        return message_object(self._meta, self._builder.content, completed, self._builder.calls)
