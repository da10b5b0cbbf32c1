"""How a format writes a tool call in the model's output: what the shared parser needs to know."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallSyntax:
    # Text that opens a call block; the block's body is JSON.
    open_marker: str
    # Text that closes the block, if the format has one.
    close_marker: str | None = None
    # The body is a JSON list of call objects rather than one object.
    call_list: bool = False
    # Keys of a call object that hold the function name and its arguments.
    name_keys: tuple[str, ...] = ("name",)
    argument_keys: tuple[str, ...] = ("arguments", "parameters")
    # Accept further call objects inside the same block, before the close marker.
    bare_repeat: bool = True

    @property
    def markers(self) -> tuple[str, ...]:
        """Every marker string, e.g. to ask a backend to keep them as text."""
        return tuple(marker for marker in (self.open_marker, self.close_marker) if marker)
