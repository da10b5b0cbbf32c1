"""vLLM, and any OpenAI-compatible text-completion server, over `POST /v1/completions`.

Wire format (vLLM `entrypoints/openai/completion/serving.py`): SSE lines `data: {json}` whose
`choices[0]` carries `text`, and on the last one `finish_reason` (`stop`, `length`, `abort`) and
`stop_reason`; with `stream_options.include_usage` one more chunk with `choices: []` and `usage`;
then `data: [DONE]`. An error after the stream began is an in-band `data: {"error": {...}}` (older
releases: a flat `{"object": "error", ...}`), still followed by `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .base import (
    BackendEvent,
    Finish,
    FinishReason,
    GenerationRequest,
    TemplateInfo,
    TextPiece,
    TokenLogprob,
    Usage,
    drop_none,
)
from .errors import (
    BackendError,
    BackendProtocolError,
    BackendRejected,
    ContextLengthExceeded,
    TemplateUnavailable,
)
from .http import BackendHttp, HttpSettings, error_message, parse_json
from .logprobs import completion_lists
from .vllm_plain import PlainTokenPrompts

# Sent when neither the request nor the route sets max_tokens and the server cannot tell what is
# left of the context: OpenAI's own default (16) would cut almost every answer short.
DEFAULT_MAX_TOKENS = 4096
# "repetition" is vLLM's opt-in repetition detector; anything else unknown ended normally too.
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class OpenAICompletionsBackend:
    """Any server with OpenAI's `/v1/completions` (llama-server, LM Studio, TGI, SGLang, vLLM).

    Only standard fields are sent. The template's BOS text is stripped from the prompt because
    these servers add BOS to a text prompt themselves; special-token markers survive only where
    the server prints special tokens.
    """

    type = "openai-completions"
    label = "OpenAI-compatible server"
    keeps_bos = False
    health_path = "/v1/models"  # the one route every OpenAI-compatible server has
    # No standard way to constrain a text completion: prefill only.
    constraints: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset({"logit_bias", "logprobs"})  # both part of OpenAI's completions API

    def __init__(self, name: str, settings: HttpSettings) -> None:
        self.name = name
        self._http = BackendHttp(name, settings)

    def completion_body(self, request: GenerationRequest, max_tokens: int) -> dict[str, Any]:
        sampling = request.sampling
        prompt = request.prompt if self.keeps_bos else request.prompt_without_bos()
        body = {
            "model": request.upstream_model,
            "prompt": prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "stop": list(request.stop) or None,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
            "logit_bias": {str(token): bias for token, bias in sampling.logit_bias} if sampling.logit_bias else None,
            "logprobs": sampling.logprobs,
            **self.extra_fields(request),
        }
        return drop_none(body)

    def extra_fields(self, request: GenerationRequest) -> dict[str, Any]:
        return {}

    async def max_tokens(self, request: GenerationRequest) -> int:
        return request.sampling.max_tokens if request.sampling.max_tokens is not None else DEFAULT_MAX_TOKENS

    async def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        return self.completion_body(request, await self.max_tokens(request))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[BackendEvent]:
        body = await self.request_body(request)
        decoder = _StreamDecoder(self, request)
        try:
            async with self._http.request("POST", "/v1/completions", body) as response:
                async for lines in self._http.lines(response):
                    text, finish, error = decoder.take(lines)
                    if text:
                        yield TextPiece(text, decoder.take_logprobs())
                    if error is not None:
                        raise error
                    if finish is not None:
                        yield finish
                        return
            raise self._broken("ended the stream without 'data: [DONE]'")
        except BackendRejected as error:
            if isinstance(error, ContextLengthExceeded) or "context length" not in error.message.lower():
                raise
            # vLLM reports a prompt too long for the context as a plain 400 BadRequestError.
            raise ContextLengthExceeded(self.name, error.message, status=error.status) from error

    def _broken(self, what: str) -> BackendProtocolError:
        return BackendProtocolError(self.name, f"backend '{self.name}' {what}")

    def _finish_reason(self, reason: str) -> FinishReason:
        if reason == "abort":
            raise BackendError(self.name, f"backend '{self.name}' aborted the generation (finish_reason 'abort')")
        if reason == "error":
            raise BackendError(self.name, f"backend '{self.name}' failed during generation (finish_reason 'error')")
        return _FINISH_REASONS.get(reason, "stop")

    def _stream_error(self, chunk: dict[str, Any]) -> BackendError:
        message, _ = error_message(chunk)
        error = chunk.get("error")
        if not isinstance(error, dict):
            error = chunk
        code = error.get("code")
        status = code if isinstance(code, int) else None
        text = f"backend '{self.name}' failed mid-stream: {message}"
        if status is not None and 400 <= status < 500:
            return BackendRejected(self.name, text, status=status)
        return BackendError(self.name, text, status=status)

    async def template_info(self, upstream_model: str) -> TemplateInfo:
        raise TemplateUnavailable(
            self.name,
            f"backend '{self.name}' ({self.label}) has no endpoint that reports the chat template: "
            f"set chat_template on the model route to the path of the model's .jinja template file",
        )

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """None: OpenAI's completions API has no tokenizer endpoint."""
        return None

    async def health(self) -> bool:
        try:
            async with self._http.request("GET", self.health_path):
                return True
        except BackendError:
            return False

    async def list_models(self) -> list[str] | None:
        """The model names the server serves (GET /v1/models)."""
        listing = await self._http.get_json("/v1/models")
        return [str(item.get("id")) for item in listing.get("data", [])] if isinstance(listing, dict) else None

    async def close(self) -> None:
        await self._http.close()


class VllmBackend(OpenAICompletionsBackend):
    """vLLM: the same wire format, plus the fields that keep a rendered prompt and its markers intact."""

    type = "vllm"
    label = "vLLM"
    # Sent with add_special_tokens false, so the template's BOS text is the only BOS.
    keeps_bos = True
    health_path = "/health"
    # `structured_outputs` (the old guided_* fields were removed in v0.12 and are silently ignored).
    constraints = frozenset({"json_schema", "grammar"})
    # "plain_spans": the client's text is tokenized as plain text (/tokenize calls, then a token-id prompt).
    features = frozenset({"logit_bias", "logprobs", "plain_spans"})

    def __init__(self, name: str, settings: HttpSettings) -> None:
        super().__init__(name, settings)
        self._plain = PlainTokenPrompts(name, self._http)

    async def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        tokens = await self._plain.prompt(request) if request.plain_spans else None
        if tokens is None:
            return await super().request_body(request)
        max_tokens = request.sampling.max_tokens
        if max_tokens is None:  # what is left of the context, as for a text prompt
            limit = tokens.max_model_len
            max_tokens = max(1, limit - len(tokens.ids)) if limit is not None else DEFAULT_MAX_TOKENS
        return {**self.completion_body(request, max_tokens), "prompt": tokens.ids}

    def extra_fields(self, request: GenerationRequest) -> dict[str, Any]:
        sampling = request.sampling
        return {
            # vLLM drops special tokens from the text by default; tool markers can be special tokens.
            "skip_special_tokens": False,
            "add_special_tokens": False,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repetition_penalty": sampling.repeat_penalty,
            "structured_outputs": _structured_outputs(request),
        }

    async def max_tokens(self, request: GenerationRequest) -> int:
        if request.sampling.max_tokens is not None:
            return request.sampling.max_tokens
        # vLLM's completions default is 16 (and null means 16 in current releases): ask for what
        # is left of the context, as vLLM's own chat endpoint does. /tokenize reports both numbers.
        payload = {"model": request.upstream_model, "prompt": request.prompt, "add_special_tokens": False}
        try:
            counted = await self._http.post_json("/tokenize", payload)
            return max(1, int(counted["max_model_len"]) - int(counted["count"]))
        except BackendError as error:
            if error.status is None:
                raise  # unreachable or silent: the completion would fail the same way
        except (KeyError, TypeError, ValueError):
            pass
        return DEFAULT_MAX_TOKENS

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        tokens = await self._plain.prompt(request) if request.plain_spans else None
        if tokens is not None:
            return len(tokens.ids)
        # As generate sends it: the rendered prompt with its own BOS text, no special tokens added.
        payload = {"model": request.upstream_model, "prompt": request.prompt, "add_special_tokens": False}
        answer = await self._http.post_json("/tokenize", payload)
        count = answer.get("count") if isinstance(answer, dict) else None
        if not isinstance(count, int):
            raise self._broken("answered /tokenize without a 'count'")
        return count


class _StreamDecoder:
    """One completion stream's lines -> text, the finish, or the error that ended it.

    End-of-turn text the server printed (EOS, the template's end-of-turn, a stop string) is held
    back while it ends what arrived, and dropped if the generation ends there.
    """

    def __init__(self, backend: OpenAICompletionsBackend, request: GenerationRequest) -> None:
        self._backend = backend
        self._markers = tuple(dict.fromkeys(m for m in (request.eos_token, *request.stop) if m))
        self._held = ""
        self._reason: FinishReason | None = None
        self._usage = Usage()
        self._stop_word: str | None = None
        self._top_n = request.sampling.logprobs
        self._logprobs: list[TokenLogprob] = []

    def take_logprobs(self) -> tuple[TokenLogprob, ...]:
        """The tokens read since the last call; those of end-of-turn text held back here come too,
        and match no content later (the pipeline's alignment drops them)."""
        if not self._logprobs:
            return ()
        taken, self._logprobs = tuple(self._logprobs), []
        return taken

    def take(self, lines: list[bytes]) -> tuple[str, Finish | None, BackendError | None]:
        """The text of one read's lines (sent even when an error follows it), and how it ended."""
        texts: list[str] = []
        try:
            for line in lines:
                if line.startswith(b"data:") and self._line(line[5:].strip(), texts):
                    if self._reason is None:
                        raise self._backend._broken("ended the stream without a finish_reason")
                    text, _ = _split_trailing(self._held + "".join(texts), self._markers)
                    return text, Finish(self._reason, self._usage, self._stop_word), None
        except BackendError as error:
            text, _ = _split_trailing(self._held + "".join(texts), self._markers)
            return text, None, error
        if not texts:
            return "", None, None
        text, self._held = _split_trailing(self._held + "".join(texts), self._markers)
        return text, None, None

    def _line(self, data: bytes, texts: list[str]) -> bool:
        """Take one `data:` payload; True at `[DONE]`. Blank separators and comments pass."""
        if data == b"[DONE]":
            return True
        backend = self._backend
        chunk = parse_json(backend.name, data)
        if not isinstance(chunk, dict):
            raise backend._broken("sent a chunk that is not a JSON object")
        if "error" in chunk or chunk.get("object") == "error":
            raise backend._stream_error(chunk)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                raise backend._broken("sent a choice that is not a JSON object")
            if choice.get("text"):
                texts.append(choice["text"])
            if self._top_n is not None:  # a held-back token's come with empty text
                self._logprobs += completion_lists(choice.get("logprobs"), self._top_n)
            if choice.get("finish_reason"):
                self._reason = backend._finish_reason(choice["finish_reason"])
                stop = choice.get("stop_reason")  # vLLM names the stop string that ended it
                self._stop_word = stop if isinstance(stop, str) else None
        if isinstance(chunk.get("usage"), dict):
            self._usage = _usage(chunk["usage"])
        return False


def _split_trailing(text: str, markers: tuple[str, ...]) -> tuple[str, str]:
    """Split off the run of whole markers that ends text: (text to send now, markers held back)."""
    end = len(text)
    if not markers or not text.endswith(markers):
        return text, ""  # the usual case, decided in one call
    while marker := next((m for m in markers if text.endswith(m, 0, end)), None):
        end -= len(marker)
    return text[:end], text[end:]


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=details.get("cached_tokens") if isinstance(details, dict) else None,
    )


def _structured_outputs(request: GenerationRequest) -> dict[str, Any] | None:
    constraint = request.constraint
    if constraint is None:
        return None
    if constraint.grammar and not constraint.lazy_triggers:
        return {"grammar": constraint.grammar}
    if constraint.json_schema is not None:
        return {"json": constraint.json_schema}
    return None
