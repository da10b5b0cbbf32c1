"""What can go wrong with a tool call. The message of each error is the text the model is sent
in place of the tool's result, unless `handle_invalid_tool_request` says otherwise."""

from __future__ import annotations


class ToolCallError(Exception):
    """A tool call that could not be carried out."""


class UnknownToolError(ToolCallError):
    """The model called a tool that was not offered."""


class InvalidToolArguments(ToolCallError):
    """The arguments are not JSON, or do not fit the tool's parameters."""


class ToolRaisedError(ToolCallError):
    """The tool raised an exception; it is this error's `__cause__`."""


class MalformedToolCall(ToolCallError):
    """The server sent a tool call that cannot be carried out or answered (it has no name):
    the conversation cannot go on, so `act()` raises this after notifying the handler."""
