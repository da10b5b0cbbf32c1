"""llama.cpp `llama-server` over its native `POST /completion`.

Wire format: SSE lines `data: {...}` with `content` and `stop: false`, then one line with
`stop: true`, `stop_type` and token counts; no `[DONE]`; lines starting with `:` are pings; an
error mid-stream arrives in-band as `{"error": {...}}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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
from .errors import BackendError, BackendProtocolError, BackendRejected, TemplateUnavailable
from .http import BackendHttp, HttpSettings, error_message, parse_json
from .llamacpp_plain import PlainContentTokenizer
from .logprobs import token_list

# llama-server's stop_type -> OpenAI finish_reason. "none" means it stopped for no reason it
# could name (e.g. the slot was released); treat it as a normal stop.
# common_grammar_trigger_type in llama.cpp's common/common.h: 1 is a plain word.
_TRIGGER_WORD = 1
_FINISH_REASONS = {"eos": "stop", "word": "stop", "limit": "length", "none": "stop"}


class LlamaCppBackend:
    type = "llamacpp"
    constraints = frozenset({"json_schema", "grammar", "lazy_grammar"})
    # "plain_spans": the client's text is tokenized as plain text (one /tokenize call a request).
    features = frozenset({"logit_bias", "logprobs", "plain_spans"})

    def __init__(self, name: str, settings: HttpSettings) -> None:
        self.name = name
        self._http = BackendHttp(name, settings)
        self._plain = PlainContentTokenizer(name, self._http)

    def completion_body(self, request: GenerationRequest) -> dict[str, Any]:
        sampling = request.sampling
        body = {
            # A single-model server ignores it; llama-server's router mode picks the model by it.
            "model": request.upstream_model,
            "prompt": request.prompt_without_bos(),
            "stream": True,
            "n_predict": sampling.max_tokens if sampling.max_tokens is not None else -1,
            "stop": list(request.stop),
            **sampler_fields(sampling),
            "logit_bias": [[token, bias] for token, bias in sampling.logit_bias] if sampling.logit_bias else None,
            "cache_prompt": True,
            # The server sends probabilities only for n_probs > 0; the list is cut to what was asked.
            "n_probs": max(1, sampling.logprobs) if sampling.logprobs is not None else None,
        }
        preserved = list(request.preserved_tokens)
        constraint = request.constraint
        if constraint is not None and constraint.grammar:
            body["grammar"] = constraint.grammar
            if constraint.lazy_triggers:
                # Free text until a trigger word, then the grammar; a trigger that is a single
                # token must also be preserved or the server refuses the request.
                body["grammar_lazy"] = True
                body["grammar_triggers"] = [{"type": _TRIGGER_WORD, "value": word} for word in constraint.lazy_triggers]
                preserved += [word for word in constraint.lazy_triggers if word not in preserved]
        elif constraint is not None and constraint.json_schema is not None:
            body["json_schema"] = constraint.json_schema
        if preserved:
            body["preserved_tokens"] = preserved
        return drop_none(body)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[BackendEvent]:
        top_n = request.sampling.logprobs
        # A token's probabilities come with its own chunk even when its text is held back (a possible
        # stop string) or dropped (a stop string): kept until text goes out, the pipeline sorts them.
        probs: list[TokenLogprob] = []
        body = self.completion_body(request)
        if request.plain_spans:
            body["prompt"] = await self._plain.prompt(request)
        async with self._http.request("POST", "/completion", body) as response:
            async for lines in self._http.lines(response):
                texts: list[str] = []
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank separators and `:` keep-alive pings
                    chunk = parse_json(self.name, line[5:])
                    if not isinstance(chunk, dict):
                        raise BackendProtocolError(self.name, f"backend '{self.name}' sent a non-object chunk")
                    if "error" in chunk:
                        if texts:  # what came before the error still reaches the client
                            yield TextPiece("".join(texts), tuple(probs))
                        raise self._stream_error(chunk)
                    text = chunk.get("content")
                    if text:
                        texts.append(text)
                    if top_n is not None:
                        probs += token_list(chunk.get("completion_probabilities"), top_n)
                    if chunk.get("stop"):
                        if texts:
                            yield TextPiece("".join(texts), tuple(probs))
                        yield self._finish(chunk)
                        return
                if texts:
                    yield TextPiece("".join(texts), tuple(probs))
                    probs = []
        raise BackendProtocolError(self.name, f"backend '{self.name}' ended the stream without its final chunk")

    def _stream_error(self, chunk: dict[str, Any]) -> BackendError:
        """An in-band error: the server's own fault (code 5xx, e.g. a compute error) is not the request's."""
        message, _ = error_message(chunk)
        error = chunk["error"] if isinstance(chunk["error"], dict) else {}
        code = error.get("code")
        status = code if isinstance(code, int) else None
        text = f"backend '{self.name}' failed mid-stream: {message}"
        if status is not None and status >= 500:
            return BackendError(self.name, text, status=status)
        return BackendRejected(self.name, text, status=status)

    def _finish(self, chunk: dict[str, Any]) -> Finish:
        stop_type = chunk.get("stop_type") or "eos"
        timings = chunk.get("timings") or {}
        usage = Usage(
            prompt_tokens=int(chunk.get("tokens_evaluated") or timings.get("prompt_n") or 0),
            completion_tokens=int(chunk.get("tokens_predicted") or timings.get("predicted_n") or 0),
            # `tokens_cached` is the whole slot cache; the prompt tokens reused are timings.cache_n.
            cached_tokens=timings.get("cache_n"),
        )
        return Finish(
            reason=_FINISH_REASONS.get(stop_type, "stop"),  # type: ignore[arg-type]
            usage=usage,
            stop_word=chunk.get("stopping_word") or None,
        )

    async def template_info(self, upstream_model: str) -> TemplateInfo:
        props = await self._http.get_json("/props")
        template = props.get("chat_template") if isinstance(props, dict) else None
        if not template:
            raise TemplateUnavailable(self.name, f"backend '{self.name}' reports no chat template in GET /props")
        settings = props.get("default_generation_settings") or {}
        return TemplateInfo(
            chat_template=template,
            bos_token=props.get("bos_token"),
            eos_token=props.get("eos_token"),
            source=f"backend '{self.name}' GET /props",
            context_size=settings.get("n_ctx") or props.get("n_ctx"),
        )

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        # The prompt as /completion gets it: BOS added by the server, special-token text parsed.
        prompt = await self._plain.prompt(request) if request.plain_spans else request.prompt_without_bos()
        payload = {"content": prompt, "add_special": True, "parse_special": True}
        answer = await self._http.post_json("/tokenize", payload)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise BackendProtocolError(self.name, f"backend '{self.name}' answered /tokenize without a 'tokens' list")
        return len(tokens)

    async def health(self) -> bool:
        try:
            async with self._http.request("GET", "/health"):
                return True
        except BackendError:
            return False

    async def list_models(self) -> list[str] | None:
        """None: a single-model llama-server answers to any model name."""
        return None

    async def close(self) -> None:
        await self._http.close()
