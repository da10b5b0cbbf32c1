"""What `act()` reports: fragments as they stream, each round, and the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fragment:
    """A piece of the model's reply as it was generated: answer text, or reasoning."""

    content: str
    reasoning: bool
    round_index: int


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call as the model made it. `arguments` is the parsed JSON (None if it did not parse);
    `arguments_json` the text exactly as sent."""

    id: str
    name: str
    arguments_json: str
    arguments: Any = None


@dataclass(frozen=True)
class ToolCallResult:
    """What the model was told about one call: the tool's result as text, or the error text."""

    request: ToolCallRequest
    content: str
    is_error: bool


@dataclass(frozen=True)
class RoundResult:
    """One round: the model's reply and the calls it made, with their results."""

    round_index: int
    content: str | None
    reasoning: str | None
    finish_reason: str | None
    tool_calls: list[ToolCallResult] = field(default_factory=list)
    usage: Any = None  # the server's usage object, when it sent one


@dataclass(frozen=True)
class ActResult:
    """The whole run: every round, the whole chat as OpenAI messages, the time it took."""

    rounds: list[RoundResult]
    messages: list[dict[str, Any]]
    total_time_seconds: float

    @property
    def content(self) -> str | None:
        """The model's last answer."""
        return self.rounds[-1].content if self.rounds else None
