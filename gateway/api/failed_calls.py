"""A collected answer never holds half a call: a call the parser gives up on becomes the text the
model wrote for it, where the call stood (LM Studio's behaviour). A streamed answer cannot take its
fragments back; its encoders end the stream with an error instead (`CallBrokeOff`).

One filter in front of every collected builder (Anthropic messages, Responses output), so no
builder has to unpick an item it already built.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from adapters.formats.events import TextDelta, ToolCallArgs, ToolCallEnd, ToolCallFailed, ToolCallStart

Event = TypeVar("Event")


class FailedCallsAsText(Generic[Event]):
    """Holds back the events from a call's start to its end; a call that fails comes out as one
    `TextDelta` of its raw text, in its place. Events of other kinds pass in order."""

    def __init__(self) -> None:
        self._held: list[Event | TextDelta] = []
        self._open: set[int] = set()  # parser indexes of the calls started and not yet ended

    def feed(self, event: Event) -> list[Event | TextDelta]:
        """The events that can go on now, in the order they came."""
        if isinstance(event, ToolCallFailed):
            self._open.discard(event.index)
            self._held = self._as_text(event)
        else:
            if isinstance(event, ToolCallStart):
                self._open.add(event.index)
            elif isinstance(event, ToolCallEnd):
                self._open.discard(event.index)
            self._held.append(event)
        if self._open:
            return []
        released, self._held = self._held, []
        return released

    def flush(self) -> list[Event | TextDelta]:
        """What is still held when the answer ends (a call the parser left open)."""
        released, self._held = self._held, []
        self._open.clear()
        return released

    def _as_text(self, failed: ToolCallFailed) -> list[Event | TextDelta]:
        text = TextDelta(failed.raw)
        kept: list[Event | TextDelta] = []
        for held in self._held:
            if isinstance(held, ToolCallStart) and held.index == failed.index:
                kept.append(text)
            elif not (isinstance(held, ToolCallArgs | ToolCallEnd) and held.index == failed.index):
                kept.append(held)
        return kept if any(item is text for item in kept) else [*kept, text]  # a call never announced: its text comes here
