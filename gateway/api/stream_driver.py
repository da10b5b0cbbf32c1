"""The one skeleton every API surface runs a chat job on.

A surface (chat completions, Responses, ...) parses its request into a `ChatJob` and supplies an
encoder; `admit` and `answer` do the rest: key check, routing, the request's deadline, the
backend's concurrency slot, the pipeline, streaming or collecting, and every fault on the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web

from adapters.backends.errors import BackendError

from ..core.faults import Fault, GenerationIncomplete, RequestTimedOut
from ..core.job import ChatJob
from ..core.pipeline import Completed, PipelineEvent, Started, run_chat
from ..core.routing import Route
from ..core.trace import RequestTrace
from ..ops.app_keys import API_KEY, CONFIG, METRICS, ROUTING_TABLE, TRACE
from ..ops.auth import check_model_allowed
from .errors import ApiError, api_error
from .json_body import json_response

log = structlog.get_logger("toolwire.stream")

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamEncoder(Protocol):
    """How a surface writes one streamed answer."""

    def opening(self) -> bytes: ...

    def event(self, event: Any) -> bytes:
        """The bytes for one event of the run: a parser event, or one of the runner's own (empty when it
        sends nothing)."""
        ...

    async def closing(self, completed: Completed) -> bytes: ...

    async def failure(self, error: ApiError) -> bytes:
        """The surface's error event, for a fault after the stream has begun."""
        ...


class Collector(Protocol):
    """How a surface gathers the same events into one answer."""

    def add(self, event: Any) -> None: ...

    async def result(self, completed: Completed) -> Any:
        """The JSON body of the whole answer."""
        ...


# What produces a job's events: `run_chat`, or a loop around it (the MCP tool loop).
Runner = Callable[[ChatJob, Route, RequestTrace], AsyncIterator[Any]]


@dataclass(frozen=True, slots=True)
class Encoding:
    """A surface's two ways of answering; only the one the request asked for is made."""

    stream: Callable[[], StreamEncoder]
    collect: Callable[[], Collector]


def admit(request: web.Request, model: str) -> Route:
    """May this caller use the model, and which route serves it."""
    check_model_allowed(request.get(API_KEY), model)
    route = request.app[ROUTING_TABLE].resolve(model)
    trace = request[TRACE]
    trace.model, trace.backend = model, route.backend.name
    return route


async def answer(
    request: web.Request, route: Route, job: ChatJob, encoding: Encoding, run: Runner = run_chat
) -> web.StreamResponse:
    """Run the job within the request's deadline and the backend's slot, and answer it."""
    limit = request.app[CONFIG].limits.request_timeout
    deadline = asyncio.get_running_loop().time() + limit
    async with request.app[ROUTING_TABLE].limiter(route.backend.name).slot():
        events = run(job, route, request[TRACE])
        try:
            if job.stream:
                return await _stream(request, events, encoding.stream, deadline, limit)
            return json_response(await _collect(events, encoding.collect(), deadline, limit))
        finally:
            # Closing the generator closes the backend request, so an abandoned answer stops
            # generating upstream too.
            await events.aclose()


async def _collect(events: AsyncIterator[PipelineEvent], collector: Collector, deadline: float, limit: float) -> Any:
    try:
        async with asyncio.timeout_at(deadline):
            async for event in events:
                if isinstance(event, Completed):
                    return await collector.result(event)
                if not isinstance(event, Started):
                    collector.add(event)
    except TimeoutError:
        raise RequestTimedOut(limit) from None
    raise GenerationIncomplete()


async def _stream(
    request: web.Request,
    events: AsyncIterator[PipelineEvent],
    new_encoder: Callable[[], StreamEncoder],
    deadline: float,
    limit: float,
) -> web.StreamResponse:
    # Wait for the backend to accept before sending headers: an early fault stays an HTTP error.
    try:
        async with asyncio.timeout_at(deadline):
            event = await anext(events)
    except TimeoutError:
        raise RequestTimedOut(limit) from None
    except StopAsyncIteration:
        raise GenerationIncomplete() from None
    encoder = new_encoder()
    response = web.StreamResponse(headers={**SSE_HEADERS, "X-Request-ID": request[TRACE].request_id})
    await response.prepare(request)
    streams = request.app[METRICS].streams
    streams.inc()
    try:
        trace = request[TRACE]
        error = await _pump(response, encoder, events, event, deadline, limit, trace)
        if error is not None:
            log.warning("stream_failed", request_id=trace.request_id, status=error.status, code=error.code,
                        message=error.message)
            # After the headers, the only honest way to fail is the surface's error event.
            await response.write(await encoder.failure(error))
        await response.write_eof()
    except ConnectionError:
        log.info("client_disconnected", request_id=request[TRACE].request_id)
    finally:
        streams.dec()
    return response


async def _pump(
    response: web.StreamResponse,
    encoder: StreamEncoder,
    events: AsyncIterator[PipelineEvent],
    event: PipelineEvent,
    deadline: float,
    limit: float,
    trace: RequestTrace,
) -> ApiError | None:
    """Write the stream; a fault along the way is returned, never raised past the headers."""
    try:
        await response.write(encoder.opening())
        async with asyncio.timeout_at(deadline):
            while not isinstance(event, Completed):
                if not isinstance(event, Started):
                    data = encoder.event(event)
                    if data:
                        await response.write(data)
                event = await anext(events)
            await response.write(await encoder.closing(event))
    except ConnectionError:
        raise  # the client is gone: nobody to tell
    except TimeoutError:
        return api_error(RequestTimedOut(limit))
    except StopAsyncIteration:
        return api_error(GenerationIncomplete())
    except BackendError as failure:
        trace.error_kind = failure.kind
        return api_error(failure)
    except Exception as failure:
        if not isinstance(failure, Fault | ApiError):
            log.exception("stream_internal_error")
        return api_error(failure)
    return None
