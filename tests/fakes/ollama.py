"""A fake Ollama server that speaks its native HTTP wire format, for tests.

Tests script what the "model" generates (``Scripted``); what surrounds it (request checks, options,
stop strings, num_predict, dropped control tokens, prompt truncation at num_ctx, NDJSON framing,
errors) follows Ollama's code. Read in ollama/ollama (newest stored snapshot, v0.33.0-rc2, whose runner
is llama.cpp's llama-server since v0.30.0, commit 9db4bdbad), not run against a real Ollama:

Request (``server/routes.go`` GenerateHandler, ``api/types.go`` GenerateRequest, Options.FromMap, Duration)
- ``POST /api/generate``: ``model``, ``prompt``, ``raw``, ``stream`` (default true), ``options``,
  ``keep_alive``, ``think``, ``system``/``template``/``context``. No body: 400 "missing request body"; a field
  of the wrong JSON type: 400 "json: cannot unmarshal string into Go struct field GenerateRequest.raw of type
  bool". ``keep_alive``: a number is seconds (negative: forever), a string is a Go duration, so "-1" as a
  string is a 400 "time: missing unit in duration \\"-1\\"". Unknown model: 404 "model 'x' not found".
  Empty prompt with keep_alive 0: a done line with done_reason "unload"; empty prompt: done_reason "load".
  raw with system/template/context: 400 "raw mode does not support template, system, or context".
  ``think: true`` for a model without the "thinking" capability: 400 '"x" does not support thinking'; a
  thinking-capable model with ``think`` unset gets think=true, and even in raw mode the text between its
  template's think tags then goes to a ``thinking`` field, not ``response``.
- ``options`` go through Options.FromMap: unknown keys are ignored, a value of the wrong type is a 500
  'option "num_ctx" must be of type integer' (the error surfaces from scheduling). num_predict -1 (default)
  or 0: no limit. num_ctx unset: the server default (4096 on GPUs under 24 GiB; ``default_num_ctx`` here).

Generation (``llm/llama_server.go`` Completion, completionPromptForRequest)
- The raw prompt goes to llama-server as a string: BOS is added when the model wants one (a prompt that starts
  with BOS text gets two), special-token text is parsed. A prompt over num_ctx - 1 tokens is cut silently
  (context shift, on by default; off for deepseek2): the first num_keep (+1 for BOS) tokens stay, then the
  tail, num_ctx - max((num_ctx - num_keep) / 2, 1) tokens in all; with context shift off it is a 400 "the
  prompt is longer than the context length currently available to the model; ...". Older Go runners cut to
  exactly num_ctx; either way ``prompt_eval_count`` counts what was kept.
- Control tokens (``special_tokens`` here) are never printed: raw mode sends no preserved_tokens and
  llama-server runs without --special (ollama/ollama#16976); llama.cpp's token_to_piece hides only CONTROL
  and UNKNOWN tokens, so user-defined added tokens (HF ``special: false``, e.g. Qwen2.5/Qwen3's
  ``<tool_call>``; Ollama's ``convert/tokenizer.go`` maps them the same way) still print. End-of-generation
  tokens (``eog_tokens``) end it, done_reason "stop". Ollama before 0.30 printed control tokens too
  (llamarunner's TokenToPiece passes special=true; ollamarunner's Decode filters nothing), all but EOS.
  A token that prints nothing sends no line. Stop strings cut the text (never sent) with done_reason "stop";
  text that could begin a stop string is held back and flushed at the end. num_predict reached: "length".
- When a stream's token repeats more than 30 times Ollama aborts it and the stream ends with no done line
  (``Scripted(drop_done=True)``).

Response (``server/routes.go`` streamResponse, ``api/types.go`` GenerateResponse/Metrics)
- Stream: ``application/x-ndjson``, one ``json.Marshal`` object a line (keys in struct order; ``<``, ``>``,
  ``&``, U+2028/9 escaped as \\u003c ...). Partial: ``{"model", "created_at", "response", "done": false}``;
  final: ``{"model", "created_at", "response": "", "done": true, "done_reason", "total_duration",
  "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"}``, durations in
  nanoseconds, zero values omitted. ``context`` only without raw. ``created_at`` is RFC 3339 UTC with
  nanoseconds, trailing zeros trimmed. ``model`` echoes the request.
- An error before any line is written: that HTTP status (500 by default) with ``{"error": "..."}``; after:
  an in-band line ``{"error": "..."}`` (status stays 200) and the stream ends. ``stream: false``: one object,
  ``application/json; charset=utf-8``, an error as an HTTP status.
- Headers go out with the first line, so a loading or stuck model sends nothing at all.

Other routes: ``GET /`` "Ollama is running"; ``GET /api/version`` ``{"version"}``; ``GET /api/tags``
``{"models": [{name, model, modified_at, size, digest, details}]}``; ``POST /api/show`` (ShowResponse:
license, modelfile, parameters, template, details, model_info, tensors, capabilities, modified_at).
``model_info`` is the GGUF metadata with keys sorted, arrays over 5 items emptied unless verbose, and
``tokenizer.chat_template`` always deleted (since #4881, 2024); ``template`` is the GGUF's Jinja chat
template when Ollama runs the model with it (v0.30+, ``selectedModelTemplate``), else the Go template.
Unknown paths: 404 text "404 page not found".

- ``logprobs: true`` (and ``top_logprobs`` 0-20), since 0.12.11: a line's ``logprobs`` (omitempty, after
  ``done_reason``) lists ``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`` (top_logprobs
  omitempty) for the tokens since the last line, so a held-back token's go with the line that sends its text;
  what is left goes on the final line; non-stream: all on the one object. The values are the fake's own
  (``tests/fakes/token_probs.py``).

Not modelled: images, suffix, format/JSON schemas (accepted, not enforced), /api/chat, the
OpenAI routes, Go's exact JSON syntax-error texts. Tokens are crude: a prompt counts its whitespace-separated
pieces (plus BOS); a scripted chunk is one generated token.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.fakes import token_probs
from tests.fakes.llamacpp import split_text
from tests.fakes.server import MAX_REQUEST_BYTES, LoopbackServer

# A reply worked out from the prompt text (a model that reads its context or continues a prefill).
Reply = Callable[[str], "Scripted | str"]

DoneReason = Literal["stop", "length"]

DEFAULT_GO_TEMPLATE = (
    "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}"
    "{{- if eq .Role \"user\" }}<start_of_turn>user\n{{ .Content }}<end_of_turn>\n"
    "{{ if $last }}<start_of_turn>model\n{{ end }}"
    "{{- else if eq .Role \"assistant\" }}<start_of_turn>model\n{{ .Content }}{{ if not $last }}<end_of_turn>\n"
    "{{ end }}{{- end }}{{- end }}"
)
CONTEXT_ERROR = (
    "the prompt is longer than the context length currently available to the model; shorten the prompt, "
    "adjust the context length in settings, or use a model with a longer context length"
)
_INT_OPTIONS = frozenset({"num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch",
                          "num_gpu", "main_gpu", "num_thread", "draft_num_predict"})
_FLOAT_OPTIONS = frozenset({"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                            "frequency_penalty"})
_GO_TYPES = {"model": "string", "prompt": "string", "system": "string", "template": "string", "raw": "bool",
             "stream": "bool", "options": "map[string]interface {}"}
_DURATION = re.compile(r"([0-9]*(\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
               ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))
_POLL_SECONDS = 0.01
_EOS = "\0eos"  # the EOS a script ends with: never printed


def go_json(obj: Any) -> bytes:
    """JSON as Go's json.Marshal writes it: compact, with HTML characters escaped."""
    data = orjson.dumps(obj)
    for raw, escaped in _GO_ESCAPES:
        data = data.replace(raw, escaped)
    return data


def rfc3339_now() -> str:
    """time.Now().UTC() as Go marshals it: RFC 3339 with nanoseconds, trailing zeros trimmed."""
    ns = time.time_ns()
    fraction = f"{ns % 1_000_000_000:09d}".rstrip("0")
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return seconds + (f".{fraction}" if fraction else "") + "Z"


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string ("5m", "1h30m", "0"); ValueError with Go's message if invalid."""
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            unitless = re.fullmatch(r"[0-9.]+", body[pos:])
            raise ValueError(f'time: {"missing unit in" if unitless else "invalid"} duration "{text}"')
        total += float(match.group(1)) * _UNITS[match.group(3)]
        pos = match.end()
    return -total if text.startswith("-") else total


@dataclass
class Scripted:
    """One scripted generation: ``chunks`` are the tokens the model writes, then EOS (done_reason "stop")
    unless ``done_reason`` is "length". Faults: ``http_error`` (status, message) answers at once;
    ``error_after`` N tokens fails (an HTTP error if no line was sent yet, else an in-band line);
    ``cut_after`` N tokens drops the connection; ``hang`` never answers; ``drop_done`` ends the stream
    cleanly without its final line."""

    chunks: list[str]
    done_reason: DoneReason = "stop"
    delay: float = 0.0
    http_error: tuple[int, str] | None = None
    error_after: int | None = None
    error: str = "an error was encountered while running the model: GGML_ASSERT failed"
    error_status: int = 500
    cut_after: int | None = None
    hang: bool = False
    drop_done: bool = False


@dataclass
class FakeModel:
    """A model as Ollama stores it: GGUF metadata, an optional Jinja chat template, a Go template."""

    name: str = "gemma3:270m"
    architecture: str = "gemma3"
    context_length: int | None = 32768
    chat_template: str | None = None  # the GGUF's tokenizer.chat_template
    go_template: str = DEFAULT_GO_TEMPLATE
    uses_go_template: bool = False  # Ollama renders with the Go template (Modelfile TEMPLATE, or Ollama < 0.30)
    parameters: dict[str, Any] = field(default_factory=lambda: {"stop": ["<end_of_turn>"], "top_k": 64})
    capabilities: tuple[str, ...] = ("completion",)
    think_tags: tuple[str, str] = ("<think>", "</think>")
    context_shift: bool = True
    add_bos: bool = True

    def shown_template(self) -> str:
        return self.chat_template if self.chat_template and not self.uses_go_template else self.go_template


class _Disconnect(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "gone" (the client left), "cut" (scripted), "shutdown"


class _Failure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Generation:
    """What the runner tracks for one request: stop strings, num_predict, held text, think routing."""

    def __init__(self, options: dict[str, Any], specials: frozenset[str], eog: frozenset[str], thinking: bool,
                 tags: tuple[str, str]) -> None:
        self.stop = [s for s in options.get("stop") or [] if s]
        self.num_predict = int(options.get("num_predict", -1))
        self.specials, self.eog = specials, eog
        self.thinking, self.tags = thinking, tags
        self.in_think = False
        self.held = ""
        self.n_eval = 0
        self.done_reason: str | None = None

    def step(self, token: str) -> list[tuple[str, str]]:
        """Take one token; return the (field, text) pieces to send."""
        self.n_eval += 1
        if token == _EOS or token in self.eog:
            self.done_reason = "stop"
            return self._flush()
        if self.thinking and token in self.tags:
            self.in_think = token == self.tags[0]
            return []
        text = self.held + "".join(p for p in split_text(token, special=self.specials) if p not in self.specials)
        self.held = ""
        hits = [(text.find(s), s) for s in self.stop if s in text]
        if hits:
            text, self.done_reason = text[: min(hits)[0]], "stop"
        elif any(text.endswith(s[:i]) for s in self.stop for i in range(1, len(s))):
            self.held, text = text, ""
        if self.done_reason is None and 0 < self.num_predict <= self.n_eval:
            self.done_reason = "length"
        return [("thinking" if self.in_think else "response", text)] if text else []

    def _flush(self) -> list[tuple[str, str]]:
        text, self.held = self.held, ""
        return [("thinking" if self.in_think else "response", text)] if text else []


class FakeOllama(LoopbackServer):
    """A scripted Ollama on 127.0.0.1.

    ``async with FakeOllama(models=[FakeModel(...)]) as fake``, queue replies with ``script()``, then assert on
    ``requests`` (the /api/generate bodies), ``generations`` (num_ctx, prompt tokens, truncated), ``shows``
    (the /api/show bodies) and ``cancelled`` (clients that left mid-generation).
    """

    def __init__(
        self,
        *,
        models: list[FakeModel] | None = None,
        special_tokens: set[str] | frozenset[str] = frozenset({"<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"}),
        eog_tokens: set[str] | frozenset[str] = frozenset({"<eos>", "<end_of_turn>"}),
        default_num_ctx: int = 4096,
        version: str = "0.33.0",
        default_reply: Scripted | str | Reply | None = "Hello from the fake Ollama.",
        token_delay: float = 0.0,
    ) -> None:
        self.models = {m.name: m for m in models or [FakeModel()]}
        self.specials = frozenset(special_tokens) | frozenset(eog_tokens)
        self.eog = frozenset(eog_tokens)
        self.default_num_ctx = default_num_ctx
        self.version = version
        self.default_reply = default_reply
        self.token_delay = token_delay  # seconds before each token of a reply given as text
        self.requests: list[dict[str, Any]] = []
        self.generations: list[dict[str, Any]] = []
        self.shows: list[dict[str, Any]] = []
        super().__init__()
        self._queue: deque[Scripted | Reply] = deque()

    # ---- scripting and lifecycle ----------------------------------------------------------------

    def script(self, *items: Scripted | str | Reply) -> None:
        """Queue replies, one per generation; a str is split into token-like pieces (``split_text``).

        A callable is called with the request's prompt when its turn comes (a model that reads its
        context, or continues a prefilled answer: ``tests.fakes.model``)."""
        self._queue.extend(item if callable(item) else self._as_scripted(item) for item in items)

    def split(self, text: str) -> list[str]:
        return split_text(text, special=self.specials)

    def _as_scripted(self, item: Scripted | str) -> Scripted:
        return item if isinstance(item, Scripted) else Scripted(self.split(item), delay=self.token_delay)

    def _next_script(self, prompt: str) -> Scripted | None:
        item = self._queue.popleft() if self._queue else self.default_reply
        if item is None:
            return None
        return self._as_scripted(item(prompt)) if callable(item) else self._as_scripted(item)


    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._not_found], client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/", self._root)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/show", self._show)
        app.router.add_post("/api/generate", self._generate)
        return app

    # ---- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _json(status: int, obj: Any, content_type: str = "application/json; charset=utf-8") -> web.Response:
        return web.Response(status=status, body=go_json(obj), headers={"Content-Type": content_type})

    def _error(self, status: int, message: str) -> web.Response:
        return self._json(status, {"error": message})

    @web.middleware
    async def _not_found(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.Response(status=404, text="404 page not found")
        except web.HTTPMethodNotAllowed:
            return web.Response(status=405, text="405 method not allowed")

    async def _body(self, request: web.Request, struct: str) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            raise _Failure(400, "missing request body")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Failure(400, f"invalid character in JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _Failure(400, f"json: cannot unmarshal {_json_type(body)} into Go value of type api.{struct}")
        for key, go_type in _GO_TYPES.items():
            value = body.get(key)
            expected = {"string": str, "bool": bool}.get(go_type, dict)
            if value is not None and not isinstance(value, expected):
                raise _Failure(400, f"json: cannot unmarshal {_json_type(value)} into Go struct field "
                                    f"{struct}.{key} of type {go_type}")
        return body

    def _model(self, name: Any) -> FakeModel | None:
        name = name if isinstance(name, str) else ""
        return self.models.get(name) or (self.models.get(name + ":latest") if ":" not in name else None)

    @staticmethod
    def _gone(request: web.Request) -> bool:
        return request.transport is None or request.transport.is_closing()

    def _drop(
        self, request: web.Request, reason: str, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        if reason == "gone":
            self.cancelled += 1
        if request.transport is not None:
            request.transport.close()
        return response if response is not None else web.Response(status=499)

    async def _wait(self, request: web.Request, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self._closing.is_set():
                raise _Disconnect("shutdown")
            if self._gone(request):
                raise _Disconnect("gone")
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    # ---- /, /api/version, /api/tags, /api/show -------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return self._json(200, {"version": self.version})

    @staticmethod
    def _details(model: FakeModel) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": model.architecture,
                "families": [model.architecture], "parameter_size": "268.10M", "quantization_level": "Q8_0"}

    async def _tags(self, request: web.Request) -> web.Response:
        models = [{"name": m.name, "model": m.name, "modified_at": "2025-03-12T10:00:00.123456789+01:00",
                   "size": 291554930, "digest": hashlib.sha256(m.name.encode()).hexdigest(),
                   "details": self._details(m)}
                  for m in self.models.values()]
        return self._json(200, {"models": models})

    async def _show(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request, "ShowRequest")
        except _Failure as exc:
            return self._error(exc.status, exc.message)
        self.shows.append(body)
        name = body.get("model") or body.get("name")
        if not name:
            return self._error(400, "model is required")
        model = self._model(name)
        if model is None:
            return self._error(404, f"model '{name}' not found")
        info: dict[str, Any] = {
            "general.architecture": model.architecture,
            "general.file_type": 7,
            "general.parameter_count": 268098176,
            "general.quantization_version": 2,
            f"{model.architecture}.block_count": 18,
            f"{model.architecture}.embedding_length": 640,
            "tokenizer.ggml.add_bos_token": model.add_bos,
            "tokenizer.ggml.bos_token_id": 2,
            "tokenizer.ggml.eos_token_id": 1,
            "tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": [] if not body.get("verbose") else sorted(self.specials),
        }
        if model.context_length is not None:
            info[f"{model.architecture}.context_length"] = model.context_length
        parameters = "\n".join(
            f"{key:<30} {_go_repr(item)}"
            for key, value in sorted(model.parameters.items())
            for item in (value if isinstance(value, list) else [value])
        )
        show: dict[str, Any] = {
            "license": "Gemma Terms of Use",
            "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n'
            f'TEMPLATE """{model.go_template}"""\n',
            "parameters": parameters,
            "template": model.shown_template(),
            "details": self._details(model),
            "model_info": dict(sorted(info.items())),
            "tensors": [{"name": "token_embd.weight", "type": "Q8_0", "shape": [640, 262144]}],
            "capabilities": list(model.capabilities),
            "modified_at": "2025-03-12T10:00:00.123456789+01:00",
        }
        return self._json(200, {k: v for k, v in show.items() if v not in ("", None)})

    # ---- /api/generate --------------------------------------------------------------------------

    def _check(self, body: dict[str, Any]) -> tuple[FakeModel, dict[str, Any], bool]:
        """GenerateHandler's checks, in its order; the model, the merged options, whether thinking is on."""
        if "keep_alive" in body:
            keep = body["keep_alive"]
            if isinstance(keep, str):
                try:
                    parse_go_duration(keep)
                except ValueError as exc:
                    raise _Failure(400, str(exc)) from None
            elif not isinstance(keep, int | float) or isinstance(keep, bool):
                raise _Failure(400, f"Unsupported type: '{_go_type(keep)}'")
        model = self._model(body.get("model"))
        if model is None:
            raise _Failure(404, f"model '{body.get('model') or ''}' not found")
        if body.get("raw") and (body.get("template") or body.get("system") or body.get("context")):
            raise _Failure(400, "raw mode does not support template, system, or context")
        think = body.get("think")
        can_think = "thinking" in model.capabilities
        if think not in (None, False) and not can_think:
            raise _Failure(400, f'"{body["model"]}" does not support thinking')
        options = {"num_ctx": self.default_num_ctx, "num_keep": 4, "num_predict": -1, **model.parameters}
        for key, value in (body.get("options") or {}).items():
            if value is None or not (key in _INT_OPTIONS or key in _FLOAT_OPTIONS or key == "stop"):
                continue  # FromMap skips nulls and only warns about unknown options
            if key == "stop":
                if not isinstance(value, list):
                    raise _Failure(500, f'option "{key}" must be of type array')
                if not all(isinstance(s, str) for s in value):
                    raise _Failure(500, f'option "{key}" must be of an array of strings')
            elif not isinstance(value, int | float) or isinstance(value, bool):
                kind = "integer" if key in _INT_OPTIONS else "float32"
                raise _Failure(500, f'option "{key}" must be of type {kind}')
            options[key] = int(value) if key in _INT_OPTIONS else value
        return model, options, can_think and think is not False

    def _prompt_tokens(self, model: FakeModel, prompt: str, options: dict[str, Any]) -> tuple[int, bool]:
        """Crude tokens (whitespace pieces, plus BOS) after completionPromptForRequest's truncation."""
        n = len(prompt.split()) + (1 if model.add_bos else 0)
        num_ctx = max(1, options["num_ctx"])
        if n <= num_ctx - 1 or num_ctx <= 1:
            return n, False
        if not model.context_shift:
            raise _Failure(400, CONTEXT_ERROR)
        keep = options["num_keep"] if options["num_keep"] >= 0 else n
        keep = min(keep + (1 if model.add_bos else 0), num_ctx - 1)
        return num_ctx - max((num_ctx - keep) // 2, 1), True

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter_ns()
        try:
            body = await self._body(request, "GenerateRequest")
            self.requests.append(body)
            model, options, thinking = self._check(body)
        except _Failure as exc:
            return self._error(exc.status, exc.message)
        stream = body.get("stream") is not False
        prompt = body.get("prompt") or ""
        if not prompt:
            unload = body.get("keep_alive") in (0, "0", "0s")
            line = {"model": body["model"], "created_at": rfc3339_now(), "response": "", "done": True,
                    "done_reason": "unload" if unload else "load"}
            return self._json(200, line)
        try:
            n_prompt, truncated = self._prompt_tokens(model, prompt, options)
        except _Failure as exc:
            return self._error(exc.status, exc.message)
        script = self._next_script(prompt)
        if script is None:
            return self._error(500, "fake ollama: no scripted reply left")
        self.generations.append({"model": model.name, "num_ctx": options["num_ctx"], "prompt_tokens": n_prompt,
                                 "truncated": truncated, "options": options})
        if script.http_error is not None:
            return self._error(*script.http_error)
        if script.hang:
            try:
                await self._wait(request, float("inf"))
            except _Disconnect as exc:
                return self._drop(request, exc.reason)
        tags = model.think_tags
        gen = _Generation(options, self.specials, self.eog, thinking, tags)
        gen.in_think = thinking and prompt.rstrip().endswith(tags[0])
        loaded = time.perf_counter_ns()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        collected: dict[str, str] = {"response": "", "thinking": ""}
        want_logprobs = body.get("logprobs") is True
        top_logprobs = body.get("top_logprobs") or 0
        pending: list[dict[str, Any]] = []  # token logprobs not yet sent
        every: list[dict[str, Any]] = []

        async def send(line: dict[str, Any]) -> None:
            if pending and stream:
                line["logprobs"], pending[:] = list(pending), []
                line = _ordered(line)
            if not stream:
                for key in collected:
                    collected[key] += line.get(key, "")
                return
            try:
                if not response.prepared:
                    await response.prepare(request)  # headers go out with the first line
                await response.write(go_json(line) + b"\n")
            except (ConnectionError, RuntimeError) as exc:
                raise _Disconnect("gone") from exc

        try:
            tokens = list(script.chunks) + ([_EOS] if script.done_reason == "stop" else [])
            for n_done, token in enumerate(tokens):
                if script.error_after is not None and n_done >= script.error_after:
                    raise _Failure(script.error_status, script.error)
                if script.cut_after is not None and n_done >= script.cut_after:
                    raise _Disconnect("cut")
                if script.delay > 0:
                    await self._wait(request, script.delay)
                pieces = gen.step(token)
                if want_logprobs:
                    entry = _logprob(token, top_logprobs)
                    pending.append(entry)
                    every.append(entry)
                for key, text in pieces:
                    # "response" is always there; "thinking" (omitempty) only when it has text
                    await send({"model": body["model"], "created_at": rfc3339_now(), "response": "", key: text,
                                "done": False})
                if gen.done_reason:
                    break
            else:
                if script.error_after is not None:  # at the end, when the script is shorter
                    raise _Failure(script.error_status, script.error)
                if script.cut_after is not None:
                    raise _Disconnect("cut")
                gen.done_reason = gen.done_reason or "length"
            if script.drop_done:
                if not stream:  # the handler answers with the last partial it collected
                    return self._json(200, {"model": body["model"], "created_at": rfc3339_now(),
                                            "response": collected["response"], "done": False})
                if not response.prepared:
                    await response.prepare(request)
                await response.write_eof()
                return response
            now = time.perf_counter_ns()
            final = {"model": body["model"], "created_at": rfc3339_now(), "response": "", "done": True,
                     "done_reason": gen.done_reason, "total_duration": now - started,
                     "load_duration": max(1, loaded - started), "prompt_eval_count": n_prompt,
                     "prompt_eval_duration": 1_200_000, "eval_count": gen.n_eval,
                     "eval_duration": max(1, now - loaded)}
            if not stream:
                if collected["thinking"]:
                    final["thinking"] = collected["thinking"]
                final["response"] = collected["response"]
                if every:
                    final["logprobs"] = every
                return self._json(200, _ordered(final))
            await send(final)
            await response.write_eof()
            return response
        except _Failure as exc:
            if not response.prepared:
                return self._error(exc.status, exc.message)
            await response.write(go_json({"error": exc.message}) + b"\n")
            await response.write_eof()
            return response
        except _Disconnect as exc:
            return self._drop(request, exc.reason, response if response.prepared else None)
        except (ConnectionError, RuntimeError):
            return self._drop(request, "gone", response if response.prepared else None)


_KEY_ORDER = ("model", "created_at", "response", "thinking", "done", "done_reason", "logprobs", "total_duration",
              "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def _logprob(token: str, top: int) -> dict[str, Any]:
    ranked = token_probs.ranked(token, max(1, top))
    entry: dict[str, Any] = {"token": token, "logprob": ranked[0][1]}
    if token:
        entry["bytes"] = token_probs.utf8(token)
    if top:
        entry["top_logprobs"] = [{"token": t, "logprob": v, "bytes": token_probs.utf8(t)} for t, v in ranked[:top]]
    return entry


def _ordered(line: dict[str, Any]) -> dict[str, Any]:
    return {key: line[key] for key in _KEY_ORDER if key in line}


def _json_type(value: Any) -> str:
    return {bool: "bool", str: "string", int: "number", float: "number", list: "array", dict: "object"}.get(
        type(value), "null")


def _go_type(value: Any) -> str:
    return {list: "[]interface {}", dict: "map[string]interface {}", bool: "bool"}.get(type(value), "<nil>")


def _go_repr(value: Any) -> str:
    """Go's %#v for a Modelfile parameter value."""
    return orjson.dumps(value).decode() if isinstance(value, str) else str(value)
