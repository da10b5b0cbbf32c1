"""Backends' per-token log probabilities -> `TokenLogprob`s.

Two wire shapes exist. llama.cpp's `completion_probabilities` (with `post_sampling_probs` off) and
Ollama's `logprobs` (>= 0.12.11) are lists of `{token, logprob, bytes, top_logprobs: [{token,
logprob, bytes}]}`. OpenAI's legacy completions, which vLLM speaks, give parallel lists `tokens`,
`token_logprobs` and `top_logprobs` (dicts token -> logprob, the sampled token included, so up to
N + 1 entries). Anything malformed is skipped: log probabilities never fail a generation.
"""

from __future__ import annotations

from typing import Any

from .base import TokenLogprob


def token_list(items: Any, top_n: int) -> list[TokenLogprob]:
    """llama.cpp's and Ollama's shape; the alternatives cut to the `top_n` asked for."""
    if not isinstance(items, list):
        return []
    tokens = []
    for item in items:
        token = _entry(item)
        if token is None:
            continue
        alternatives = item.get("top_logprobs")
        top: list[TokenLogprob] = []
        if top_n and isinstance(alternatives, list):
            top = [entry for entry in map(_entry, alternatives[:top_n]) if entry is not None]
        tokens.append(TokenLogprob(token.token, token.logprob, token.utf8, tuple(top)))
    return tokens


def completion_lists(logprobs: Any, top_n: int) -> list[TokenLogprob]:
    """OpenAI's legacy completions shape (vLLM); the alternatives ordered likeliest first."""
    if not isinstance(logprobs, dict):
        return []
    texts, values, tops = logprobs.get("tokens"), logprobs.get("token_logprobs"), logprobs.get("top_logprobs")
    if not isinstance(texts, list) or not isinstance(values, list):
        return []
    tokens = []
    for index, (text, value) in enumerate(zip(texts, values, strict=False)):
        if not isinstance(text, str) or not _is_number(value):
            continue
        top: tuple[TokenLogprob, ...] = ()
        step = tops[index] if top_n and isinstance(tops, list) and index < len(tops) else None
        if isinstance(step, dict):
            ranked = sorted(((t, v) for t, v in step.items() if _is_number(v)), key=lambda pair: -pair[1])
            top = tuple(TokenLogprob(t, float(v), _utf8(t)) for t, v in ranked[:top_n])
        tokens.append(TokenLogprob(text, float(value), _utf8(text), top))
    return tokens


def _entry(item: Any) -> TokenLogprob | None:
    if not isinstance(item, dict):
        return None
    token, value = item.get("token"), item.get("logprob")
    if not isinstance(token, str) or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    raw = item.get("bytes")
    utf8 = tuple(raw) if isinstance(raw, list) and all(isinstance(b, int) for b in raw) else _utf8(token)
    return TokenLogprob(token, float(value), utf8)


def _utf8(text: str) -> tuple[int, ...]:
    return tuple(text.encode("utf-8", "surrogatepass"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
