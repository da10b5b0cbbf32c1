"""What a streaming call scanner keeps besides its own grammar, written once for the literal,
pythonic and tagged scanners: the events of the chunk being fed, the call being written (its index
and the argument text sent), and the raw text a failure gives back as content."""

from __future__ import annotations

from .events import ParseEvent, ToolCallArgs, ToolCallEnd
from .scanning import CallIndexer, ScanResult, ScanStatus


class CallBodyScanner:
    """A `BodyScanner` whose subclass reads each chunk in `_scan`, appending to `_events`."""

    def __init__(self, indexer: CallIndexer) -> None:
        self._indexer = indexer
        self._events: list[ParseEvent] = []
        self._index: int | None = None  # the call being written
        self._arguments: list[str] = []  # the argument text sent for it
        self._out: list[str] = []  # argument text read and not yet sent (see `_flush`)
        self._raw_from = 0  # where, in the chunk being fed, the text of the call in progress starts
        self.raw: list[str] = []
        self.completed_any = False

    @property
    def current_call_index(self) -> int | None:
        return self._index

    def end(self) -> ScanResult:
        """The output ended inside this body: an unfinished call is no call."""
        return ScanResult(ScanStatus.FAILED, 0, "the output ended inside a tool call")

    def feed(self, text: str) -> ScanResult:
        self._raw_from = 0
        result = self._scan(text)
        self.raw.append(text[self._raw_from : result.end])
        events, self._events = self._events, []
        return ScanResult(result.status, result.end, result.reason, events)

    def _scan(self, text: str) -> ScanResult:
        raise NotImplementedError

    def _send(self, text: str) -> None:
        """Argument text of the open call, out as one event."""
        assert self._index is not None
        self._arguments.append(text)
        self._events.append(ToolCallArgs(self._index, text))

    def _flush(self) -> None:
        """Send what `_out` holds, as one event, if a call is open."""
        if self._index is None or not self._out:
            return
        text = "".join(self._out)
        self._out.clear()
        self._send(text)

    def _call_ended(self) -> None:
        assert self._index is not None
        self._events.append(ToolCallEnd(self._index, "".join(self._arguments)))
        self._indexer.completed += 1
        self._index, self._arguments = None, []
        self.completed_any = True

    def _restart_raw(self, position: int) -> None:
        # `raw` is what a failure gives back as content: the failed call's own text, not the
        # calls before it, which were already delivered.
        self.raw.clear()
        self._raw_from = position
        self.completed_any = True
