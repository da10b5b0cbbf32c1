"""`POST /v1/chat/completions`: parse the request, then the shared driver answers it."""

from __future__ import annotations

import secrets
from functools import partial

from aiohttp import web

from ..ops.app_keys import CHAT_REASONING
from .chat_encoding import ChunkEncoder, ResponseCollector
from .chat_request import parse_chat_request
from .json_body import read_body
from .stream_driver import Encoding, admit, answer


async def chat_completions(request: web.Request) -> web.StreamResponse:
    job = parse_chat_request(await read_body(request))
    route = admit(request, job.model)
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    logprobs = job.sampling.logprobs is not None
    encoding = Encoding(
        stream=partial(ChunkEncoder, completion_id, job.model, include_usage=job.include_usage, logprobs=logprobs),
        collect=partial(ResponseCollector, completion_id, job.model, logprobs=logprobs),
    )
    return await answer(request, route, job, encoding, request.app.get(CHAT_REASONING))
