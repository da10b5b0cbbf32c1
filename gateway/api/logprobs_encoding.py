"""Token log probabilities in OpenAI's shape: `{token, logprob, bytes, top_logprobs: [{token,
logprob, bytes}]}`, the same in chat completions (`choices[].logprobs.content`) and in the
Responses API (`output_text.logprobs`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from adapters.backends.base import TokenLogprob


def token_body(token: TokenLogprob) -> dict[str, Any]:
    return {
        "token": token.token,
        "logprob": token.logprob,
        "bytes": list(token.utf8) if token.utf8 is not None else None,
        "top_logprobs": [_alternative(top) for top in token.top],
    }


def token_bodies(tokens: Iterable[TokenLogprob] | None) -> list[dict[str, Any]]:
    return [token_body(token) for token in tokens or ()]


def chat_logprobs(tokens: Iterable[TokenLogprob] | None) -> dict[str, Any]:
    """A chat choice's `logprobs`: the content's tokens (toolwire never writes a refusal)."""
    return {"content": token_bodies(tokens), "refusal": None}


def _alternative(token: TokenLogprob) -> dict[str, Any]:
    return {"token": token.token, "logprob": token.logprob,
            "bytes": list(token.utf8) if token.utf8 is not None else None}
