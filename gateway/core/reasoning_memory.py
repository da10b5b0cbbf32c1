"""The reasoning of assistant turns that made calls, kept so the next request can show it again.

Models trained on interleaved reasoning (GLM, MiniMax-M2, Kimi thinking, gpt-oss, Gemma 4) expect their
earlier reasoning in the history while a tool loop goes on, and their templates render it from each
assistant message's `reasoning_content`. Most clients drop that field when they send the history back.
So the gateway remembers each call turn's reasoning under its call ids (ids the client must send back with
the results) and puts it back into a history that lacks it. Reasoning a client does send wins.

`LocalReasoningMemory` is a bounded cache in this process; the response stores (response_store.py) keep it
beside stored responses, in SQLite or in Redis shared by replicas.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Protocol

import structlog

from adapters.formats.conversation import Conversation
from adapters.formats.events import ReasoningDelta, ToolCallEnd, ToolCallStart

from .pipeline import Completed, PipelineEvent

log = structlog.get_logger("toolwire.reasoning")


class ReasoningMemory(Protocol):
    async def remember(self, call_ids: Sequence[str], reasoning: str) -> None: ...

    async def recall(self, call_ids: Sequence[str]) -> str | None:
        """The reasoning kept under any of these call ids, if any."""
        ...


class LocalReasoningMemory:
    """In this process, least recently used first out beyond `max_turns` turns."""

    def __init__(self, max_turns: int = 2048) -> None:
        self._max_turns = max_turns
        self._turns: OrderedDict[str, str] = OrderedDict()  # call id -> reasoning

    async def remember(self, call_ids: Sequence[str], reasoning: str) -> None:
        for call_id in call_ids:
            self._turns[call_id] = reasoning
            self._turns.move_to_end(call_id)
        while len(self._turns) > self._max_turns:
            self._turns.popitem(last=False)

    async def recall(self, call_ids: Sequence[str]) -> str | None:
        for call_id in call_ids:
            if call_id in self._turns:
                self._turns.move_to_end(call_id)
                return self._turns[call_id]
        return None


async def restore_reasoning(conversation: Conversation, memory: ReasoningMemory) -> Conversation:
    """The conversation with remembered reasoning on each call turn that came back without its own."""
    messages = list(conversation.messages)
    changed = False
    for position, message in enumerate(messages):
        if message.role != "assistant" or not message.tool_calls or message.reasoning:
            continue
        try:
            reasoning = await memory.recall([call.id for call in message.tool_calls])
        except Exception as error:  # noqa: BLE001 - a store that is down costs the reasoning, never the request
            log.warning("reasoning_recall_failed", error=repr(error))
            return conversation
        if reasoning:
            messages[position] = replace(message, reasoning=reasoning)
            changed = True
    return replace(conversation, messages=tuple(messages)) if changed else conversation


async def remembering(
    events: AsyncGenerator[PipelineEvent, None], memory: ReasoningMemory
) -> AsyncGenerator[PipelineEvent, None]:
    """`events` passed on unchanged; a reply that made calls has its reasoning remembered under their ids
    before it completes, so the client's next request finds it."""
    reasoning: list[str] = []
    started: dict[int, str] = {}  # call index -> id
    finished: list[str] = []
    try:
        async for event in events:
            if isinstance(event, list):  # a batch of parse events (one backend read)
                for parsed in event:
                    if isinstance(parsed, ReasoningDelta):
                        reasoning.append(parsed.text)
                    elif isinstance(parsed, ToolCallStart):
                        started[parsed.index] = parsed.id
                    elif isinstance(parsed, ToolCallEnd) and parsed.index in started:
                        finished.append(started[parsed.index])
            elif isinstance(event, Completed) and finished and "".join(reasoning).strip():
                try:
                    await memory.remember(finished, "".join(reasoning).strip())
                except Exception as error:  # noqa: BLE001 - as above: logged, the reply goes on
                    log.warning("reasoning_remember_failed", error=repr(error))
            yield event
    finally:
        await events.aclose()
