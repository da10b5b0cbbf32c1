"""The HTTP surface: thin aiohttp handlers that convert between the wire and typed objects."""

from __future__ import annotations

import secrets
import time

import orjson
import structlog
from aiohttp import web

from adapters.backends.errors import BackendError

from .chat_api import parse_chat_request
from .chat_encoding import ChunkEncoder, ResponseCollector, sse_error
from .errors import ApiError, from_backend_error
from .pipeline import Completed, Started, run_chat
from .routing import RoutingTable

log = structlog.get_logger("toolwire.http")

ROUTING_TABLE = web.AppKey("routing_table", RoutingTable)
STARTED_AT = web.AppKey("started_at", float)
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status)


@web.middleware
async def openai_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every failure leaves as an OpenAI-shaped error, whatever raised it."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as error:
        response = error_response(error)
    except BackendError as error:
        response = error_response(from_backend_error(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(_http_exception(error))
    except Exception:
        log.exception("unhandled_error", path=request.path)
        response = error_response(ApiError(500, "Internal error in the gateway.", type="server_error"))
    log.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response


def _http_exception(error: web.HTTPException) -> ApiError:
    if error.status == 404:
        return ApiError(404, "Unknown path. toolwire serves /v1/models and /v1/chat/completions.", code="not_found")
    if error.status == 405:
        return ApiError(405, f"Method not allowed: {error.reason}", code="method_not_allowed")
    if error.status == 413:
        return ApiError(413, "The request body is too large.", code="request_too_large")
    return ApiError(error.status, error.reason or "HTTP error")


async def list_models(request: web.Request) -> web.Response:
    created = int(request.app[STARTED_AT])
    table = request.app[ROUTING_TABLE]
    models = [
        {"id": name, "object": "model", "created": created, "owned_by": f"toolwire:{table.route_for_name(name).backend.name}"}
        for name in table.public_names()
    ]
    return json_response({"object": "list", "data": models})


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    job = parse_chat_request(await request.read())
    route = request.app[ROUTING_TABLE].resolve(job.model)
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    events = run_chat(job, route)
    try:
        if not job.stream:
            collector = ResponseCollector(completion_id, job.model)
            async for event in events:
                if isinstance(event, Completed):
                    return json_response(collector.response(event))
                if not isinstance(event, Started):
                    collector.add(event)
            raise ApiError(502, "The generation ended without a result.", type="server_error")
        return await _stream(request, job.model, job.include_usage, completion_id, events)
    finally:
        # Closing the generator closes the backend request, so an abandoned stream stops
        # generating upstream too.
        await events.aclose()


async def _stream(request, model, include_usage, completion_id, events) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    # Wait for the backend to accept before sending headers: an early fault stays an HTTP error.
    event = await anext(events)
    encoder = ChunkEncoder(completion_id, model, include_usage=include_usage)
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    await response.write(encoder.opening())
    try:
        while not isinstance(event, Completed):
            data = None if isinstance(event, Started) else encoder.event(event)
            if data:
                await response.write(data)
            event = await anext(events)
        await response.write(encoder.closing(event))
        await response.write_eof()
        return response
    except StopAsyncIteration:
        error = ApiError(502, "The generation ended without a result.", type="server_error")
    except ApiError as failure:
        error = failure
    except BackendError as failure:
        error = from_backend_error(failure)
    log.warning("stream_failed", status=error.status, code=error.code, message=error.message)
    await response.write(sse_error(error))
    await response.write_eof()
    return response
