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
    # The opening of the reply the client wrote itself (Anthropic's prefill): the model goes on from
    # it, and it is not sent back.
    continues: str = ""

    def plain_spans(self, prompt: str, spans: tuple[tuple[int, int], ...] | None) -> tuple[tuple[int, int], ...]:
        """The client's text in `prompt + continues`: the rendered content spans, then the prefill."""
        if not spans:  # not asked for, or the content could not be traced: nothing goes as plain text
            return ()
        return (*spans, (len(prompt), len(prompt) + len(self.continues))) if self.continues else spans
