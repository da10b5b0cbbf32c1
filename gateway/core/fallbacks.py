"""Fallback models: when every backend of a model fails before answering, or the prompt is too
long for its context, the same job goes to the next model the route names (rendered anew with that
model's template and tool format)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

import structlog

from adapters.backends.errors import BackendError, ContextLengthExceeded

from .faults import Fault, NoBackendAvailable
from .job import ChatJob
from .pipeline import PipelineEvent, run_chat
from .retry import retryable
from .routing import Route
from .trace import RequestTrace

log = structlog.get_logger("toolwire.router")


def falls_back(error: BaseException) -> bool:
    return isinstance(error, ContextLengthExceeded | NoBackendAvailable) or retryable(error)


async def run_with_fallbacks(
    job: ChatJob, route: Route, resolve: Callable[[str], Route], trace: RequestTrace
) -> AsyncGenerator[PipelineEvent, None]:
    """`run_chat` on the route, then on each fallback while the one before failed before its first byte."""
    chain = [route, *(resolve(name) for name in route.fallbacks)]
    for index, current in enumerate(chain):
        job_here = job if current is route else replace(job, model=current.name)
        events = run_chat(job_here, current, trace)
        try:
            try:
                first = await anext(events)
            except (BackendError, Fault) as error:
                if index + 1 == len(chain) or not falls_back(error):
                    raise
                trace.fallback = chain[index + 1].name
                log.warning("model_fallback", request_id=trace.request_id, model=current.name,
                            fallback=trace.fallback, error=getattr(error, "message", str(error)))
                continue
            yield first
            async for event in events:
                yield event
            return
        finally:
            await events.aclose()
