"""The one small interface every backend implements, and the plain types that cross it.

A backend turns a rendered prompt plus sampling parameters into an async stream of text pieces,
ending with one `Finish`. It knows its own wire format; nothing above it does. A piece is all the
text one read from the socket carried (one token when idle, several under load), so the layers
above pay their per-event cost once per read, not once per upstream chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling knobs in OpenAI terms; each backend maps the ones it has."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    # OpenAI's logit_bias as (token id, bias) pairs; only backends with "logit_bias" in `features`.
    logit_bias: tuple[tuple[int, float], ...] | None = None
    # Log probabilities asked for: None = none; N = each token's own plus its N likeliest
    # alternatives. Only backends with "logprobs" in `features`.
    logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class Constraint:
    """How decoding must be restricted; each backend maps what it can and rejects the rest.

    `json_schema`: everything generated (after the prompt's prefill) is one JSON value matching
    the schema. `grammar`: a GBNF grammar the output must match; with `lazy_triggers`, it applies
    only from the first trigger word on (free text before it).
    """

    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    lazy_triggers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    prompt: str
    upstream_model: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    # Marker strings that must reach the parser even when the model has them as special tokens.
    preserved_tokens: tuple[str, ...] = ()
    # The BOS text the template wrote at the start of the prompt ("" if none). Backends that add
    # BOS themselves strip it; backends told not to add special tokens keep it.
    bos_token: str = ""
    # The model's end-of-sequence text, for backends that print it and must strip it.
    eos_token: str = ""
    # The context length to ask for, where the backend needs telling (Ollama's num_ctx).
    context_size: int | None = None
    # How long the backend should keep the model loaded after the request (Ollama's keep_alive).
    keep_alive: str | None = None
    constraint: Constraint | None = None
    # (start, end) offsets in `prompt` of the client's text, for backends that can tokenize it as
    # plain text (its spelled special tokens stay text): `plain_prompt_parts`.
    plain_spans: tuple[tuple[int, int], ...] = ()

    def plain_prompt_parts(self, *, keep_bos: bool) -> list[tuple[str, bool]]:
        """The prompt (BOS text kept or not) as (text, is the client's) runs, in order; empty runs left out."""
        prompt = self.prompt if keep_bos else self.prompt_without_bos()
        shift = len(self.prompt) - len(prompt)
        parts: list[tuple[str, bool]] = []
        position = 0
        for start, end in self.plain_spans:
            start, end = max(start - shift, position), end - shift
            if end <= start:
                continue
            if start > position:
                parts.append((prompt[position:start], False))
            parts.append((prompt[start:end], True))
            position = end
        if position < len(prompt):
            parts.append((prompt[position:], False))
        return parts

    def prompt_without_bos(self) -> str:
        """The prompt for a server that adds BOS to a text prompt itself (the template's copy
        would double it)."""
        if self.bos_token and self.prompt.startswith(self.bos_token):
            return self.prompt[len(self.bos_token) :]
        return self.prompt


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log probability, and the likeliest tokens at its place (`top`)."""

    token: str
    logprob: float
    utf8: tuple[int, ...] | None = None  # the token's bytes, where a token is part of a character
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class TextPiece:
    """Generated text: everything one read from the backend carried, never empty."""

    text: str
    # The tokens that made the text, when log probabilities were asked for (empty otherwise).
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of a generation: why it stopped and what it cost."""

    reason: FinishReason
    usage: Usage
    # The stop string that ended it, where the server names it (Anthropic's stop_sequence needs it).
    stop_word: str | None = None


BackendEvent = TextPiece | Finish


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What a backend reports about the model it serves, for chat-template discovery."""

    chat_template: str | None
    bos_token: str | None = None
    eos_token: str | None = None
    source: str = ""
    context_size: int | None = None


class Backend(Protocol):
    """A raw text-completion server."""

    name: str
    # Which `Constraint` kinds it can enforce: "json_schema", "grammar", "lazy_grammar".
    constraints: frozenset[str]
    # Request options it honors beyond plain sampling: "logit_bias", "logprobs".
    features: frozenset[str]

    def generate(self, request: GenerationRequest) -> AsyncIterator[BackendEvent]:
        """Stream text pieces and end with exactly one `Finish`, or raise a `BackendError`."""
        ...

    async def template_info(self, upstream_model: str) -> TemplateInfo:
        """The chat template and special tokens the backend reports, if it can."""
        ...

    async def health(self) -> bool:
        """True when the backend answers and is ready to generate."""
        ...

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """How many tokens the request's prompt is, counted by the backend's own tokenizer exactly
        as `generate` would send it; None when the backend has no way to tell."""
        ...

    async def list_models(self) -> list[str] | None:
        """The model names it serves, or None when it cannot tell (any name works)."""
        ...

    async def close(self) -> None: ...


def sampler_fields(sampling: SamplingParams) -> dict[str, Any]:
    """The samplers llama.cpp and Ollama both name as OpenAI does (plus repeat_penalty)."""
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "repeat_penalty": sampling.repeat_penalty,
    }


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
