"""Ollama over its native `POST /api/generate` with `raw: true`: the prompt goes in as rendered.

Wire format (ollama/ollama `api/types.go`, `server/routes.go`): NDJSON, one object a line,
`{"model", "created_at", "response", "done": false}`; the last line has `done: true`,
`done_reason` and token counts. An error before the first line is a plain HTTP error
`{"error": "..."}`; after it, an in-band line `{"error": "..."}` while the status stays 200.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import structlog

from .base import (
    BackendEvent,
    Finish,
    GenerationRequest,
    TemplateInfo,
    TextPiece,
    TokenLogprob,
    Usage,
    drop_none,
    sampler_fields,
)
from .errors import (
    BackendError,
    BackendProtocolError,
    BackendRejected,
    BackendTimeout,
    BackendUnreachable,
    ContextLengthExceeded,
    TemplateUnavailable,
)
from .http import BackendHttp, HttpSettings, error_message, parse_json
from .logprobs import token_list

log = structlog.get_logger("toolwire.backends.ollama")

# num_ctx when neither the route nor /api/show gives a context length. Never left unset:
# Ollama's own default (4096 on small GPUs) silently cuts the start off longer prompts.
DEFAULT_NUM_CTX = 8192

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


class OllamaBackend:
    type = "ollama"
    # `format` takes a JSON schema for the whole output; there are no grammars.
    constraints = frozenset({"json_schema"})
    # /api/generate has no logit bias; it has log probabilities since Ollama 0.12.11.
    features: frozenset[str] = frozenset({"logprobs"})

    def __init__(self, name: str, settings: HttpSettings) -> None:
        self.name = name
        self._http = BackendHttp(name, settings)
        # POST /api/show per upstream model, asked once: num_ctx and template discovery share it.
        self._shown: dict[str, dict[str, Any]] = {}

    def generate_body(self, request: GenerationRequest, num_ctx: int) -> dict[str, Any]:
        sampling = request.sampling
        # Ollama tokenizes a raw prompt with special tokens on and adds BOS itself.
        prompt = request.prompt_without_bos()
        options = {
            "num_ctx": num_ctx,
            "num_predict": sampling.max_tokens if sampling.max_tokens is not None else -1,
            "stop": list(request.stop),
            **sampler_fields(sampling),
        }
        body: dict[str, Any] = {
            "model": request.upstream_model,
            "prompt": prompt,
            "raw": True,
            "stream": True,
            # A thinking-capable model otherwise gets think=true, and Ollama moves the text
            # between the template's think tags out of `response`, even in raw mode.
            "think": False,
            "options": drop_none(options),
        }
        if request.keep_alive is not None:
            body["keep_alive"] = _keep_alive(request.keep_alive)
        if request.constraint is not None and request.constraint.json_schema is not None:
            body["format"] = request.constraint.json_schema
        if sampling.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.logprobs
        return body

    async def generate(self, request: GenerationRequest) -> AsyncIterator[BackendEvent]:
        body = self.generate_body(request, await self._num_ctx(request))
        top_n = request.sampling.logprobs
        try:
            async with self._http.request("POST", "/api/generate", body) as response:
                probs: list[TokenLogprob] = []  # kept until text goes out (as llama.cpp's)
                async for lines in self._http.lines(response):
                    texts: list[str] = []
                    for line in lines:
                        if not line.strip():
                            continue
                        chunk = parse_json(self.name, line)
                        if not isinstance(chunk, dict):
                            raise BackendProtocolError(self.name, f"backend '{self.name}' sent a non-object line")
                        if "error" in chunk:
                            message, _ = error_message(chunk)
                            if texts:  # what came before the error still reaches the client
                                yield TextPiece("".join(texts), tuple(probs))
                            raise BackendError(self.name, f"backend '{self.name}' failed mid-stream: {message}")
                        text = chunk.get("response")
                        if text:
                            texts.append(text)
                        if top_n is not None:
                            probs += token_list(chunk.get("logprobs"), top_n)
                        if chunk.get("done"):
                            if texts:
                                yield TextPiece("".join(texts), tuple(probs))
                            yield _finish(chunk)
                            return
                    if texts:
                        yield TextPiece("".join(texts), tuple(probs))
                        probs = []
        except BackendRejected as error:
            # Ollama's errors are bare strings, so the shared mapping cannot see this kind.
            if "context length" in error.message:
                raise ContextLengthExceeded(self.name, error.message, status=error.status) from error
            raise
        # Ollama also ends a stream this way when its repeated-token guard aborts a generation.
        raise BackendProtocolError(self.name, f"backend '{self.name}' ended the stream without its final line")

    async def template_info(self, upstream_model: str) -> TemplateInfo:
        shown = await self._show(upstream_model)
        template = shown.get("template") or ""
        # /api/show never lists tokenizer.chat_template in model_info (Ollama deletes it); Ollama
        # >= 0.30 puts the GGUF's Jinja template in `template` when it runs the model with it.
        if "{%" not in template:
            kind = "only a Go template" if template else "no template"
            raise TemplateUnavailable(
                self.name,
                f"backend '{self.name}' reports {kind} for model '{upstream_model}' in POST /api/show, and "
                "toolwire renders Jinja chat templates: set `chat_template: <path to the model's .jinja file>` "
                "on this route",
            )
        return TemplateInfo(
            chat_template=template,
            # model_info holds token ids only (the vocabulary needs verbose=true); Ollama adds BOS
            # itself and does not print EOS, so empty tokens render correctly. Routes may override.
            bos_token=None,
            eos_token=None,
            source=f"backend '{self.name}' POST /api/show (model '{upstream_model}')",
            context_size=_context_length(shown),
        )

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        """None: Ollama's API has no tokenizer endpoint (only open proposals for /api/tokenize)."""
        return None

    async def health(self) -> bool:
        try:
            async with self._http.request("GET", "/api/version"):
                return True
        except BackendError:
            return False

    async def list_models(self) -> list[str] | None:
        """The pulled models (GET /api/tags)."""
        tags = await self._http.get_json("/api/tags")
        return [str(item.get("name")) for item in tags.get("models", [])] if isinstance(tags, dict) else None

    async def close(self) -> None:
        await self._http.close()

    async def _num_ctx(self, request: GenerationRequest) -> int:
        if request.context_size:
            return request.context_size
        try:
            shown = await self._show(request.upstream_model)
        except BackendError as error:
            if isinstance(error, (BackendUnreachable, BackendTimeout)) or error.status == 404:
                raise  # generating would fail the same way
            return DEFAULT_NUM_CTX
        return _context_length(shown) or DEFAULT_NUM_CTX

    async def _show(self, upstream_model: str) -> dict[str, Any]:
        shown = self._shown.get(upstream_model)
        if shown is None:
            data = await self._http.post_json("/api/show", {"model": upstream_model})
            shown = data if isinstance(data, dict) else {}
            self._shown[upstream_model] = shown
            length = _context_length(shown)
            log.info("ollama_model_shown", backend=self.name, model=upstream_model, context_length=length,
                     num_ctx=length or DEFAULT_NUM_CTX)
        return shown


def _finish(chunk: dict[str, Any]) -> Finish:
    # done_reason: "stop" or "length"; "load"/"unload" answer an empty prompt; "" (omitted) when
    # the runner's connection closed. Only "length" is a cut answer.
    usage = Usage(
        # prompt_eval_count is the whole prompt (cached tokens included); zero counts are omitted.
        prompt_tokens=int(chunk.get("prompt_eval_count") or 0),
        completion_tokens=int(chunk.get("eval_count") or 0),
    )
    return Finish(reason="length" if chunk.get("done_reason") == "length" else "stop", usage=usage)


def _context_length(shown: dict[str, Any]) -> int | None:
    """`<arch>.context_length` from /api/show's model_info (the GGUF metadata)."""
    info = shown.get("model_info")
    if not isinstance(info, dict):
        return None
    value = info.get(f"{info.get('general.architecture')}.context_length")
    if value is None:
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _keep_alive(value: str) -> str | int | float:
    """A JSON number is seconds (negative: forever); a string must be a Go duration with a unit,
    so Ollama refuses "-1" as a string: bare numbers go as numbers."""
    if _NUMBER.fullmatch(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value
