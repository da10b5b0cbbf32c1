"""How a format writes tool calls (and reasoning) in the model's output: what the shared parser
needs to know, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .conversation import ToolSpec
    from .events import ParseEvent
    from .json_calls import CallIndexer, ScanResult


class BodyScanner(Protocol):
    """Reads one call block's body incrementally and appends call events as it goes."""

    # The block's text since its last completed call, given back as content if the rest fails.
    raw: list[str]
    # True once a call in this block completed: the block's open marker then belongs to it.
    completed_any: bool

    @property
    def current_call_index(self) -> int | None: ...

    def feed(self, text: str) -> ScanResult: ...


# (indexer, the parser's event list, the tools on offer) -> a scanner for one call block.
ScannerFactory = Callable[["CallIndexer", "list[ParseEvent]", "tuple[ToolSpec, ...]"], BodyScanner]


@dataclass(frozen=True, slots=True)
class CallSyntax:
    # Any of these opens a call block.
    open_markers: tuple[str, ...]
    # Text that closes the block, if the format has one.
    close_marker: str | None = None
    # Keys of a call object that hold the function name and its arguments.
    name_keys: tuple[str, ...] = ("name",)
    argument_keys: tuple[str, ...] = ("arguments", "parameters")
    # Accept further call objects inside the same block, before the close marker.
    bare_repeat: bool = True
    # Text that may stand between two calls (Llama 4 JSON writes `{...}; {...}`).
    call_separator: str = ""
    # Characters that may begin a call body with no marker, at the start of the answer
    # (Llama 3's bare `{"name": ...}`, a pythonic `[f(x=1)]`).
    start_bodies: tuple[str, ...] = ()
    # A scanner for bodies that are not JSON call objects (name-then-arguments, XML, pythonic).
    scanner: ScannerFactory | None = None
    # Reasoning: the text between these markers is thinking, not content, and holds no calls.
    reasoning: tuple[str, str] | None = None
    # Markers that carry no content (channel headers and the like): dropped from the text.
    drop_markers: tuple[str, ...] = ()

    @property
    def markers(self) -> tuple[str, ...]:
        """Every marker string, e.g. to ask a backend to keep them as text."""
        found = [*self.open_markers, self.close_marker, *(self.reasoning or ()), *self.drop_markers]
        return tuple(dict.fromkeys(marker for marker in found if marker))
