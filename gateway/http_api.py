"""The HTTP surface: thin aiohttp handlers that convert between the wire and typed objects."""

from __future__ import annotations

import asyncio
import secrets

import structlog
from aiohttp import web

from adapters.backends.errors import BackendError

from .app_keys import API_KEY, CONFIG, METRICS, ROUTING_TABLE, STARTED_AT, TRACE
from .auth import check_model_allowed
from .chat_api import parse_chat_request
from .chat_encoding import ChunkEncoder, ResponseCollector, sse_error
from .errors import ApiError, from_backend_error
from .middleware import error_response, json_response
from .pipeline import Completed, Started, run_chat

__all__ = [
    "ROUTING_TABLE",
    "SSE_HEADERS",
    "STREAM_FAULTS",
    "STARTED_AT",
    "chat_completions",
    "error_response",
    "json_response",
    "list_models",
    "stream_fault",
    "timed_out",
]

log = structlog.get_logger("toolwire.http")

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


async def chat_completions(request: web.Request) -> web.StreamResponse:
    trace = request[TRACE]
    job = parse_chat_request(await request.read())
    check_model_allowed(request.get(API_KEY), job.model)
    table = request.app[ROUTING_TABLE]
    route = table.resolve(job.model)
    trace.model, trace.backend = job.model, route.backend.name
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    deadline = asyncio.get_running_loop().time() + request.app[CONFIG].limits.request_timeout
    async with table.limiter(route.backend.name).slot():
        events = run_chat(job, route, trace)
        try:
            if job.stream:
                return await _stream(request, job.model, job.include_usage, completion_id, events, deadline)
            collector = ResponseCollector(completion_id, job.model)
            try:
                async with asyncio.timeout_at(deadline):
                    async for event in events:
                        if isinstance(event, Completed):
                            return json_response(collector.response(event))
                        if not isinstance(event, Started):
                            collector.add(event)
            except TimeoutError:
                raise timed_out(request) from None
            raise ApiError(502, "The generation ended without a result.", type="server_error")
        finally:
            # Closing the generator closes the backend request, so an abandoned stream stops
            # generating upstream too.
            await events.aclose()


def timed_out(request: web.Request) -> ApiError:
    limit = request.app[CONFIG].limits.request_timeout
    return ApiError(
        504, f"The request took longer than the gateway's limit of {limit:g}s.", type="server_error", code="request_timeout"
    )


# What can end a stream after its headers are out; each becomes one SSE error event.
STREAM_FAULTS = (TimeoutError, StopAsyncIteration, ApiError, BackendError)


def stream_fault(request: web.Request, failure: BaseException) -> ApiError:
    if isinstance(failure, TimeoutError):
        return timed_out(request)
    if isinstance(failure, ApiError):
        return failure
    if isinstance(failure, BackendError):
        request[TRACE].error_kind = failure.kind
        return from_backend_error(failure)
    return ApiError(502, "The generation ended without a result.", type="server_error")


async def _stream(request, model, include_usage, completion_id, events, deadline) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    # Wait for the backend to accept before sending headers: an early fault stays an HTTP error.
    try:
        async with asyncio.timeout_at(deadline):
            event = await anext(events)
    except TimeoutError:
        raise timed_out(request) from None
    encoder = ChunkEncoder(completion_id, model, include_usage=include_usage)
    response = web.StreamResponse(headers={**SSE_HEADERS, "X-Request-ID": request[TRACE].request_id})
    await response.prepare(request)
    await response.write(encoder.opening())
    streams = request.app[METRICS].streams
    streams.inc()
    error: ApiError | None = None
    try:
        async with asyncio.timeout_at(deadline):
            while not isinstance(event, Completed):
                data = None if isinstance(event, Started) else encoder.event(event)
                if data:
                    await response.write(data)
                event = await anext(events)
            await response.write(encoder.closing(event))
    except STREAM_FAULTS as failure:
        error = stream_fault(request, failure)
    finally:
        streams.dec()
    if error is not None:
        log.warning("stream_failed", status=error.status, code=error.code, message=error.message)
        await response.write(sse_error(error))
    await response.write_eof()
    return response
