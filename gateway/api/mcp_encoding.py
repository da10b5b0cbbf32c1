"""The MCP items of a response and their stream events, on top of `OutputBuilder`.

Order of events, per item:
- `mcp_list_tools`: output_item.added, mcp_list_tools.in_progress, mcp_list_tools.completed,
  output_item.done (with the tools).
- `mcp_call` the model makes: output_item.added, mcp_call.in_progress, mcp_call_arguments.delta
  while the model writes them, mcp_call_arguments.done; when the round is over and the call has
  run, mcp_call.completed (or .failed) and output_item.done with its output (or error).
- `mcp_call` the user approved earlier: added, in_progress, completed/failed, done.
- `mcp_approval_request`: output_item.added and .done once the model has written the whole call
  (the spec has no events for its arguments).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.formats.events import (
    ParseEvent,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)

from ..core.mcp_tools import McpCallRan, McpEvent, McpToolbox, RoundEnded, ToolsListed
from .responses_encoding import Event, OutputBuilder, _OpenItem
from .responses_items import JsonObject, new_id


@dataclass(slots=True)
class _Approval:
    name: str
    server_label: str


class McpOutputBuilder(OutputBuilder):
    def __init__(self, *, streaming: bool, toolbox: McpToolbox) -> None:
        super().__init__(streaming=streaming)
        self._toolbox = toolbox
        self._mcp: dict[int, _OpenItem] = {}  # parser call index -> its mcp_call item, this round
        self._approvals: dict[int, _Approval] = {}  # calls that become approval requests, this round
        self._by_call_id: dict[str, _OpenItem] = {}

    def add(self, event: ParseEvent | McpEvent) -> list[Event]:
        if isinstance(event, ToolsListed):
            self._listed(event)
        elif isinstance(event, RoundEnded):
            self._close("completed")
            self._calls.clear()
            self._mcp.clear()
            self._approvals.clear()
        elif isinstance(event, McpCallRan):
            self._ran(event)
        elif isinstance(event, ToolCallStart) and event.name in self._toolbox.tools:
            self._call_started(event)
        elif isinstance(event, ToolCallArgs) and event.index in self._mcp:
            call = self._mcp[event.index]
            self._emit({"type": "response.mcp_call_arguments.delta", "item_id": call.item["id"],
                        "output_index": call.index, "delta": event.text})
        elif isinstance(event, ToolCallArgs) and event.index in self._approvals:
            pass  # the request is announced whole, once the call is complete
        elif isinstance(event, ToolCallEnd) and event.index in self._mcp:
            call = self._mcp[event.index]
            call.item["arguments"] = event.arguments
            self._emit({"type": "response.mcp_call_arguments.done", "item_id": call.item["id"],
                        "output_index": call.index, "arguments": event.arguments})
            self._open = None  # it stays in progress until it has run, while the model goes on
        elif isinstance(event, ToolCallEnd) and event.index in self._approvals:
            approval = self._approvals.pop(event.index)
            self._whole({"id": new_id("mcpr"), "type": "mcp_approval_request", "server_label": approval.server_label,
                         "name": approval.name, "arguments": event.arguments})
        elif isinstance(event, ToolCallFailed) and event.index in self._approvals:
            # Nothing of it went out, streamed or not: what the model wrote is text, in the open message.
            del self._approvals[event.index]
            self._grow("message", event.raw)
        elif isinstance(event, ToolCallFailed):
            self._mcp.pop(event.index, None)
            return super().add(event)
        else:
            return super().add(event)
        return self._drain()

    def _call_started(self, event: ToolCallStart) -> None:
        tool = self._toolbox.tools[event.name]
        if tool.needs_approval:
            self._approvals[event.index] = _Approval(event.name, tool.server_label)
            return
        self._close("completed")
        call = self._start(_call_item(tool.server_label, event.name, ""))
        self._emit({"type": "response.mcp_call.in_progress", "item_id": call.item["id"], "output_index": call.index})
        self._mcp[event.index] = self._calls[event.index] = self._by_call_id[event.id] = call

    def _ran(self, event: McpCallRan) -> None:
        call = self._by_call_id.pop(event.call_id, None) if event.call_id is not None else None
        if call is None:  # approved in an earlier response: its item starts here
            self._close("completed")
            call = self._start(_call_item(event.server_label, event.name, event.arguments, event.approval_request_id))
            self._open = None
            self._emit({"type": "response.mcp_call.in_progress", "item_id": call.item["id"], "output_index": call.index})
        failed = event.outcome.error is not None
        call.item.update(output=event.outcome.output, error=event.outcome.error, status="failed" if failed else "completed")
        self._emit({"type": f"response.mcp_call.{'failed' if failed else 'completed'}", "item_id": call.item["id"],
                    "output_index": call.index})
        self._emit({"type": "response.output_item.done", "output_index": call.index, "item": dict(call.item)})

    def _listed(self, event: ToolsListed) -> None:
        item: JsonObject = {"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": event.server_label,
                            "tools": []}
        self._close("completed")
        opened = self._start(item)
        self._open = None
        base = {"item_id": item["id"], "output_index": opened.index}
        self._emit({"type": "response.mcp_list_tools.in_progress", **base})
        item["tools"] = [tool.as_item() for tool in event.tools]
        self._emit({"type": "response.mcp_list_tools.completed", **base})
        self._emit({"type": "response.output_item.done", "output_index": opened.index, "item": dict(item)})

    def _whole(self, item: JsonObject) -> None:
        """An item announced complete: added and done at once."""
        self._close("completed")
        opened = self._start(item)
        self._open = None
        self._emit({"type": "response.output_item.done", "output_index": opened.index, "item": dict(item)})

    def finished_output(self) -> list[JsonObject]:
        return [item for item in self.output if item.get("status") != "in_progress"]


def _call_item(server_label: str, name: str, arguments: str, approval_request_id: str | None = None) -> JsonObject:
    return {"id": new_id("mcp"), "type": "mcp_call", "status": "in_progress", "server_label": server_label,
            "name": name, "arguments": arguments, "output": None, "error": None,
            "approval_request_id": approval_request_id}

