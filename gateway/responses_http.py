"""The HTTP surface of the Responses API: thin handlers over the chat pipeline and the store.

`POST /v1/responses` builds the same `ChatJob` chat completions build and runs the same
`run_chat`; only the encoding differs (responses_output). Stored responses serve `GET`, `DELETE`,
`input_items` and `previous_response_id`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from .app_keys import API_KEY, CONFIG, METRICS, ROUTING_TABLE, TRACE
from .auth import check_model_allowed
from .config import ResponsesConfig
from .errors import ApiError, bad_request
from .http_api import SSE_HEADERS, STREAM_FAULTS, json_response, stream_fault, timed_out
from .pipeline import Completed, PipelineEvent, Started, run_chat
from .response_store import JsonObject, ResponseStore, open_store
from .responses_api import build_job, echo_fields, input_items, parse_responses_request
from .responses_output import (
    EventStream,
    OutputBuilder,
    ResponseMeta,
    error_event,
    final_response,
    lifecycle,
    response_object,
)

log = structlog.get_logger("toolwire.responses")

RESPONSE_STORE = web.AppKey("response_store", ResponseStore)


def add_responses_routes(app: web.Application, config: ResponsesConfig) -> None:
    async def store_lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[RESPONSE_STORE] = open_store(config)
        yield
        await app[RESPONSE_STORE].close()

    app.cleanup_ctx.append(store_lifecycle)
    app.router.add_post("/v1/responses", create_response)
    app.router.add_get("/v1/responses/{response_id}", get_response)
    app.router.add_delete("/v1/responses/{response_id}", delete_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", list_input_items)


class _Keeper:
    """Stores a finished response (when the request asked to) with the full input it answered."""

    FAILED = "response_store_error"

    def __init__(self, store: ResponseStore, items: list[JsonObject], enabled: bool) -> None:
        self._store, self._items, self._enabled = store, items, enabled

    async def __call__(self, response: JsonObject) -> None:
        if not self._enabled:
            return
        try:
            await self._store.put(response, self._items)
        except Exception as error:
            # The details stay in the log; a connection error's traceback would add nothing.
            log.error("response_store_failed", response_id=response["id"], error=repr(error))
            raise ApiError(500, "Could not store the response.", type="server_error", code=self.FAILED) from error


async def create_response(request: web.Request) -> web.StreamResponse:
    trace = request[TRACE]
    parsed = parse_responses_request(await request.read())
    check_model_allowed(request.get(API_KEY), parsed.model)
    table = request.app[ROUTING_TABLE]
    route = table.resolve(parsed.model)
    trace.model, trace.backend = parsed.model, route.backend.name
    store = request.app[RESPONSE_STORE]
    history = await _chain(store, parsed.previous_response_id)
    items = input_items(parsed)
    job = build_job(parsed, history, items)
    meta = ResponseMeta(model=job.model, echo=echo_fields(parsed))
    keep = _Keeper(store, [*history, *items], parsed.keep)
    deadline = asyncio.get_running_loop().time() + request.app[CONFIG].limits.request_timeout
    async with table.limiter(route.backend.name).slot():
        events = run_chat(job, route, trace)
        try:
            if job.stream:
                return await _stream(request, meta, events, keep, deadline)
            try:
                async with asyncio.timeout_at(deadline):
                    return json_response(await _collect(meta, events, keep))
            except TimeoutError:
                raise timed_out(request) from None
        finally:
            # Closing the generator closes the backend request: an abandoned stream stops upstream too.
            await events.aclose()


async def _chain(store: ResponseStore, previous_id: str | None) -> list[JsonObject]:
    """The items a continuation starts from: the previous response's input, then its output."""
    if previous_id is None:
        return []
    previous = await store.get(previous_id)
    items = await store.input_items(previous_id) if previous is not None else None
    if previous is None or items is None:
        raise bad_request(f"Previous response with id '{previous_id}' not found.",
                          param="previous_response_id", code="previous_response_not_found")
    return [*items, *previous["output"]]


async def _collect(meta: ResponseMeta, events: AsyncIterator[PipelineEvent], keep: _Keeper) -> JsonObject:
    builder = OutputBuilder(streaming=False)
    async for event in events:
        if isinstance(event, Completed):
            builder.finish(event)
            response = final_response(meta, builder, event)
            await keep(response)
            return response
        if not isinstance(event, Started):
            builder.add(event)
    raise ApiError(502, "The generation ended without a result.", type="server_error")


async def _stream(
    request: web.Request, meta: ResponseMeta, events: AsyncIterator[PipelineEvent], keep: _Keeper, deadline: float
) -> web.StreamResponse:
    # Wait for the backend to accept before sending headers: an early fault stays an HTTP error.
    try:
        async with asyncio.timeout_at(deadline):
            event = await anext(events)
    except TimeoutError:
        raise timed_out(request) from None
    builder = OutputBuilder(streaming=True)
    sse = EventStream()
    response = web.StreamResponse(headers={**SSE_HEADERS, "X-Request-ID": request[TRACE].request_id})
    await response.prepare(request)
    opening = response_object(meta, "in_progress", [])
    await response.write(sse.encode([lifecycle("created", opening), lifecycle("in_progress", opening)]))
    streams = request.app[METRICS].streams
    streams.inc()
    try:
        async with asyncio.timeout_at(deadline):
            while not isinstance(event, Completed):
                if not isinstance(event, Started):
                    data = sse.encode(builder.add(event))
                    if data:
                        await response.write(data)
                event = await anext(events)
            closing = builder.finish(event)
            final = final_response(meta, builder, event)
            await keep(final)  # before the client hears of it, so it can continue from it at once
        await response.write(sse.encode([*closing, lifecycle(final["status"], final)]))
        await response.write_eof()
        return response
    except STREAM_FAULTS as failure:
        error = stream_fault(request, failure)
    finally:
        streams.dec()
    log.warning("stream_failed", status=error.status, code=error.code, message=error.message)
    failed = response_object(meta, "failed", builder.finished_output(), error=error)
    if error.code != _Keeper.FAILED:  # a store that just failed is not asked again
        try:
            await keep(failed)
        except ApiError:
            pass  # logged; the client hears of the original fault
    await response.write(sse.encode([error_event(error), lifecycle("failed", failed)]))
    await response.write_eof()
    return response


async def get_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    response = await request.app[RESPONSE_STORE].get(response_id)
    if response is None:
        raise _not_found(response_id)
    return json_response(response)


async def delete_response(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not await request.app[RESPONSE_STORE].delete(response_id):
        raise _not_found(response_id)
    # The shape of OpenAI's documented example for this endpoint.
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    items = await request.app[RESPONSE_STORE].input_items(response_id)
    if items is None:
        raise _not_found(response_id)
    query = request.query
    limit = _int_param(query.get("limit", "20"), "limit", 1, 100)
    order = query.get("order", "desc")  # OpenAI's default: newest first
    if order not in ("asc", "desc"):
        raise bad_request("'order' must be 'asc' or 'desc'.", param="order", code="invalid_value")
    ordered = items[::-1] if order == "desc" else items
    start = 0
    if "after" in query:
        ids = [item["id"] for item in ordered]
        if query["after"] not in ids:
            raise bad_request(f"No input item with id '{query['after']}'.", param="after", code="invalid_value")
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
        raise bad_request(f"'{name}' must be an integer from {low} to {high}.", param=name, code="invalid_value")
    return number


def _not_found(response_id: str) -> ApiError:
    return ApiError(404, f"Response with id '{response_id}' not found.", code="response_not_found")
