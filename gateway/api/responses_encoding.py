"""Parser events -> the Responses API's output items, the `Response` object, and its stream events.

One `OutputBuilder` serves both ways of answering: streaming, it returns the events that announce
each item as it grows (OpenAI's order: item added -> part added -> deltas -> done events -> item
done); collecting, it only builds the items. Events are plain dicts serialised with orjson, as in
chat_encoding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from adapters.backends import Usage
from adapters.backends.base import TokenLogprob
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
from .logprobs_encoding import token_bodies
from .responses_items import JsonObject, new_id
from .stream_events import StreamEvents

Event = JsonObject


@dataclass(slots=True)
class _OpenItem:
    item: JsonObject
    index: int  # output_index
    parts: list[str] = field(default_factory=list)  # text so far, joined once when the item closes
    logprobs: list[JsonObject] = field(default_factory=list)  # the message's tokens, when asked for


class OutputBuilder(StreamEvents):
    """Builds `output` in the order the model produced it: reasoning, messages, function calls."""

    def __init__(self, *, streaming: bool) -> None:
        self.output: list[JsonObject] = []
        super().__init__(streaming=streaming)
        self._open: _OpenItem | None = None
        self._calls: dict[int, _OpenItem] = {}  # parser call index -> its item

    def add(self, event: ParseEvent) -> list[Event]:
        """Take one parser event; returns the stream events it causes (none when collecting)."""
        if isinstance(event, TextDelta):
            self._grow("message", event.text, event.logprobs)
        elif isinstance(event, ToolCallArgs):
            call = self._calls[event.index]
            self._emit({"type": "response.function_call_arguments.delta", "item_id": call.item["id"],
                        "output_index": call.index, "delta": event.text})
        elif isinstance(event, ReasoningDelta):
            self._grow("reasoning", event.text)
        elif isinstance(event, ToolCallStart):
            self._close("completed")
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "arguments": "",
                    "call_id": event.id, "name": event.name}
            self._calls[event.index] = self._start(item)
        elif isinstance(event, ToolCallEnd):
            call = self._calls[event.index]
            call.item["arguments"] = event.arguments
            self._emit({"type": "response.function_call_arguments.done", "item_id": call.item["id"],
                        "name": call.item["name"], "output_index": call.index, "arguments": event.arguments})
            self._close("incomplete" if event.truncated else "completed")
        elif isinstance(event, ToolCallFailed):
            self._failed(event)
        return self._drain()

    def finish(self, completed: Completed) -> list[Event]:
        """Close the last item; one cut off by the token limit is `incomplete`, as OpenAI marks it."""
        self._close("incomplete" if completed.finish_reason == "length" else "completed")
        return self._drain()

    def finished_output(self) -> list[JsonObject]:
        """The items that were completed, for a response that failed midway (never half a call)."""
        return [item for item in self.output if item["status"] != "in_progress"]

    def _grow(self, kind: str, text: str, logprobs: Sequence[TokenLogprob] | None = None) -> None:
        current = self._open
        if current is None or current.item["type"] != kind:
            self._close("completed")
            if kind == "message":
                item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant",
                        "content": []}
            else:
                item = {"id": new_id("rs"), "type": "reasoning", "status": "in_progress", "summary": [], "content": []}
            current = self._start(item)
            self._emit({"type": "response.content_part.added", "item_id": item["id"], "output_index": current.index,
                        "content_index": 0, "part": _part(kind, "")})
        current.parts.append(text)
        if kind == "message":
            tokens = token_bodies(logprobs)
            current.logprobs += tokens
            self._emit({"type": "response.output_text.delta", "item_id": current.item["id"],
                        "output_index": current.index, "content_index": 0, "delta": text, "logprobs": tokens})
        else:
            self._emit({"type": "response.reasoning_text.delta", "item_id": current.item["id"],
                        "output_index": current.index, "content_index": 0, "delta": text})

    def _start(self, item: JsonObject) -> _OpenItem:
        opened = _OpenItem(item, len(self.output))
        self.output.append(item)
        self._open = opened
        # A copy: the item grows after this event has been announced.
        self._emit({"type": "response.output_item.added", "output_index": opened.index, "item": dict(item)})
        return opened

    def _close(self, status: str) -> None:
        current, self._open = self._open, None
        if current is None:
            return
        item = current.item
        if item["type"] in ("message", "reasoning"):
            kind = item["type"]
            text = "".join(current.parts)
            done = "response.output_text.done" if kind == "message" else "response.reasoning_text.done"
            base = {"item_id": item["id"], "output_index": current.index, "content_index": 0}
            logprobs = {"logprobs": current.logprobs} if kind == "message" else {}
            self._emit({"type": done, **base, "text": text, **logprobs})
            part = {**_part(kind, text), **logprobs}
            self._emit({"type": "response.content_part.done", **base, "part": part})
            item["content"] = [part]
        item["status"] = status
        self._emit({"type": "response.output_item.done", "output_index": current.index, "item": dict(item)})


def _part(kind: str, text: str) -> JsonObject:
    if kind == "message":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "reasoning_text", "text": text}


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every version of one response shares: its id, creation time, model and echoed settings."""

    model: str
    echo: JsonObject
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))


def response_object(
    meta: ResponseMeta,
    status: str,
    output: list[JsonObject],
    usage: Usage | None = None,
    error: ApiError | None = None,
) -> JsonObject:
    body: JsonObject = {
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": {"code": "server_error", "message": error.message} if error is not None else None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": meta.model,
        "output": output,
        "reasoning": None,
        **meta.echo,
    }
    if usage is not None:  # the spec's usage is not nullable: absent until known
        body["usage"] = usage_body(usage)
    return body


def final_response(meta: ResponseMeta, builder: OutputBuilder, completed: Completed) -> JsonObject:
    status = "incomplete" if completed.finish_reason == "length" else "completed"
    return response_object(meta, status, builder.output, completed.usage)


def usage_body(usage: Usage) -> JsonObject:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        # Backends report no split of the output: reasoning is not counted apart.
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def lifecycle(kind: str, response: JsonObject) -> Event:
    """`response.created`, `.in_progress`, `.completed`, `.incomplete`, `.failed`."""
    return {"type": f"response.{kind}", "response": response}


def error_event(error: ApiError) -> Event:
    return {"type": "error", "code": error.code, "message": error.message, "param": error.param}


class EventStream:
    """Numbers events from 0 and frames each as SSE: `event: <type>` and `data: <json>`."""

    def __init__(self) -> None:
        self._sequence = 0

    def encode(self, events: list[Event]) -> bytes:
        out = bytearray()
        for event in events:
            event["sequence_number"] = self._sequence
            self._sequence += 1
            out += b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        return bytes(out)
