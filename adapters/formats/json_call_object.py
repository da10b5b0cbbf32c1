"""The call object a JSON call scanner fills as it reads (its name, id and argument text), and the
arguments' final text once the object closes: an object as written, a JSON string holding one
decoded, or none at all."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True, slots=True)
class ArgumentsProblem:
    """Why a closed call's arguments are not an object (the call fails with it)."""

    reason: str


@dataclass(slots=True)
class JsonCallObject:
    name_keys: tuple[str, ...]
    argument_keys: tuple[str, ...]
    index: int | None = None
    name: str | None = None
    # How the arguments value began: "{" (streamed), '"' (a JSON string to decode), "n" (null).
    arguments_kind: str | None = None
    arguments: list[str] = field(default_factory=list)
    # Argument text written before the name was known; sent when the call is announced.
    unsent: list[str] = field(default_factory=list)
    # The id the model wrote for the call itself, if the format has one (Kimi's `functions.NAME:IDX`).
    written_id: str = ""

    def final_arguments(self) -> str | ArgumentsProblem:
        """The arguments as one JSON object text."""
        arguments = "".join(self.arguments)
        if self.arguments_kind == '"':
            # Arguments sent as a JSON string holding the object: decode it once.
            try:
                decoded = orjson.loads(orjson.loads(arguments))
            except orjson.JSONDecodeError:
                return ArgumentsProblem("arguments string is not a JSON object")
            if not isinstance(decoded, dict):
                return ArgumentsProblem("arguments string is not a JSON object")
            return orjson.dumps(decoded).decode()
        if self.arguments_kind in (None, "n"):
            return "{}"
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError as error:
            return ArgumentsProblem(f"arguments are not valid JSON: {error}")
        if not isinstance(parsed, dict):
            return ArgumentsProblem("arguments must be an object")
        return arguments


def decode_string(quoted: str) -> str | None:
    try:
        value = orjson.loads(quoted)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None
