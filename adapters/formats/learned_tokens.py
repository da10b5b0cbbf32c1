"""Cutting a template's render at token edges: the learned formats' text helpers (a render parts from
another, or two texts share an end, in the middle of a `<...>` token more often than not)."""

from __future__ import annotations

import os
import re

TAG = re.compile(r"<[^<>]*>")


def whole_tokens_from(text: str) -> str:
    """A common suffix that begins inside a token (`>\n<b>`) starts after it (`\n<b>`)."""
    close, open_ = text.find(">"), text.find("<")
    return text[close + 1 :] if 0 <= close < open_ else text


def whole_tokens_to(text: str) -> str:
    """A common prefix that ends inside a token (`</a>\n<`) ends before it (`</a>\n`)."""
    open_, close = text.rfind("<"), text.rfind(">")
    return text[:open_] if open_ > close else text


def common_suffix(a: str, b: str) -> str:
    length = len(os.path.commonprefix([a[::-1], b[::-1]]))
    return a[len(a) - length :] if length else ""


def split_tokens(text: str) -> list[str]:
    """Tag-like tokens and the words between them, without whitespace: `<a>\\n<b=` -> [`<a>`, `<b=`]."""
    out: list[str] = []
    position = 0
    for match in TAG.finditer(text):
        out.extend(part for part in text[position : match.start()].split() if part)
        out.append(match.group())
        position = match.end()
    out.extend(part for part in text[position:].split() if part)
    return out


def from_first_tag(text: str) -> str:
    """`text` from its first `<` on (a common suffix may begin inside the tag before it)."""
    at = text.find("<")
    return (text[at:] if at >= 0 else text).strip()


def to_last_tag(text: str) -> str:
    """`text` up to its last `>` (a common prefix may end inside the tag after it)."""
    at = text.rfind(">")
    return text[: at + 1] if at >= 0 else text
