"""`GET /v1/models` and `GET /v1/models/{id}`: the public names this caller may use.

A client that sends `anthropic-version` (the `anthropic` SDKs always do) gets Anthropic's shapes:
`{"type": "model", "id", "display_name", "created_at"}` in a page with `has_more`, `first_id` and
`last_id`; everyone else gets OpenAI's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..core.faults import InvalidRequest, NotFound
from ..ops.app_keys import API_KEY, ROUTING_TABLE, STARTED_AT
from .errors import speaks_anthropic
from .json_body import json_response


def _visible(request: web.Request) -> list[str]:
    key = request.get(API_KEY)
    return [name for name in request.app[ROUTING_TABLE].public_names() if key is None or key.allows(name)]


def _openai_model(request: web.Request, name: str) -> dict[str, Any]:
    backend = request.app[ROUTING_TABLE].route_for_name(name).backend.name
    return {"id": name, "object": "model", "created": int(request.app[STARTED_AT]), "owned_by": f"toolwire:{backend}"}


def _anthropic_model(request: web.Request, name: str) -> dict[str, Any]:
    created = datetime.fromtimestamp(int(request.app[STARTED_AT]), UTC).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": name, "display_name": name, "created_at": created}


async def list_models(request: web.Request) -> web.Response:
    names = _visible(request)
    if not speaks_anthropic(request.headers):
        return json_response({"object": "list", "data": [_openai_model(request, name) for name in names]})
    page, has_more = _anthropic_page(names, request.query)
    return json_response({
        "data": [_anthropic_model(request, name) for name in page],
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    })


def _anthropic_page(names: list[str], query: Any) -> tuple[list[str], bool]:
    """Anthropic's cursor paging: `limit` (1-1000, default 20), after `after_id` or before `before_id`."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise InvalidRequest("'limit' must be an integer from 1 to 1000.", param="limit", code="invalid_value")
    for cursor in ("after_id", "before_id"):
        if cursor in query and query[cursor] not in names:
            raise InvalidRequest(f"No model with id '{query[cursor]}'.", param=cursor, code="invalid_value")
    if "before_id" in query:
        end = names.index(query["before_id"])
        return names[max(0, end - limit):end], end - limit > 0
    start = names.index(query["after_id"]) + 1 if "after_id" in query else 0
    return names[start:start + limit], start + limit < len(names)


async def retrieve_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name not in _visible(request):
        raise NotFound(f"The model '{name}' does not exist or you do not have access to it.", code="model_not_found")
    if speaks_anthropic(request.headers):
        return json_response(_anthropic_model(request, name))
    return json_response(_openai_model(request, name))
