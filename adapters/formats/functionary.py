"""Functionary v3.2: the generation prompt ends with `>>>`, and every block of the answer starts
with its recipient: `all\\ntext` is content, `NAME\\n{...}` a call; blocks are joined by `>>>`.

So the answer itself begins with a recipient name: with no marker before it, any name character
at the start opens a block. Blocks are read even with no tools on offer (the model still writes
`all\\n`), and then a call stays text.
"""

from __future__ import annotations

import string
from dataclasses import replace

import orjson

from .base import (
    TemplateInput,
    TemplateTraits,
    ToolFormat,
    arguments_object,
    with_descriptions,
)
from .conversation import Conversation, ToolCall, ToolSpec
from .engine import StreamParser
from .name_args import NameArgsSyntax
from .syntax import CallSyntax

# `python` is source code, a call of the offered `python` tool (as llama.cpp reads it).
_BLOCK = NameArgsSyntax(bare_args=True, content_names=("all",), code_names=("python",), code_end=">>>")
# v3.1: `<function=` is the marker, then the name, `>` and the arguments.
_V31_BODY = NameArgsSyntax(args_markers=(">",))
_SYNTAX = CallSyntax(open_markers=(">>>",), start_bodies=tuple(string.ascii_letters + "_"), scanner=_BLOCK.scanner)
_TEXT_ONLY = replace(_SYNTAX, scanner=replace(_BLOCK, calls=False).scanner)


class FunctionaryV32Format(ToolFormat):
    name = "functionary_v3_2"
    syntax = _SYNTAX
    call_opening = ""  # the prompt's `>>>` opened the first block already

    def prefill(self, tool_name: str | None) -> str:
        return f"{tool_name}\n" if tool_name else ""

    def new_parser(
        self, prompt: str = "", *, parse_calls: bool = True, tools: tuple[ToolSpec, ...] = (), repairing: bool = False
    ) -> StreamParser:
        return StreamParser(self.syntax if parse_calls else _TEXT_ONLY, self.new_call_id, tools=tools, repairing=repairing)

    def write_call(self, call: ToolCall) -> str:
        return f"{self.syntax.open_markers[0]}{call.name}\n{orjson.dumps(arguments_object(call.arguments)).decode()}"

    def write_result(self, name: str, content: str) -> str:
        return content

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        lines = [f"// {tool.description}\ntype {tool.name} = (_: {orjson.dumps(tool.parameters).decode()}) => any;"
                 for tool in tools]
        return (
            "Use JSON for function arguments.\nRespond in this format:\n>>>${recipient}\n${content}\n"
            "Available functions:\n// Supported function definitions that should be called when necessary.\n"
            "namespace functions {\n\n" + "\n\n".join(lines) + "\n\n} // namespace functions"
        )


class FunctionaryV31Format(ToolFormat):
    """Functionary v3.1 (Llama 3.1 based): `<function=NAME>{...}</function>`, one call after another;
    a turn with calls ends with `<|eom_id|>`."""

    name = "functionary_v3_1"
    syntax = CallSyntax(open_markers=("<function=",), close_marker="</function>", scanner=_V31_BODY.scanner)
    stop_strings = ("<|eom_id|>",)

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        # The template joins each tool's description into its text and fails on one that has none.
        return with_descriptions(super().template_input(conversation, traits))

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f"{tool_name}>" if tool_name else "")

    def write_call(self, call: ToolCall) -> str:
        return self.block(f"{call.name}{_V31_BODY.args_markers[0]}{orjson.dumps(arguments_object(call.arguments)).decode()}")

    def write_result(self, name: str, content: str) -> str:
        return content

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = "\n\n".join(
            f"Use the function '{tool.name}' to '{tool.description}'\n{orjson.dumps(tool.as_openai()['function']).decode()}"
            for tool in tools
        )
        return (
            f"You have access to the following functions:\n\n{listing}\n\n"
            "If you choose to call a function ONLY reply in the following format:\n"
            '<function=example_function_name>{"example_name": "example_value"}</function>'
        )
