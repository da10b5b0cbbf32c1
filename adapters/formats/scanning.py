"""What every call-body scanner shares: the protocol the engine drives, how a scanner reports
progress (with the events each piece of text completed), how calls get their index and id (in
announcement order, across all the blocks of one reply), and the context a scanner is built with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .conversation import ToolSpec
    from .events import ParseEvent


class ScanStatus(IntEnum):
    MORE = 0  # the body is not complete yet: feed more text
    DONE = 1  # the body is complete; text after `end` is not part of it
    FAILED = 2  # the text is not a well-formed call; the failure is at `end`


@dataclass(frozen=True, slots=True)
class ScanResult:
    status: ScanStatus
    end: int
    reason: str = ""
    # The events the text fed completed (calls announced, argument fragments, calls ended).
    events: list[ParseEvent] = field(default_factory=list)
    # Text the scanner held back from earlier pieces that turns out not to be the body's: it comes
    # before `text[end:]` (the start of a marker that ends the body, split across pieces).
    replay: str = ""


class CallIndexer:
    """Gives calls their reply-wide index and id, in the order they are announced."""

    def __init__(self, new_call_id: Callable[[], str]) -> None:
        self._new_call_id = new_call_id
        self._written: set[str] = set()
        self.count = 0
        self.completed = 0

    def next(self, written_id: str = "") -> tuple[int, str]:
        """The next index, and an id: the one the model wrote for the call (Mistral's, Kimi's),
        unless this reply already used it, else a new one."""
        index = self.count
        self.count += 1
        if written_id and written_id not in self._written:
            self._written.add(written_id)
            return index, written_id
        return index, self._new_call_id()


class BodyScanner(Protocol):
    """Reads one call block's body incrementally; each `feed` returns the events it completed."""

    # The block's text since its last completed call, given back as content if the rest fails.
    raw: list[str]
    # True once a call in this block completed: the block's open marker then belongs to it.
    completed_any: bool

    @property
    def current_call_index(self) -> int | None: ...

    def feed(self, text: str) -> ScanResult: ...

    def end(self) -> ScanResult:
        """The output ended inside the body: DONE (with its events) if what was read is a whole call,
        else FAILED."""
        ...


class ArgumentsScanner(BodyScanner, Protocol):
    """Reads the JSON arguments object of a call whose name is already known (announced at once)."""

    def finish(self) -> ScanResult:
        """End the call once its arguments closed: DONE with the call's end event, or FAILED."""
        ...


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What a scanner is built with: the reply's call indexer, the tools on offer, and the JSON
    scanners the engine supplies, for scanners whose bodies hold JSON (no scanner imports another)."""

    indexer: CallIndexer
    tools: tuple[ToolSpec, ...]
    # A scanner for a JSON call object, or a JSON list of them.
    json_calls: Callable[[], BodyScanner]
    # (name, the id the model wrote or "") -> a scanner for that call's JSON arguments.
    json_arguments: Callable[[str, str], ArgumentsScanner]


# A context -> a scanner for one call block.
ScannerFactory = Callable[[ScanContext], BodyScanner]
