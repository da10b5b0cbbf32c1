"""llama-server prompts in which the client's text is tokenized as plain text.

`/completion` takes a prompt as one string or as a mixed array of strings and token ids; every string
is tokenized with special-token parsing on, so a user message spelling `<end_of_turn>` would become
the real token. `/tokenize` takes `parse_special: false` (special-token text stays text) and a mixed
array too (`tokenize_mixed` in tools/server/server-common.cpp). So the client's spans are tokenized
with and without special parsing, in two concurrent calls, separated by a control token (which plain
text never yields). The same tokens both ways: no span spells a special token and the prompt goes out
as text, as ever. Otherwise it goes out as the template's text (strings, parsed as ever) around the
spans' plain-text ids.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from .base import GenerationRequest
from .errors import BackendError, BackendProtocolError
from .http import BackendHttp

log = structlog.get_logger("toolwire.backends.llamacpp")

MixedPrompt = list[str | int]


class PlainContentTokenizer:
    """Builds mixed prompts for one llama-server; remembers, per model, a control token to separate spans."""

    def __init__(self, backend: str, http: BackendHttp) -> None:
        self._backend = backend
        self._http = http
        self._separators: dict[str, int | None] = {}
        self._learning = asyncio.Lock()

    async def prompt(self, request: GenerationRequest) -> str | MixedPrompt:
        """The prompt to send: the plain text unless the client's text spells a special token, else the
        mixed array (so a request whose text spells none goes out exactly as it always did)."""
        parts = request.plain_prompt_parts(keep_bos=False)
        texts = [text for text, plain in parts if plain]
        try:
            spans = await self._spelled_specials(texts, request) if texts else None
        except BackendError as error:
            if error.status is None:
                raise  # unreachable or silent: /completion would fail the same way
            # Something between us and llama-server that has no /tokenize: the text prompt, unprotected.
            log.warning("plain_content_unavailable", backend=self._backend, error=error.message)
            spans = None
        if spans is None:
            return request.prompt_without_bos()
        ids = iter(spans)
        # A string first, so the server adds BOS exactly as it does to a text prompt.
        mixed: MixedPrompt = [] if not parts[0][1] else [""]
        for text, plain in parts:
            if plain:
                mixed.extend(next(ids))
            else:
                mixed.append(text)
        return mixed

    async def _spelled_specials(self, texts: list[str], request: GenerationRequest) -> list[list[int]] | None:
        """Each text's tokens as plain text, or None when no text spells a special token (its tokens
        are the same with special parsing on and off). One round trip: both tokenizations at once."""
        model = request.upstream_model
        separator = await self._separator(model, request)
        content: list[Any] = []
        for text in texts:
            content += [text, separator] if separator is not None else [text]
        if separator is not None:
            content.pop()
        plain, special = await asyncio.gather(
            self._tokenize(content, model, parse_special=False), self._tokenize(content, model, parse_special=True)
        )
        if plain == special:
            return None
        if len(texts) == 1:
            return [plain]
        if separator is None:  # no control token known to split on: one call a text
            return list(await asyncio.gather(*(self._tokenize(text, model, parse_special=False) for text in texts)))
        spans: list[list[int]] = [[]]
        for token in plain:
            if token == separator:
                spans.append([])
            else:
                spans[-1].append(token)
        if len(spans) != len(texts):
            raise BackendProtocolError(
                self._backend, f"backend '{self._backend}' answered /tokenize with {len(spans)} spans for {len(texts)}"
            )
        return spans

    async def _separator(self, model: str, request: GenerationRequest) -> int | None:
        """A control token of the model (EOS or BOS): one id when parsed as special, something else as
        text. Learned once per model; a server that tokenizes both the same way ignores `parse_special`
        (older llama-servers), which the log says."""
        async with self._learning:
            if model in self._separators:
                return self._separators[model]
            found: int | None = None
            for text in (request.eos_token, request.bos_token):
                if not text:
                    continue
                special, plain = await asyncio.gather(
                    self._tokenize(text, model, parse_special=True), self._tokenize(text, model, parse_special=False)
                )
                if len(special) == 1 and plain != special:
                    found = special[0]
                    break
                if plain == special:
                    log.warning("tokenize_ignores_parse_special", backend=self._backend, token=text)
            self._separators[model] = found  # kept only once learned: a failed call is tried again
        return self._separators[model]

    async def _tokenize(self, content: str | list[Any], model: str, *, parse_special: bool) -> list[int]:
        payload = {"model": model, "content": content, "add_special": False, "parse_special": parse_special}
        answer = await self._http.post_json("/tokenize", payload)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(token, int) for token in tokens):
            raise BackendProtocolError(self._backend, f"backend '{self._backend}' answered /tokenize without a 'tokens' list")
        return tokens
