"""JSON response bodies, serialised with orjson: answers and errors alike."""

from __future__ import annotations

import orjson
from aiohttp import web

from .errors import ApiError, ErrorShape


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError, shape: ErrorShape = "openai", request_id: str | None = None) -> web.Response:
    """The error in the shape of the API the request spoke (OpenAI's unless told otherwise)."""
    return json_response(error.body_for(shape, request_id), status=error.status_for(shape), headers=error.headers)
