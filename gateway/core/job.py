"""The internal job every API surface builds from its request: one chat turn to answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.backends import SamplingParams
from adapters.formats.conversation import Conversation


@dataclass(frozen=True, slots=True)
class Affinity:
    """Session keys: a conversation goes back to the backend that answered it (and holds its cache).

    `lookup` keys are tried in order (the previous response, the caller's `user`); `record` keys
    are remembered for the backend that answers this request."""

    lookup: tuple[str, ...] = ()
    record: tuple[str, ...] = ()


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
    affinity: Affinity | None = None
