"""Formats whose calls are a JSON list (or object) after a marker, differing only in markers and
key names: Granite 3.x, Phi-4-mini (and FireFunction v2's `functools[...]`), Command R7B and R+,
Nemotron Nano v2, Apriel, and xLAM (no marker at all)."""

from __future__ import annotations

from typing import Any

import orjson

from .base import (
    TemplateInput,
    TemplateTraits,
    ToolFormat,
    arguments_object,
    with_descriptions,
)
from .conversation import Conversation, ToolCall, ToolSpec
from .syntax import CallSyntax


def _with_inner_types(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        return tool
    filled = {name: _inner_types(schema) for name, schema in properties.items()}
    return {**tool, "function": {**function, "parameters": {**parameters, "properties": filled}}}


_PYTHON_TYPES = ("string", "number", "integer", "boolean", "array", "object")


def _inner_types(schema: Any) -> Any:
    """A schema as the template can print it: objects say what they hold, lists their items (`{}`:
    anything), and a type it has no name for is left out (it would spell `null` letter by letter,
    recursing without end)."""
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind is not None and kind not in _PYTHON_TYPES:
        known = [k for k in kind if k in _PYTHON_TYPES] if isinstance(kind, list) else []
        schema = {key: value for key, value in schema.items() if key != "type"}
        if known:
            schema["type"] = known[0] if len(known) == 1 else known
    if schema.get("type") == "object":
        return {**schema, "additionalProperties": _inner_types(schema.get("additionalProperties", {}))}
    if schema.get("type") == "array":
        return {**schema, "items": _inner_types(schema.get("items", {}))}
    return schema


def _listing(tools: tuple[ToolSpec, ...]) -> str:
    return orjson.dumps([tool.as_openai()["function"] for tool in tools]).decode()


class GraniteFormat(ToolFormat):
    """Granite 3.x: `<|tool_call|>[{"name": ..., "arguments": {...}}]`; from 3.1 also the plain string
    `<tool_call>` before the list. Granite 3.3 thinking: `<think>...</think><response>...</response>`."""

    name = "granite"
    syntax = CallSyntax(
        open_markers=("<|tool_call|>", "<tool_call>"),
        reasoning=("<think>", "</think>"),
        drop_markers=("<response>", "</response>"),
    )

    def write_call(self, call: ToolCall) -> str:
        return self.block(orjson.dumps([{"name": call.name, "arguments": arguments_object(call.arguments)}]).decode())

    def write_result(self, name: str, content: str) -> str:
        return content

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            "You are a helpful assistant with access to the following function calls. Your task is to produce "
            "a list of function calls necessary to generate response to the user utterance. Use the following "
            "function calls as required.\n<|tool_call|> then a JSON list of "
            '{"name": ..., "arguments": {...}} objects.\n' + _listing(tools)
        )


class Phi4MiniFormat(ToolFormat):
    """Phi-4-mini: `<|tool_call|>{...}<|/tool_call|>` (llama.cpp's template) or
    `functools[{...}]` (vLLM's template, and FireFunction v2)."""

    name = "phi4_mini"
    syntax = CallSyntax(open_markers=("<|tool_call|>", "functools"), close_marker="<|/tool_call|>")

    def write_call(self, call: ToolCall) -> str:
        body = {"name": call.name, "arguments": arguments_object(call.arguments)}
        return self.block(orjson.dumps(body).decode())

    def write_result(self, name: str, content: str) -> str:
        return f"<|tool_response|>{content}<|/tool_response|>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            "You have access to these tools. To call one, write "
            '<|tool_call|>{"name": ..., "arguments": {...}}<|/tool_call|>.\n'
            f"<|tool|>{_listing(tools)}<|/tool|>"
        )


class CommandR7bFormat(ToolFormat):
    """Command R7B: `<|START_ACTION|>[{"tool_call_id": "0", "tool_name": ..., "parameters": {...}}]<|END_ACTION|>`,
    with a plan in `<|START_THINKING|>...<|END_THINKING|>` and the answer in `<|START_RESPONSE|>...`."""

    name = "command_r7b"
    syntax = CallSyntax(
        open_markers=("<|START_ACTION|>",),
        close_marker="<|END_ACTION|>",
        name_keys=("tool_name", "name"),
        argument_keys=("parameters", "arguments"),
        reasoning=("<|START_THINKING|>", "<|END_THINKING|>"),
        drop_markers=("<|START_RESPONSE|>", "<|END_RESPONSE|>"),
    )

    def write_call(self, call: ToolCall) -> str:
        body = [{"tool_call_id": "0", "tool_name": call.name, "parameters": arguments_object(call.arguments)}]
        return self.block(orjson.dumps(body).decode())

    def write_result(self, name: str, content: str) -> str:
        return f"<|START_TOOL_RESULT|>{content}<|END_TOOL_RESULT|>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            "You can call these tools by writing <|START_ACTION|> then a JSON list of "
            '{"tool_call_id": "0", "tool_name": ..., "parameters": {...}} then <|END_ACTION|>.\n' + _listing(tools)
        )


class XlamFormat(ToolFormat):
    """xLAM-2: the whole answer is a JSON list of `{"name": ..., "arguments": {...}}` (or one such
    object), with no marker; only a call to an offered tool counts as a call."""

    name = "xlam"
    syntax = CallSyntax(open_markers=(), start_bodies=("[", "{"))
    # A forced call starts with its object: the parser takes one object as a one-call list.
    call_opening = ""

    def write_call(self, call: ToolCall) -> str:
        return orjson.dumps([{"name": call.name, "arguments": arguments_object(call.arguments)}]).decode()

    def write_result(self, name: str, content: str) -> str:
        return content

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        # Worded as xLAM's own template teaches it, for templates that cannot.
        listing = "\n\n".join(orjson.dumps(tool.as_openai(), option=orjson.OPT_INDENT_2).decode() for tool in tools)
        return (
            "You have access to a set of tools. When using tools, make calls in a single JSON array: \n\n"
            '[{"name": "tool_call_name", "arguments": {"arg1": "value1", "arg2": "value2"}}, ... '
            "(additional parallel tool calls as needed)]\n\nIf no tool is suitable, state that explicitly. "
            f"The available tools are:\n\n{listing}"
        )


class NemotronFormat(ToolFormat):
    """Nemotron Nano v2: `<TOOLCALL>[{"name": ..., "arguments": {...}}]</TOOLCALL>`, with `<think>`
    reasoning (the generation prompt opens it unless `/no_think`)."""

    name = "nemotron"
    syntax = CallSyntax(open_markers=("<TOOLCALL>",), close_marker="</TOOLCALL>", reasoning=("<think>", "</think>"))
    stop_strings = ("<TOOL_RESPONSE>",)

    def write_call(self, call: ToolCall) -> str:
        body = [{"name": call.name, "arguments": arguments_object(call.arguments)}]
        return self.block(orjson.dumps(body).decode())

    def write_result(self, name: str, content: str) -> str:
        return f"<TOOL_RESPONSE>[{content}]</TOOL_RESPONSE>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            f"You can use the following tools to assist the user if required:\n<AVAILABLE_TOOLS>{_listing(tools)}"
            "</AVAILABLE_TOOLS>\n\nIf you decide to call any tool(s), use the following format:\n"
            '<TOOLCALL>[{"name": "tool_name1", "arguments": "tool_args1"}, '
            '{"name": "tool_name2", "arguments": "tool_args2"}]</TOOLCALL>'
        )


class AprielFormat(ToolFormat):
    """Apriel 1.5/1.6 Thinker: `<tool_calls>[{"name": ..., "arguments": {...}}]</tool_calls>`. The
    generation prompt starts the reasoning ("Here are my reasoning steps:"); the answer follows
    `[BEGIN FINAL RESPONSE]`."""

    name = "apriel"
    syntax = CallSyntax(
        open_markers=("<tool_calls>",),
        close_marker="</tool_calls>",
        reasoning=("Here are my reasoning steps:", "[BEGIN FINAL RESPONSE]"),
    )
    stop_strings = ("<|begin_tool_result|>",)

    def write_call(self, call: ToolCall) -> str:
        body = [{"name": call.name, "arguments": arguments_object(call.arguments)}]
        return self.block(orjson.dumps(body).decode())

    def write_result(self, name: str, content: str) -> str:
        return content

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            "You are provided with function signatures within <available_tools></available_tools> XML tags.\n"
            f"<available_tools>\n{_listing(tools)}\n</available_tools>.\n\n"
            "Return all function calls as a list of JSON objects within <tool_calls></tool_calls> XML tags:\n"
            '<tool_calls>[{"name": <function-name-1>, "arguments": <args-dict-1>}, ...]</tool_calls>'
        )


class CommandRPlusFormat(ToolFormat):
    """Command R+ (tool use): `Action: ```json\\n[{"tool_name": ..., "parameters": {...}}]\\n```` (the
    model may put the fence on the next line)."""

    name = "command_r_plus"
    syntax = CallSyntax(
        # No marker may be the start of another: a split between them would pick the shorter one.
        open_markers=("Action: ```json", "Action:\n```json", "Action:```json"),
        close_marker="```",
        name_keys=("tool_name", "name"),
        argument_keys=("parameters", "arguments"),
    )
    call_opening = "Action:\n```json\n"

    def template_input(self, conversation: Conversation, traits: TemplateTraits) -> TemplateInput:
        # The template prints every parameter's description, and the type inside an object or a list,
        # and fails where there is none.
        data = with_descriptions(super().template_input(conversation, traits))
        return TemplateInput(data.messages, [_with_inner_types(tool) for tool in data.tools] if data.tools else data.tools)

    def write_call(self, call: ToolCall) -> str:
        body = [{"tool_name": call.name, "parameters": arguments_object(call.arguments)}]
        return f"{self.opening()}{orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()}\n{self.syntax.close_marker}"

    def write_result(self, name: str, content: str) -> str:
        return f"<results>\n{content}</results>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        return (
            f"## Available Tools\nHere is a list of tools that you have available to you:\n\n{_listing(tools)}\n\n"
            "Write 'Action:' followed by a json-formatted list of actions that you want to perform, for example:\n"
            '```json\n[\n    {\n        "tool_name": title of the tool in the specification,\n'
            '        "parameters": a dict of parameters to input into the tool as they are defined in the specs\n    }\n]```'
        )
