"""One generation across a pool of backends: retried before its first byte, resumed after it.

Before the first text, a backend that fails in a way another may not (connection refused or
reset, timeout, 5xx, 429, loading, a full queue) is replaced by the next one, after a short
backoff, up to the retry policy's attempts. After the first text, a backend that fails (cut
connection, in-band error, silence past its read timeout) is replaced too, but the new one is
asked to *continue*: the same rendered prompt plus everything the model has written so far, as a
prefill. The caller sees one stream of text pieces; its parser never knows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace

import structlog

from adapters.backends import BackendEvent, Finish, GenerationRequest, TextPiece, Usage
from adapters.backends.errors import BackendError, BackendProtocolError

from .balancing import BackendPool
from .faults import BackendBusy, NoBackendAvailable
from .job import Affinity
from .retry import breaks_backend, retryable
from .routing import Route
from .trace import RequestTrace

log = structlog.get_logger("toolwire.router")


def continuation(
    request: GenerationRequest, written: str, *, tokens_written: int = 0, keep_constraint: bool = False
) -> GenerationRequest:
    """The request that continues a generation the model has written `written` of.

    The text goes after the prompt as a prefill, so the model goes on from its last character.
    `max_tokens` shrinks by what was written. A constraint that applies to the whole answer
    cannot apply to its rest, so it is dropped unless the caller says it fits the rest."""
    if not written:
        return request
    sampling = request.sampling
    if sampling.max_tokens is not None:
        sampling = replace(sampling, max_tokens=max(1, sampling.max_tokens - tokens_written))
    constraint = request.constraint if keep_constraint else None
    return replace(request, prompt=request.prompt + written, sampling=sampling, constraint=constraint)


def open_generation(
    route: Route, request: GenerationRequest, affinity: Affinity | None, trace: RequestTrace
) -> AsyncIterator[BackendEvent]:
    """The route's generation: across its pool when it has one, else straight from its backend."""
    if route.pool is None:
        return route.backend.generate(request)
    return generate_across(route.pool, request, model=route.name, affinity=affinity, trace=trace)


async def generate_across(
    pool: BackendPool,
    request: GenerationRequest,
    *,
    model: str,
    affinity: Affinity | None = None,
    trace: RequestTrace | None = None,
) -> AsyncIterator[BackendEvent]:
    trace = trace or RequestTrace("", "chat")
    board = pool.router.board
    tried: set[str] = set()
    written: list[str] = []  # every piece the model has written, whichever backend wrote it
    carried = 0  # pieces written before the current attempt (its prompt holds them)
    attempts = 0
    error: BaseException | None = None
    while True:
        member = await pool.pick(tried, affinity)
        if member is None:
            raise error if error is not None else NoBackendAvailable(model, sorted(m.name for m in pool.members))
        tried.add(member.name)
        attempts += 1
        trace.backend = member.name
        trace.backends_tried.append(member.name)
        attempt = continuation(request, "".join(written), tokens_written=len(written))
        if member.upstream_model is not None:
            attempt = replace(attempt, upstream_model=member.upstream_model)
        started = time.perf_counter()
        timed = False
        try:
            async with pool.lease(member), aclosing(member.backend.generate(attempt)) as pieces:  # type: ignore[type-var]
                async for event in pieces:
                    if not timed:
                        pool.router.load.observe(member.name, time.perf_counter() - started)
                        timed = True
                    if isinstance(event, TextPiece):
                        written.append(event.text)
                        yield event
                        continue
                    await board.succeeded(member.name)
                    await pool.remember(affinity, member)
                    yield _carry(event, carried)
                    return
            raise BackendProtocolError(member.name, f"backend '{member.name}' ended without finishing")
        except (BackendError, BackendBusy) as failure:
            error = failure
            if breaks_backend(failure):
                await board.failed(member.name)
            if written:
                if not pool.resume:
                    raise
                trace.resumes += 1
                carried = len(written)
                log.warning("stream_resuming", request_id=trace.request_id, model=model, backend=member.name,
                            error=getattr(failure, "message", str(failure)), written_chars=sum(map(len, written)))
                continue
            if not retryable(failure) or attempts >= pool.retry.attempts:
                raise
            trace.retries += 1
            log.info("backend_retry", request_id=trace.request_id, model=model, backend=member.name,
                     error=getattr(failure, "message", str(failure)))
            await asyncio.sleep(pool.retry.delay(attempts))


def _carry(finish: Finish, carried: int) -> Finish:
    """A resumed backend counts what it was given to continue as prompt; it was output."""
    if not carried:
        return finish
    return replace(finish, usage=carried_usage(finish.usage, carried))


def carried_usage(usage: Usage | None, carried: int) -> Usage:
    """The usage of a continuation that was given `carried` written tokens as prompt: they were
    output. With no usage known (a generation given up), just those tokens."""
    if usage is None:
        return Usage(completion_tokens=carried)
    return Usage(
        prompt_tokens=max(0, usage.prompt_tokens - carried),
        completion_tokens=usage.completion_tokens + carried,
        cached_tokens=usage.cached_tokens,
    )
