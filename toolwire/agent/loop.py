"""The logic of `act()`, without I/O: which request each round sends, what the streamed reply
becomes, which calls can run, and what the model is told about each. The sync and the async
runner (`act.py`) only move chunks in and tool results back, so both share every rule here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from openai.types.chat import ChatCompletionChunk
from pydantic_core import to_json

from .errors import (
    InvalidToolArguments,
    MalformedToolCall,
    ToolCallError,
    ToolRaisedError,
    UnknownToolError,
)
from .results import ActResult, Fragment, RoundResult, ToolCallRequest, ToolCallResult
from .stream import Reply, ReplyAssembler, StreamedCall
from .tools import Tool

InvalidRequestHandler = Callable[[ToolCallError, ToolCallRequest | None], str | None]

# Request fields act() owns; the rest of **params goes to the server as given.
_RESERVED = frozenset({"model", "messages", "tools", "stream", "functions", "function_call"})


@dataclass(frozen=True)
class Callbacks:
    on_message: Callable[[dict[str, Any]], Any] | None = None
    on_round_start: Callable[[int], Any] | None = None
    on_round_end: Callable[[int], Any] | None = None
    on_fragment: Callable[[Fragment], Any] | None = None
    handle_invalid_tool_request: InvalidRequestHandler | None = None


@dataclass(frozen=True)
class PendingCall:
    """A call whose arguments fit its tool: the runner runs it and reports an `Outcome`."""

    request: ToolCallRequest
    tool: Tool
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: Exception | None = None


class ActLoop:
    """Drive it as: `while (request := loop.next_request()) is not None:` send the request with
    `stream=True`, `feed` each chunk, run the calls `end_reply` returns (concurrently, in order),
    and give their outcomes to `finish_round`; then `result()`."""

    def __init__(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: Mapping[str, Tool],
        *,
        max_rounds: int | None,
        callbacks: Callbacks,
        params: Mapping[str, Any],
    ) -> None:
        if max_rounds is not None and max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, not {max_rounds}")
        reserved = sorted(_RESERVED & set(params))
        if reserved:
            raise TypeError(f"act() sets {', '.join(reserved)} itself")
        self._model = model
        self._messages = messages
        self._tools = tools
        self._max_rounds = max_rounds
        self._callbacks = callbacks
        self._tool_choice = params.get("tool_choice")
        self._params = {key: value for key, value in params.items() if key != "tool_choice"}
        self._rounds: list[RoundResult] = []
        self._done = False
        self._started: float | None = None
        self._assembler = ReplyAssembler()
        self._reply: Reply | None = None
        self._requests: list[ToolCallRequest] = []
        self._texts: dict[int, tuple[str, bool]] = {}  # call position -> (text for the model, is error)
        self._pending: list[tuple[int, PendingCall]] = []

    @property
    def round_index(self) -> int:
        return len(self._rounds)

    # ---- one round ------------------------------------------------------------------------------

    def next_request(self) -> dict[str, Any] | None:
        """The keyword arguments of the next `chat.completions.create` call (without `stream`),
        or None when the run is over."""
        if self._started is None:
            self._started = time.perf_counter()
        if self._done or (self._max_rounds is not None and self.round_index >= self._max_rounds):
            return None
        self._assembler = ReplyAssembler()
        self._notify(self._callbacks.on_round_start, self.round_index)
        return {"model": self._model, "messages": list(self._messages), **self._tool_params(), **self._params}

    def feed(self, chunk: ChatCompletionChunk) -> None:
        for text, reasoning in self._assembler.feed(chunk):
            self._notify(self._callbacks.on_fragment, Fragment(text, reasoning, self.round_index))

    def end_reply(self) -> list[PendingCall]:
        """The reply is complete: record it, and return the calls to run."""
        reply = self._reply = self._assembler.reply()
        self._requests = [self._request(position, call) for position, call in enumerate(reply.calls)]
        self._add_message(_assistant_message(reply.content, self._requests))
        self._texts, self._pending = {}, []
        for position, request in enumerate(self._requests):
            try:
                tool, kwargs = self._prepare(request)
            except ToolCallError as exc:
                self._texts[position] = (self._handled(exc, request), True)
            else:
                self._pending.append((position, PendingCall(request, tool, kwargs)))
        return [call for _, call in self._pending]

    def finish_round(self, outcomes: list[Outcome]) -> None:
        """The outcomes of the calls `end_reply` returned, in the same order."""
        if len(outcomes) != len(self._pending):
            raise ValueError(f"{len(outcomes)} outcomes for {len(self._pending)} calls")
        for (position, call), outcome in zip(self._pending, outcomes, strict=True):
            self._texts[position] = self._outcome_text(call, outcome)
        results = []
        for position, request in enumerate(self._requests):
            text, is_error = self._texts[position]
            results.append(ToolCallResult(request, text, is_error))
            self._add_message({"role": "tool", "tool_call_id": request.id, "content": text})
        assert self._reply is not None
        index = self.round_index
        self._rounds.append(
            RoundResult(index, self._reply.content, self._reply.reasoning, self._reply.finish_reason, results, self._reply.usage)
        )
        self._done = not self._requests
        self._notify(self._callbacks.on_round_end, index)

    def result(self) -> ActResult:
        elapsed = time.perf_counter() - self._started if self._started is not None else 0.0
        return ActResult(list(self._rounds), list(self._messages), elapsed)

    # ---- rules ----------------------------------------------------------------------------------

    def _tool_params(self) -> dict[str, Any]:
        """Tools every round. A `tool_choice` that forces a call holds for the first round only
        (else the model could never answer); the last round allowed by `max_rounds` gets "none"."""
        if not self._tools:
            return {}
        params: dict[str, Any] = {"tools": [tool.openai_tool() for tool in self._tools.values()]}
        choice = self._tool_choice
        last = self._max_rounds is not None and self.round_index == self._max_rounds - 1
        if self.round_index == 0 and choice is not None:
            params["tool_choice"] = choice
        elif last:
            params["tool_choice"] = "none"
        elif choice is not None and not _forces_a_call(choice):
            params["tool_choice"] = choice
        return params

    def _request(self, position: int, call: StreamedCall) -> ToolCallRequest:
        if not call.name:
            self._fatal(MalformedToolCall(f"the server sent tool call {position} of round {self.round_index} without a name"))
        arguments_json = "".join(call.arguments) or "{}"
        try:
            arguments = json.loads(arguments_json)
        except ValueError:
            arguments = None
        # A server that sends no id still needs one, to pair the call with its result.
        call_id = call.id or f"call_{self.round_index}_{position}"
        return ToolCallRequest(call_id, call.name, arguments_json, arguments)

    def _prepare(self, request: ToolCallRequest) -> tuple[Tool, dict[str, Any]]:
        tool = self._tools.get(request.name)
        if tool is None:
            offered = ", ".join(self._tools) or "none"
            raise UnknownToolError(f"Error: there is no tool named {request.name!r}. Available tools: {offered}.")
        if request.arguments is None:
            raise InvalidToolArguments(
                f"Error: the arguments for tool {request.name!r} are not valid JSON: {request.arguments_json!r}."
            )
        return tool, tool.arguments(request.arguments)

    def _outcome_text(self, call: PendingCall, outcome: Outcome) -> tuple[str, bool]:
        if outcome.error is None:
            return _as_text(outcome.value), False
        exc = ToolRaisedError(f"Error: tool {call.request.name!r} raised {outcome.error!r}.")
        exc.__cause__ = outcome.error
        return self._handled(exc, call.request), True

    def _handled(self, exc: ToolCallError, request: ToolCallRequest) -> str:
        """The text for the model: the error's own, or the handler's replacement. A handler that
        raises ends the run."""
        handler = self._callbacks.handle_invalid_tool_request
        replacement = handler(exc, request) if handler is not None else None
        if replacement is None:
            return str(exc)
        if not isinstance(replacement, str):
            raise TypeError(f"handle_invalid_tool_request returned {type(replacement).__name__}, not str or None")
        return replacement

    def _fatal(self, exc: ToolCallError) -> NoReturn:
        """No request to answer, so nothing to tell the model: the handler is only notified, and
        the error is raised unless the handler raised one of its own."""
        handler = self._callbacks.handle_invalid_tool_request
        if handler is not None:
            handler(exc, None)
        raise exc

    def _add_message(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        self._notify(self._callbacks.on_message, dict(message))

    @staticmethod
    def _notify(callback: Callable[[Any], Any] | None, value: Any) -> None:
        if callback is not None:
            callback(value)


def _forces_a_call(choice: Any) -> bool:
    if choice in ("none", "auto"):
        return False
    if isinstance(choice, Mapping) and choice.get("type") == "allowed_tools":
        return bool(choice.get("allowed_tools", {}).get("mode") == "required")
    return True


def _assistant_message(content: str | None, requests: list[ToolCallRequest]) -> dict[str, Any]:
    if not requests:
        return {"role": "assistant", "content": content or ""}
    calls = [
        {"id": r.id, "type": "function", "function": {"name": r.name, "arguments": r.arguments_json}} for r in requests
    ]
    return {"role": "assistant", "content": content, "tool_calls": calls}


def _as_text(value: Any) -> str:
    """A tool's result as the model reads it: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return to_json(value, fallback=str).decode()
