"""Gemma 4 and FunctionGemma: Gemma's call literal, one block per call, calls back to back.

    Gemma 4        <|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:3}<tool_call|>
    FunctionGemma  <start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>

Gemma 4 reasons in `<|channel>thought\\n...<channel|>`; its generation prompt closes an empty thought
unless thinking is on. After its calls the model writes `<|tool_response>` and stops: results come
back inside the model's turn, which the template draws from role `tool` messages itself.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import orjson

from .base import ToolFormat, arguments_object
from .conversation import ToolCall, ToolSpec
from .literal_calls import LiteralSyntax
from .syntax import CallSyntax

GEMMA4_QUOTE = '<|"|>'
GEMMA4_LITERAL = LiteralSyntax(quote=GEMMA4_QUOTE)
_FUNCTIONGEMMA = LiteralSyntax(quote="<escape>")


def literal(value: Any, quote: str) -> str:
    """A JSON value as Gemma's literal (keys bare and sorted, as the templates write them)."""
    if isinstance(value, str):
        return f"{quote}{value}{quote}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{literal(item, quote)}" for key, item in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(literal(item, quote) for item in value) + "]"
    return json.dumps(value)


class Gemma4Format(ToolFormat):
    name = "gemma4"
    syntax = CallSyntax(
        open_markers=("<|tool_call>",),
        close_marker="<tool_call|>",
        scanner=GEMMA4_LITERAL.scanner,
        reasoning=("<|channel>thought", "<channel|>"),
    )
    # The model ends a call turn by opening the result itself.
    stop_strings = ("<|tool_response>",)
    # The template writes a string `arguments` inside the braces as it is: only objects come out right.
    object_arguments = True
    quote: ClassVar[str] = GEMMA4_QUOTE

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        # Tokens, not markers: the reasoning marker is the token `<|channel>` and the word `thought`.
        return ("<|tool_call>", "<tool_call|>", self.quote, "<|channel>", "<channel|>", "<|tool_response>", "<tool_response|>")

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f"call:{tool_name}{{" if tool_name else "")

    def write_call(self, call: ToolCall) -> str:
        arguments = arguments_object(call.arguments)
        pairs = arguments.items() if isinstance(arguments, dict) else ()
        body = ",".join(f"{key}:{literal(value, self.quote)}" for key, value in sorted(pairs))
        return f"{self.syntax.open_markers[0]}call:{call.name}{{{body}}}{self.syntax.close_marker}"

    def write_result(self, name: str, content: str) -> str:
        return f"<|tool_response>response:{name}{{value:{self.quote}{content}{self.quote}}}<tool_response|>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = "\n".join(orjson.dumps(tool.as_openai()["function"]).decode() for tool in tools)
        return (
            f"You can call these functions:\n{listing}\n\n"
            f"To call one, write {self.syntax.open_markers[0]}call:NAME{{key:value,...}}{self.syntax.close_marker} "
            f"with keys bare and strings between {self.quote} tokens, e.g. "
            f"{self.syntax.open_markers[0]}call:get_weather{{city:{self.quote}Paris{self.quote},days:3}}"
            f"{self.syntax.close_marker}. Write one block per call."
        )


class FunctionGemmaFormat(Gemma4Format):
    name = "functiongemma"
    syntax = CallSyntax(
        open_markers=("<start_function_call>",), close_marker="<end_function_call>", scanner=_FUNCTIONGEMMA.scanner
    )
    stop_strings = ("<start_function_response>",)
    quote = "<escape>"

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        return (*self.syntax.markers, self.quote, "<start_function_response>", "<end_function_response>")

    def write_result(self, name: str, content: str) -> str:
        return f"Function result for {name}: {content}"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        # Google's trigger text for FunctionGemma, with the tools as its template lists them.
        listing = "\n\n".join(
            f"Function: {tool.name}\nDescription: {tool.description or 'No description provided'}\n"
            f"Parameters: {json.dumps(tool.parameters)}"
            for tool in tools
        )
        return f"You are a model that can do function calling with the following functions\n\n{listing}"
