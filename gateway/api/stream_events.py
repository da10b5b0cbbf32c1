"""What the Responses and Messages builders share: one builder serves both ways of answering, and
only a streamed answer keeps the events that announce its parts as they grow."""

from __future__ import annotations

from typing import Any

from adapters.formats.events import ToolCallFailed

from ..core.faults import CallBrokeOff

Event = dict[str, Any]


class StreamEvents:
    """The events one parser event caused, for a streamed answer; nothing for a collected one."""

    def __init__(self, *, streaming: bool) -> None:
        self._streaming = streaming
        self._events: list[Event] = []

    def _emit(self, event: Event) -> None:
        if self._streaming:
            self._events.append(event)

    def _drain(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _failed(self, event: ToolCallFailed) -> None:
        # Its fragments are already out: end the stream with an error rather than let the client
        # assemble half a call. (A collected answer never gets here: see failed_calls.py.)
        raise CallBrokeOff(event.index, event.reason)
