"""MiniMax-M2: every call of a turn inside one `<minimax:tool_call>` block, as `<invoke>` tags.

    <minimax:tool_call>
    <invoke name="get_weather">
    <parameter name="city">Paris</parameter>
    </invoke>
    </minimax:tool_call>

Values are raw (strings as they are, other types as JSON), typed by the tool's schema. The generation
prompt always ends inside `<think>`: the output starts with reasoning and closes it itself.
"""

from __future__ import annotations

import orjson

from .base import ToolFormat, arguments_dict
from .conversation import ToolCall, ToolSpec
from .syntax import CallSyntax
from .tagged_calls import TagSyntax

CALLS_BEGIN = "<minimax:tool_call>"
CALLS_END = "</minimax:tool_call>"
BODY = TagSyntax(
    call_open='<invoke name="', name_end='"', attributes_end=">", key_open='<parameter name="', key_end='"',
    value_close="</parameter>", call_close="</invoke>", block_close=CALLS_END,
)


class MiniMaxM2Format(ToolFormat):
    name = "minimax_m2"
    syntax = CallSyntax(
        open_markers=(CALLS_BEGIN,), close_marker=CALLS_END, scanner=BODY.scanner, reasoning=("<think>", "</think>")
    )
    call_opening = CALLS_BEGIN + "\n"

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f'{BODY.call_open}{tool_name}">\n' if tool_name else "")

    def write_call(self, call: ToolCall) -> str:
        return f"{CALLS_BEGIN}\n{BODY.write(call.name, arguments_dict(call.arguments))}\n{CALLS_END}"

    def write_result(self, name: str, content: str) -> str:
        return f"<response>{content}</response>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = "\n".join(f"<tool>{orjson.dumps(tool.as_openai()['function']).decode()}</tool>" for tool in tools)
        example = BODY.write("tool-name-1", {"param-key-1": "param-value-1"})
        return (
            "# Tools\nYou may call one or more tools to assist with the user query.\n"
            f"Here are the tools available in JSONSchema format:\n\n<tools>\n{listing}\n</tools>\n\n"
            f"When making tool calls, use XML format to invoke tools and pass parameters:\n\n{CALLS_BEGIN}\n{example}\n{CALLS_END}"
        )
