"""Responses API input items: their models, the one canonical form they are kept in, and the
conversation they make.

The canonical form is what `GET /v1/responses/{id}/input_items` returns (OpenAI's `ItemResource`):
what a client sends is normalised to it, stored in it, and a stored chain is read back from it, so
a conversation renders the same whichever way it arrived.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from adapters.formats.conversation import Message, ToolCall

from ..core.faults import InvalidRequest
from .mcp_items import (
    MCP_ITEM_TYPES,
    MCP_TAGS,
    McpApprovalRequestItem,
    McpApprovalResponseItem,
    McpCallItem,
    McpListToolsItem,
    canonical_mcp_item,
)

ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", *MCP_ITEM_TYPES)
JsonObject = dict[str, Any]


def new_id(prefix: str) -> str:
    """An OpenAI-style id: `resp_...`, `msg_...`, `fc_...`."""
    return f"{prefix}_{secrets.token_hex(24)}"


class _Model(BaseModel):
    # Unknown fields are ignored, as for chat, so newer clients keep working.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)  # "10" is not a number, as at OpenAI


class TextPart(_Model):
    type: Literal["input_text", "output_text"]
    text: str


class RefusalPart(_Model):
    """An assistant's refusal, as an earlier output sent back: history like its text."""

    type: Literal["refusal"]
    refusal: str


class OtherPart(_Model):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    type: str


Content = str | list[TextPart | RefusalPart | OtherPart]


class MessageItem(_Model):
    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: Content


class FunctionCallItem(_Model):
    type: Literal["function_call"]
    id: str | None = None
    call_id: Annotated[str, Field(min_length=1)]
    name: str
    arguments: str = "{}"


class FunctionCallOutputItem(_Model):
    type: Literal["function_call_output"]
    id: str | None = None
    call_id: Annotated[str, Field(min_length=1)]
    output: Content


class ReasoningItem(_Model):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[JsonObject] = []


def _item_tag(value: Any) -> str | None:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)
    return {"message": "Message", "function_call": "FunctionCall", "function_call_output": "FunctionCallOutput",
            "reasoning": "Reasoning", **MCP_TAGS}.get(kind) if isinstance(kind, str) else None


# Capitalised tags: chat's error formatter leaves such union branch names out of the param path.
InputItem = Annotated[
    Annotated[MessageItem, Tag("Message")]
    | Annotated[FunctionCallItem, Tag("FunctionCall")]
    | Annotated[FunctionCallOutputItem, Tag("FunctionCallOutput")]
    | Annotated[ReasoningItem, Tag("Reasoning")]
    | Annotated[McpListToolsItem, Tag("McpListTools")]
    | Annotated[McpCallItem, Tag("McpCall")]
    | Annotated[McpApprovalRequestItem, Tag("McpApprovalRequest")]
    | Annotated[McpApprovalResponseItem, Tag("McpApprovalResponse")],
    Discriminator(_item_tag),
]
_ITEMS = TypeAdapter(list[InputItem])


def canonical_items(items: Sequence[Any]) -> list[JsonObject]:
    """Validated items in canonical form, each with an id (to store and to list)."""
    return [_canonical(item, f"input[{index}]") for index, item in enumerate(items)]


def _canonical(item: Any, param: str) -> JsonObject:
    if isinstance(item, MessageItem):
        texts = _texts(item.content, f"{param}.content")
        if item.role == "assistant":
            content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []} for text in texts]
        else:
            content = [{"type": "input_text", "text": text} for text in texts]
        return {"id": item.id or new_id("msg"), "type": "message", "role": item.role, "status": "completed",
                "content": content}
    if isinstance(item, FunctionCallItem):
        return {"id": item.id or new_id("fc"), "type": "function_call", "status": "completed",
                "call_id": item.call_id, "name": item.name, "arguments": item.arguments or "{}"}
    if isinstance(item, FunctionCallOutputItem):
        output = "\n".join(_texts(item.output, f"{param}.output"))
        return {"id": item.id or new_id("fco"), "type": "function_call_output", "status": "completed",
                "call_id": item.call_id, "output": output}
    if isinstance(item, McpListToolsItem | McpCallItem | McpApprovalRequestItem | McpApprovalResponseItem):
        return canonical_mcp_item(item)
    return {**item.model_dump(exclude_none=True), "id": item.id or new_id("rs")}


def _texts(content: Content, param: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    for index, part in enumerate(content):
        if isinstance(part, RefusalPart):
            texts.append(part.refusal)
            continue
        if not isinstance(part, TextPart):
            raise InvalidRequest(f"Content parts of type '{part.type}' are not supported; send text.",
                              param=f"{param}[{index}]", code="unsupported_content")
        texts.append(part.text)
    return texts


def conversation_messages(items: Sequence[JsonObject], first_own: int) -> list[Message]:
    """The messages canonical items make; items before `first_own` came from a stored chain."""
    return _messages(_ITEMS.validate_python(items), first_own)


def _messages(items: Sequence[Any], first_own: int) -> list[Message]:
    messages: list[Message] = []
    names: dict[str, str] = {}  # call_id -> function name, to name each result
    reasoning: list[str] = []  # reasoning items waiting for the assistant turn they belong to
    for position, item in enumerate(items):
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            messages.append(Message(role, "\n".join(_texts(item.content, "input"))))
        elif isinstance(item, FunctionCallItem):
            names[item.call_id] = item.name
            call = ToolCall(item.call_id, item.name, item.arguments or "{}")
            if messages and messages[-1].role == "assistant":
                # Text then calls, or several calls in a row: one assistant turn, as chat has it.
                messages[-1] = replace(messages[-1], tool_calls=(*messages[-1].tool_calls, call))
            else:
                messages.append(Message("assistant", "", tool_calls=(call,)))
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in names:
                param = f"input[{position - first_own}].call_id" if position >= first_own else "previous_response_id"
                raise InvalidRequest(f"No function_call with call_id '{item.call_id}' comes before this output.",
                                  param=param, code="invalid_value")
            text = "\n".join(_texts(item.output, "input"))
            messages.append(Message("tool", text, tool_call_id=item.call_id, name=names[item.call_id]))
        elif isinstance(item, ReasoningItem) and (text := _reasoning_text(item)):
            reasoning.append(text)
        if reasoning and messages and messages[-1].role == "assistant" and not isinstance(item, ReasoningItem):
            # Reasoning belongs to the assistant turn it precedes (or, within one reply, the turn it is in):
            # templates that show earlier reasoning render it there.
            last = messages[-1]
            messages[-1] = replace(last, reasoning="\n".join([*filter(None, [last.reasoning]), *reasoning]))
            reasoning = []
        # MCP items are rendered as function calls before this (mcp_items.as_function_items).
    return messages


def _reasoning_text(item: ReasoningItem) -> str:
    """A reasoning item's text: its full content where the client kept it, else its summary."""
    content = getattr(item, "content", None) or []
    texts = [part.get("text", "") for part in content if isinstance(part, dict)]
    if not any(texts):
        texts = [part.get("text", "") for part in item.summary if isinstance(part, dict)]
    return "\n".join(text for text in texts if isinstance(text, str) and text)
