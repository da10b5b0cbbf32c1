"""How a format writes tool calls (and reasoning) in the model's output: what the shared parser
needs to know, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from .scanning import ScannerFactory


@dataclass(frozen=True, slots=True)
class CallSyntax:
    # Any of these opens a call block.
    open_markers: tuple[str, ...]
    # Text that closes the block, if the format has one.
    close_marker: str | None = None
    # Keys of a call object that hold the function name and its arguments.
    name_keys: tuple[str, ...] = ("name",)
    argument_keys: tuple[str, ...] = ("arguments", "parameters")
    # Keys of a call object that hold the call's own id, kept as its id (Mistral's "id").
    id_keys: tuple[str, ...] = ()
    # Accept further call objects inside the same block, before the close marker.
    bare_repeat: bool = True
    # Text that may stand between two calls (Llama 4 JSON writes `{...}; {...}`).
    call_separator: str = ""
    # Characters that may begin a call body with no marker, at the start of the answer
    # (Llama 3's bare `{"name": ...}`, a pythonic `[f(x=1)]`).
    start_bodies: tuple[str, ...] = ()
    # A scanner for bodies that are not JSON call objects (name-then-arguments, XML, pythonic);
    # None: calls are JSON objects (see `json_objects`).
    scanner: ScannerFactory | None = None
    # Reasoning: the text between these markers is thinking, not content, and holds no calls.
    reasoning: tuple[str, str] | None = None
    # Markers that carry no content (channel headers and the like): dropped from the text.
    drop_markers: tuple[str, ...] = ()
    # A code fence whose body is a JSON call object (or list) of an offered tool is a call block.
    fenced_json: bool = False
    # Other block syntaxes the model may write instead (Hermes models' `<function=NAME>{...}</function>`).
    also: tuple[CallSyntax, ...] = ()

    @property
    def json_objects(self) -> bool:
        """Calls are JSON objects (`{"name": ..., "arguments": {...}}`, or lists of them): the shape a
        JSON schema or a call grammar can constrain, and the one a named call can be prefilled in."""
        return self.scanner is None

    @property
    def markers(self) -> tuple[str, ...]:
        """Every marker string, e.g. to ask a backend to keep them as text."""
        found = [*self.open_markers, self.close_marker, *(self.reasoning or ()), *self.drop_markers]
        found += [marker for block in self.also for marker in (*block.open_markers, block.close_marker)]
        return tuple(dict.fromkeys(marker for marker in found if marker))
