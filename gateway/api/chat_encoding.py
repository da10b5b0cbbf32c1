"""Parser events -> OpenAI chat completion objects: SSE chunks, or one collected response.

This is the response edge, and a hot path when streaming, so chunks are built as plain dicts
and serialised with orjson.
"""

from __future__ import annotations

import time
from typing import Any

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

from ..core.faults import CallBrokeOff
from ..core.pipeline import Completed
from .errors import ApiError
from .logprobs_encoding import chat_logprobs


def usage_body(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return body


class ChunkEncoder:
    """Encodes one streamed chat completion, chunk by chunk, as SSE `data:` lines.

    What every chunk shares (id, object, created, model, the choice's index and logprobs) is
    encoded once per request; a chunk is then its delta between two prepared byte strings.
    """

    def __init__(
        self, completion_id: str, model: str, *, include_usage: bool, created: int | None = None, logprobs: bool = False
    ) -> None:
        self._logprobs = logprobs
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created or int(time.time()),
            "model": model,
        }
        self._include_usage = include_usage
        envelope = orjson.dumps(self._base)[:-1]  # the object left open: `{"id":...,"model":"..."`
        self._head = b"data: " + envelope + b',"choices":[{"index":0,"delta":'
        usage = b',"usage":null' if include_usage else b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + usage + b"}\n\n"

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if finish_reason is None:
            return self._head + orjson.dumps(delta) + self._tail
        chunk = {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def opening(self) -> bytes:
        # content stays null until text arrives, so a reply of only calls keeps `content: null`.
        return self._chunk({"role": "assistant", "content": None})

    def event(self, event: ParseEvent) -> bytes:
        """The chunk for one parser event (empty for events with nothing to send)."""
        if isinstance(event, TextDelta):
            if self._logprobs:
                return self._content_with_logprobs(event)
            return self._head + b'{"content":' + orjson.dumps(event.text) + b"}" + self._tail
        if isinstance(event, ToolCallArgs):
            return (self._head + b'{"tool_calls":[{"index":' + str(event.index).encode() + b',"function":{"arguments":'
                    + orjson.dumps(event.text) + b"}}]}" + self._tail)
        if isinstance(event, ToolCallStart):
            call = {"index": event.index, "id": event.id, "type": "function", "function": {"name": event.name, "arguments": ""}}
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, ReasoningDelta):
            return self._head + b'{"reasoning_content":' + orjson.dumps(event.text) + b"}" + self._tail
        if isinstance(event, ToolCallFailed):
            # Fragments of this call are already out and cannot be taken back: end the stream with
            # an error rather than let the client assemble half a call.
            raise CallBrokeOff(event.index, event.reason)
        return b""

    def _content_with_logprobs(self, event: TextDelta) -> bytes:
        choice = {"index": 0, "delta": {"content": event.text}, "logprobs": chat_logprobs(event.logprobs),
                  "finish_reason": None}
        chunk: dict[str, Any] = {**self._base, "choices": [choice]}
        if self._include_usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    async def closing(self, completed: Completed) -> bytes:
        data = self._chunk({}, completed.finish_reason)
        if self._include_usage:
            usage_chunk = {**self._base, "choices": [], "usage": usage_body(completed.usage)}
            data += b"data: " + orjson.dumps(usage_chunk) + b"\n\n"
        return data + b"data: [DONE]\n\n"

    async def failure(self, error: ApiError) -> bytes:
        return b"data: " + orjson.dumps(error.body()) + b"\n\n"


class ResponseCollector:
    """Gathers the same events into one `chat.completion` object."""

    def __init__(self, completion_id: str, model: str, *, logprobs: bool = False) -> None:
        self._id = completion_id
        self._model = model
        self._content: list[str] = []
        self._tokens: list[TokenLogprob] | None = [] if logprobs else None
        self._reasoning: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, event: ParseEvent) -> None:
        if isinstance(event, TextDelta):
            self._content.append(event.text)
            if self._tokens is not None and event.logprobs:
                self._tokens += event.logprobs
        elif isinstance(event, ToolCallStart):
            self._calls[event.index] = {"id": event.id, "name": event.name}
        elif isinstance(event, ToolCallEnd):
            self._calls[event.index]["arguments"] = event.arguments
        elif isinstance(event, ToolCallFailed):
            # A malformed call is never half a call: it goes back to being text.
            self._calls.pop(event.index, None)
            self._content.append(event.raw)
        elif isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)

    async def result(self, completed: Completed) -> dict[str, Any]:
        calls = [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
            for _, call in sorted(self._calls.items())
            if "arguments" in call
        ]
        content = "".join(self._content)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content if content or not calls else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        finish_reason = completed.finish_reason
        if finish_reason == "tool_calls" and not calls:
            finish_reason = "stop"
        return {
            "id": self._id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model,
            "choices": [{"index": 0, "message": message,
                         "logprobs": chat_logprobs(self._tokens) if self._tokens is not None else None,
                         "finish_reason": finish_reason}],
            "usage": usage_body(completed.usage),
        }
