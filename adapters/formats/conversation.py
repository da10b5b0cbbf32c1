"""The conversation as toolwire works on it: plain typed objects, whatever API the client spoke."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]

# The function names OpenAI accepts; every request surface checks tool names against it.
FUNCTION_NAME_PATTERN = r"^[a-zA-Z0-9_.\-]{1,64}$"


def default_parameters() -> dict[str, Any]:
    """The parameters schema of a tool that declares none: an object with no properties."""
    return {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=default_parameters)
    strict: bool = False

    def as_openai(self) -> dict[str, Any]:
        """The OpenAI `tools` entry, the shape chat templates expect."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made earlier in the conversation."""

    id: str
    name: str
    arguments: str  # the JSON text, as OpenAI carries it


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    # For `tool` messages: the function whose result this is, when known.
    name: str | None = None
    # For `assistant` messages: the model's reasoning in that turn, for templates that show it again.
    reasoning: str | None = None


@dataclass(frozen=True, slots=True)
class NamedToolChoice:
    name: str


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


@dataclass(frozen=True, slots=True)
class Conversation:
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True

    @property
    def offers_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"
