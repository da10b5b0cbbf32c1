"""The internal job every API surface builds from its request: one chat turn to answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.backends import SamplingParams
from adapters.formats.conversation import Conversation


@dataclass(frozen=True, slots=True)
class ChatJob:
    """One chat request, in toolwire's own terms."""

    model: str
    conversation: Conversation
    sampling: SamplingParams
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    # The JSON schema the reply's content must follow (response_format), if any.
    response_schema: dict[str, Any] | None = None
