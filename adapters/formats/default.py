"""The fallback for models with no native tool format: `[TOOL_REQUEST]{...}[END_TOOL_REQUEST]`.

The model learns the syntax from a system block; past calls and results are written into the
conversation as plain text (results as user turns), so any chat template can carry them.
"""

from __future__ import annotations

import orjson

from .base import ToolFormat
from .conversation import ToolSpec
from .syntax import CallSyntax

RESULT_OPEN = "[TOOL_RESULT]"
RESULT_CLOSE = "[END_TOOL_RESULT]"


class DefaultFormat(ToolFormat):
    name = "default"
    syntax = CallSyntax(open_markers=("[TOOL_REQUEST]",), close_marker="[END_TOOL_REQUEST]")
    native = False
    stop_strings = (RESULT_OPEN,)

    def write_result(self, name: str, content: str) -> str:
        body = orjson.dumps({"name": name, "content": content}).decode()
        return f"{RESULT_OPEN}{body}{RESULT_CLOSE}"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = orjson.dumps([tool.as_openai() for tool in tools], option=orjson.OPT_INDENT_2).decode()
        return (
            "You can call tools. To call one, write exactly this and nothing around it:\n"
            '[TOOL_REQUEST]{"name": "tool_name", "arguments": {"param": "value"}}[END_TOOL_REQUEST]\n\n'
            f"Tools you can call:\n{listing}\n\n"
            "Rules:\n"
            "- Call only tools from the list above, and give every required argument.\n"
            "- Write one [TOOL_REQUEST] block per call; for several calls, write several blocks.\n"
            "- When you call tools, write nothing else in that reply.\n"
            f"- Results come back to you as {RESULT_OPEN}...{RESULT_CLOSE}; never write those yourself.\n"
            "- If no tool fits the request, answer normally.\n\n"
            "Examples:\n"
            "User: What is the weather in Paris?\n"
            '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}[END_TOOL_REQUEST]\n\n'
            "User: Email Ann about lunch and open the calendar\n"
            '[TOOL_REQUEST]{"name": "send_email", "arguments": {"to": "Ann", "subject": "lunch"}}'
            "[END_TOOL_REQUEST]\n"
            '[TOOL_REQUEST]{"name": "open_calendar", "arguments": {}}[END_TOOL_REQUEST]'
        )
