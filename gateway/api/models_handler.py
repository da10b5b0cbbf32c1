"""`GET /v1/models`: the public names this caller may use."""

from __future__ import annotations

from aiohttp import web

from ..ops.app_keys import API_KEY, ROUTING_TABLE, STARTED_AT
from .json_body import json_response


async def list_models(request: web.Request) -> web.Response:
    created = int(request.app[STARTED_AT])
    table = request.app[ROUTING_TABLE]
    key = request.get(API_KEY)
    models = [
        {"id": name, "object": "model", "created": created, "owned_by": f"toolwire:{table.route_for_name(name).backend.name}"}
        for name in table.public_names()
        if key is None or key.allows(name)
    ]
    return json_response({"object": "list", "data": models})
