"""Seed-OSS: Qwen3-Coder's tags inside `<seed:tool_call>`, one block per call, reasoning in `<seed:think>`.

    <seed:tool_call>
    <function=get_weather>
    <parameter=city>Paris</parameter>
    </function>
    </seed:tool_call>

Values carry no newline padding in the template, but the model may write it as Qwen3-Coder does:
one newline on each side is not the value's. The template prints past non-string values with Jinja's
`|string` (Python's `True`, `{'a': 1}`), so a typed value may come back as a Python literal.
"""

from __future__ import annotations

import orjson

from .base import ToolFormat, arguments_dict
from .conversation import ToolCall, ToolSpec
from .syntax import CallSyntax
from .tagged_calls import TagSyntax

CALL_BEGIN = "<seed:tool_call>"
CALL_END = "</seed:tool_call>"
BODY = TagSyntax(
    call_open="<function=", name_end=">", key_open="<parameter=", key_end=">", value_close="</parameter>",
    call_close="</function>", padded_values=True,
)


class SeedOssFormat(ToolFormat):
    name = "seed_oss"
    syntax = CallSyntax(
        open_markers=(CALL_BEGIN,), close_marker=CALL_END, scanner=BODY.scanner, reasoning=("<seed:think>", "</seed:think>")
    )
    call_opening = CALL_BEGIN + "\n"

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f"{BODY.call_open}{tool_name}>\n" if tool_name else "")

    def write_call(self, call: ToolCall) -> str:
        body = BODY.write(call.name, arguments_dict(call.arguments))
        return f"{CALL_BEGIN}\n{body}\n{CALL_END}"

    def write_result(self, name: str, content: str) -> str:
        return f"<tool_response>\n{content}\n</tool_response>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = "\n".join(orjson.dumps(tool.as_openai()).decode() for tool in tools)
        example = BODY.write("example_function_name", {"example_parameter_1": "value_1"})
        return f"You may call one or more functions:\n{listing}\n\nTo call one, write:\n{CALL_BEGIN}\n{example}\n{CALL_END}"
