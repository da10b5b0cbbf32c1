"""gpt-oss (harmony). After the prompt's `<|start|>assistant` the model writes messages on channels:
`<|channel|>analysis<|message|>thinking<|end|>` (reasoning), then either
`<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>`
(or with the recipient first: `<|start|>assistant to=functions.NAME<|channel|>commentary json<|message|>`)
or `<|start|>assistant<|channel|>final<|message|>answer<|return|>`. Headers carry no content and are dropped.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from .base import TemplateInput, TemplateTraits, ToolFormat, arguments_object
from .conversation import Conversation, Message, ToolCall, ToolSpec
from .name_args import NameArgsSyntax
from .syntax import CallSyntax

# The special tokens every header and marker is made of: the backend must print them all.
_TOKENS = ("<|start|>", "<|channel|>", "<|message|>", "<|constrain|>", "<|end|>", "<|call|>", "<|return|>")
# After `to=functions.`: the name, then `<|constrain|>json` or `<|channel|>commentary json`, up to `<|message|>`.
_BODY = NameArgsSyntax(args_markers=("<|message|>",))


def _one_call_per_turn(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """Harmony has one call per assistant message and names a result after the call just before
    it (the template draws only the first call): parallel calls become call, result, call, result."""
    out: list[Message] = []
    position = 0
    while position < len(messages):
        message = messages[position]
        position += 1
        if message.role != "assistant" or len(message.tool_calls) < 2:
            out.append(message)
            continue
        results: list[Message] = []
        while position < len(messages) and messages[position].role == "tool":
            results.append(messages[position])
            position += 1
        by_id = {result.tool_call_id: result for result in results}
        for number, call in enumerate(message.tool_calls):
            first = number == 0
            out.append(Message("assistant", message.content if first else "", tool_calls=(call,),
                               reasoning=message.reasoning if first else None))
            if call.id in by_id:
                out.append(by_id.pop(call.id))
        out.extend(result for result in results if by_id.get(result.tool_call_id) is result)
    return tuple(out)


class GptOssFormat(ToolFormat):
    name = "gpt_oss"
    syntax = CallSyntax(
        # A call may also be addressed from the analysis channel (`<|channel|>analysis to=functions.NAME`).
        open_markers=("<|channel|>commentary to=functions.", "<|channel|>analysis to=functions.", " to=functions."),
        close_marker="<|call|>",
        scanner=_BODY.scanner,
        reasoning=("<|channel|>analysis<|message|>", "<|end|>"),
        drop_markers=(
            "<|start|>assistant",
            "<|channel|>final<|message|>",
            "<|channel|>commentary<|message|>",  # a preamble to the user: content
            "<|end|>",
            "<|return|>",
        ),
    )
    # A call turn ends with `<|call|>`: stop there. The call is complete at its closing brace, so
    # a backend that cuts the stop string loses nothing.
    stop_strings = ("<|call|>",)

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        return _TOKENS

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f"{tool_name} <|constrain|>json<|message|>" if tool_name else "")

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        split = replace(conversation, messages=_one_call_per_turn(conversation.messages))
        return super().template_input(split, traits)

    def write_call(self, call: ToolCall) -> str:
        arguments = orjson.dumps(arguments_object(call.arguments)).decode()
        return f"<|start|>assistant{self.block(f'{call.name} <|constrain|>json{_BODY.args_markers[0]}{arguments}')}"

    def write_result(self, name: str, content: str) -> str:
        body = orjson.dumps(content).decode()
        return f"<|start|>functions.{name} to=assistant<|channel|>commentary<|message|>{body}<|end|>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        lines = [f"// {tool.description}\ntype {tool.name} = (_: {orjson.dumps(tool.parameters).decode()}) => any;"
                 for tool in tools]
        return (
            "# Tools\n\n## functions\n\nnamespace functions {\n\n" + "\n\n".join(lines) + "\n\n} // namespace functions\n\n"
            "Calls to these tools must go to the commentary channel: 'functions'."
        )
