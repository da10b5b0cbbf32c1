"""Hermes / Qwen2.5 / Qwen3 / QwQ / Granite 4: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
with Qwen3's and QwQ's `<think>` reasoning split off first."""

from __future__ import annotations

import orjson

from .base import ToolFormat
from .conversation import ToolSpec
from .name_args import NameArgsSyntax
from .syntax import CallSyntax

_FUNCTION_TAG = NameArgsSyntax(args_markers=(">",))


class HermesFormat(ToolFormat):
    name = "hermes"
    # Besides the tagged form, what Hermes-family models are known to write (llama.cpp accepts the
    # same): a bare call object at the start of the answer, one in a code fence, and
    # `<function=NAME>{...}</function>`; the first two count only for a tool on offer.
    syntax = CallSyntax(
        open_markers=("<tool_call>",),
        close_marker="</tool_call>",
        reasoning=("<think>", "</think>"),
        start_bodies=("{",),
        fenced_json=True,
        also=(CallSyntax(open_markers=("<function=",), close_marker="</function>", scanner=_FUNCTION_TAG.scanner),),
    )
    stop_strings = ("<tool_response>",)
    call_opening = "<tool_call>\n"

    def write_result(self, name: str, content: str) -> str:
        return f"<tool_response>\n{content}\n</tool_response>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        # Written the way Qwen2.5's own template teaches it, for templates that cannot.
        listing = "\n".join(orjson.dumps(tool.as_openai()).decode() for tool in tools)
        return (
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{listing}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments "
            "within <tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        )
