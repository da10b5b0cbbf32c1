"""`tool_format: auto`: the format a chat template teaches, by name when its markers say which, else
learned from its own renders, else `default` (taught by a system block)."""

from __future__ import annotations

from dataclasses import dataclass

from . import get_format
from .base import ToolFormat
from .detect import detect_format
from .learned import Render, learn_format


@dataclass(frozen=True, slots=True)
class Choice:
    format: ToolFormat
    reason: str


def choose_format(source: str, render: Render, generation_prompt: str = "") -> Choice:
    """The format for a template: `source` is its text, `render` renders it (see `learned.Render`)."""
    detection = detect_format(source)
    if detection.format != "default":
        return Choice(get_format(detection.format), detection.reason)
    learning = learn_format(render, generation_prompt)
    if learning.format is not None:
        return Choice(learning.format, f"learned from the template's renders: {learning.summary}")
    return Choice(get_format("default"), f"{detection.reason}; nothing learned from its renders: {learning.summary}")
