"""`act()` for any OpenAI-compatible endpoint: plain Python functions as tools, and the loop that
runs the model's calls and feeds their results back, in the manner of LM Studio's Python SDK.

Needs only the `openai` SDK and pydantic; it does not import the gateway."""

from .act import act
from .chat import Chat
from .errors import (
    InvalidToolArguments,
    MalformedToolCall,
    ToolCallError,
    ToolRaisedError,
    UnknownToolError,
)
from .results import ActResult, Fragment, RoundResult, ToolCallRequest, ToolCallResult
from .tools import JsonSchemaTool, ToolFunctionDef

__all__ = [
    "ActResult",
    "Chat",
    "Fragment",
    "InvalidToolArguments",
    "JsonSchemaTool",
    "MalformedToolCall",
    "RoundResult",
    "ToolCallError",
    "ToolCallRequest",
    "ToolCallResult",
    "ToolFunctionDef",
    "ToolRaisedError",
    "UnknownToolError",
    "act",
]
