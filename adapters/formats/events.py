"""What the parser makes of a model's text: a flat stream of small events.

Every encoder (chat chunks, collected chat response, Responses API events) consumes these and
nothing else, which is what keeps streaming and non-streaming on one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.backends.base import TokenLogprob


@dataclass(slots=True)
class TextDelta:
    text: str
    # The tokens behind this text, set by the pipeline only when log probabilities were asked for.
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ToolCallStart:
    """A call is announced once its name is known; `index` counts from 0 within the reply."""

    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallArgs:
    """A fragment of the call's arguments, a piece of a JSON object text."""

    index: int
    text: str


@dataclass(slots=True)
class ToolCallEnd:
    """The call is complete; `arguments` is the whole argument text, valid JSON.

    `truncated`: the token limit cut the call off; `arguments` is the text written so far, as OpenAI
    returns a cut call (the `length` finish tells the client not to run it).
    """

    index: int
    arguments: str
    truncated: bool = False
    # The model broke the call after naming it; `arguments` is what it wrote, completed to valid JSON.
    repaired: bool = False


@dataclass(slots=True)
class ToolCallFailed:
    """An announced call turned out malformed. `raw` is the model's text for it, to show as content."""

    index: int
    raw: str
    reason: str
    # Where the fault is in all the text the parser was fed (-1: unknown), and where the call's
    # body began when it is JSON text (-1: not JSON): what a repair by continuation starts from.
    at: int = -1
    json_from: int = -1


ParseEvent = TextDelta | ReasoningDelta | ToolCallStart | ToolCallArgs | ToolCallEnd | ToolCallFailed
