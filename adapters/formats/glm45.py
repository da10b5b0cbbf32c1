"""GLM-4.5 / 4.6 / 4.7: the name right after `<tool_call>`, then `<arg_key>`/`<arg_value>` pairs.

    <tool_call>get_weather
    <arg_key>city</arg_key>
    <arg_value>Paris</arg_value>
    </tool_call>

GLM-4.7 writes the same with no newlines, and a call without arguments as `<tool_call>NAME</tool_call>`.
Values are raw (strings as they are, other types as JSON), typed by the tool's schema. The model
reasons in `<think>...</think>` (4.7's generation prompt opens it) and stops at `<|observation|>`,
after which the results come back.
"""

from __future__ import annotations

import orjson

from .base import ToolFormat, arguments_dict
from .conversation import ToolCall, ToolSpec
from .syntax import CallSyntax
from .tagged_calls import TagSyntax

CALL_BEGIN = "<tool_call>"
CALL_END = "</tool_call>"
# The call has no close of its own: the block's close ends it.
BODY = TagSyntax(
    call_open="", name_end="", key_open="<arg_key>", key_end="</arg_key>", value_open="<arg_value>",
    value_close="</arg_value>", block_close=CALL_END,
)


class Glm45Format(ToolFormat):
    name = "glm45"
    syntax = CallSyntax(
        open_markers=(CALL_BEGIN,), close_marker=CALL_END, scanner=BODY.scanner, reasoning=("<think>", "</think>")
    )
    stop_strings = ("<|observation|>",)

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        return (*self.syntax.markers, "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>")

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (tool_name or "")

    def write_call(self, call: ToolCall) -> str:
        return f"{CALL_BEGIN}{BODY.write(call.name, arguments_dict(call.arguments))}\n{CALL_END}"

    def write_result(self, name: str, content: str) -> str:
        return f"<tool_response>\n{content}\n</tool_response>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        # Worded as GLM-4.6's own template teaches it, for templates that cannot.
        listing = "\n".join(orjson.dumps(tool.as_openai()).decode() for tool in tools)
        return (
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{listing}\n</tools>\n\n"
            "For each function call, output the function name and arguments within the following XML format:\n"
            "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n...\n</tool_call>"
        )
