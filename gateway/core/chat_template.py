"""Render Hugging Face Jinja chat templates byte for byte as transformers' `apply_chat_template` does,
and find out by probing what a template can do (system role, tools, tool calls, stop text).

Templates come from model files, i.e. from strangers, so they run in Jinja's sandbox, and what they are
given is read-only; lists and dicts a template builds itself it may change (template_sandbox).
Where transformers fails on a template, we sometimes render (see `ChatTemplate.render` and `_tojson`);
where both render, the text is the same.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
import jinja2.nodes

from .template_sandbox import (
    MAX_TEXT,
    TemplateError,
    TemplateRejected,
    TemplateTooLarge,
    checked_join,
    read_only,
    sandbox_environment,
)
from .template_variables import engine_variables

__all__ = ["ChatTemplate", "TemplateCaps", "TemplateError", "TemplateRejected", "TemplateTooLarge", "load_template_file"]


@dataclass(frozen=True)
class TemplateCaps:
    supports_system_role: bool  # a system message's text reaches the prompt (merged into a user turn counts)
    supports_tools: bool  # `tools=[...]` puts the tool's name into the prompt
    supports_tool_calls: bool  # an assistant message's tool_calls are rendered
    supports_tool_role: bool  # a role "tool" message's content is rendered
    requires_object_arguments: bool  # function.arguments must be a dict: a JSON string gets mangled or raises
    end_of_turn: tuple[str, ...]  # what the template writes after assistant content: the model's stop text
    generation_prompt: str  # what add_generation_prompt=True appends: the prefix the model continues from


# Names a message's reasoning may come under; most templates read `reasoning_content`, gpt-oss `thinking`.
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


def _alias_reasoning(message: dict) -> dict:
    # As transformers does: whichever name the reasoning came under, offer it under both names templates read.
    reasoning = next((message[key] for key in _REASONING_KEYS if message.get(key) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


class ChatTemplate:
    """One compiled chat template with the special tokens it is rendered with."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "", name: str = "", origin: str = "",
                 engine_variables: bool = True) -> None:
        """`origin` says where the text came from (a file's path), for logs; `engine_variables` off renders
        exactly what transformers renders, without the variables inference engines add (template_variables)."""
        self._bos_token, self._eos_token, self._name = bos_token, eos_token, name
        self._origin = origin or name
        self._source = source
        environment = sandbox_environment()
        try:
            syntax = environment.parse(source)
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(f"chat template {name or '<string>'}: syntax error at line {error.lineno}: "
                                f"{error.message}") from error
        self._template = environment.from_string(syntax)
        self._reads = frozenset(jinja2.meta.find_undeclared_variables(syntax)) if engine_variables else frozenset()
        # `a ~ b` compiles to a call of these two names in the template's own module: checked versions
        # bound text built by concatenation (string doubling) as the operators are.
        namespace = self._template.root_render_func.__globals__
        for join in ("str_join", "markup_join"):
            namespace[join] = checked_join(namespace[join])

    @property
    def source(self) -> str:
        """The template text, e.g. to recognise the tool format it teaches."""
        return self._source

    @property
    def bos_token(self) -> str:
        return self._bos_token

    @property
    def eos_token(self) -> str:
        return self._eos_token

    @property
    def name(self) -> str:
        return self._name

    @property
    def origin(self) -> str:
        """Where the template came from: its file, or the backend that reported it."""
        return self._origin

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self._name!r})"

    def render(self, messages: list[dict], *, tools: list[dict] | None = None, add_generation_prompt: bool = True,
               **extra: Any) -> str:
        """The prompt text. `extra` (e.g. enable_thinking=False, documents=[...]) reaches the template as-is."""
        # Extra kwargs override the special tokens, as in transformers. Two differences, both deliberate:
        # - `tools` is left undefined rather than None when absent: tool-only templates (Hermes tool_use,
        #   Command R+) then render instead of failing on `for t in none` (xLAM's Qwen template then
        #   explains its call syntax even with no tools: harmless);
        # - keys set to None are kept (apply_chat_template drops them): DeepSeek's templates render a tool
        #   call only when `content is none`. Callers that want a key gone leave it out.
        context = {**engine_variables(self._reads, tools), "bos_token": self._bos_token, "eos_token": self._eos_token,
                   **read_only(extra),
                   "messages": read_only([_alias_reasoning(m) for m in messages]),
                   "add_generation_prompt": add_generation_prompt}
        if tools is not None:
            context["tools"] = read_only(tools)
        try:
            return self._output(context)
        except TemplateError:
            raise
        except Exception as error:  # a template is code: any failure inside it is a rendering error
            raise TemplateError(f"{type(error).__name__}: {error}") from error

    def _output(self, context: dict[str, Any]) -> str:
        pieces, size = [], 0
        for piece in self._template.generate(context):
            size += len(piece)
            if size > MAX_TEXT:
                raise TemplateTooLarge(f"the template's output passed the size limit ({MAX_TEXT} characters)")
            pieces.append(piece)
        return "".join(pieces)

    def render_probe(self, messages: list[dict], tools: list[dict] | None, add_generation_prompt: bool) -> str:
        """`render` in the shape a tool format learner calls it with."""
        return self.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)

    @functools.cached_property
    def caps(self) -> TemplateCaps:
        """What this template can do, found by rendering small probe conversations."""
        return _probe(self)


def load_template_file(path: str | Path, **kwargs: Any) -> ChatTemplate:
    """A template from a .jinja file; `name` defaults to the file name without its extension."""
    path = Path(path)
    kwargs.setdefault("name", path.stem)
    kwargs.setdefault("origin", str(path))
    return ChatTemplate(path.read_text(encoding="utf-8"), **kwargs)


# --- Probing ---

# Odd strings that no template contains, so finding one in the output proves where it came from.
_SYSTEM = "TW_SYSTEM_NEEDLE"
_ANSWER = "TW_ANSWER_NEEDLE"
_TOOL_NAME = "tw_tool_needle"
_ARG_NAME = "tw_arg_needle"
_RESULT = "TW_RESULT_NEEDLE"
_CALL_ID = "call12345"  # Mistral templates raise unless an id is exactly 9 alphanumerics
# Kimi K2's templates write a call's id and not its name: their ids carry the name (`functions.NAME:IDX`).
_CALL_IDS = (_CALL_ID, f"functions.{_TOOL_NAME}:0")

_USER = {"role": "user", "content": "Hi"}
# Descriptions everywhere: some templates (Command R+) fail on a parameter without one.
_TOOL = {"type": "function", "function": {
    "name": _TOOL_NAME, "description": "A probe tool.",
    "parameters": {"type": "object", "properties": {_ARG_NAME: {"type": "string", "description": "An argument."}},
                   "required": [_ARG_NAME]}}}


# Templates disagree on an assistant tool-call message's content: DeepSeek needs it None, Qwen3 needs
# the key, Phi raises on None. The probes try each shape.
_CALL_CONTENTS: tuple[dict[str, Any], ...] = ({"content": None}, {"content": ""}, {})


def _call_message(arguments: Any, content: dict, call_id: str = _CALL_ID) -> dict:
    call = {"id": call_id, "type": "function", "function": {"name": _TOOL_NAME, "arguments": arguments}}
    return {"role": "assistant", **content, "tool_calls": [call]}


def _try(template: ChatTemplate, messages: list[dict], **kwargs: Any) -> str | None:
    try:
        return template.render(messages, **kwargs)
    except TemplateError:
        return None


def _first(template: ChatTemplate, conversations: list[list[dict]], needle: str, **kwargs: Any) -> str | None:
    """The first render among `conversations` that contains `needle` (templates differ in what they accept)."""
    for messages in conversations:
        out = _try(template, messages, **kwargs)
        if out is not None and needle in out:
            return out
    return None


def _probe(template: ChatTemplate) -> TemplateCaps:
    system = {"role": "system", "content": _SYSTEM}
    supports_system_role = _first(template, [[system, _USER]], _SYSTEM) is not None
    supports_tools = _first(template, [[_USER]], _TOOL_NAME, tools=[_TOOL]) is not None

    # A call with arguments as a JSON string and as an object: which of them comes out as JSON keys?
    def call_render(arguments: Any) -> str | None:
        calls = [[_USER, _call_message(arguments, content, call_id)] for call_id in _CALL_IDS for content in _CALL_CONTENTS]
        return _first(template, calls, _TOOL_NAME, add_generation_prompt=False)

    as_string = call_render(json.dumps({_ARG_NAME: "x"}))
    as_object = call_render({_ARG_NAME: "x"})
    string_ok = as_string is not None and _ARG_NAME in as_string and f'\\"{_ARG_NAME}' not in as_string
    object_ok = as_object is not None and _ARG_NAME in as_object

    arguments = json.dumps({_ARG_NAME: "x"}) if string_ok and not object_ok else {_ARG_NAME: "x"}
    rounds = [[_USER, _call_message(arguments, content, call_id),
               {"role": "tool", "tool_call_id": call_id, "name": _TOOL_NAME, "content": _RESULT}]
              for call_id in _CALL_IDS for content in _CALL_CONTENTS]
    supports_tool_role = _first(template, rounds, _RESULT) is not None

    return TemplateCaps(
        supports_system_role=supports_system_role,
        supports_tools=supports_tools,
        supports_tool_calls=as_string is not None or as_object is not None,
        supports_tool_role=supports_tool_role,
        requires_object_arguments=object_ok and not string_ok,
        end_of_turn=_end_of_turn(template),
        generation_prompt=_generation_prompt(template),
    )


_MARKER = re.compile(r"<[^<>\s]+>|\S+")  # a special-token-like piece such as <|im_end|>, else a word


def _end_of_turn(template: ChatTemplate) -> tuple[str, ...]:
    out = _first(template, [[_USER, {"role": "assistant", "content": _ANSWER}]], _ANSWER, add_generation_prompt=False)
    if out is None:
        return ()
    # What follows the answer: its first marker ends the turn; templates may write more after it (Command R+
    # adds a system turn, some always open the next assistant turn). The eos token counts too if written.
    tail = out[out.rindex(_ANSWER) + len(_ANSWER):].lstrip()
    eos = template.eos_token
    if eos and tail.startswith(eos):
        return (eos,)
    first = _MARKER.match(tail)
    markers = (first.group(),) if first else ()
    return (*markers, eos) if eos and eos in tail else markers


def _generation_prompt(template: ChatTemplate) -> str:
    with_prompt = _try(template, [_USER], add_generation_prompt=True)
    without = _try(template, [_USER], add_generation_prompt=False)
    if with_prompt is None or without is None:
        return ""
    if with_prompt.startswith(without):
        return with_prompt[len(without):]
    # Some templates write the eos token instead of the prompt (Phi): keep the common part, backed off to
    # the start of a special token it ends inside of ("...<|end|>\n<|" -> "...<|end|>\n").
    common = os.path.commonprefix([with_prompt, without])
    if common.rfind("<") > common.rfind(">"):
        common = common[:common.rfind("<")]
    return with_prompt[len(common):]
