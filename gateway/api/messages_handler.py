"""Anthropic's Messages API: `POST /v1/messages` on the shared driver, and
`POST /v1/messages/count_tokens` from the backend's tokenizer.

Errors on these paths are written in Anthropic's shape by the middleware (errors.error_shape).
"""

from __future__ import annotations

from aiohttp import web

from ..core.token_count import count_prompt_tokens
from ..ops.app_keys import TRACE
from .json_body import json_response
from .messages_encoding import MessageCollector, MessageEvents, MessageMeta
from .messages_request import parse_count_tokens_request, parse_messages_request
from .stream_driver import Encoding, admit, answer


def add_messages_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", create_message)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)


async def create_message(request: web.Request) -> web.StreamResponse:
    # `anthropic-version` and `anthropic-beta` are accepted whatever they say: one wire format is served.
    parsed = parse_messages_request(await request.read())
    job = parsed.job
    route = admit(request, job.model)
    meta = MessageMeta(model=job.model, stop_sequences=parsed.stop_sequences, thinking=parsed.thinking,
                       request_id=request[TRACE].request_id)
    encoding = Encoding(stream=lambda: MessageEvents(meta), collect=lambda: MessageCollector(meta))
    return await answer(request, route, job, encoding)


async def count_tokens(request: web.Request) -> web.Response:
    job = parse_count_tokens_request(await request.read())
    route = admit(request, job.model)
    return json_response({"input_tokens": await count_prompt_tokens(job, route)})
