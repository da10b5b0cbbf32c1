"""Qwen3-Coder and Qwen3.5: XML calls, one `<tool_call>` block per call, with Qwen3.5's `<think>`
reasoning split off first.

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

Both templates render tools, calls and results themselves. They iterate `arguments|items`, so
past calls need object arguments; the template probe finds that (`requires_object_arguments`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from .base import ToolFormat, arguments_dict
from .conversation import ToolCall, ToolSpec
from .syntax import CallSyntax
from .tagged_calls import TagSyntax

FUNCTION_OPEN = "<function="
# One call per `<tool_call>` block; the template writes a newline on each side of a value.
BODY = TagSyntax(
    call_open=FUNCTION_OPEN, name_end=">", key_open="<parameter=", key_end=">", value_close="</parameter>",
    call_close="</function>", padded_values=True,
)
_EXAMPLE = (
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>"
)


class Qwen3CoderFormat(ToolFormat):
    name = "qwen3_coder"
    syntax = CallSyntax(
        open_markers=("<tool_call>",),
        close_marker="</tool_call>",
        scanner=BODY.scanner,
        reasoning=("<think>", "</think>"),
    )
    # Results come back inside `<tool_response>`: a model that starts writing one is hallucinating.
    stop_strings = ("<tool_response>",)
    call_opening = "<tool_call>\n"

    def prefill(self, tool_name: str | None) -> str:
        # A forced call to a named tool starts with its function tag; the scanner reads on from there.
        return self.opening() + (f"{FUNCTION_OPEN}{tool_name}>\n" if tool_name else "")

    def write_call(self, call: ToolCall) -> str:
        # As the Qwen templates write a call: strings as they are, containers as JSON, other
        # values as Jinja's `|string` prints them (`True`, `None`).
        parts = [f"<tool_call>\n{FUNCTION_OPEN}{call.name}>\n"]
        for key, value in arguments_dict(call.arguments).items():
            parts.append(f"<parameter={key}>\n{_value_text(value)}\n</parameter>\n")
        parts.append("</function>\n</tool_call>")
        return "".join(parts)

    def write_result(self, name: str, content: str) -> str:
        return f"<tool_response>\n{content}\n</tool_response>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        # Worded as Qwen3.5's own template teaches it, for templates that cannot.
        listing = "\n".join(orjson.dumps(tool.as_openai()).decode() for tool in tools)
        return (
            "# Tools\n\nYou have access to the following functions:\n\n"
            f"<tools>\n{listing}\n</tools>\n\n"
            "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
            f"{_EXAMPLE}\n\n"
            "<IMPORTANT>\nReminder:\n"
            "- Function calls MUST follow the specified format: an inner <function=...></function> block "
            "must be nested within <tool_call></tool_call> XML tags\n"
            "- Required parameters MUST be specified\n"
            "- You may provide optional reasoning for your function call in natural language BEFORE the "
            "function call, but NOT after\n"
            "- If there is no function call available, answer the question like normal with your current "
            "knowledge and do not tell the user about function calls\n</IMPORTANT>"
        )


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
