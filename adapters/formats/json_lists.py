"""Formats whose calls are a JSON list (or object) after a marker, differing only in markers and
key names: Granite 3.x, Phi-4-mini (and FireFunction v2's `functools[...]`), Command R7B."""

from __future__ import annotations

import orjson

from .base import ToolFormat, arguments_object
from .conversation import ToolCall, ToolSpec
from .syntax import CallSyntax


def _listing(tools: tuple[ToolSpec, ...]) -> str:
    return orjson.dumps([tool.as_openai()["function"] for tool in tools]).decode()


class GraniteFormat(ToolFormat):
    """Granite 3.x: `<|tool_call|>[{"name": ..., "arguments": {...}}]`."""

    name = "granite"
    syntax = CallSyntax(open_markers=("<|tool_call|>",))

    def write_call(self, call: ToolCall) -> str:
        return "<|tool_call|>" + orjson.dumps([{"name": call.name, "arguments": arguments_object(call.arguments)}]).decode()

    def write_result(self, name: str, content: str) -> str:
        return content

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            "You are a helpful assistant with access to the following function calls. Your task is to produce "
            "a list of function calls necessary to generate response to the user utterance. Use the following "
            "function calls as required.\n<|tool_call|> then a JSON list of "
            '{"name": ..., "arguments": {...}} objects.\n' + _listing(tools)
        )


class Phi4MiniFormat(ToolFormat):
    """Phi-4-mini: `<|tool_call|>{...}<|/tool_call|>` (llama.cpp's template) or
    `functools[{...}]` (vLLM's template, and FireFunction v2)."""

    name = "phi4_mini"
    syntax = CallSyntax(open_markers=("<|tool_call|>", "functools"), close_marker="<|/tool_call|>")

    def write_call(self, call: ToolCall) -> str:
        body = {"name": call.name, "arguments": arguments_object(call.arguments)}
        return f"<|tool_call|>{orjson.dumps(body).decode()}<|/tool_call|>"

    def write_result(self, name: str, content: str) -> str:
        return f"<|tool_response|>{content}<|/tool_response|>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            "You have access to these tools. To call one, write "
            '<|tool_call|>{"name": ..., "arguments": {...}}<|/tool_call|>.\n'
            f"<|tool|>{_listing(tools)}<|/tool|>"
        )


class CommandR7bFormat(ToolFormat):
    """Command R7B: `<|START_ACTION|>[{"tool_call_id": "0", "tool_name": ..., "parameters": {...}}]<|END_ACTION|>`,
    with a plan in `<|START_THINKING|>...<|END_THINKING|>` and the answer in `<|START_RESPONSE|>...`."""

    name = "command_r7b"
    syntax = CallSyntax(
        open_markers=("<|START_ACTION|>",),
        close_marker="<|END_ACTION|>",
        name_keys=("tool_name", "name"),
        argument_keys=("parameters", "arguments"),
        reasoning=("<|START_THINKING|>", "<|END_THINKING|>"),
        drop_markers=("<|START_RESPONSE|>", "<|END_RESPONSE|>"),
    )

    def write_call(self, call: ToolCall) -> str:
        body = [{"tool_call_id": "0", "tool_name": call.name, "parameters": arguments_object(call.arguments)}]
        return f"<|START_ACTION|>{orjson.dumps(body).decode()}<|END_ACTION|>"

    def write_result(self, name: str, content: str) -> str:
        return f"<|START_TOOL_RESULT|>{content}<|END_TOOL_RESULT|>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            "You can call these tools by writing <|START_ACTION|> then a JSON list of "
            '{"tool_call_id": "0", "tool_name": ..., "parameters": {...}} then <|END_ACTION|>.\n' + _listing(tools)
        )
