"""How a reply is steered: what to prefill after the prompt, and what constraint to ask the
backend for, given `tool_choice`, the route's tool format and what the backend can enforce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from adapters.backends import Constraint
from adapters.formats import ToolFormat
from adapters.formats.conversation import Conversation, NamedToolChoice
from adapters.formats.grammar import call_grammar, lazy_trigger

ConstrainMode = Literal["auto", "off", "always"]


@dataclass(frozen=True, slots=True)
class DecodingPlan:
    prefill: str = ""
    constraint: Constraint | None = None
    # Keep only the first call (parallel_tool_calls: false, or a forced single call).
    one_call: bool = False


def plan_decoding(
    conversation: Conversation,
    tool_format: ToolFormat,
    supported: frozenset[str],
    mode: ConstrainMode,
    response_schema: dict[str, Any] | None = None,
) -> DecodingPlan:
    one_call = not conversation.parallel_tool_calls
    choice = conversation.tool_choice
    if conversation.offers_tools and choice == "auto" and mode == "always" and "lazy_grammar" in supported:
        # Free text until the format's marker, then only valid calls to the listed tools.
        try:
            grammar = call_grammar(tool_format, conversation.tools, lazy=True, parallel=not one_call)
        except ValueError:  # a format whose calls are not JSON objects: no grammar for it
            return DecodingPlan(one_call=one_call)
        constraint = Constraint(grammar=grammar, lazy_triggers=(lazy_trigger(tool_format),))
        return DecodingPlan(constraint=constraint, one_call=one_call)
    if not conversation.offers_tools or choice == "auto":
        if response_schema is not None and mode != "off" and "json_schema" in supported:
            return DecodingPlan(constraint=Constraint(json_schema=response_schema), one_call=one_call)
        return DecodingPlan(one_call=one_call)
    # required, or a named function: the reply must be a call.
    tools = conversation.tools
    name = choice.name if isinstance(choice, NamedToolChoice) else None
    if name is not None:
        tools = tuple(tool for tool in tools if tool.name == name)
    schema = tool_format.call_schema(tools)
    if mode != "off" and schema is not None and "json_schema" in supported:
        # The opening is prefilled, so the whole rest of the output is the call object.
        return DecodingPlan(prefill=tool_format.opening(), constraint=Constraint(json_schema=schema), one_call=True)
    return DecodingPlan(prefill=tool_format.prefill(name), one_call=one_call or name is not None)
