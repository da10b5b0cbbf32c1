"""The Responses API's MCP items (`mcp_list_tools`, `mcp_call`, `mcp_approval_request`,
`mcp_approval_response`): their input models, their canonical form, and how a conversation holding
them is rendered for a model that only knows function calls and results.

Rendering: an `mcp_call` is the assistant's call and its result; an approval request the user
answered is the call and either the result of running it now (approved) or a refusal (denied); a
request already run (an `mcp_call` names it) or not answered yet, a listing, and an approval
response render nothing of their own.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..core.faults import InvalidRequest

JsonObject = dict[str, Any]
MCP_ITEM_TYPES = ("mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response")


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class McpListToolsItem(_Item):
    type: Literal["mcp_list_tools"]
    id: str | None = None
    server_label: str
    tools: list[JsonObject]
    error: str | None = None


class McpCallItem(_Item):
    type: Literal["mcp_call"]
    id: str | None = None
    server_label: str
    name: str
    arguments: str = "{}"
    output: str | None = None
    error: JsonObject | None = None
    status: str | None = None
    approval_request_id: str | None = None


class McpApprovalRequestItem(_Item):
    type: Literal["mcp_approval_request"]
    id: str
    server_label: str
    name: str
    arguments: str = "{}"


class McpApprovalResponseItem(_Item):
    type: Literal["mcp_approval_response"]
    id: str | None = None
    approval_request_id: str
    approve: bool
    reason: str | None = None


McpItem = McpListToolsItem | McpCallItem | McpApprovalRequestItem | McpApprovalResponseItem
MCP_TAGS = {"mcp_list_tools": "McpListTools", "mcp_call": "McpCall", "mcp_approval_request": "McpApprovalRequest",
            "mcp_approval_response": "McpApprovalResponse"}


def canonical_mcp_item(item: McpItem) -> JsonObject:
    if isinstance(item, McpListToolsItem):
        return {"id": item.id or _new_id("mcpl"), "type": item.type, "server_label": item.server_label,
                "tools": item.tools, "error": item.error}
    if isinstance(item, McpCallItem):
        return {"id": item.id or _new_id("mcp"), "type": item.type, "status": item.status or "completed",
                "server_label": item.server_label, "name": item.name, "arguments": item.arguments,
                "output": item.output, "error": item.error, "approval_request_id": item.approval_request_id}
    if isinstance(item, McpApprovalRequestItem):
        return {"id": item.id, "type": item.type, "server_label": item.server_label, "name": item.name,
                "arguments": item.arguments}
    return {"id": item.id or _new_id("mcpa"), "type": item.type, "approval_request_id": item.approval_request_id,
            "approve": item.approve, "reason": item.reason}


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval request the user has just answered, still to be run (or refused)."""

    request_id: str
    server_label: str
    name: str
    arguments: str
    approve: bool
    reason: str | None


def answered_approvals(items: Sequence[JsonObject], first_own: int) -> list[Approval]:
    """The approval requests this request's own items answer and no earlier response has run."""
    requests = {item["id"]: item for item in items if item["type"] == "mcp_approval_request"}
    ran = {item.get("approval_request_id") for item in items if item["type"] == "mcp_call"}
    answered: dict[str, Approval] = {}
    for position, item in enumerate(items[first_own:]):
        if item["type"] != "mcp_approval_response" or item["approval_request_id"] in ran:
            continue
        request = requests.get(item["approval_request_id"])
        if request is None:
            raise InvalidRequest(f"No mcp_approval_request with id '{item['approval_request_id']}' comes before "
                                 "this response.", param=f"input[{position}].approval_request_id",
                                 code="invalid_value")
        answered[request["id"]] = Approval(request["id"], request["server_label"], request["name"],
                                           request["arguments"], item["approve"], item.get("reason"))
    return list(answered.values())


def listed_tools(items: Sequence[JsonObject]) -> dict[str, list[JsonObject]]:
    """Server label -> its tools, from the last successful `mcp_list_tools` of the conversation."""
    return {item["server_label"]: item["tools"] for item in items
            if item["type"] == "mcp_list_tools" and not item.get("error")}


def as_function_items(
    items: Sequence[JsonObject], results: Mapping[str, str], context: Sequence[JsonObject] = ()
) -> list[JsonObject]:
    """The items with MCP ones as function calls and results; `results` holds, by approval request
    id, the text the model reads for each answered request (its result, or the refusal); `context`
    is the conversation before `items`."""
    ran = {item.get("approval_request_id") for item in [*context, *items] if item["type"] == "mcp_call"}
    out: list[JsonObject] = []
    for item in items:
        kind = item["type"]
        if kind == "mcp_call":
            out += _call_and_result(item["id"], item["name"], item["arguments"], _call_text(item))
        elif kind == "mcp_approval_request" and item["id"] not in ran and item["id"] in results:
            out += _call_and_result(item["id"], item["name"], item["arguments"], results[item["id"]])
        elif kind not in MCP_ITEM_TYPES:
            out.append(item)
    return out


def _call_and_result(call_id: str, name: str, arguments: str, result: str) -> list[JsonObject]:
    return [{"id": _new_id("fc"), "type": "function_call", "status": "completed", "call_id": call_id, "name": name,
             "arguments": arguments or "{}"},
            {"id": _new_id("fco"), "type": "function_call_output", "status": "completed", "call_id": call_id,
             "output": result}]


def _call_text(item: JsonObject) -> str:
    if item.get("output") is not None:
        return str(item["output"])
    error = item.get("error") or {}
    if error.get("type") == "mcp_tool_execution_error":
        content = error.get("content")
        texts = [part.get("text", "") for part in content if isinstance(part, dict)] if isinstance(content, list) else []
        return "Error: " + ("\n".join(texts) or str(content))
    return f"Error: {error.get('message', 'the call failed')}"
