"""Kimi K2 / K2-Thinking: all the calls of a turn in one section, each with the model's own id.

    <|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>
    {"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>

The id `functions.NAME:IDX` (IDX counting the calls across the conversation) is the one the templates
write back, and the only place they write the name: history ids are made into that shape, the same
one for a call and its result. K2-Thinking reasons in `<think>...</think>`.
"""

from __future__ import annotations

import re
from dataclasses import replace

import orjson

from .base import TemplateInput, TemplateTraits, ToolFormat, arguments_object
from .conversation import Conversation, Message, ToolCall, ToolSpec
from .name_args import NameArgsSyntax
from .syntax import CallSyntax

SECTION_BEGIN = "<|tool_calls_section_begin|>"
SECTION_END = "<|tool_calls_section_end|>"
CALL_BEGIN = "<|tool_call_begin|>"
CALL_END = "<|tool_call_end|>"
ARGUMENTS_BEGIN = "<|tool_call_argument_begin|>"
_BODY = NameArgsSyntax(args_markers=(ARGUMENTS_BEGIN,), name_prefix="functions.", written_id=True)
_KIMI_ID = re.compile(r"functions\.[\w.\-]+:\d+")


def kimi_ids(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """The conversation with every call id in Kimi's shape: kept when it already is one, else
    `functions.NAME:IDX` with IDX counting the calls so far; results follow their call's id."""
    mapped: dict[str, str] = {}
    count = 0
    out: list[Message] = []
    for message in messages:
        calls = []
        for call in message.tool_calls:
            new_id = call.id if _KIMI_ID.fullmatch(call.id) else f"functions.{call.name}:{count}"
            mapped[call.id] = new_id
            calls.append(replace(call, id=new_id))
            count += 1
        result_id = mapped.get(message.tool_call_id or "", message.tool_call_id)
        out.append(replace(message, tool_calls=tuple(calls), tool_call_id=result_id))
    return tuple(out)


class KimiK2Format(ToolFormat):
    name = "kimi_k2"
    syntax = CallSyntax(
        open_markers=(CALL_BEGIN,),
        close_marker=CALL_END,
        scanner=_BODY.scanner,
        reasoning=("<think>", "</think>"),
        drop_markers=(SECTION_BEGIN, SECTION_END),
    )
    call_opening = SECTION_BEGIN + CALL_BEGIN

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        return (*self.syntax.markers, ARGUMENTS_BEGIN)

    def prefill(self, tool_name: str | None) -> str:
        # The model writes the call's index itself.
        return self.opening() + (f"functions.{tool_name}:" if tool_name else "")

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        return super().template_input(replace(conversation, messages=kimi_ids(conversation.messages)), traits)

    def write_call(self, call: ToolCall) -> str:
        arguments = orjson.dumps(arguments_object(call.arguments)).decode()
        # The id carries the name: one that names another function would change the call.
        call_id = call.id if _KIMI_ID.fullmatch(call.id) and call.id.startswith(f"functions.{call.name}:") else f"functions.{call.name}:0"
        return f"{SECTION_BEGIN}{CALL_BEGIN}{call_id}{ARGUMENTS_BEGIN}{arguments}{CALL_END}{SECTION_END}"

    def write_result(self, name: str, content: str) -> str:
        return f"## Return of {name}\n{content}"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = orjson.dumps([tool.as_openai() for tool in tools]).decode()
        return (
            f"Tools: {listing}\nTo call tools, write {SECTION_BEGIN}, then for each call {CALL_BEGIN}functions.NAME:IDX"
            f"{ARGUMENTS_BEGIN}{{json arguments}}{CALL_END}, then {SECTION_END}. IDX counts the calls from 0."
        )
