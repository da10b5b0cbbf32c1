"""A fake vLLM OpenAI-compatible server (``vllm serve``) that speaks its ``/v1/completions`` wire format, for tests.

Tests script what the "model" generates (``Scripted``); the request checks, stop handling, limits, special
tokens, SSE framing and errors around it follow vLLM's code. Read in vllm-project/vllm (main, mid 2026; the
module paths moved between releases, older names in brackets):

Request (``entrypoints/openai/completion/protocol.py`` CompletionRequest [``entrypoints/openai/protocol.py``])
- ``model`` optional; a name that is not served: 404 ``{"error": {"message": "The model `X` does not exist.",
  "type": "NotFoundError", "param": null, "code": 404}}`` (``engine/serving.py`` _check_model). Unknown fields
  are accepted and ignored (OpenAIBaseModel only logs them).
- ``max_tokens`` defaults to 16, and an explicit null is normalized to 16 too (``normalize_null_max_tokens``,
  vllm#45491; releases before it treated null as "the rest of the context", and 0.8 crashed on it with a 500).
  The served limit is min(max_tokens, max_model_len - prompt) (``serve/utils/api_utils.py`` get_max_tokens).
- Samplers: temperature, top_p, top_k, min_p, seed, presence/frequency_penalty, repetition_penalty; ``stop``
  (str or list), ``stop_token_ids``, ``include_stop_str_in_output``, ``ignore_eos``, ``min_tokens``,
  ``skip_special_tokens`` (default **true**), ``add_special_tokens`` (default **true**: BOS is added to the
  prompt), ``stream``, ``stream_options`` {include_usage (default true once the object is given),
  continuous_usage_stats}; stream_options without stream: 400 "Stream options can only be defined when
  `stream=True`."; an empty prompt: 400 "Either prompt or prompt_embeds must be provided and non-empty."
- ``prompt`` may be a list of token ids: it goes to the engine as it is (no BOS added, ``add_special_tokens``
  ignored); an id outside the vocabulary: 400 "Token id N is out of vocabulary".
- Prompt length (``renderers/params.py`` TokenizeParams): max_tokens > max_model_len: 400 "max_tokens=M
  cannot be greater than max_model_len=max_total_tokens=L. ..." (sic); prompt > max_model_len - max_tokens:
  400 "You passed N input tokens and requested M output tokens. However, the model's context length is only L
  tokens, resulting in a maximum input length of K tokens. Please reduce the length of the input prompt."
  (param ``input_tokens``; older releases: "This model's maximum context length is ..."). The special-token
  text in a string prompt is parsed into special tokens (HF tokenizers), so a rendered BOS is one BOS.

Response (``entrypoints/openai/completion/serving.py`` completion_stream_generator, ``api_router.py``)
- Errors: ``{"error": {"message", "type", "param", "code"}}`` with code = the HTTP status (ErrorInfo,
  ``serve/engine/protocol.py``); types BadRequestError 400, NotFoundError 404, InternalServerError 500;
  request validation errors have type "Bad Request" (``exception_handling/handlers/validation.py``). Releases
  before 0.10 sent a flat ``{"object": "error", "message", "type", "param", "code"}``.
- Stream: ``text/event-stream``; headers go out as soon as the request is scheduled; each chunk is
  ``data: <compact json>\\n\\n`` of ``model_dump_json(exclude_unset=True)``: ``{"id": "cmpl-<hex>", "object":
  "text_completion", "created", "model", "choices": [{"index", "text", "logprobs": null, "finish_reason",
  "stop_reason", "prompt_token_ids": null, "token_ids": null}]}`` (no ``usage`` key unless
  continuous_usage_stats). One chunk per engine step, even when its text is "" (held back or a skipped special).
  ``finish_reason`` ("stop" | "length" | "abort") and ``stop_reason`` (the stop string, a stop token id, or
  null for EOS) ride on the last text chunk. With include_usage a last chunk ``{..., "choices": [], "usage":
  {"prompt_tokens", "total_tokens", "completion_tokens"}}`` (``exclude_none``). Then ``data: [DONE]\\n\\n``.
- An engine error (finish_reason "error") is raised before its chunk is sent and becomes the in-band event
  ``data: {"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code":
  500}}`` (``json.dumps``, so with spaces), followed by ``data: [DONE]``; no usage chunk.
- Non-stream: one ``CompletionResponse`` (``model_dump()``, choices carry token_ids, prompt_logprobs,
  prompt_token_ids, routed_experts; usage has prompt_tokens_details).
- ``GET /health``: 200, empty body (503 once the engine is dead). ``GET /v1/models``: ModelList of ModelCard
  {id, object "model", created, owned_by "vllm", root, parent, max_model_len, permission [ModelPermission]}.
  ``POST /tokenize`` {model, prompt, add_special_tokens=true, return_token_strs=false} -> {count,
  max_model_len, tokens, token_strs}. ``--api-key`` guards /v1/* with 401 ``{"error": "Unauthorized"}``.
  Unknown routes: FastAPI's 404 ``{"detail": "Not Found"}`` / 405 ``{"detail": "Method Not Allowed"}``.

Generation (``v1/core/sched/utils.py`` check_stop, ``v1/engine/detokenizer.py``, ``v1/engine/__init__.py``)
- After each token: EOS (unless ignore_eos) -> "stop" with stop_reason null; a stop_token_ids token (the
  model's other end tokens from generation_config join them: ``eog_tokens``) -> "stop" with the id; then
  max_tokens / max_model_len -> "length". The token that ended generation as EOS or stop token is **not
  detokenized** unless include_stop_str_in_output: the EOS text never reaches the client, special tokens
  printed or not.
- Each token's text is appended (special tokens only with skip_special_tokens false); stop strings are looked
  for in the new text (earliest end wins), the text is cut before the stop string (after it with
  include_stop_str_in_output), finish "stop", stop_reason the string. While streaming, the last
  max(len(stop)) - 1 characters are held back until the end (get_next_output_text).
- completion_tokens counts every generated token, the one that ended generation included.

- ``logprobs: N`` (``_create_completion_logprobs``): each chunk's ``logprobs`` is ``{text_offset, token_logprobs,
  tokens, top_logprobs}`` for the tokens of its step, also when its text is "" (held back, or the EOS that ended
  generation: its token is listed, its text never sent); ``top_logprobs`` maps the decoded token to its logprob
  for the N + 1 likeliest, the sampled one first. Non-stream: one such object for the whole output. The values
  are the fake's own (``tests/fakes/token_probs.py``).

Not modelled: n > 1, several prompts (a list of strings or of id lists), echo, prompt logprobs, beam search, structured outputs other than ``grammar``
(accepted, recorded, not enforced; a ``grammar`` is honored as a model would, see ``tests/fakes/gbnf.py``), prompt token ids, min_tokens, spaces_between_special_tokens (the fast detokenizer adds none),
stream_interval, system_fingerprint. Tokens are the fake's own (``tests.fakes.llamacpp.split_text``).
``eos_in_text`` is a deliberate deviation: it prints the EOS token's text at the end, as some other
OpenAI-compatible servers (and old releases) do, to test clients that must strip it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.fakes import token_probs
from tests.fakes.gbnf import constrained
from tests.fakes.llamacpp import _segments, _Vocab, split_text
from tests.fakes.server import MAX_REQUEST_BYTES, LoopbackServer

# A reply worked out from the prompt text (a model that reads its context or continues a prefill).
Reply = Callable[[str], "Scripted | str"]

ScriptEnd = Literal["eos", "abort", "none"]

_POLL_SECONDS = 0.01
_ENGINE_ERROR = {"message": "Internal server error", "type": "InternalServerError", "param": None, "code": 500}


def error_object(message: str, type_: str = "BadRequestError", code: int = 400, param: str | None = None) -> dict:
    """vLLM's ErrorInfo, in its field order."""
    return {"message": message, "type": type_, "param": param, "code": code}


def error_body(message: str, type_: str = "BadRequestError", code: int = 400) -> tuple[int, dict[str, Any]]:
    """An HTTP error as vLLM answers it, ready for ``Scripted(http_error=...)``."""
    return code, {"error": error_object(message, type_, code)}


class ApiError(Exception):
    def __init__(self, message: str, type_: str = "BadRequestError", code: int = 400, param: str | None = None):
        super().__init__(message)
        self.status = code
        self.body = {"error": error_object(message, type_, code, param)}


def _validation_error(field_name: str, message: str, value: Any = None) -> ApiError:
    """A pydantic validation error as vLLM's handler words it (the dict's details are approximate)."""
    detail = f"{{'type': 'value_error', 'loc': 'body.{field_name}', 'msg': '{message}', 'input': {value!r}}}"
    text = f"1 validation error:\n  {detail}"
    return ApiError(text, "Bad Request", 400, f"body.{field_name}")


@dataclass
class Scripted:
    """One scripted generation.

    chunks: the tokens the "model" produces, in order (one engine step and one SSE chunk each). A chunk equal
      to the EOS or an ``eog_tokens`` token ends generation as that token would.
    end: how generation ends when the chunks run out: "eos" (one more EOS token), "abort" (the engine aborts
      the request, e.g. a server pausing for a weight update: finish_reason "abort"), or "none" (usage and
      [DONE] follow with no finish_reason ever sent: not vLLM, a broken server).
    prompt_tokens / cached_tokens: reported usage; None counts the prompt with the fake's tokenizer.
    delay: seconds to wait before each chunk.
    error_after: the engine fails at this token: the in-band error event, then [DONE] (non-stream: HTTP 500).
    error: that event's error object instead of vLLM's GenerationError.
    http_error: answer with this (status, JSON body) instead of generating (see ``error_body``).
    hang: send the stream's headers (a non-stream request: nothing) and then nothing more.
    cut_after: close the connection after this many chunks, mid chunked body.
    end_after: end the body cleanly after this many chunks: no finish_reason, no [DONE] (a broken proxy).
    omit_done: everything but the final ``data: [DONE]``.
    """

    chunks: list[str]
    end: ScriptEnd = "eos"
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    delay: float = 0.0
    error_after: int | None = None
    error: dict[str, Any] | None = None
    http_error: tuple[int, dict[str, Any]] | None = None
    hang: bool = False
    cut_after: int | None = None
    end_after: int | None = None
    omit_done: bool = False


@dataclass
class _Params:
    """A /v1/completions request after vLLM's checks."""

    prompt_ids: list[int]
    max_tokens: int
    stream: bool
    include_usage: bool
    continuous_usage: bool
    stop: list[str] = field(default_factory=list)
    stop_token_ids: set[int] = field(default_factory=set)
    skip_special_tokens: bool = True
    include_stop_str: bool = False
    ignore_eos: bool = False
    logprobs: int | None = None


class _Disconnect(Exception):
    """The connection is over: "gone" (the client left), "cut" (scripted), "end" (scripted), "shutdown"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _EngineError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


class _Generation:
    """One request's engine and detokenizer state (check_stop, IncrementalDetokenizer), no I/O."""

    def __init__(self, server: FakeVllmServer, params: _Params) -> None:
        self.server, self.params = server, params
        self.text = ""
        self.sent = 0
        self.n_tokens = 0
        self.finish_reason: str | None = None
        self.stop_reason: int | str | None = None
        buffered = params.stop and not params.include_stop_str
        self.buffer = max(len(s) for s in params.stop) - 1 if buffered else 0
        self.tokens: list[str] = []  # every token generated, for logprobs
        self.tokens_sent = 0

    def step(self, chunk: str) -> str:
        """Take one sampled token; return the text delta streamed for it."""
        server, params = self.server, self.params
        token = server.vocab.id_of(chunk)
        self.n_tokens += 1
        self.tokens.append(chunk)
        stop_terminated = False
        if chunk == server.eos_token and not params.ignore_eos:
            self.finish_reason, stop_terminated = "stop", True
        elif token in params.stop_token_ids:
            self.finish_reason, self.stop_reason, stop_terminated = "stop", token, True
        elif len(params.prompt_ids) + self.n_tokens >= server.max_model_len or self.n_tokens >= params.max_tokens:
            self.finish_reason = "length"
        if not stop_terminated or params.include_stop_str:
            new = server.printed(chunk, params.skip_special_tokens)
            # Appended with the attribute let go first, so CPython grows the string in place: a long
            # answer stays linear, as a model's output is.
            text, self.text = self.text, ""
            text += new
            self.text = text
            self._check_stop_strings(len(new))
        if stop_terminated and server.eos_in_text and not params.skip_special_tokens:
            self.text += chunk  # the deviation: a server that prints its end token
        return self.delta()

    def _check_stop_strings(self, new_chars: int) -> None:
        if not new_chars or not self.params.stop:
            return
        best: tuple[int, int, str] | None = None
        for stop in self.params.stop:
            index = self.text.find(stop, 1 - new_chars - len(stop))
            if index != -1 and (best is None or index + len(stop) < best[1]):
                best = (index, index + len(stop), stop)
        if best is None:
            return
        index, end, stop = best
        self.text = self.text[: end if self.params.include_stop_str else index]
        self.finish_reason, self.stop_reason = "stop", stop

    def logprobs(self, *, everything: bool = False) -> dict[str, Any] | None:
        """The logprobs of the tokens since the last chunk (or of all), when the request asked."""
        top = self.params.logprobs
        if top is None:
            return None
        start = 0 if everything else self.tokens_sent
        tokens = self.tokens[start:]
        self.tokens_sent = len(self.tokens)
        offset = sum(len(t) for t in self.tokens[:start])
        offsets = []
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
        return {
            "text_offset": offsets,
            "token_logprobs": [token_probs.token_logprob(t) for t in tokens],
            "tokens": tokens,
            "top_logprobs": [dict(token_probs.ranked(t, top + 1)) for t in tokens],
        }

    def abort(self) -> str:
        self.finish_reason = "abort"
        return self.delta()

    def delta(self) -> str:
        end = len(self.text) - (0 if self.finish_reason else self.buffer)
        if self.sent >= end:
            return ""
        out, self.sent = self.text[self.sent : end], end
        return out


class FakeVllmServer(LoopbackServer):
    """A scripted ``vllm serve`` on 127.0.0.1.

    Use ``async with FakeVllmServer() as fake: url = fake.url`` (or ``start()`` / ``stop()``), queue replies with
    ``script()``, then assert on ``requests`` (completion bodies), ``tokenize_requests``, ``prompt_ids``,
    ``cancelled``.
    """

    def __init__(
        self,
        *,
        model: str = "Qwen/Qwen2.5-7B-Instruct",
        served_model_names: Iterable[str] = (),
        bos_token: str = "",
        eos_token: str = "<|im_end|>",
        eog_tokens: Iterable[str] = (),
        special_tokens: Iterable[str] = (),
        max_model_len: int = 4096,
        prompt_tokens_details: bool = False,
        eos_in_text: bool = False,
        api_key: str | None = None,
        default_reply: Scripted | str | Reply | None = "Hello from the fake vLLM.",
        token_delay: float = 0.0,
        tokenize_route: bool = True,
        dummy_prefix: bool = False,
    ) -> None:
        self.model = model
        self.served_model_names = list(served_model_names) or [model]
        self.bos_token, self.eos_token = bos_token, eos_token
        self.eog_tokens = [t for t in eog_tokens if t]
        self.vocab = _Vocab(bos_token, eos_token, {*special_tokens, *self.eog_tokens})
        self.max_model_len = max_model_len
        self.prompt_tokens_details = prompt_tokens_details
        self.eos_in_text = eos_in_text
        self.api_key = api_key
        self.default_reply = default_reply
        self.token_delay = token_delay  # seconds before each token of a reply given as text
        self.dead = False
        # A sentencepiece tokenizer that starts every text with a space, "▁" in its token strings (Llama 2, Mistral).
        self.dummy_prefix = dummy_prefix
        self.tokenize_route = tokenize_route  # False: a proxy in front that passes only /v1/* and /health

        self.requests: list[dict[str, Any]] = []
        self.tokenize_requests: list[dict[str, Any]] = []
        self.prompt_ids: list[list[int]] = []
        super().__init__()
        self._queue: deque[Scripted | Reply] = deque()

    # ---- scripting ------------------------------------------------------------------------------

    def script(self, *items: Scripted | str | Reply) -> None:
        """Queue replies, one per completion request; a str is split into tokens (``split_text``).

        A callable is called with the request's prompt text when its turn comes (a model that reads
        its context, or continues a prefilled answer: ``tests.fakes.model``)."""
        self._queue.extend(item if callable(item) else self._as_scripted(item) for item in items)

    def split(self, text: str, *, every: int | None = None) -> list[str]:
        return split_text(text, every=every, special=self.vocab.special)

    def _as_scripted(self, item: Scripted | str) -> Scripted:
        return item if isinstance(item, Scripted) else Scripted(self.split(item), delay=self.token_delay)

    def _next_script(self, prompt_text: str) -> Scripted | None:
        item = self._queue.popleft() if self._queue else self.default_reply
        if item is None:
            return None
        return self._as_scripted(item(prompt_text)) if callable(item) else self._as_scripted(item)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def tokens(self, text: str, *, add_special_tokens: bool) -> list[int]:
        text = " " + text if self.dummy_prefix else text
        return self.vocab.tokenize(text, add_bos=add_special_tokens, parse_special=True)

    def token_str(self, token: int) -> str:
        piece = self.vocab.piece(token)
        return piece.replace(" ", "\u2581") if self.dummy_prefix else piece

    def printed(self, chunk: str, skip_special_tokens: bool) -> str:
        if not skip_special_tokens:
            return chunk
        return "".join(seg for seg, special in _segments(chunk, self.vocab._sorted_special) if not special)


    # ---- lifecycle ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/health", self._health)
        app.router.add_get("/version", self._version)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        if self.tokenize_route:
            app.router.add_post("/tokenize", self._tokenize)
        return app

    # ---- HTTP plumbing --------------------------------------------------------------------------

    @staticmethod
    def _json(status: int, obj: Any) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        authorized = request.headers.get("Authorization", "") == f"Bearer {self.api_key}"
        if self.api_key is not None and request.path.startswith("/v1") and not authorized:
            return self._json(401, {"error": "Unauthorized"})
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._json(404, {"detail": "Not Found"})
        except web.HTTPMethodNotAllowed:
            return self._json(405, {"detail": "Method Not Allowed"})
        except ApiError as error:
            return self._json(error.status, error.body)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise ApiError(
                "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed", "Bad Request"
            )
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as error:
            raise _validation_error("", f"JSON decode error: {error}") from None
        if not isinstance(body, dict):
            raise _validation_error("", "Input should be a valid dictionary", body)
        return body

    def _check_model(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model is not None and model not in self.served_model_names:
            raise ApiError(f"The model `{model}` does not exist.", "NotFoundError", 404)

    # ---- simple routes --------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self.dead else 200)

    async def _version(self, request: web.Request) -> web.Response:
        return self._json(200, {"version": "0.0.0+fake"})

    async def _models(self, request: web.Request) -> web.Response:
        now = int(time.time())
        permission = {
            "id": f"modelperm-{uuid.uuid4().hex}",
            "object": "model_permission",
            "created": now,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        cards = [
            {
                "id": name,
                "object": "model",
                "created": now,
                "owned_by": "vllm",
                "root": self.model,
                "parent": None,
                "max_model_len": self.max_model_len,
                "permission": [permission],
            }
            for name in self.served_model_names
        ]
        return self._json(200, {"object": "list", "data": cards})

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.tokenize_requests.append(body)
        self._check_model(body)
        if not isinstance(body.get("prompt"), str):
            raise _validation_error("prompt", "Field required (the fake models only prompt tokenization)")
        ids = self.tokens(body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True)))
        strs = [self.token_str(t) for t in ids] if body.get("return_token_strs") else None
        return self._json(
            200, {"count": len(ids), "max_model_len": self.max_model_len, "tokens": ids, "token_strs": strs}
        )

    # ---- /v1/completions ------------------------------------------------------------------------

    def _params(self, body: dict[str, Any]) -> _Params:
        """CompletionRequest's validators, _check_model, then the renderer's length checks, in vLLM's order."""
        stream = bool(body.get("stream"))
        if body.get("stream_options") and not stream:
            raise _validation_error(
                "stream_options", "Value error, Stream options can only be defined when `stream=True`."
            )
        prompt = body.get("prompt")
        if prompt is None or prompt == "":
            raise _validation_error(
                "prompt", "Value error, Either prompt or prompt_embeds must be provided and non-empty."
            )
        if not isinstance(prompt, str) and not _is_token_ids(prompt):
            raise ApiError("fake vLLM: only a single prompt (a string or a list of token ids) is modelled")
        for name in ("stream", "skip_special_tokens", "add_special_tokens", "include_stop_str_in_output", "ignore_eos"):
            if name in body and not isinstance(body[name], bool):
                raise _validation_error(name, "Input should be a valid boolean", body[name])
        for name in ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty"):
            if body.get(name) is not None and not isinstance(body[name], (int, float)):
                raise _validation_error(name, "Input should be a valid number", body[name])
        if body.get("n", 1) != 1 or body.get("echo") or body.get("use_beam_search"):
            raise ApiError("fake vLLM: n > 1, echo and beam search are not modelled")
        logprobs = body.get("logprobs")
        if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool) or logprobs < 0):
            raise _validation_error("logprobs", "Input should be a valid integer", logprobs)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _validation_error("stop", "Input should be a valid list of strings", stop)
        max_tokens = body.get("max_tokens")
        max_tokens = 16 if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise _validation_error("max_tokens", "Input should be a valid integer", max_tokens)
        self._check_model(body)
        if isinstance(prompt, str):
            prompt_ids = self.tokens(prompt, add_special_tokens=body.get("add_special_tokens", True))
        else:  # token ids go to the engine as they are: nothing is added (add_special_tokens is ignored)
            prompt_ids = list(prompt)
            unknown = next((token for token in prompt_ids if not self.vocab.piece(token)), None)
            if unknown is not None:
                raise ApiError(f"Token id {unknown} is out of vocabulary", param="prompt")
        if max_tokens > self.max_model_len:
            raise ApiError(
                f"max_tokens={max_tokens}cannot be greater than max_model_len=max_total_tokens={self.max_model_len}. "
                "Please request fewer output tokens.",
                param="max_tokens",
            )
        if len(prompt_ids) > self.max_model_len - max_tokens:
            raise ApiError(
                f"You passed {len(prompt_ids)} input tokens and requested {max_tokens} output tokens. However, the "
                f"model's context length is only {self.max_model_len} tokens, resulting in a maximum input length of "
                f"{self.max_model_len - max_tokens} tokens. Please reduce the length of the input prompt.",
                param="input_tokens",
            )
        if max_tokens < 1:
            raise ApiError(f"max_tokens must be at least 1, got {max_tokens}.", param="max_tokens")
        options = body.get("stream_options") or {}
        include_usage = bool(options) and bool(options.get("include_usage", True))
        stop_ids = {self.vocab.id_of(t) for t in self.eog_tokens} | set(body.get("stop_token_ids") or [])
        return _Params(
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            stream=stream,
            include_usage=include_usage,
            continuous_usage=include_usage and bool(options.get("continuous_usage_stats")),
            stop=stop,
            stop_token_ids=stop_ids,
            skip_special_tokens=body.get("skip_special_tokens", True),
            include_stop_str=body.get("include_stop_str_in_output", False),
            ignore_eos=body.get("ignore_eos", False),
            logprobs=logprobs,
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        self.requests.append(body)
        params = self._params(body)
        self.prompt_ids.append(params.prompt_ids)
        prompt = body["prompt"]
        script = self._next_script(prompt if isinstance(prompt, str) else self.vocab.detokenize(prompt))
        if script is None:
            raise ApiError("fake vLLM: no scripted reply left", "InternalServerError", 500)
        structured = body.get("structured_outputs")
        if isinstance(structured, dict) and isinstance(structured.get("grammar"), str) and script.http_error is None:
            # The model writes what it meant where the grammar admits it, and ends where it is complete.
            eog = {self.eos_token, *self.eog_tokens}
            text = constrained(structured["grammar"], "".join(c for c in script.chunks if c not in eog))
            script = replace(script, chunks=self.split(text), end="eos")
        if script.http_error is not None:
            status, error = script.http_error
            return self._json(status, error)
        usage = _Usage(script.prompt_tokens if script.prompt_tokens is not None else len(params.prompt_ids), script)
        if params.stream:
            return await self._stream(request, script, params, usage)
        return await self._collect(request, script, params, usage)

    async def _steps(self, request: web.Request, script: Scripted, gen: _Generation) -> AsyncIterator[str]:
        """Yield the text delta of each engine step; raise ``_EngineError`` / ``_Disconnect`` where scripted."""
        chunks = list(script.chunks) + ([self.eos_token] if script.end == "eos" else [])
        for n_done, chunk in enumerate(chunks):
            if script.hang:
                await self._sleep(request, float("inf"))
            if script.error_after is not None and n_done >= script.error_after:
                raise _EngineError(script.error or dict(_ENGINE_ERROR))
            for limit, reason in ((script.cut_after, "cut"), (script.end_after, "end")):
                if limit is not None and n_done >= limit:
                    raise _Disconnect(reason)
            if script.delay > 0:
                await self._sleep(request, script.delay)
            delta = gen.step(chunk)
            yield delta
            if gen.finish_reason:
                return
        if script.error_after is not None:
            raise _EngineError(script.error or dict(_ENGINE_ERROR))
        if script.end == "abort":
            yield gen.abort()

    def _choice(self, gen: _Generation, text: str, *, everything: bool = False) -> dict[str, Any]:
        return {
            "index": 0,
            "text": text,
            "logprobs": gen.logprobs(everything=everything),
            "finish_reason": gen.finish_reason,
            "stop_reason": gen.stop_reason,
        }

    async def _stream(
        self, request: web.Request, script: Scripted, params: _Params, usage: _Usage
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"})
        response.enable_chunked_encoding()
        rid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), self.served_model_names[0]
        gen = _Generation(self, params)

        async def send(data: bytes) -> None:
            try:
                await response.write(b"data: " + data + b"\n\n")
            except (ConnectionError, RuntimeError) as exc:
                raise _Disconnect("gone") from exc

        try:
            await response.prepare(request)  # StreamingResponse starts before the first token
            try:
                async for text in self._steps(request, script, gen):
                    chunk: dict[str, Any] = {
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "choices": [{**self._choice(gen, text), "prompt_token_ids": None, "token_ids": None}],
                    }
                    if params.continuous_usage:
                        chunk["usage"] = usage.info(gen.n_tokens, details=False)
                    await send(orjson.dumps(chunk))
                if params.include_usage:
                    final = {
                        "id": rid,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage.info(gen.n_tokens, details=self.prompt_tokens_details),
                    }
                    await send(orjson.dumps(final))
            except _EngineError as error:
                await send(json.dumps({"error": error.error}).encode())
            if not script.omit_done:
                await send(b"[DONE]")
            await response.write_eof()
        except _Disconnect as exc:
            return self._drop(request, exc.reason, response)
        except (ConnectionError, RuntimeError):
            return self._drop(request, "gone", response)
        return response

    async def _collect(
        self, request: web.Request, script: Scripted, params: _Params, usage: _Usage
    ) -> web.StreamResponse:
        gen = _Generation(self, params)
        try:
            async for _ in self._steps(request, script, gen):
                pass
        except _EngineError as error:
            return self._json(error.error.get("code", 500), {"error": error.error})
        except _Disconnect as exc:
            return self._drop(request, exc.reason)
        choice = {
            **self._choice(gen, gen.text, everything=True),
            "token_ids": None,
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "routed_experts": None,
        }
        info = usage.info(gen.n_tokens, details=self.prompt_tokens_details)
        info.setdefault("prompt_tokens_details", None)
        return self._json(
            200,
            {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.served_model_names[0],
                "choices": [choice],
                "service_tier": None,
                "system_fingerprint": None,
                "usage": info,
                "kv_transfer_params": None,
                "ec_transfer_params": None,
                "metrics": None,
            },
        )

    def _drop(
        self, request: web.Request, reason: str, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        """End a request whose connection is over; a client that left is counted (vLLM aborts its request)."""
        if reason == "gone":
            self.cancelled += 1
        if reason == "end" and response is not None and response.prepared:
            return response  # aiohttp finishes the chunked body cleanly
        if request.transport is not None:
            request.transport.close()
        return response if response is not None else web.Response(status=499)

    @staticmethod
    def _gone(request: web.Request) -> bool:
        return request.transport is None or request.transport.is_closing()

    async def _sleep(self, request: web.Request, seconds: float) -> None:
        """Wait like a slow engine, noticing a client that left."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._closing.is_set():
                raise _Disconnect("shutdown")
            if self._gone(request):
                raise _Disconnect("gone")
            await asyncio.sleep(_POLL_SECONDS)


def _is_token_ids(prompt: Any) -> bool:
    """A prompt given as token ids (CompletionRequest's `list[int]`), not empty."""
    return isinstance(prompt, list) and bool(prompt) and all(
        isinstance(token, int) and not isinstance(token, bool) and token >= 0 for token in prompt
    )


class _Usage:
    """UsageInfo for one request: prompt_tokens, total_tokens, completion_tokens[, prompt_tokens_details]."""

    def __init__(self, prompt_tokens: int, script: Scripted) -> None:
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = script.cached_tokens or 0

    def info(self, completion_tokens: int, *, details: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }
        if details:
            info["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return info
