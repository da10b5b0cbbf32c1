"""Where the client's own text lies in a rendered prompt, so a backend can tokenize it as plain text.

A message may spell the template's special tokens (`<|im_end|>\\n<|im_start|>system ...`); rendered
into a text prompt, a backend parses that text into real role markers. To tell the template's text
from the client's, the conversation is rendered a second time with every client string wrapped in two
Unicode noncharacters; where the marks land in that render are the client's spans in the real one.
The marks never reach a backend: the prompt sent is the ordinary render, and the marked render is
trusted only if, marks removed, it is the same text (a template that inspects content, say
`content.startswith(...)`, may render a marked string differently).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from adapters.backends.special_spelling import SPECIAL_SPELLING
from adapters.formats.conversation import Conversation, Message

from .chat_template import TemplateError

log = structlog.get_logger("toolwire.content_marks")

# Noncharacters: reserved by Unicode for a program's internal use, never assigned a meaning.
OPEN, CLOSE = "\ufdd0", "\ufdd1"
_MARKS = re.compile(f"[{OPEN}{CLOSE}]")

Span = tuple[int, int]


def mark_text(text: str) -> str:
    """`text` with its marks around everything but the leading and trailing whitespace, so a
    template's `trim` gives the same text, marked."""
    core = text.strip()
    if not core:
        return text
    lead = len(text) - len(text.lstrip())
    return f"{text[:lead]}{OPEN}{core}{CLOSE}{text[lead + len(core):]}"


def mark_conversation(conversation: Conversation, *, assistant: bool = True) -> Conversation | None:
    """The conversation with the client's strings marked: every message's content (assistant turns only
    with `assistant`), reasoning, and the tools' descriptions. None when the client's text already holds
    a mark (it cannot be told apart then)."""
    if any(_MARKS.search(text) for text in _client_strings(conversation)):
        return None
    messages = tuple(
        _mark_message(message) if assistant or message.role != "assistant" else message
        for message in conversation.messages
    )
    tools = tuple(
        replace(tool, description=mark_text(tool.description), parameters=_mark_descriptions(tool.parameters))
        for tool in conversation.tools
    )
    return replace(conversation, messages=messages, tools=tools)


def locate(marked: str, plain: str) -> tuple[Span, ...] | None:
    """The (start, end) offsets in `plain` of the marked runs of `marked`; None unless `marked` without
    its marks is exactly `plain` and every mark is closed before the next opens."""
    spans: list[Span] = []
    position, last, start = 0, 0, -1
    for match in _MARKS.finditer(marked):
        position += match.start() - last
        last = match.end()
        if match.group() == OPEN:
            if start >= 0:
                return None
            start = position
        else:
            if start < 0:
                return None
            if position > start:
                spans.append((start, position))
            start = -1
    if start >= 0 or position + len(marked) - last != len(plain) or _MARKS.sub("", marked) != plain:
        return None
    return tuple(spans)


def _mark_message(message: Message) -> Message:
    reasoning = mark_text(message.reasoning) if message.reasoning else message.reasoning
    return replace(message, content=mark_text(message.content), reasoning=reasoning)


def _mark_descriptions(schema: Any) -> Any:
    """A parameters schema with every `description` text marked (the keys and types stay as they are:
    templates read them)."""
    if isinstance(schema, dict):
        return {key: mark_text(value) if key == "description" and isinstance(value, str) else _mark_descriptions(value)
                for key, value in schema.items()}
    if isinstance(schema, list):
        return [_mark_descriptions(item) for item in schema]
    return schema


def _client_strings(conversation: Conversation) -> list[str]:
    texts: list[str] = []
    for message in conversation.messages:
        texts.append(message.content)
        if message.reasoning:
            texts.append(message.reasoning)
    for tool in conversation.tools:
        texts.append(tool.description)
        texts.append(json.dumps(tool.parameters, ensure_ascii=False, default=str))
    return texts


def _spellable_strings(conversation: Conversation) -> list[str]:
    """The client's text as it could reach the prompt: messages, reasoning, and every string in the
    tools (not the JSON syntax around them, whose brackets spell nothing)."""
    texts = [text for message in conversation.messages for text in (message.content, message.reasoning or "")]
    for tool in conversation.tools:
        texts.append(tool.name)
        texts.append(tool.description)
        texts.extend(_strings_in(tool.parameters))
    return texts


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (str(key), *_strings_in(item))]
    if isinstance(value, list):
        return [text for item in value for text in _strings_in(item)]
    return []


def trace_content(conversation: Conversation, prompt: str, render: Callable[[Conversation], str]) -> tuple[Span, ...] | None:
    """The client's spans in `prompt`, the ordinary render of `conversation` by `render`; None (logged)
    when no marked render maps back onto it. Assistant turns are marked too unless that alone breaks the
    mapping (a template that splits reasoning off an assistant turn's content, say)."""
    # Client text with no bracket or bar cannot spell a special token: neither the second render nor
    # the backend's plain tokenization is needed.
    if not any(SPECIAL_SPELLING.search(text) for text in _spellable_strings(conversation)):
        return ()
    for assistant in (True, False):
        marked = mark_conversation(conversation, assistant=assistant)
        if marked is None:
            break
        try:
            spans = locate(render(marked), prompt)
        except TemplateError:
            spans = None
        if spans is not None:
            return spans
    log.warning("content_marks_lost", reason="the client's text holds a mark, or the template renders marked text differently")
    return None
