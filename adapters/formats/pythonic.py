"""Pythonic calls (Llama 3.2, Llama 4, Gemma 3 with vLLM's pythonic templates): the whole answer is
a Python list of calls, `[get_weather(city="Paris"), get_time()]`, possibly after whitespace; Llama 4
may wrap it in `<|python_start|>...<|python_end|>`.

All three templates render tools, calls (from object arguments) and results themselves; the writers
here serve templates that cannot.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from .base import ToolFormat, arguments_dict
from .conversation import ToolCall, ToolSpec
from .pythonic_calls import pythonic_scanner
from .syntax import CallSyntax


class PythonicFormat(ToolFormat):
    name = "pythonic"
    syntax = CallSyntax(
        open_markers=("<|python_start|>",),
        close_marker="<|python_end|>",
        # A list at the very start of the answer is a call list; anywhere else it is text.
        start_bodies=("[",),
        scanner=pythonic_scanner,
    )
    # The bare list is the usual form: a forced call starts with its bracket.
    call_opening = "["

    def prefill(self, tool_name: str | None) -> str:
        return self.opening() + (f"{tool_name}(" if tool_name else "")

    def write_call(self, call: ToolCall) -> str:
        return f"[{_python_call(call)}]"

    def write_calls(self, calls: tuple[ToolCall, ...]) -> str:
        # One list holds the turn's calls.
        return f"[{', '.join(_python_call(call) for call in calls)}]"

    def write_result(self, name: str, content: str) -> str:
        return f"<tool_response>\n{content}\n</tool_response>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = orjson.dumps([tool.as_openai() for tool in tools], option=orjson.OPT_INDENT_2).decode()
        return (
            "You can call functions. To call them, reply with only a Python list of the calls and "
            "nothing else:\n"
            "[func_name1(param1=value1, param2=value2), func_name2()]\n"
            "Use keyword arguments with Python literals (quoted strings, numbers, True, False, None, "
            "lists, dicts). Do not use variables. If no function fits, answer normally.\n\n"
            f"Functions you can call:\n{listing}"
        )


def _python_call(call: ToolCall) -> str:
    pairs = arguments_dict(call.arguments).items()
    return f"{call.name}({', '.join(f'{key}={_literal(value)}' for key, value in pairs)})"


def _literal(value: Any) -> str:
    """A JSON value as Python source (JSON strings are valid Python strings)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


class Lfm2Format(PythonicFormat):
    """LFM2 / LFM2.5: the pythonic list between `<|tool_call_start|>` and `<|tool_call_end|>`, with
    LFM2.5's `<think>` reasoning. Some LFM templates list tools but draw no past calls: those are
    written as the model writes them."""

    name = "lfm2"
    syntax = CallSyntax(
        open_markers=("<|tool_call_start|>",),
        close_marker="<|tool_call_end|>",
        scanner=pythonic_scanner,
        reasoning=("<think>", "</think>"),
    )
    stop_strings = ("<|tool_response_start|>",)
    call_opening = "<|tool_call_start|>["

    def write_call(self, call: ToolCall) -> str:
        return f"<|tool_call_start|>{super().write_call(call)}<|tool_call_end|>"

    def write_calls(self, calls: tuple[ToolCall, ...]) -> str:
        return f"<|tool_call_start|>{super().write_calls(calls)}<|tool_call_end|>"

    def write_result(self, name: str, content: str) -> str:
        return f"<|tool_response_start|>{content}<|tool_response_end|>"

    def describe_tools(self, tools: tuple[ToolSpec, ...]) -> str:
        listing = ", ".join(orjson.dumps(tool.as_openai()).decode() for tool in tools)
        return (
            f"List of tools: <|tool_list_start|>[{listing}]<|tool_list_end|>\n"
            'To call tools, write <|tool_call_start|>[name(arg="value", n=1)]<|tool_call_end|>.'
        )
