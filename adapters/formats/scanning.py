"""What every call-body scanner shares: how it reports progress, and how calls get their index
and id (in announcement order, across all the blocks of one reply)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class ScanStatus(IntEnum):
    MORE = 0  # the body is not complete yet: feed more text
    DONE = 1  # the body is complete; text after `end` is not part of it
    FAILED = 2  # the text is not a well-formed call; the failure is at `end`


@dataclass(frozen=True, slots=True)
class ScanResult:
    status: ScanStatus
    end: int
    reason: str = ""


class CallIndexer:
    """Gives calls their reply-wide index and id, in the order they are announced."""

    def __init__(self, new_call_id: Callable[[], str]) -> None:
        self._new_call_id = new_call_id
        self._written: set[str] = set()
        self.count = 0
        self.completed = 0

    def next(self, written_id: str = "") -> tuple[int, str]:
        """The next index, and an id: the one the model wrote for the call (Kimi's), unless this
        reply already used it, else a new one."""
        index = self.count
        self.count += 1
        if written_id and written_id not in self._written:
            self._written.add(written_id)
            return index, written_id
        return index, self._new_call_id()
