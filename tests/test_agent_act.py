"""`toolwire.agent.act()` through the real `openai` SDK against the gateway as a real HTTP server,
in front of a fake llama-server playing a Qwen2.5 model that writes hermes tool calls.

The fake's replies are scripted, and the replies after a tool ran are worked out from the prompt
(as a model reads its context): a final answer repeats the tool results the prompt holds, so every
answer asserted below went from the tool, through the gateway and the chat template, and back.
The first tests are the examples of LM Studio's `act()` documentation (the seed document), with
the tools' code as it is there; only the import and the client differ.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionChunk
from pydantic import Field

from tests.fakes.llamacpp import FakeLlamaServer
from toolwire.agent import (
    Chat,
    Fragment,
    InvalidToolArguments,
    JsonSchemaTool,
    MalformedToolCall,
    ToolCallError,
    ToolCallRequest,
    ToolFunctionDef,
    ToolRaisedError,
    UnknownToolError,
    act,
)
from toolwire.agent.loop import ActLoop, Callbacks
from toolwire.agent.tools import build_tools

MODEL = "qwen2.5-7b-instruct"  # the hermes route of tests/conftest.py


# ---- the "model" ---------------------------------------------------------------------------------


def calls(*items: tuple[str, str]) -> str:
    """A reply that calls tools: (name, arguments JSON) each, in hermes format."""
    return "\n".join(f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>' for name, arguments in items)


def latest_tool_results(prompt: str) -> list[str]:
    """The tool results the prompt holds after the assistant's last calls."""
    start = prompt.rfind("</tool_call>")
    return re.findall(r"<tool_response>\n(.*?)\n</tool_response>", prompt[start:], re.DOTALL)


def answer(template: str) -> Callable[[str], str]:
    """A reply read from the prompt: `template` with {results} = the latest tool results."""
    return lambda prompt: template.format(results=" | ".join(latest_tool_results(prompt)))


@pytest.fixture
def sync_client(gateway_url: str) -> OpenAI:
    return OpenAI(base_url=gateway_url, api_key="test-key", max_retries=0, timeout=30)


@pytest.fixture
async def async_client(gateway_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=gateway_url, api_key="test-key", max_retries=0, timeout=30) as client:
        yield client


def in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking `act()` runs in a worker thread: the gateway serves from this test's event loop."""
    return asyncio.to_thread(func, *args, **kwargs)


# ---- the seed's examples -------------------------------------------------------------------------


# Type hinted functions with clear names and docstrings
# may be used directly as tool definitions
def add(a: int, b: int) -> int:
    """Given two numbers a and b, returns the sum of them."""
    # The SDK ensures arguments are coerced to their specified types
    return a + b


def create_file(name: str, content: str):  # type: ignore[no-untyped-def]
    """Create a file with the given name and content."""
    dest_path = Path(name)
    if dest_path.exists():
        return "Error: File already exists."
    try:
        dest_path.write_text(content, encoding="utf-8")
    except Exception as exc:  # noqa: BLE001, F841 - the seed's code, as it is
        return "Error: {exc!r}"
    return "File created."


def divide(numerator: float, denominator: float) -> float:
    """Divide the given numerator by the given denominator. Return the result."""
    return numerator / denominator


async def test_seed_add(sync_client: OpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(calls(("add", '{"a": 12, "b": 30}')), answer("The sum is {results}."))
    result = await in_thread(act, sync_client, MODEL, "What is 12 plus 30?", [add])
    assert result.content == "The sum is 42."
    assert [r.round_index for r in result.rounds] == [0, 1]
    assert result.total_time_seconds > 0
    (call,) = result.rounds[0].tool_calls
    assert (call.request.name, call.request.arguments, call.content, call.is_error) == ("add", {"a": 12, "b": 30}, "42", False)
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[1]["tool_calls"][0]["id"] == result.messages[2]["tool_call_id"] == call.request.id
    tools_block = '{"type": "function", "function": {"name": "add", "description": "Given two numbers a and b, returns the sum of them.", '
    assert tools_block in fake_llama.prompts[0], "name and docstring reach the model"
    assert '"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]' in fake_llama.prompts[0]


async def test_seed_create_file(
    sync_client: OpenAI, fake_llama: FakeLlamaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prompt = "Please create a file named output.txt with your understanding of the meaning of life."
    write = calls(("create_file", '{"name": "output.txt", "content": "To understand, and be kind."}'))
    fake_llama.script(write, answer("I tried: {results}"), write, answer("I tried: {results}"))
    first = await in_thread(act, sync_client, MODEL, prompt, [create_file])
    assert (tmp_path / "output.txt").read_text(encoding="utf-8") == "To understand, and be kind."
    assert first.content == "I tried: File created."
    second = await in_thread(act, sync_client, MODEL, prompt, [create_file])
    assert second.content == "I tried: Error: File already exists."


async def test_seed_divide_by_zero_is_reported_to_the_model(sync_client: OpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(calls(("divide", '{"numerator": 1, "denominator": 0}')), answer("The tool failed: {results}"))
    result = await in_thread(
        act, sync_client, MODEL, "Attempt to divide 1 by 0 using the tool. Explain the result.", [divide]
    )
    (call,) = result.rounds[0].tool_calls
    assert call.is_error
    assert call.content == "Error: tool 'divide' raised ZeroDivisionError('float division by zero')."
    assert result.content == f"The tool failed: {call.content}"
    assert call.content in fake_llama.prompts[1]


async def test_seed_divide_with_the_callback_that_raises(sync_client: OpenAI, fake_llama: FakeLlamaServer) -> None:
    fake_llama.script(calls(("divide", '{"numerator": 1, "denominator": 0}')), "never asked for")
    chat = Chat()
    chat.add_user_message("Attempt to divide 1 by 0 using the tool. Explain the result.")

    def _raise_exc_in_client(exc: ToolCallError, request: ToolCallRequest | None) -> None:
        raise exc

    with pytest.raises(ToolRaisedError) as raised:
        await in_thread(act, sync_client, MODEL, chat, [divide], handle_invalid_tool_request=_raise_exc_in_client)
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    assert len(fake_llama.requests) == 1, "act() stopped at the error"
    assert chat.messages == [{"role": "user", "content": "Attempt to divide 1 by 0 using the tool. Explain the result."}]


# ---- tools ---------------------------------------------------------------------------------------


async def test_arguments_are_coerced_to_the_type_hints(async_client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    seen: list[tuple[Any, Any]] = []

    def add_numbers(a: int, b: int) -> int:
        """Add two integers."""
        seen.append((a, b))
        return a + b

    fake_llama.script(calls(("add_numbers", '{"a": "2", "b": "3"}')), answer("{results}"))
    result = await act(async_client, MODEL, "2 + 3?", [add_numbers])
    assert seen == [(2, 3)] and result.content == "5"


async def test_explicit_and_json_schema_definitions(async_client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    def cryptic_name(a, b):  # type: ignore[no-untyped-def]
        return a + b

    explicit = ToolFunctionDef(
        name="add",
        description="Given two numbers a and b, returns the sum of them.",
        parameters={"a": int, "b": int},
        implementation=cryptic_name,
    )
    delivery = {  # the seed's OpenAI tool object, as is
        "type": "function",
        "function": {
            "name": "get_delivery_date",
            "description": "Get the delivery date for a customer's order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        },
    }
    raw = JsonSchemaTool.from_openai(delivery, lambda order_id: {"order_id": order_id, "date": "2024-03-15"})
    fake_llama.script(
        calls(("add", '{"a": "1", "b": 2}'), ("get_delivery_date", '{"order_id": "123"}')), answer("{results}")
    )
    result = await act(async_client, MODEL, "Add 1 and 2; when does order 123 arrive?", [explicit, raw])
    assert [c.content for c in result.rounds[0].tool_calls] == ["3", '{"order_id":"123","date":"2024-03-15"}']
    assert json.dumps(delivery) in fake_llama.prompts[0], "a JSON-schema tool is sent as given"
    assert '"name": "add", "description": "Given two numbers a and b, returns the sum of them."' in fake_llama.prompts[0]


def test_schema_from_type_hints() -> None:
    def search(query: Annotated[str, Field(description="What to look for")], limit: int = 10, *, exact: bool = False) -> list[str]:
        """Search the catalog."""
        return []

    (tool,) = build_tools([search]).values()
    assert tool.openai_tool() == {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the catalog.",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "query": {"type": "string", "description": "What to look for"},
                    "limit": {"type": "integer", "default": 10},
                    "exact": {"type": "boolean", "default": False},
                },
                "required": ["query"],
            },
        },
    }
    assert tool.arguments({"query": "x"}) == {"query": "x"}, "defaults are the function's own"
    assert tool.arguments({"query": "x", "limit": "3", "exact": "true"}) == {"query": "x", "limit": 3, "exact": True}
    with pytest.raises(ValueError, match="two tools are named 'search'"):
        build_tools([search, search])


async def test_bad_calls_are_reported_and_the_handler_may_reword_them(
    async_client: AsyncOpenAI, fake_llama: FakeLlamaServer
) -> None:
    bad = calls(("add", '{"a": "two", "b": 1}'), ("multiply", '{"a": 2, "b": 3}'))
    fake_llama.script(bad, answer("{results}"), bad, answer("{results}"))
    result = await act(async_client, MODEL, "Add two and one, then multiply 2 by 3.", [add])
    texts = [c.content for c in result.rounds[0].tool_calls]
    assert texts == [
        (
            "Error: the arguments for tool 'add' do not fit its parameters: a: Input should be a valid integer, "
            "unable to parse string as an integer."
        ),
        "Error: there is no tool named 'multiply'. Available tools: add.",
    ]
    assert result.content == " | ".join(texts), "the model was told"

    handled: list[tuple[type, str | None]] = []

    def reword(exc: ToolCallError, request: ToolCallRequest | None) -> str | None:
        handled.append((type(exc), request.name if request else None))
        return "Only add exists." if isinstance(exc, UnknownToolError) else None

    result = await act(async_client, MODEL, "Again.", [add], handle_invalid_tool_request=reword)
    assert handled == [(InvalidToolArguments, "add"), (UnknownToolError, "multiply")]
    assert [c.content for c in result.rounds[0].tool_calls] == [texts[0], "Only add exists."]


@pytest.mark.parametrize(
    "mode", ["sync client, sync tools", "sync client, async tools", "async client, sync tools", "async client, async tools"]
)
async def test_parallel_calls_run_concurrently(
    mode: str, gateway_url: str, fake_llama: FakeLlamaServer
) -> None:
    # Each call waits until both have started: run one after the other, the first would time out.
    thread_barrier = threading.Barrier(2, timeout=20)

    def meet_sync(who: str) -> str:
        """Wait for the other caller."""
        thread_barrier.wait()
        return f"{who} met"

    async def meet_async(who: str) -> str:
        """Wait for the other caller."""
        async with asyncio.timeout(20):
            await task_barrier.wait()
        return f"{who} met"

    async def meet_async_in_own_loop(who: str) -> str:
        """Wait for the other caller (each runs in an event loop of its own thread)."""
        await asyncio.to_thread(thread_barrier.wait)
        return f"{who} met"

    fake_llama.script(calls(("meet", '{"who": "ann"}'), ("meet", '{"who": "bob"}')), answer("{results}"))
    if mode == "async client, async tools":
        task_barrier = asyncio.Barrier(2)
        tool = ToolFunctionDef.from_callable(meet_async, name="meet")
    elif mode == "sync client, async tools":
        tool = ToolFunctionDef.from_callable(meet_async_in_own_loop, name="meet")
    else:
        tool = ToolFunctionDef.from_callable(meet_sync, name="meet")
    if mode.startswith("sync"):
        result = await in_thread(act, OpenAI(base_url=gateway_url, api_key="k", max_retries=0), MODEL, "Meet.", [tool])
    else:
        async with AsyncOpenAI(base_url=gateway_url, api_key="k", max_retries=0) as client:
            result = await act(client, MODEL, "Meet.", [tool])
    assert [(c.content, c.is_error) for c in result.rounds[0].tool_calls] == [("ann met", False), ("bob met", False)]
    assert result.content == "ann met | bob met"


# ---- the loop ------------------------------------------------------------------------------------


async def test_callbacks_come_in_order(async_client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    # Tokens come apart in time, as from a real model: the gateway forwards what each read brings.
    fake_llama.token_delay = 0.002
    fake_llama.script(
        "<think>Use the tool.</think>" + calls(("add", '{"a": 2, "b": 2}')),
        answer("<think>It said {results}.</think>Two and two make {results}."),
    )
    events: list[tuple[str, Any]] = []
    fragments: list[Fragment] = []
    chat = Chat("You add numbers.")
    chat.add_user_message("2 + 2?")

    def on_message(message: dict[str, Any]) -> None:
        events.append(("message", message["role"]))
        chat.append(message)

    def on_fragment(fragment: Fragment) -> None:
        if not events or events[-1] != ("fragment", fragment.round_index):
            events.append(("fragment", fragment.round_index))
        fragments.append(fragment)

    result = await act(
        async_client, MODEL, chat, [add],
        on_message=on_message,
        on_round_start=lambda i: events.append(("start", i)),
        on_round_end=lambda i: events.append(("end", i)),
        on_fragment=on_fragment,
    )
    assert events == [
        ("start", 0), ("fragment", 0), ("message", "assistant"), ("message", "tool"), ("end", 0),
        ("start", 1), ("fragment", 1), ("message", "assistant"), ("end", 1),
    ]
    assert chat.messages == result.messages and len(chat) == 5
    reasoning = ["".join(f.content for f in fragments if f.round_index == i and f.reasoning) for i in (0, 1)]
    assert reasoning == ["Use the tool.", "It said 4."]
    assert [r.reasoning for r in result.rounds] == reasoning
    final = [f.content for f in fragments if f.round_index == 1 and not f.reasoning]
    assert len(final) > 1, "the answer streamed in pieces"
    assert "".join(final) == result.content == "Two and two make 4."


async def test_max_rounds_takes_the_tools_away_in_the_last_round(
    async_client: AsyncOpenAI, fake_llama: FakeLlamaServer
) -> None:
    fake_llama.script(calls(("add", '{"a": 1, "b": 1}')), answer("It is {results}."))
    result = await act(async_client, MODEL, "1 + 1?", [add], max_rounds=2)
    assert len(result.rounds) == 2 and result.content == "It is 2."
    assert "# Tools" in fake_llama.prompts[0]
    assert "# Tools" not in fake_llama.prompts[1], "tool_choice none in the last round"

    fake_llama.script(calls(("add", '{"a": 1, "b": 1}')), "not asked for")
    result = await act(async_client, MODEL, "1 + 1?", [add], max_rounds=1, tool_choice="required")
    assert len(result.rounds) == 1 and len(fake_llama.requests) == 3
    assert result.messages[-1] == {"role": "tool", "tool_call_id": result.rounds[0].tool_calls[0].request.id, "content": "2"}
    with pytest.raises(ValueError, match="max_rounds"):
        await act(async_client, MODEL, "x", [add], max_rounds=0)


async def test_a_forced_call_holds_for_the_first_round_only(async_client: AsyncOpenAI, fake_llama: FakeLlamaServer) -> None:
    # With a named tool_choice the gateway prefills the call's opening; the model goes on from there.
    fake_llama.script('{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call>', answer("{results}"))
    result = await act(
        async_client, MODEL, "3 + 4?", [add], tool_choice={"type": "function", "function": {"name": "add"}}, temperature=0
    )
    assert result.content == "7"
    assert fake_llama.prompts[0].endswith("<|im_start|>assistant\n<tool_call>\n"), "prefilled: a forced call"
    assert "json_schema" in fake_llama.requests[0]
    assert fake_llama.prompts[1].endswith("<|im_start|>assistant\n"), "the model chose freely in round 1"
    assert "json_schema" not in fake_llama.requests[1]
    assert all(r["temperature"] == 0 for r in fake_llama.requests), "other params go to every request"
    with pytest.raises(TypeError, match="act\\(\\) sets stream itself"):
        await act(async_client, MODEL, "x", [add], stream=False)


def chunk(**delta: Any) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({
        "id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    })


@pytest.mark.parametrize("handler", ["none", "returns text", "raises"])
def test_a_call_without_a_name_is_a_notification(handler: str) -> None:
    """A server slip no request can be made of: the handler is told, and act() cannot go on."""
    told: list[ToolCallRequest | None] = []

    def handle(exc: ToolCallError, request: ToolCallRequest | None) -> str:
        told.append(request)
        if handler == "raises":
            raise RuntimeError("stop here") from exc
        return "ignored"

    loop = ActLoop(
        MODEL, [{"role": "user", "content": "hi"}], build_tools([add]), max_rounds=None,
        callbacks=Callbacks(handle_invalid_tool_request=None if handler == "none" else handle), params={},
    )
    assert loop.next_request() is not None
    loop.feed(chunk(tool_calls=[{"index": 0, "id": "call_1", "type": "function", "function": {"arguments": "{}"}}]))
    expected = RuntimeError if handler == "raises" else MalformedToolCall
    with pytest.raises(expected):
        loop.end_reply()
    assert told == ([] if handler == "none" else [None])


def test_the_package_needs_no_gateway() -> None:
    code = (
        "import sys, toolwire.agent\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('gateway', 'adapters')], 'gateway imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
