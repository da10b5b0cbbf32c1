"""MCP servers as toolwire talks to them: the official `mcp` SDK's client over streamable HTTP or
stdio, reduced to the two things the gateway does with a server: list its tools and call one.

A session lives for one request. Every outcome of a call, including the server's own errors, a
timeout, a connection that broke or a result too large to pass on, comes back as an `McpOutcome`
in the shape OpenAI's `mcp_call` item carries it; only failing to connect or to list raises
(`McpUnavailable`).

The SDK's client runs in a task of its own (`_Worker`): its transports keep anyio task groups open
for the whole session, and when a transport fails (the server went away) such a group cancels the
task it lives in. That must be the session's task, never the request's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

log = logging.getLogger("toolwire.mcp")

JsonObject = dict[str, Any]
_MAX_PAGES = 50  # a server that pages forever is not listed forever


class McpUnavailable(Exception):
    """The server could not be reached, or would not list its tools."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"Error retrieving tool list from MCP server '{label}': {reason}")
        self.label = label
        self.reason = reason


@dataclass(frozen=True, slots=True)
class McpEndpoint:
    """Where a server is: an HTTP URL (with headers) or a command to run as a stdio subprocess."""

    label: str
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass(frozen=True, slots=True)
class McpLimits:
    connect_timeout: float = 10.0
    call_timeout: float = 60.0
    max_result_bytes: int = 256 * 1024


@dataclass(frozen=True, slots=True)
class McpToolInfo:
    name: str
    description: str | None
    input_schema: JsonObject
    annotations: JsonObject | None = None

    def as_item(self) -> JsonObject:
        """The tool as an `mcp_list_tools` item lists it."""
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema,
                "annotations": self.annotations}


@dataclass(frozen=True, slots=True)
class McpOutcome:
    """What a call returned: `output` text, or an `error` in the spec's `MCPToolCallError` shape."""

    output: str | None = None
    error: JsonObject | None = None
    # The text the model reads as the call's result (the output, or what went wrong).
    for_model: str = ""


Job = Callable[[Client], Awaitable[Any]]


class _Worker:
    """Owns the SDK client in its own task and runs jobs on it, one at a time, for the caller."""

    def __init__(self, endpoint: McpEndpoint, limits: McpLimits) -> None:
        self._endpoint, self._limits = endpoint, limits
        self._jobs: asyncio.Queue[tuple[Job, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._failure: BaseException | None = None
        self._task = asyncio.create_task(self._serve(), name=f"mcp:{endpoint.label}")

    async def started(self) -> None:
        await self._ready

    async def run(self, job: Job) -> Any:
        if self._failure is not None:
            raise self._failure
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait((job, future))
        return await future

    async def close(self) -> None:
        self._jobs.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._limits.connect_timeout)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _serve(self) -> None:
        pending: asyncio.Future[Any] | None = None
        try:
            async with AsyncExitStack() as stack:
                # The handshake is bounded by the session's read timeout and, over HTTP, by the
                # connection's timeouts (an anyio timeout scope cannot wrap entering the client).
                client = await stack.enter_async_context(Client(_transport(self._endpoint, self._limits, stack),
                                                                read_timeout_seconds=self._limits.connect_timeout))
                self._ready.set_result(None)
                while (item := await self._jobs.get()) is not None:
                    job, pending = item
                    try:
                        pending.set_result(await job(client))
                    except Exception as error:  # noqa: BLE001 -- the caller's to judge
                        pending.set_exception(error)
                    pending = None
        except BaseException as error:  # the transport broke, the process died, or we were cancelled
            self._failure = _innermost(error)
            if not self._ready.done():
                self._ready.set_exception(McpUnavailable(self._endpoint.label, _reason(self._failure)))
            for waiting in [pending, *self._waiting()]:
                if waiting is not None and not waiting.done():
                    waiting.set_exception(self._failure)
            if isinstance(error, asyncio.CancelledError):
                raise

    def _waiting(self) -> list[asyncio.Future[Any]]:
        futures = []
        while not self._jobs.empty():
            item = self._jobs.get_nowait()
            if item is not None:
                futures.append(item[1])
        return futures


class McpSession:
    def __init__(self, label: str, worker: _Worker, limits: McpLimits) -> None:
        self.label = label
        self._worker = worker
        self._limits = limits

    async def list_tools(self) -> list[McpToolInfo]:
        tools: list[McpToolInfo] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self._worker.run(partial(_list_page, cursor=cursor))
            tools += [_tool_info(tool) for tool in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def call(self, name: str, arguments: JsonObject) -> McpOutcome:
        try:
            result = await self._worker.run(partial(_call_tool, name=name, arguments=arguments,
                                                    read_timeout=self._limits.call_timeout))
        except MCPError as error:
            if error.code == mcp_types.REQUEST_TIMEOUT:
                message = f"The tool call took longer than the gateway's limit of {self._limits.call_timeout:g}s."
            else:
                message = error.message
            return _failed({"type": "mcp_protocol_error", "code": error.code, "message": message})
        except Exception as error:  # noqa: BLE001 -- a broken connection, a malformed answer: the model hears of it
            log.warning("mcp_call_failed server=%s tool=%s error=%r", self.label, name, error)
            return _failed({"type": "mcp_protocol_error", "code": mcp_types.INTERNAL_ERROR,
                            "message": f"The call to the MCP server failed: {error}"})
        blocks = [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]
        text = _text(blocks, result.structured_content)
        if result.is_error:
            return McpOutcome(error={"type": "mcp_tool_execution_error", "content": blocks}, for_model=f"Error: {text}")
        size = len(text.encode())
        if size > self._limits.max_result_bytes:
            return _failed({"type": "mcp_protocol_error", "code": mcp_types.INTERNAL_ERROR,
                            "message": f"The tool's result ({size} bytes) exceeds the gateway's limit of "
                                       f"{self._limits.max_result_bytes} bytes."})
        return McpOutcome(output=text, for_model=text)


async def _list_page(client: Client, cursor: str | None) -> mcp_types.ListToolsResult:
    return await client.list_tools(cursor=cursor)


async def _call_tool(
    client: Client, name: str, arguments: JsonObject, read_timeout: float
) -> mcp_types.CallToolResult:
    return await client.call_tool(name, arguments, read_timeout_seconds=read_timeout)


def _failed(error: JsonObject) -> McpOutcome:
    return McpOutcome(error=error, for_model=f"Error: {error['message']}")


def _text(blocks: list[JsonObject], structured: Any) -> str:
    """Text blocks as they are, any other block (image, resource) as its JSON."""
    parts = [block["text"] if block.get("type") == "text" else json.dumps(block, ensure_ascii=False) for block in blocks]
    if not parts and structured is not None:
        parts = [json.dumps(structured, ensure_ascii=False)]
    return "\n".join(parts)


def _tool_info(tool: mcp_types.Tool) -> McpToolInfo:
    annotations = tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True) if tool.annotations else None
    return McpToolInfo(tool.name, tool.description, dict(tool.input_schema), annotations)


@asynccontextmanager
async def connect(endpoint: McpEndpoint, limits: McpLimits) -> AsyncIterator[McpSession]:
    """A session with the server (connection refused, a process that will not start: `McpUnavailable`)."""
    worker = _Worker(endpoint, limits)
    try:
        await worker.started()
        yield McpSession(endpoint.label, worker, limits)
    finally:
        await worker.close()


def _innermost(error: BaseException) -> BaseException:
    """The one failure inside the exception groups task groups wrap it in."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def list_tools(session: McpSession, limits: McpLimits) -> list[McpToolInfo]:
    """The server's tools within `connect_timeout`, or `McpUnavailable`."""
    try:
        return await session.list_tools()  # each page within the session's read timeout
    except Exception as error:
        if isinstance(error, MCPError) and error.code == mcp_types.REQUEST_TIMEOUT:
            raise McpUnavailable(session.label, f"no answer within {limits.connect_timeout:g}s") from error
        raise McpUnavailable(session.label, _reason(error)) from error


def _transport(endpoint: McpEndpoint, limits: McpLimits, stack: AsyncExitStack) -> Any:
    if endpoint.url is not None:
        # A call's answer may take call_timeout; the session's own timeout reports it first.
        timeout = httpx2.Timeout(limits.connect_timeout, read=max(limits.connect_timeout, limits.call_timeout) + 5)
        http = create_mcp_http_client(headers=dict(endpoint.headers) or None, timeout=timeout)
        stack.push_async_callback(http.aclose)
        return streamable_http_client(endpoint.url, http_client=http)
    command, *args = endpoint.command
    return StdioServerParameters(command=command, args=args, env=dict(endpoint.env) or None, cwd=endpoint.cwd)


def _reason(error: BaseException) -> str:
    error = _innermost(error)
    return str(error) or type(error).__name__
