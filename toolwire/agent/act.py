"""`act()`: ask the model, run the tools it calls, give it their results, and repeat until it
answers without calling one. The rules live in `loop.ActLoop`; this module only does the I/O,
once with a blocking `OpenAI` client and threads, once with `AsyncOpenAI` and tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, overload

from openai import AsyncOpenAI, OpenAI

from .chat import ChatOrPrompt, starting_messages
from .loop import ActLoop, Callbacks, InvalidRequestHandler, Outcome, PendingCall
from .results import ActResult, Fragment
from .tools import ToolDefinition, build_tools


@overload
def act(
    client: AsyncOpenAI,
    model: str,
    chat_or_prompt: ChatOrPrompt,
    tools: Iterable[ToolDefinition] = (),
    *,
    max_rounds: int | None = None,
    on_message: Callable[[dict[str, Any]], Any] | None = None,
    on_round_start: Callable[[int], Any] | None = None,
    on_round_end: Callable[[int], Any] | None = None,
    on_fragment: Callable[[Fragment], Any] | None = None,
    handle_invalid_tool_request: InvalidRequestHandler | None = None,
    **params: Any,
) -> Coroutine[Any, Any, ActResult]: ...


@overload
def act(
    client: OpenAI,
    model: str,
    chat_or_prompt: ChatOrPrompt,
    tools: Iterable[ToolDefinition] = (),
    *,
    max_rounds: int | None = None,
    on_message: Callable[[dict[str, Any]], Any] | None = None,
    on_round_start: Callable[[int], Any] | None = None,
    on_round_end: Callable[[int], Any] | None = None,
    on_fragment: Callable[[Fragment], Any] | None = None,
    handle_invalid_tool_request: InvalidRequestHandler | None = None,
    **params: Any,
) -> ActResult: ...


def act(
    client: OpenAI | AsyncOpenAI,
    model: str,
    chat_or_prompt: ChatOrPrompt,
    tools: Iterable[ToolDefinition] = (),
    *,
    max_rounds: int | None = None,
    on_message: Callable[[dict[str, Any]], Any] | None = None,
    on_round_start: Callable[[int], Any] | None = None,
    on_round_end: Callable[[int], Any] | None = None,
    on_fragment: Callable[[Fragment], Any] | None = None,
    handle_invalid_tool_request: InvalidRequestHandler | None = None,
    **params: Any,
) -> ActResult | Coroutine[Any, Any, ActResult]:
    """Run rounds until the model answers without calling a tool, or for `max_rounds` rounds.

    Each round streams one chat completion (`on_fragment` gets text and reasoning as generated)
    and runs the calls it asks for, several at once when it asks for several. `params` go to
    `chat.completions.create` (temperature, tool_choice, ...). With `AsyncOpenAI` this returns a
    coroutine: `await act(...)`.
    """
    if not isinstance(client, OpenAI | AsyncOpenAI):
        raise TypeError(f"act() needs an openai.OpenAI or openai.AsyncOpenAI client, not {type(client).__name__}")
    callbacks = Callbacks(on_message, on_round_start, on_round_end, on_fragment, handle_invalid_tool_request)
    loop = ActLoop(
        model,
        starting_messages(chat_or_prompt),
        build_tools(tools),
        max_rounds=max_rounds,
        callbacks=callbacks,
        params=params,
    )
    if isinstance(client, AsyncOpenAI):
        return _run_async(client, loop)
    return _run_blocking(client, loop)


def _run_blocking(client: OpenAI, loop: ActLoop) -> ActResult:
    while (request := loop.next_request()) is not None:
        with client.chat.completions.create(stream=True, **request) as stream:
            for chunk in stream:
                loop.feed(chunk)
        loop.finish_round(_outcomes_blocking(loop.end_reply()))
    return loop.result()


async def _run_async(client: AsyncOpenAI, loop: ActLoop) -> ActResult:
    while (request := loop.next_request()) is not None:
        async with await client.chat.completions.create(stream=True, **request) as stream:
            async for chunk in stream:
                loop.feed(chunk)
        calls = loop.end_reply()
        loop.finish_round(list(await asyncio.gather(*(_outcome(call) for call in calls))))
    return loop.result()


def _outcomes_blocking(calls: list[PendingCall]) -> list[Outcome]:
    # One sync call runs right here; an async one gets a thread (and an event loop) of its own,
    # so it also works when this thread already runs a loop.
    if len(calls) == 0 or (len(calls) == 1 and not calls[0].tool.is_async):
        return [_outcome_blocking(call) for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="toolwire-tool") as pool:
        return list(pool.map(_outcome_blocking, calls))


def _outcome_blocking(call: PendingCall) -> Outcome:
    try:
        return Outcome(value=call.tool.call_blocking(call.kwargs))
    except Exception as exc:  # noqa: BLE001 - the model is told; the handler may decide otherwise
        return Outcome(error=exc)


async def _outcome(call: PendingCall) -> Outcome:
    try:
        return Outcome(value=await call.tool.call(call.kwargs))
    except Exception as exc:  # noqa: BLE001 - the model is told; the handler may decide otherwise
        return Outcome(error=exc)
