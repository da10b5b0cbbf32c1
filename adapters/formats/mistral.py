"""Mistral, both generations on one parser: v3/v7 `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]`
(Nemo, Small 3.1; v7 puts a space before `[`) and v11 `[TOOL_CALLS]name[ARGS]{...}`, one block per
call (Small 3.2, Devstral, Magistral, Ministral 3). After `[TOOL_CALLS]`, a `[` means the JSON list;
anything else is a name. Ministral 3 reasons in `[THINK]...[/THINK]`.

Mistral templates raise unless a call id is 9 alphanumerics, so history ids are mapped to such ids,
the same one for a call and its result.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import replace

import orjson

from .base import TemplateInput, TemplateTraits, ToolFormat, arguments_object, random_id
from .conversation import Conversation, Message, ToolCall, ToolSpec
from .name_args import NameArgsSyntax
from .syntax import CallSyntax

_ALPHANUMERIC = string.ascii_letters + string.digits
# v11 history shows `name[CALL_ID]id[ARGS]`: an id the model writes there is the call's id.
_BODY = NameArgsSyntax(args_markers=("[ARGS]",), list_body=True, id_marker="[CALL_ID]")


def mistral_id(call_id: str) -> str:
    """A 9-alphanumeric id for any client id: itself when it already is one, else a stable digest."""
    if len(call_id) == 9 and call_id.isascii() and call_id.isalnum():
        return call_id
    digest = hashlib.sha256(call_id.encode()).digest()
    return "".join(_ALPHANUMERIC[byte % len(_ALPHANUMERIC)] for byte in digest[:9])


def _with_mistral_ids(message: Message) -> Message:
    calls = tuple(replace(call, id=mistral_id(call.id)) for call in message.tool_calls)
    call_id = mistral_id(message.tool_call_id) if message.tool_call_id else message.tool_call_id
    return replace(message, tool_calls=calls, tool_call_id=call_id)


class MistralFormat(ToolFormat):
    name = "mistral"
    # The model's own ids (`"id"` in the list form, `[CALL_ID]` in v11) are the calls' ids.
    syntax = CallSyntax(
        open_markers=("[TOOL_CALLS]",), id_keys=("id",), scanner=_BODY.scanner, reasoning=("[THINK]", "[/THINK]")
    )
    stop_strings = ("[TOOL_RESULTS]",)

    def new_call_id(self) -> str:
        return random_id(9)

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f"{tool_name}[ARGS]" if tool_name else "")

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        # Control tokens inside a v11 call body must print too.
        return (*self.syntax.markers, "[ARGS]", "[CALL_ID]")

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        messages = tuple(_with_mistral_ids(message) for message in conversation.messages)
        return super().template_input(replace(conversation, messages=messages), traits)

    def write_call(self, call: ToolCall) -> str:
        arguments = orjson.dumps(arguments_object(call.arguments)).decode()
        return f"{self.opening()}{call.name}{_BODY.args_markers[0]}{arguments}"

    def write_result(self, name: str, content: str) -> str:
        return f"[TOOL_RESULTS]{content}[/TOOL_RESULTS]"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = orjson.dumps([tool.as_openai() for tool in tools]).decode()
        return (
            f"[AVAILABLE_TOOLS]{listing}[/AVAILABLE_TOOLS]\n"
            "To call a tool, write [TOOL_CALLS] then its name, [ARGS] and its arguments as a JSON object, e.g. "
            '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}. Write one [TOOL_CALLS] block per call.'
        )
