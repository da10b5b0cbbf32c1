"""DeepSeek V3.2's DSML (`｜` is U+FF5C): every call of a turn in one `function_calls` block.

    <｜DSML｜function_calls>
    <｜DSML｜invoke name="get_weather">
    <｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>
    <｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>
    </｜DSML｜invoke>
    </｜DSML｜function_calls>

`string="true"` marks raw text, `"false"` a JSON value. Reasoning is `<think>...</think>`; in thinking
mode the generation prompt ends inside it. Results come back as `<function_results>`.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import ToolFormat, arguments_dict
from .conversation import ToolCall, ToolSpec
from .syntax import CallSyntax
from .tagged_calls import TagSyntax

DSML = "｜DSML｜"
CALLS_BEGIN = f"<{DSML}function_calls>"
CALLS_END = f"</{DSML}function_calls>"
BODY = TagSyntax(
    call_open=f'<{DSML}invoke name="', name_end='"', attributes_end=">", key_open=f'<{DSML}parameter name="',
    key_end='"', value_close=f"</{DSML}parameter>", call_close=f"</{DSML}invoke>", block_close=CALLS_END,
)


def _string_attribute(value: Any) -> str:
    return f' string="{"true" if isinstance(value, str) else "false"}"'


class DeepSeekV32Format(ToolFormat):
    name = "deepseek_v32"
    syntax = CallSyntax(
        open_markers=(CALLS_BEGIN,), close_marker=CALLS_END, scanner=BODY.scanner, reasoning=("<think>", "</think>")
    )
    # A model that starts writing results is making them up.
    stop_strings = ("<function_results>",)
    call_opening = CALLS_BEGIN + "\n"

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f'{BODY.call_open}{tool_name}">\n' if tool_name else "")

    def write_call(self, call: ToolCall) -> str:
        body = BODY.write(call.name, arguments_dict(call.arguments), attributes=_string_attribute)
        return f"{CALLS_BEGIN}\n{body}\n{CALLS_END}"

    def write_result(self, name: str, content: str) -> str:
        return f"<function_results>\n<result>{content}</result>\n</function_results>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = "\n".join(orjson.dumps(tool.as_openai()["function"]).decode() for tool in tools)
        example = BODY.write("$FUNCTION_NAME", {"$PARAMETER_NAME": "$PARAMETER_VALUE"}, attributes=_string_attribute)
        return (
            "## Tools\n\nYou have access to a set of tools you can use to answer the user's question.\n"
            f'You can invoke functions by writing a "{CALLS_BEGIN}" block like the following:\n'
            f"{CALLS_BEGIN}\n{example}\n{CALLS_END}\n\n"
            'The "string" attribute is "true" for string parameters and "false" for other types, written as JSON.\n\n'
            f"Here are the functions available in JSONSchema format:\n<functions>\n{listing}\n</functions>"
        )
