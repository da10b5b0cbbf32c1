"""Turns of the same role in a row, merged into one, for templates that insist on alternating roles.

Clients send such runs as a matter of course: an assistant's text and then its calls as two messages
(LM Studio's streaming example does), two user messages, a tool result written as a user turn right
before the user's next question. Templates like Gemma's and Mistral's `raise_exception` on them.
"""

from __future__ import annotations

from typing import Any

# Tool results stay apart: each answers its own call id.
_MERGED_ROLES = frozenset({"system", "user", "assistant"})
_SEPARATOR = "\n\n"


def merge_same_role_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with each run of same-role turns joined: texts concatenated, calls kept in order."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and message["role"] == merged[-1]["role"] and message["role"] in _MERGED_ROLES:
            merged[-1] = _joined(merged[-1], message)
        else:
            merged.append(message)
    return merged


def _joined(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    joined = {**first, **second}
    joined["content"] = _join_text(first.get("content"), second.get("content"))
    calls = [*(first.get("tool_calls") or ()), *(second.get("tool_calls") or ())]
    if calls:
        joined["tool_calls"] = calls
    if "reasoning_content" in first or "reasoning_content" in second:
        joined["reasoning_content"] = _join_text(first.get("reasoning_content"), second.get("reasoning_content"))
    return joined


def _join_text(first: str | None, second: str | None) -> str | None:
    texts = [text for text in (first, second) if text]
    if texts:
        return _SEPARATOR.join(texts)
    # No text on either side: keep None where a template tells "no content" from "empty content".
    return None if first is None or second is None else ""
