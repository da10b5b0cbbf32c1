"""DeepSeek R1, its distills and V3: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
```json
{...}
```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>`, and V3.1's `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>`
(no type, no fence), on one parser; `<think>...</think>` reasoning, forced open by R1's prompt.

The templates draw a call only for an assistant message whose content is none, and the R1 and
V3.1 ones concatenate the arguments, so they get the raw JSON string (the probe tells which).
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import TemplateInput, TemplateTraits, ToolFormat, arguments_object
from .conversation import Conversation, ToolCall, ToolSpec
from .name_args import NameArgsSyntax
from .syntax import CallSyntax

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
# How R1 distills spell the section's opener and end besides the tokens (llama.cpp accepts the same);
# after such an opener the first call's own `<｜tool▁call▁begin｜>` may be missing.
OPENER_VARIANTS = ("<｜tool_calls_begin｜>", "<｜tool calls begin｜>", "<｜tool\\_calls\\_begin｜>", "<｜tool▁calls｜>")
END_VARIANTS = ("<｜tool_calls_end｜>", "<｜tool calls end｜>", "<｜tool\\_calls\\_end｜>")
OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
OUTPUT_END = "<｜tool▁output▁end｜>"

# V3: type `function`, separator, name, fenced JSON. V3.1: name, separator, bare JSON.
_BODY = NameArgsSyntax(args_markers=(SEP,), name_prefix=f"function{SEP}", lead_markers=(CALL_BEGIN,), fence=("```json", "```"))


class DeepSeekFormat(ToolFormat):
    name = "deepseek"
    syntax = CallSyntax(
        open_markers=(CALL_BEGIN, CALLS_BEGIN, *OPENER_VARIANTS),
        close_marker=CALL_END,
        scanner=_BODY.scanner,
        reasoning=("<think>", "</think>"),
        drop_markers=(CALLS_END, *END_VARIANTS),
    )
    stop_strings = (OUTPUT_BEGIN,)
    call_opening = CALLS_BEGIN + CALL_BEGIN

    def prefill(self, tool_name: str | None) -> str:
        # V3's layout, which R1 and V3 were trained on (V3.1 would write `NAME<｜tool▁sep｜>{...}`).
        return self.opening() + (f"function{SEP}{tool_name}\n```json\n" if tool_name else "")

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        return (*self.syntax.markers, SEP)

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        data = super().template_input(conversation, traits)
        # A call is drawn only when content is none: the text beside a call is dropped (the R1
        # templates could not show both; a call matters more to the next turn).
        messages: list[dict[str, Any]] = [
            {**message, "content": None} if message.get("tool_calls") else message for message in data.messages
        ]
        return TemplateInput(messages, data.tools)

    def write_call(self, call: ToolCall) -> str:
        arguments = orjson.dumps(arguments_object(call.arguments)).decode()
        return f"{CALLS_BEGIN}{CALL_BEGIN}function{SEP}{call.name}\n```json\n{arguments}\n```{CALL_END}{CALLS_END}"

    def write_result(self, name: str, content: str) -> str:
        return f"{OUTPUT_BEGIN}{content}{OUTPUT_END}"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        # What llama.cpp's R1 template says, for the original R1 templates that list no tools.
        listing = orjson.dumps([tool.as_openai()["function"] for tool in tools], option=orjson.OPT_INDENT_2).decode()
        return (
            f"You can call any of the following function tools to satisfy the user's requests: {listing}\n\n"
            "Example function tool call syntax:\n\n"
            f"{CALLS_BEGIN}{CALL_BEGIN}function{SEP}example_function_name\n```json\n"
            '{\n  "arg1": "some_value"\n  ...\n}\n'
            f"```\n{CALL_END}{CALLS_END}"
        )
