"""One streamed chat completion, assembled chunk by chunk: the text and reasoning fragments as
they arrive, and at the end the whole reply with its tool calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletionChunk

# Servers name the reasoning field differently (toolwire and older vLLM: reasoning_content).
_REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass
class StreamedCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class Reply:
    content: str | None
    reasoning: str | None
    calls: list[StreamedCall]
    finish_reason: str | None
    usage: Any


class ReplyAssembler:
    """Collects a stream's chunks; `feed` returns the new (text, is_reasoning) fragments."""

    def __init__(self) -> None:
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, StreamedCall] = {}
        self._finish_reason: str | None = None
        self._usage: Any = None

    def feed(self, chunk: ChatCompletionChunk) -> list[tuple[str, bool]]:
        if chunk.usage is not None:
            self._usage = chunk.usage
        fragments: list[tuple[str, bool]] = []
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            extra = delta.model_extra or {}
            for name in _REASONING_FIELDS:
                if isinstance(extra.get(name), str) and extra[name]:
                    self._reasoning.append(extra[name])
                    fragments.append((extra[name], True))
                    break
            if delta.content:
                self._content.append(delta.content)
                fragments.append((delta.content, False))
            for part in delta.tool_calls or []:
                call = self._calls.setdefault(part.index, StreamedCall())
                if part.id and not call.id:
                    call.id = part.id
                if part.function is not None:
                    call.name += part.function.name or ""
                    if part.function.arguments:
                        call.arguments.append(part.function.arguments)
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
        return fragments

    def reply(self) -> Reply:
        return Reply(
            content="".join(self._content) if self._content else None,
            reasoning="".join(self._reasoning) if self._reasoning else None,
            calls=[self._calls[index] for index in sorted(self._calls)],
            finish_reason=self._finish_reason,
            usage=self._usage,
        )
