"""vLLM prompts as token ids, in which the client's text is tokenized as plain text.

vLLM's `POST /tokenize` ({model, prompt: str, add_special_tokens} -> {count, max_model_len, tokens,
token_strs}) runs the Hugging Face tokenizer, which matches added and special tokens inside any text:
there is no switch to turn that off. But `/v1/completions` takes the prompt as a list of token ids. So
the client's spans are cut at every character a special token is spelled with (each such character
alone), which leaves no piece able to spell one; the template's text and every distinct piece are
tokenized at once (add_special_tokens false: the template's own BOS text is the only BOS), and the ids
are joined in order. The pieces tokenize a little differently from the whole text at the cuts (`<` and
`|` as two tokens where the whole would merge them), the price of the protection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from .base import GenerationRequest
from .errors import BackendError, BackendProtocolError
from .http import BackendHttp
from .special_spelling import SPECIAL_SPELLING, split_at_spelling

log = structlog.get_logger("toolwire.backends.vllm")

# /tokenize calls one request has in flight at most (text full of brackets is cut into many pieces).
_CONCURRENT_CALLS = 8
# How a sentencepiece tokenizer spells a space; one that adds it to the start of every text it
# tokenizes (Llama 2, Mistral: the "dummy prefix") would put a space at every cut.
_SENTENCEPIECE_SPACE = "\u2581"


@dataclass(frozen=True, slots=True)
class TokenPrompt:
    """A prompt as token ids, and the context length the server reported with them."""

    ids: list[int]
    max_model_len: int | None


@dataclass(frozen=True, slots=True)
class _Tokens:
    ids: list[int]
    first: str | None  # the first token's string
    max_model_len: int | None


class PlainTokenPrompts:
    """Builds token-id prompts for one vLLM server."""

    def __init__(self, backend: str, http: BackendHttp) -> None:
        self._backend = backend
        self._http = http

    async def prompt(self, request: GenerationRequest) -> TokenPrompt | None:
        """The prompt as token ids, or None to send the text as ever: no client span can spell a special
        token, the server has no /tokenize (logged), or its tokenizer adds a space to every text (logged)."""
        parts = request.plain_prompt_parts(keep_bos=True)
        if not any(plain and SPECIAL_SPELLING.search(text) for text, plain in parts):
            return None
        pieces = [piece for text, plain in parts for piece in (split_at_spelling(text) if plain else [text])]
        distinct = list(dict.fromkeys(pieces))
        calls = asyncio.Semaphore(_CONCURRENT_CALLS)

        async def tokenize(piece: str) -> _Tokens:
            async with calls:
                return await self._tokenize(piece, request.upstream_model)

        try:
            answers = await asyncio.gather(*(tokenize(piece) for piece in distinct))
        except BackendError as error:
            if error.status is None:
                raise  # unreachable or silent: /v1/completions would fail the same way
            # Something between us and vLLM that has no /tokenize: the text prompt, unprotected.
            log.warning("plain_content_unavailable", backend=self._backend, error=error.message)
            return None
        tokens = dict(zip(distinct, answers, strict=True))
        if any(_adds_a_space(piece, tokens[piece]) for piece in distinct):
            log.warning("plain_content_unavailable", backend=self._backend,
                        error="the tokenizer starts every text with a space (sentencepiece dummy prefix)")
            return None
        ids = [token for piece in pieces for token in tokens[piece].ids]
        return TokenPrompt(ids, answers[0].max_model_len)

    async def _tokenize(self, text: str, model: str) -> _Tokens:
        payload = {"model": model, "prompt": text, "add_special_tokens": False, "return_token_strs": True}
        answer = await self._http.post_json("/tokenize", payload)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(token, int) for token in tokens):
            raise BackendProtocolError(self._backend, f"backend '{self._backend}' answered /tokenize without a 'tokens' list")
        strings = answer.get("token_strs")
        first = strings[0] if isinstance(strings, list) and strings and isinstance(strings[0], str) else None
        limit = answer.get("max_model_len")
        return _Tokens(tokens, first, limit if isinstance(limit, int) else None)


def _adds_a_space(text: str, tokens: _Tokens) -> bool:
    """True when the tokenizer began `text`, which begins with no space, with a space token."""
    starts_bare = bool(text) and not text[0].isspace() and not text.startswith(_SENTENCEPIECE_SPACE)
    return starts_bare and tokens.first is not None and tokens.first.startswith(_SENTENCEPIECE_SPACE)
