"""JSON bodies: requests parsed once into plain objects of bounded depth; answers and errors
serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..core.faults import InvalidRequest
from ..ops.app_keys import CONFIG
from .errors import ApiError, ErrorShape

# No real request nests deeper (a tool schema of a dozen levels sits about 20 deep in the body);
# much deeper ones only exhaust the recursion of whatever walks them later.
MAX_DEPTH = 64


async def read_body(request: web.Request) -> bytes:
    """The request body, read without aiohttp's copy (`request.read()` keeps the bytes for as long
    as the request lives: a whole stream, for a body of up to max_body_bytes)."""
    limit = request.app[CONFIG].limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}", code="invalid_json") from error
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if _depth_exceeds(data, MAX_DEPTH):
        raise InvalidRequest(f"The request body nests deeper than {MAX_DEPTH} levels.", code="invalid_json")
    return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values() if isinstance(item, dict | list))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if isinstance(item, dict | list))
    return False


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError, shape: ErrorShape = "openai", request_id: str | None = None) -> web.Response:
    """The error in the shape of the API the request spoke (OpenAI's unless told otherwise)."""
    return json_response(error.body_for(shape, request_id), status=error.status_for(shape), headers=error.headers)
