"""What a tool format is: a small description on top of the shared parser.

A format says how a call looks in the model's output (`syntax`), how earlier calls and their
results are written back into the history, and how tools are described to a model whose chat
template cannot do it. Everything else (parsing, streaming, encoding) is shared.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson

from .conversation import Conversation, Message, ToolCall, ToolSpec
from .engine import StreamParser
from .syntax import CallSyntax

_ID_ALPHABET = string.ascii_letters + string.digits


def random_id(length: int) -> str:
    # One read of the system's randomness instead of one per character; the modulo bias over
    # 62 letters is irrelevant for ids that only need to be unique.
    return "".join(_ID_ALPHABET[byte % len(_ID_ALPHABET)] for byte in secrets.token_bytes(length))


class TemplateTraits(Protocol):
    """What a format needs to know about the chat template it writes into."""

    @property
    def supports_system_role(self) -> bool: ...
    @property
    def supports_tools(self) -> bool: ...
    @property
    def supports_tool_calls(self) -> bool: ...
    @property
    def supports_tool_role(self) -> bool: ...
    @property
    def requires_object_arguments(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class TemplateInput:
    """The messages and tools exactly as the chat template will see them."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None


class ToolFormat:
    """Base of every format. Subclasses set `name` and `syntax` and override the writers."""

    name: ClassVar[str]
    syntax: ClassVar[CallSyntax]
    # Whether the model's own template is meant to describe tools, calls and results.
    native: ClassVar[bool] = True
    # Text the model must never write itself (a hallucinated tool result): stop there.
    stop_strings: ClassVar[tuple[str, ...]] = ()
    # How a call opens, exactly as the model writes it (marker and the whitespace after it), for
    # prefilling a forced call. None: the first open marker.
    call_opening: ClassVar[str | None] = None
    # Past calls go to the template with object arguments even where a JSON string would render
    # (Gemma 4's template writes a string inside its braces as it is).
    object_arguments: ClassVar[bool] = False

    def new_call_id(self) -> str:
        return "call_" + random_id(24)

    def new_parser(
        self, prompt: str = "", *, parse_calls: bool = True, tools: tuple[ToolSpec, ...] = (), repairing: bool = False
    ) -> StreamParser:
        """A parser for one reply; a prompt that ends inside reasoning (a forced-open `<think>`)
        starts it in reasoning. `repairing`: broken calls will be repaired, not shown as text."""
        reasoning = self.syntax.reasoning
        starts_in_reasoning = bool(reasoning) and prompt.rstrip().endswith(reasoning[0])  # type: ignore[index]
        return StreamParser(
            self.syntax,
            self.new_call_id,
            starts_in_reasoning=starts_in_reasoning,
            parse_calls=parse_calls,
            tools=tools,
            repairing=repairing,
        )

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        return self.syntax.markers

    # -- forcing a call (tool_choice required / named) ----------------------------------

    def opening(self) -> str:
        return self.call_opening if self.call_opening is not None else self.syntax.open_markers[0]

    def prefill(self, tool_name: str | None) -> str:
        """The start of the assistant turn that steers an unconstrained model into a call: the
        opening, and for a named tool the call's head up to its arguments."""
        if tool_name is None or not self.syntax.json_objects:
            return self.opening()
        # Spaced like the templates' own `tojson`, which is what the model saw in training.
        name = orjson.dumps(tool_name).decode()
        return f'{self.opening()}{{"{self.syntax.name_keys[0]}": {name}, "{self.syntax.argument_keys[0]}": '

    def call_schema(self, tools: tuple[ToolSpec, ...]) -> dict[str, Any] | None:
        """The JSON schema of one call object as this format writes it, for constrained decoding
        after the opening; None when the format's calls are not JSON objects."""
        if not self.syntax.json_objects or not tools:
            return None
        name_key, arguments_key = self.syntax.name_keys[0], self.syntax.argument_keys[0]
        variants = [
            {
                "type": "object",
                "properties": {
                    name_key: {"const": tool.name},
                    arguments_key: tool.parameters or {"type": "object"},
                },
                "required": [name_key, arguments_key],
                "additionalProperties": False,
            }
            for tool in tools
        ]
        return variants[0] if len(variants) == 1 else {"anyOf": variants}

    # -- writing the conversation for the template --------------------------------------

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        native_tools = self.native and traits.supports_tools
        native_calls = self.native and traits.supports_tool_calls
        native_results = self.native and traits.supports_tool_role
        names = _call_names(conversation.messages)
        messages: list[dict[str, Any]] = []
        for message in conversation.messages:
            if message.role == "assistant" and message.tool_calls:
                if native_calls:
                    messages.append(self._native_assistant(message, traits))
                else:
                    parts = [message.content] if message.content else []
                    parts.append(self.write_calls(message.tool_calls))
                    _append(messages, "assistant", "\n".join(parts))
                    _add_reasoning(messages[-1], message)
            elif message.role == "tool":
                name = message.name or names.get(message.tool_call_id or "", "")
                if native_results:
                    entry: dict[str, Any] = {"role": "tool", "content": message.content}
                    if message.tool_call_id:
                        entry["tool_call_id"] = message.tool_call_id
                    if name:
                        entry["name"] = name
                    messages.append(entry)
                else:
                    _append(messages, "user", self.write_result(name, message.content), merge=True)
            else:
                messages.append(_add_reasoning({"role": message.role, "content": message.content}, message))
        tools = [tool.as_openai() for tool in conversation.tools] if conversation.offers_tools else None
        if tools and not native_tools:
            _add_system_text(messages, self.describe_tools(conversation.tools))
            tools = None
        if not traits.supports_system_role:
            messages = _fold_system_into_user(messages)
        return TemplateInput(messages, tools)

    def _native_assistant(self, message: Message, traits: TemplateTraits) -> dict[str, Any]:
        calls = []
        for call in message.tool_calls:
            arguments: Any = call.arguments
            if traits.requires_object_arguments or self.object_arguments:
                arguments = arguments_object(call.arguments)
            calls.append(
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}
            )
        return _add_reasoning({"role": "assistant", "content": message.content, "tool_calls": calls}, message)

    # -- format-specific writers ----------------------------------------------------------

    def write_call(self, call: ToolCall) -> str:
        """A past call, as the model would have written it."""
        body = {"name": call.name, "arguments": arguments_object(call.arguments)}
        return self.block(orjson.dumps(body).decode())

    def block(self, body: str) -> str:
        """A call block around `body`: the format's first open marker and its close marker."""
        return f"{self.syntax.open_markers[0]}{body}{self.syntax.close_marker or ''}"

    def write_calls(self, calls: tuple[ToolCall, ...]) -> str:
        """The calls of one turn, as the model would have written them."""
        return "\n".join(self.write_call(call) for call in calls)

    def write_result(self, name: str, content: str) -> str:
        """A tool's result, as text inside a user turn."""
        raise NotImplementedError

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        """A system-prompt block that lists the tools and teaches the call syntax."""
        raise NotImplementedError


def _add_reasoning(entry: dict[str, Any], message: Message) -> dict[str, Any]:
    """`entry` with the turn's reasoning under the name most templates read (the renderer adds the others)."""
    if message.reasoning:
        entry["reasoning_content"] = message.reasoning
    return entry


def _call_names(messages: tuple[Message, ...]) -> dict[str, str]:
    return {call.id: call.name for message in messages for call in message.tool_calls}


def arguments_object(arguments: str) -> Any:
    """A call's JSON argument text as an object; text that is not JSON stays text."""
    try:
        return orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return arguments


def arguments_dict(arguments: str) -> dict[str, Any]:
    """A call's JSON argument text as a dict of arguments; anything else has none."""
    value = arguments_object(arguments)
    return value if isinstance(value, dict) else {}


def with_descriptions(data: TemplateInput) -> TemplateInput:
    """`data` with a description (empty if none) on every tool and parameter, for templates that
    print them unconditionally and fail on a missing one (Command R+, Functionary v3.1)."""
    if not data.tools:
        return data
    tools = []
    for tool in data.tools:
        function = {"description": "", **tool.get("function", {})}
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if isinstance(properties, dict):
            filled = {name: {"description": "", **p} if isinstance(p, dict) else p for name, p in properties.items()}
            function["parameters"] = {**parameters, "properties": filled}  # type: ignore[dict-item]
        tools.append({**tool, "function": function})
    return TemplateInput(data.messages, tools)


def _append(messages: list[dict[str, Any]], role: str, content: str, *, merge: bool = False) -> None:
    """Add a turn; with `merge`, join it to a directly preceding turn of the same role.

    Tool results become user turns, and templates that insist on alternating roles would
    reject two user turns in a row.
    """
    if merge and messages and messages[-1]["role"] == role and not messages[-1].get("tool_calls"):
        messages[-1] = {**messages[-1], "content": f"{messages[-1]['content']}\n\n{content}"}
        return
    messages.append({"role": role, "content": content})


def _add_system_text(messages: list[dict[str, Any]], text: str) -> None:
    if messages and messages[0]["role"] == "system":
        existing = messages[0]["content"]
        messages[0] = {**messages[0], "content": f"{existing}\n\n{text}" if existing else text}
    else:
        messages.insert(0, {"role": "system", "content": text})


def _fold_system_into_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates with no system role: put system text at the top of the first user turn."""
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"]]
    rest = [m for m in messages if m["role"] != "system"]
    if not system:
        return rest
    preface = "\n\n".join(system)
    for position, message in enumerate(rest):
        if message["role"] == "user":
            rest[position] = {**message, "content": f"{preface}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": preface}, *rest]
