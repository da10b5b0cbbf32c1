"""A request's `mcp` tools: validated, matched against the servers the config declares (and the
caller's key), connected, listed, and made into the toolbox the tool loop runs on.

The servers a request may reach are the declared ones: a `server_url` the config does not list is
refused (400) unless `mcp.allow_any_url` is set, so the gateway never fetches arbitrary URLs for
whoever asks. A server that cannot be reached or listed fails the request with 424, as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.formats.conversation import ToolSpec
from adapters.mcp_client import (
    McpEndpoint,
    McpLimits,
    McpSession,
    McpToolInfo,
    McpUnavailable,
    connect,
    list_tools,
)

from ..core.faults import InvalidRequest, McpServerFailed, McpServerNotAllowed
from ..core.mcp_tools import McpCallRan, McpEvent, McpTool, McpToolbox, ToolsListed
from ..ops.auth import ApiKey
from ..ops.mcp_config import McpConfig, McpServerConfig
from .mcp_items import Approval, JsonObject, answered_approvals, listed_tools


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class McpToolFilter(_Model):
    tool_names: list[str] | None = None
    read_only: bool | None = None

    def matches(self, tool: McpToolInfo) -> bool:
        if self.tool_names is not None and tool.name not in self.tool_names:
            return False
        return self.read_only is None or bool((tool.annotations or {}).get("readOnlyHint")) == self.read_only


class McpApprovalFilter(_Model):
    always: McpToolFilter | None = None
    never: McpToolFilter | None = None


class McpToolParam(_Model):
    """OpenAI's `mcp` tool (`MCPTool`)."""

    type: Literal["mcp"]
    server_label: Annotated[str, Field(min_length=1)]
    server_url: str | None = None
    connector_id: str | None = None
    tunnel_id: str | None = None
    authorization: str | None = None
    server_description: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: list[str] | McpToolFilter | None = None
    # The spec's default is "always": a tool runs only once the user approves the call.
    require_approval: Literal["always", "never"] | McpApprovalFilter | None = None

    def allows(self, tool: McpToolInfo) -> bool:
        if self.allowed_tools is None:
            return True
        if isinstance(self.allowed_tools, list):
            return tool.name in self.allowed_tools
        return self.allowed_tools.matches(tool)

    def needs_approval(self, tool: McpToolInfo) -> bool:
        policy = self.require_approval
        if policy is None or isinstance(policy, str):
            return policy != "never"
        if policy.never is not None and policy.never.matches(tool):
            return False
        if policy.always is not None and policy.always.matches(tool):
            return True
        return policy.never is not None or policy.always is None  # only "always" listed: the rest run freely

    def echo(self) -> JsonObject:
        """As the `Response` repeats it; headers and the token are secrets and are not repeated."""
        shown = self.model_dump(exclude_none=True, exclude={"headers", "authorization"})
        return {**shown, "headers": None, "require_approval": shown.get("require_approval", "always")}


@dataclass(frozen=True, slots=True)
class McpServerUse:
    """One `mcp` tool of the request and the server it reaches."""

    index: int  # its position in `tools`
    param: McpToolParam
    endpoint: McpEndpoint


def resolve_servers(tools: Sequence[tuple[int, McpToolParam]], config: McpConfig, key: ApiKey | None) -> list[McpServerUse]:
    uses: list[McpServerUse] = []
    labels: set[str] = set()
    for index, param in tools:
        where = f"tools[{index}]"
        if param.connector_id is not None or param.tunnel_id is not None:
            raise InvalidRequest("Connectors and tunnels are not supported; use a declared MCP server.",
                                 param=f"{where}.{'connector_id' if param.connector_id else 'tunnel_id'}",
                                 code="unsupported_parameter")
        if param.server_label in labels:
            raise InvalidRequest(f"Two mcp tools have the server_label '{param.server_label}'.",
                                 param=f"{where}.server_label", code="invalid_value")
        labels.add(param.server_label)
        declared = _declared(param, config, where)
        if declared is not None and key is not None and not key.allows_mcp(declared.label):
            raise McpServerNotAllowed(declared.label, param=f"{where}.server_label")
        uses.append(McpServerUse(index, param, _endpoint(param, declared, where)))
    return uses


def _declared(param: McpToolParam, config: McpConfig, where: str) -> McpServerConfig | None:
    if param.server_url is None:
        declared = config.server(param.server_label)
        if declared is None:
            known = ", ".join(server.label for server in config.servers) or "none"
            raise InvalidRequest(f"No MCP server labelled '{param.server_label}' is configured (configured: {known}); "
                                 "give a declared server's label.", param=f"{where}.server_label",
                                 code="mcp_server_not_declared")
        return declared
    declared = config.server_at(param.server_url)
    if declared is None and not config.allow_any_url:
        raise InvalidRequest(f"The MCP server URL '{param.server_url}' is not one this gateway is configured to "
                             "use; name a declared server by its server_label.", param=f"{where}.server_url",
                             code="mcp_server_not_declared")
    return declared


def _endpoint(param: McpToolParam, declared: McpServerConfig | None, where: str) -> McpEndpoint:
    headers = dict(param.headers or {})
    if param.authorization:
        headers["Authorization"] = f"Bearer {param.authorization}"
    if declared is None:
        assert param.server_url is not None
        return McpEndpoint(param.server_label, url=param.server_url, headers=headers)
    if declared.command:
        if headers:
            raise InvalidRequest(f"The MCP server '{declared.label}' runs as a local process: it takes no headers.",
                                 param=f"{where}.headers", code="invalid_value")
        return McpEndpoint(param.server_label, command=declared.command, env=declared.env, cwd=declared.cwd)
    return McpEndpoint(param.server_label, url=declared.url, headers={**declared.headers, **headers})


def limits_of(config: McpConfig) -> McpLimits:
    return McpLimits(connect_timeout=config.connect_timeout, call_timeout=config.call_timeout,
                     max_result_bytes=config.max_result_bytes)


@dataclass(frozen=True, slots=True)
class McpSetup:
    toolbox: McpToolbox
    specs: tuple[ToolSpec, ...]  # the MCP tools as the model is offered them
    prelude: tuple[McpEvent, ...]  # listings and approved calls, for the response's output
    results: dict[str, str]  # approval request id -> what the model reads for it

    @property
    def servers(self) -> dict[str, list[str]]:
        """Server label -> the names of its tools offered."""
        by_label: dict[str, list[str]] = {label: [] for label in self.toolbox.runners}
        for name, tool in self.toolbox.tools.items():
            by_label[tool.server_label].append(name)
        return by_label


async def open_toolbox(
    stack: AsyncExitStack,
    uses: Sequence[McpServerUse],
    items: Sequence[JsonObject],
    first_own: int,
    config: McpConfig,
    function_names: Sequence[str],
) -> McpSetup:
    """Connect every server (closed with `stack`), list the tools not listed earlier in the
    conversation, and run (or refuse) the calls the user has just approved (or denied)."""
    limits = limits_of(config)
    known = listed_tools(items)
    tools: dict[str, McpTool] = {}
    runners: dict[str, McpSession] = {}
    prelude: list[McpEvent] = []
    taken = set(function_names)
    for use in uses:
        label = use.param.server_label
        param = f"tools[{use.index}]"
        try:
            session = await stack.enter_async_context(connect(use.endpoint, limits))
            if label in known:  # listed earlier in this conversation: OpenAI does not list again
                infos = [_info(tool) for tool in known[label]]
            else:
                infos = [tool for tool in await list_tools(session, limits) if use.param.allows(tool)]
                prelude.append(ToolsListed(label, tuple(infos)))
        except McpUnavailable as error:
            raise McpServerFailed(str(error), param=param) from error
        runners[label] = session
        for info in infos:
            if not use.param.allows(info):
                continue
            if info.name in taken:
                raise InvalidRequest(f"The tool name '{info.name}' of MCP server '{label}' is also the name of "
                                     "another tool; leave one out with allowed_tools.", param=param,
                                     code="duplicate_tool_name")
            taken.add(info.name)
            tools[info.name] = McpTool(label, info, use.param.needs_approval(info))
    toolbox = McpToolbox(tools, runners, config.max_rounds)
    results: dict[str, str] = {}
    for approval in answered_approvals(items, first_own):
        tool = tools.get(approval.name)
        if tool is None or tool.server_label != approval.server_label:
            raise InvalidRequest(f"The approved call to '{approval.name}' on '{approval.server_label}' is not to a "
                                 "tool this request offers.", param="input", code="invalid_value")
        if approval.approve:
            outcome = await toolbox.run(approval.name, approval.arguments)
            prelude.append(McpCallRan(approval.server_label, approval.name, approval.arguments, outcome,
                                      approval_request_id=approval.request_id))
            results[approval.request_id] = outcome.for_model
        else:
            results[approval.request_id] = _refusal(approval)
    specs = tuple(ToolSpec(name, tool.info.description or "", tool.info.input_schema or {"type": "object"})
                  for name, tool in tools.items())
    return McpSetup(toolbox, specs, tuple(prelude), results)


def _refusal(approval: Approval) -> str:
    because = f" Reason: {approval.reason}" if approval.reason else ""
    return f"Error: the user did not approve this call.{because}"


def _info(tool: JsonObject) -> McpToolInfo:
    return McpToolInfo(str(tool.get("name", "")), tool.get("description"), dict(tool.get("input_schema") or {}),
                       tool.get("annotations"))
