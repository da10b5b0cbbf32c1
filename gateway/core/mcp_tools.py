"""The tool loop the gateway runs itself for MCP tools: generate, run the MCP calls the model made,
give it their results, generate again, until it answers.

`run_with_mcp` wraps `run_chat` round after round and yields one stream of events for the whole
response: the rounds' parser events, `RoundEnded` between rounds, and `McpCallRan` for each call
it ran. A round ends the response when the model answers without calls, or calls something the
gateway does not run itself: a client's function, or an MCP tool that needs the user's approval.
The last round `max_rounds` allows is generated with `tool_choice: none`, so the model answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from adapters.backends import Usage
from adapters.formats.conversation import Message, ToolCall
from adapters.formats.events import (
    ParseEvent,
    TextDelta,
    ToolCallEnd,
    ToolCallFailed,
    ToolCallStart,
)
from adapters.mcp_client import McpOutcome, McpToolInfo

from .job import ChatJob
from .pipeline import Completed, PipelineEvent, Started, run_chat
from .routing import Route
from .trace import RequestTrace


class ToolRunner(Protocol):
    async def call(self, name: str, arguments: dict[str, object]) -> McpOutcome: ...


@dataclass(frozen=True, slots=True)
class McpTool:
    """One MCP tool as the model is offered it (by its own name), and where it runs."""

    server_label: str
    info: McpToolInfo
    needs_approval: bool


@dataclass(frozen=True, slots=True)
class McpToolbox:
    tools: Mapping[str, McpTool]  # by name
    runners: Mapping[str, ToolRunner]  # by server label
    max_rounds: int = 8

    async def run(self, name: str, arguments: str) -> McpOutcome:
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError as error:
            parsed = error
        if not isinstance(parsed, dict):
            message = "The arguments must be a JSON object."
            return McpOutcome(error={"type": "mcp_protocol_error", "code": -32602, "message": message},
                              for_model=f"Error: {message}")
        return await self.runners[self.tools[name].server_label].call(name, parsed)


@dataclass(frozen=True, slots=True)
class ToolsListed:
    """A server's tools were listed for this response (an `mcp_list_tools` item)."""

    server_label: str
    tools: tuple[McpToolInfo, ...]


@dataclass(frozen=True, slots=True)
class RoundEnded:
    """The model's turn is over and its MCP calls run next; call indexes restart in the next round."""


@dataclass(frozen=True, slots=True)
class McpCallRan:
    """A call was run. `call_id` is the parser's id for a call of this response's rounds; a call the
    user approved in an earlier response has none and carries its `approval_request_id`."""

    server_label: str
    name: str
    arguments: str
    outcome: McpOutcome
    call_id: str | None = None
    approval_request_id: str | None = None


McpEvent = ToolsListed | RoundEnded | McpCallRan
McpRunEvent = Started | Sequence[ParseEvent | McpEvent] | Completed  # batches are lists
RoundRunner = Callable[[ChatJob, Route, RequestTrace], AsyncGenerator[PipelineEvent, None]]


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    arguments: str | None = None  # set when the call is complete


@dataclass(slots=True)
class _Round:
    text: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)

    def take(self, event: ParseEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ToolCallStart):
            self.calls[event.index] = _Call(event.id, event.name)
        elif isinstance(event, ToolCallEnd):
            self.calls[event.index].arguments = event.arguments
        elif isinstance(event, ToolCallFailed):
            self.calls.pop(event.index, None)  # returned as text: no call was made

    def complete_calls(self) -> list[_Call]:
        return [call for call in self.calls.values() if call.arguments is not None]


async def run_with_mcp(
    job: ChatJob,
    route: Route,
    trace: RequestTrace,
    run_round: RoundRunner = run_chat,
    *,
    toolbox: McpToolbox,
    prelude: Sequence[McpEvent] = (),
) -> AsyncGenerator[McpRunEvent, None]:
    """The rounds of one response, each run by `run_round`; `prelude` (listings, approved calls)
    follows the first `Started`. Like the pipeline's, events come in batches (lists); the loop's own
    events are batches of their own."""
    conversation = job.conversation
    usage = Usage(0, 0, None)
    calls_made = malformed = 0  # over all rounds (run_chat counts one round's)
    started = False
    for number in range(1, toolbox.max_rounds + 1):
        if number == toolbox.max_rounds and number > 1:
            conversation = replace(conversation, tool_choice="none")
        turn = _Round()
        completed: Completed | None = None
        events = run_round(replace(job, conversation=conversation), route, trace)
        try:
            async for event in events:
                if isinstance(event, Started):
                    if not started:
                        started = True
                        yield event
                        if prelude:
                            yield list(prelude)
                    continue
                if isinstance(event, Completed):
                    completed = event
                    break
                if isinstance(event, list):
                    for parsed in event:
                        turn.take(parsed)
                yield event
        finally:
            await events.aclose()
        if completed is None:
            return  # the pipeline ended without a result: the driver reports it
        usage = _add(usage, completed.usage)
        calls_made, malformed = calls_made + trace.tool_calls, malformed + trace.malformed_calls
        trace.usage, trace.tool_calls, trace.malformed_calls = usage, calls_made, malformed
        calls = turn.complete_calls()
        ours = [call for call in calls if call.name in toolbox.tools and not toolbox.tools[call.name].needs_approval]
        if not ours:
            yield Completed(completed.finish_reason, usage)
            return
        yield [RoundEnded()]
        results = []
        for call in ours:
            assert call.arguments is not None
            outcome = await toolbox.run(call.name, call.arguments)
            results.append(outcome)
            yield [McpCallRan(toolbox.tools[call.name].server_label, call.name, call.arguments, outcome,
                              call_id=call.id)]
        if len(ours) < len(calls):
            # Calls only the client can answer (functions, approvals): the response ends with them.
            yield Completed(completed.finish_reason, usage)
            return
        conversation = replace(
            conversation,
            messages=(*conversation.messages, *_turn_messages(turn, ours, results)),
            # A forced call holds for the first round only, so the model can answer afterwards.
            tool_choice="auto" if conversation.tool_choice != "none" else "none",
        )


def _turn_messages(turn: _Round, calls: list[_Call], results: list[McpOutcome]) -> list[Message]:
    made = tuple(ToolCall(call.id, call.name, call.arguments or "{}") for call in calls)
    messages = [Message("assistant", "".join(turn.text).strip(), tool_calls=made)]
    messages += [Message("tool", result.for_model, tool_call_id=call.id, name=call.name)
                 for call, result in zip(calls, results, strict=True)]
    return messages


def _add(total: Usage, more: Usage) -> Usage:
    cached = None if total.cached_tokens is None and more.cached_tokens is None else (
        (total.cached_tokens or 0) + (more.cached_tokens or 0))
    return Usage(total.prompt_tokens + more.prompt_tokens, total.completion_tokens + more.completion_tokens, cached)
