"""JSON response bodies, serialised with orjson: answers and errors alike."""

from __future__ import annotations

import orjson
from aiohttp import web

from .errors import ApiError


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers)
