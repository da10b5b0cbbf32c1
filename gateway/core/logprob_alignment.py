"""Which generated tokens are content: each token's log probability goes to the content delta its
text became part of.

The backend gives tokens; the format parser turns their text into content, reasoning and tool
calls, holding text back while it might be a marker. So a token is matched by its text, not by
the read it came in: the tokens not yet placed are kept with their concatenated text, each
content delta is found in it (from where the last delta ended), and the tokens that overlap it go
with that delta, each token once. Reasoning and call arguments are found the same way and their
tokens skipped; tokens that match nothing (markers, end-of-turn text, a stop string) are dropped.
A delta whose text is not found as written (a parser that rewrote it) carries no tokens.

Only made when a request asks for log probabilities; otherwise the pipeline never touches this.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.backends.base import TokenLogprob
from adapters.formats.events import ParseEvent, ReasoningDelta, TextDelta, ToolCallArgs


class LogprobAligner:
    def __init__(self) -> None:
        self._tokens: list[TokenLogprob] = []  # tokens not yet placed, and the ones overlapping `_cursor`
        self._starts: list[int] = []  # where each of them begins in `_text`
        self._text = ""
        self._cursor = 0  # the end of the last text placed, in `_text`
        self._next = 0  # the first token in `_tokens` not yet placed

    def place(self, tokens: Sequence[TokenLogprob], events: Sequence[ParseEvent]) -> None:
        """Take one backend read's tokens, and set `logprobs` on the content deltas it produced."""
        if tokens:
            starts, offset = self._starts, len(self._text)
            for token in tokens:
                starts.append(offset)
                offset += len(token.token)
            self._tokens += tokens
            self._text += "".join(token.token for token in tokens)
        for event in events:
            if isinstance(event, TextDelta):
                event.logprobs = self._take(event.text)
            elif isinstance(event, ReasoningDelta | ToolCallArgs):
                self._take(event.text)  # not content: its tokens are skipped

    def _take(self, text: str) -> tuple[TokenLogprob, ...]:
        at = self._text.find(text, self._cursor) if text else -1
        if at < 0:
            return ()
        end = at + len(text)
        tokens, starts = self._tokens, self._starts
        first = self._next
        while first < len(tokens) and starts[first] + len(tokens[first].token) <= at and starts[first] < at:
            first += 1  # wholly before the text: markup the parser removed
        last = first
        while last < len(tokens) and starts[last] < end:
            last += 1
        placed = tuple(tokens[first:last])
        self._next, self._cursor = last, end
        self._compact()
        return placed

    def _compact(self) -> None:
        """Forget what lies before the cursor, so the text searched stays short."""
        if self._next == len(self._tokens) and self._cursor == len(self._text):
            self._tokens, self._starts, self._text, self._cursor, self._next = [], [], "", 0, 0
            return
        cut = min(self._cursor, self._starts[self._next] if self._next < len(self._tokens) else len(self._text))
        if cut == 0 and self._next == 0:
            return
        self._tokens = self._tokens[self._next:]
        self._starts = [start - cut for start in self._starts[self._next:]]
        self._text = self._text[cut:]
        self._cursor -= cut
        self._next = 0
