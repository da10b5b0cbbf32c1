"""The HTTP surface of the Responses API: thin handlers over the chat pipeline and the store.

`POST /v1/responses` builds the same `ChatJob` chat completions build and runs the same
`run_chat`; only the encoding differs (responses_encoding). Stored responses serve `GET`, `DELETE`,
`input_items` and `previous_response_id`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from functools import partial

import structlog
from aiohttp import web

from adapters.formats.events import ParseEvent

from ..core.faults import InvalidRequest, NotFound, StoreFailed
from ..core.job import Affinity
from ..core.mcp_tools import McpEvent, run_with_mcp
from ..core.pipeline import Completed
from ..core.reasoning_memory import LocalReasoningMemory
from ..core.response_store import JsonObject, ResponseStore, open_store
from ..ops.app_keys import API_KEY, CHAT_REASONING, CONFIG
from ..ops.auth import ApiKey, owner_of
from ..ops.server_config import ResponsesConfig
from .errors import ApiError
from .failed_calls import FailedCallsAsText
from .json_body import json_response, read_body
from .mcp_encoding import McpOutputBuilder
from .mcp_items import as_function_items
from .mcp_request import open_toolbox, resolve_servers
from .responses_encoding import (
    EventStream,
    OutputBuilder,
    ResponseMeta,
    error_event,
    final_response,
    lifecycle,
    response_object,
)
from .responses_request import (
    build_job,
    echo_fields,
    input_items,
    parse_responses_request,
)
from .stream_driver import Encoding, admit, answer

log = structlog.get_logger("toolwire.responses")

RESPONSE_STORE = web.AppKey("response_store", ResponseStore)

Keep = Callable[[JsonObject], Awaitable[None]]


def add_responses_routes(app: web.Application, config: ResponsesConfig) -> None:
    async def store_lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[RESPONSE_STORE] = open_store(
            redis_url=config.redis_url if config.store == "redis" else None,
            sqlite_path=config.sqlite_path,
            max_responses=config.max_responses,
            max_age_seconds=config.max_age_hours * 3600,
        )
        # Chat completions keep reasoning where replicas share it, else in this process.
        app[CHAT_REASONING] = app[RESPONSE_STORE] if config.store == "redis" else LocalReasoningMemory()
        yield
        await app[RESPONSE_STORE].close()

    app.cleanup_ctx.append(store_lifecycle)
    app.router.add_post("/v1/responses", create_response)
    app.router.add_get("/v1/responses/{response_id}", get_response)
    app.router.add_delete("/v1/responses/{response_id}", delete_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", list_input_items)


class _Keeper:
    """Stores a finished response (when the request asked to) with the full input it answered."""

    def __init__(self, store: ResponseStore, items: list[JsonObject], enabled: bool, owner: str) -> None:
        self._store, self._items, self._enabled, self._owner = store, items, enabled, owner

    async def __call__(self, response: JsonObject) -> None:
        if not self._enabled:
            return
        try:
            await self._store.put(response, self._items, self._owner)
        except Exception as error:
            # The details stay in the log; a connection error's traceback would add nothing.
            log.error("response_store_failed", response_id=response["id"], error=repr(error))
            raise StoreFailed() from error


async def create_response(request: web.Request) -> web.StreamResponse:
    parsed = parse_responses_request(await read_body(request))
    route = admit(request, parsed.model)
    store = request.app[RESPONSE_STORE]
    key = request.get(API_KEY)
    history = await _chain(store, parsed.previous_response_id, key)
    items = input_items(parsed)
    meta = ResponseMeta(model=parsed.model, echo=echo_fields(parsed))
    affinity = session_affinity(parsed.previous_response_id, parsed.user, meta.id)
    keep = _Keeper(store, [*history, *items], parsed.keep, owner_of(key))
    if not parsed.mcp_tools:
        job = build_job(parsed, as_function_items(history, {}), as_function_items(items, {}, context=history))
        encoding = Encoding(stream=lambda: _ResponseEvents(meta, keep), collect=lambda: _ResponseCollector(meta, keep))
        return await answer(request, route, replace(job, affinity=affinity), encoding, store)
    config = request.app[CONFIG].mcp
    uses = resolve_servers(parsed.mcp_tools, config, key)
    async with AsyncExitStack() as servers:  # the MCP sessions live as long as the response
        names = [tool.name for tool in parsed.function_tools]
        setup = await open_toolbox(servers, uses, [*history, *items], len(history), config, names)
        job = build_job(parsed, as_function_items(history, setup.results),
                        as_function_items(items, setup.results, context=history), setup.specs, setup.servers)
        toolbox = setup.toolbox
        encoding = Encoding(
            stream=lambda: _ResponseEvents(meta, keep, McpOutputBuilder(streaming=True, toolbox=toolbox)),
            collect=lambda: _ResponseCollector(meta, keep, McpOutputBuilder(streaming=False, toolbox=toolbox)),
        )
        loop = partial(run_with_mcp, toolbox=toolbox, prelude=setup.prelude)
        return await answer(request, route, replace(job, affinity=affinity), encoding, store, loop)


def session_affinity(previous_id: str | None, user: str | None, response_id: str) -> Affinity:
    """A continuation goes back to the backend that wrote the response it continues (its KV cache)."""
    users = (f"user:{user}",) if user else ()
    lookup = (f"response:{previous_id}",) if previous_id else ()
    return Affinity(lookup=lookup + users, record=(f"response:{response_id}", *users))


async def _chain(store: ResponseStore, previous_id: str | None, key: ApiKey | None) -> list[JsonObject]:
    """The items a continuation starts from: the previous response's input, then its output.

    Only the key that stored a response finds it, and only while that key may still use the
    response's model: a continuation never carries a conversation past the key's models."""
    if previous_id is None:
        return []
    owner = owner_of(key)
    previous = await store.get(previous_id, owner)
    if previous is not None and key is not None and not key.allows(str(previous.get("model", ""))):
        previous = None
    items = await store.input_items(previous_id, owner) if previous is not None else None
    if previous is None or items is None:
        raise InvalidRequest(f"Previous response with id '{previous_id}' not found.",
                             param="previous_response_id", code="previous_response_not_found")
    return [*items, *previous["output"]]


class _ResponseCollector:
    def __init__(self, meta: ResponseMeta, keep: Keep, builder: OutputBuilder | None = None) -> None:
        self._meta, self._keep = meta, keep
        self._builder = builder or OutputBuilder(streaming=False)
        self._calls_as_text = FailedCallsAsText[ParseEvent | McpEvent]()

    def add(self, event: ParseEvent | McpEvent) -> None:
        for ready in self._calls_as_text.feed(event):
            self._builder.add(ready)  # type: ignore[arg-type]  # an McpOutputBuilder takes both

    async def result(self, completed: Completed) -> JsonObject:
        for ready in self._calls_as_text.flush():
            self._builder.add(ready)  # type: ignore[arg-type]
        self._builder.finish(completed)
        response = final_response(self._meta, self._builder, completed)
        await self._keep(response)
        return response


class _ResponseEvents:
    """OpenAI's stream events for one response, numbered in order."""

    def __init__(self, meta: ResponseMeta, keep: Keep, builder: OutputBuilder | None = None) -> None:
        self._meta, self._keep = meta, keep
        self._builder = builder or OutputBuilder(streaming=True)
        self._sse = EventStream()

    def opening(self) -> bytes:
        opening = response_object(self._meta, "in_progress", [])
        return self._sse.encode([lifecycle("created", opening), lifecycle("in_progress", opening)])

    def event(self, event: ParseEvent | McpEvent) -> bytes:
        return self._sse.encode(self._builder.add(event))  # type: ignore[arg-type]  # an McpOutputBuilder takes both

    async def closing(self, completed: Completed) -> bytes:
        closing = self._builder.finish(completed)
        final = final_response(self._meta, self._builder, completed)
        await self._keep(final)  # before the client hears of it, so it can continue from it at once
        return self._sse.encode([*closing, lifecycle(final["status"], final)])

    async def failure(self, error: ApiError) -> bytes:
        failed = response_object(self._meta, "failed", self._builder.finished_output(), error=error)
        if error.code != "response_store_error":  # a store that just failed is not asked again
            try:
                await self._keep(failed)
            except StoreFailed:
                pass  # logged; the client hears of the original fault
        return self._sse.encode([error_event(error), lifecycle("failed", failed)])


async def get_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    response = await request.app[RESPONSE_STORE].get(response_id, owner_of(request.get(API_KEY)))
    if response is None:
        raise _not_found(response_id)
    return json_response(response)


async def delete_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not await request.app[RESPONSE_STORE].delete(response_id, owner_of(request.get(API_KEY))):
        raise _not_found(response_id)
    # The shape of OpenAI's documented example for this endpoint.
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    items = await request.app[RESPONSE_STORE].input_items(response_id, owner_of(request.get(API_KEY)))
    if items is None:
        raise _not_found(response_id)
    query = request.query
    limit = _int_param(query.get("limit", "20"), "limit", 1, 100)
    order = query.get("order", "desc")  # OpenAI's default: newest first
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order", code="invalid_value")
    ordered = items[::-1] if order == "desc" else items
    start = 0
    if "after" in query:
        ids = [item["id"] for item in ordered]
        if query["after"] not in ids:
            raise InvalidRequest(f"No input item with id '{query['after']}'.", param="after", code="invalid_value")
        start = ids.index(query["after"]) + 1
    page = ordered[start : start + limit]
    return json_response({
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else "",
        "last_id": page[-1]["id"] if page else "",
        "has_more": start + limit < len(ordered),
    })


def _int_param(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}.", param=name, code="invalid_value")
    return number


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", code="response_not_found")
