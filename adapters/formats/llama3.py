"""Llama 3.1 / 3.2 / 3.3 (and Llama 4's JSON variant): a bare `{"name": ..., "parameters": {...}}`
as the whole answer, optionally after `<|python_tag|>`; results go back under the `ipython` role
(the templates map `tool` messages to it)."""

from __future__ import annotations

import orjson

from .base import TemplateInput, TemplateTraits, ToolFormat, arguments_object
from .conversation import Conversation, Message, ToolCall, ToolSpec
from .syntax import CallSyntax


class Llama3JsonFormat(ToolFormat):
    name = "llama3_json"
    # Llama 4's JSON template separates calls with "; ".
    syntax = CallSyntax(open_markers=("<|python_tag|>",), start_bodies=("{",), call_separator=";", fenced_json=True)
    # `<|eom_id|>` ends a turn that expects a tool result.
    stop_strings = ("<|eom_id|>",)
    # The bare JSON object is the usual form: a forced call starts with nothing before it.
    call_opening = ""

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        # The Llama 3.1 templates raise on more than one call per assistant turn: split them.
        messages: list[Message] = []
        for message in conversation.messages:
            if message.role == "assistant" and len(message.tool_calls) > 1:
                for position, call in enumerate(message.tool_calls):
                    content = message.content if position == 0 else ""
                    reasoning = message.reasoning if position == 0 else None
                    messages.append(Message("assistant", content, tool_calls=(call,), reasoning=reasoning))
            else:
                messages.append(message)
        split = Conversation(tuple(messages), conversation.tools, conversation.tool_choice, conversation.parallel_tool_calls)
        return super().template_input(split, traits)

    def write_call(self, call: ToolCall) -> str:
        return orjson.dumps({"name": call.name, "parameters": arguments_object(call.arguments)}).decode()

    def write_result(self, name: str, content: str) -> str:
        return orjson.dumps({"name": name, "output": content}).decode()

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = "\n\n".join(orjson.dumps(tool.as_openai(), option=orjson.OPT_INDENT_2).decode() for tool in tools)
        return (
            "Given the following functions, please respond with a JSON for a function call with its proper "
            "arguments that best answers the given prompt.\n\n"
            'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. '
            "Do not use variables.\n\n" + listing
        )

