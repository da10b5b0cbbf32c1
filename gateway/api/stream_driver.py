"""The one skeleton every API surface runs a chat job on.

A surface (chat completions, Responses, ...) parses its request into a `ChatJob` and supplies an
encoder; `admit` and `answer` do the rest: key check, routing, the request's deadline, the
backend's concurrency slot, the pipeline, streaming or collecting, and every fault on the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
import structlog
from aiohttp import web

from adapters.backends.errors import BackendError

from ..core.fallbacks import run_with_fallbacks
from ..core.faults import (
    ClientGone,
    Fault,
    GenerationIncomplete,
    InvalidRequest,
    OutputTooLarge,
    RequestTimedOut,
)
from ..core.job import ChatJob
from ..core.pipeline import Completed, PipelineEvent
from ..core.reasoning_memory import ReasoningMemory, remembering, restore_reasoning
from ..core.routing import Route
from ..core.trace import RequestTrace
from ..ops.app_keys import API_KEY, CONFIG, METRICS, RATE_LIMITS, ROUTING_TABLE, STREAM, TRACE
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


# What produces one round's events: `run_chat` behind the route's fallbacks.
Runner = Callable[[ChatJob, Route, RequestTrace], AsyncGenerator[Any, None]]
# Rounds the gateway runs itself (the MCP tool loop), given the runner for each round.
ToolLoop = Callable[[ChatJob, Route, RequestTrace, Runner], AsyncGenerator[Any, None]]


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


def _check_backend_can(job: ChatJob, route: Route) -> None:
    """Options only some backends honor are refused where they would be dropped."""
    features: frozenset[str] = getattr(route.backend, "features", frozenset())
    asked = {"logit_bias": bool(job.sampling.logit_bias), "logprobs": job.sampling.logprobs is not None}
    for param, wanted in asked.items():
        if wanted and param not in features:
            raise InvalidRequest(f"'{param}' is not supported by backend '{route.backend.name}' serving "
                                 f"'{job.model}'.", param=param, code="unsupported_parameter")


async def answer(
    request: web.Request,
    route: Route,
    job: ChatJob,
    encoding: Encoding,
    memory: ReasoningMemory | None = None,
    loop: ToolLoop | None = None,
) -> web.StreamResponse:
    """Run the job within the request's deadline and the backend's slot, and answer it. With a `memory`,
    call turns get back reasoning the client dropped, and this reply's is kept (reasoning_memory); with a
    `loop`, the gateway runs tool rounds itself (the MCP tool loop), each on the same runner."""
    _check_backend_can(job, route)
    limit = request.app[CONFIG].limits.request_timeout
    deadline = asyncio.get_running_loop().time() + limit
    key, trace, table = request.get(API_KEY), request[TRACE], request.app[ROUTING_TABLE]
    if memory is not None:
        job = replace(job, conversation=await restore_reasoning(job.conversation, memory))
    if key is not None:
        await request.app[RATE_LIMITS].admit(
            key.key_id, requests_per_minute=key.requests_per_minute, tokens_per_minute=key.tokens_per_minute
        )
    # A pooled route takes each backend's slot per attempt; a lone backend's is taken here.
    slot = nullcontext() if route.pool is not None else table.limiter(route.backend.name).slot()
    try:
        async with slot:
            def run(job: ChatJob, route: Route, trace: RequestTrace) -> AsyncGenerator[Any, None]:
                return run_with_fallbacks(job, route, table.route_for_name, trace)

            events = run(job, route, trace) if loop is None else loop(job, route, trace, run)
            if memory is not None:
                events = remembering(events, memory)
            try:
                if job.stream:
                    return await _stream(request, events, encoding.stream, deadline, limit)
                cap = request.app[CONFIG].limits.max_output_chars
                collected = _collect(events, encoding.collect(), deadline, limit, cap)
                return json_response(await _unless_client_leaves(request, collected))
            finally:
                # Closing the generator closes the backend request, so an abandoned answer stops
                # generating upstream too.
                await _close(events, trace)
    finally:
        if key is not None and key.tokens_per_minute is not None and trace.usage is not None:
            await request.app[RATE_LIMITS].spend(key.key_id, trace.usage.total_tokens)


async def _close(events: AsyncGenerator[PipelineEvent, None], trace: RequestTrace) -> None:
    """Close the pipeline; a failure while closing is logged, never sent after an answer."""
    try:
        await events.aclose()
    except Exception:
        log.exception("pipeline_close_failed", request_id=trace.request_id)


_DISCONNECT_POLL = 0.25  # seconds between looks at a waiting client's connection


async def _unless_client_leaves(request: web.Request, work: Coroutine[Any, Any, Any]) -> Any:
    """Await `work`, cancelling it (and with it the backend's generation) if the client hangs up:
    aiohttp does not cancel a handler whose client left, so a non-streamed answer is watched."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL)
            if done:
                return task.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.info("client_disconnected", request_id=request[TRACE].request_id)
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _collect(
    events: AsyncIterator[PipelineEvent], collector: Collector, deadline: float, limit: float, cap: int
) -> Any:
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for event in events:
                if isinstance(event, list):
                    for parsed in event:
                        size += len(getattr(parsed, "text", "") or getattr(parsed, "raw", "") or "")
                        if size > cap:
                            raise OutputTooLarge(cap)
                        collector.add(parsed)
                elif isinstance(event, Completed):
                    return await collector.result(event)
    except TimeoutError:
        raise RequestTimedOut(limit) from None
    raise GenerationIncomplete()


class _SseResponse(web.StreamResponse):
    """Headers wait for the first body write and go out in the same send (aiohttp's switch for
    it; a stream's headers already wait for the backend's first text)."""

    _send_headers_immediately = False


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
    trace = request[TRACE]
    response = _SseResponse(headers={**SSE_HEADERS, "X-Request-ID": trace.request_id})
    await response.prepare(request)
    request[STREAM] = response
    streams = request.app[METRICS].streams
    streams.inc()
    try:
        ending = await _pump(response, encoder, events, event, deadline, limit, trace)
        if isinstance(ending, ApiError):
            log.warning("stream_failed", request_id=trace.request_id, status=ending.status, code=ending.code,
                        message=ending.message)
            # After the headers, the only honest way to fail is the surface's error event.
            ending = await _failure_event(encoder, ending)
        await response.write_eof(ending)  # the last events and the body's end in one send
    except ConnectionError:
        log.info("client_disconnected", request_id=trace.request_id)
    finally:
        streams.dec()
    return response


async def _failure_event(encoder: StreamEncoder, error: ApiError) -> bytes:
    """The surface's error event; if even that cannot be made, a plain one, so the stream still ends
    with an error rather than a second response."""
    try:
        return await encoder.failure(error)
    except Exception:
        log.exception("stream_failure_event_failed")
        fallback = ApiError(error.status, error.message, type=error.type, code=error.code)
        return b"event: error\ndata: " + orjson.dumps(fallback.body()) + b"\n\n"


async def _pump(
    response: web.StreamResponse,
    encoder: StreamEncoder,
    events: AsyncIterator[PipelineEvent],
    event: PipelineEvent,
    deadline: float,
    limit: float,
    trace: RequestTrace,
) -> bytes | ApiError:
    """Write the stream up to its closing events, which are returned (to go out with the body's
    end); a fault along the way is returned, never raised past the headers.

    One write per batch of events (all that one backend read produced): under load that is one
    send for several chunks. The opening goes out with the first batch, which follows it at once.
    """
    pending = b""
    try:
        pending = encoder.opening()
        async with asyncio.timeout_at(deadline):
            while not isinstance(event, Completed):
                if isinstance(event, list):
                    encoded = [pending]
                    try:
                        for parsed in event:
                            encoded.append(encoder.event(parsed))
                    except Exception:
                        # What was encoded before the fault (sequence numbers taken) goes out before its error.
                        pending = b"".join(encoded)
                        raise
                    data, pending = b"".join(encoded), b""
                    if data:
                        await response.write(data)
                event = await anext(events)
            return pending + await encoder.closing(event)
    except ConnectionError:
        raise  # the client is gone: nobody to tell
    except TimeoutError:
        error = api_error(RequestTimedOut(limit))
    except StopAsyncIteration:
        error = api_error(GenerationIncomplete())
    except BackendError as failure:
        trace.error_kind = failure.kind
        error = api_error(failure)
    except Exception as failure:
        if not isinstance(failure, Fault | ApiError):
            log.exception("stream_internal_error")
        error = api_error(failure)
    if pending:  # the surface's opening still comes before its error event
        await response.write(pending)
    return error
