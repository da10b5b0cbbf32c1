"""One chat request through the chain: prompt -> backend stream -> parser -> events.

Streaming and non-streaming responses both consume `run_chat`; they differ only in encoding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import structlog

from adapters.backends import BackendEvent, Finish, GenerationRequest, TextPiece, Usage
from adapters.backends.errors import BackendRejected
from adapters.formats.events import ParseEvent

from .chat_api import ChatJob
from .call_checks import CallChecker
from .decoding import plan_decoding
from .prompt import build_prompt
from .routing import Route

log = structlog.get_logger("toolwire.pipeline")


@dataclass(frozen=True, slots=True)
class Started:
    """The backend accepted the request and began to answer: safe to send response headers."""


@dataclass(frozen=True, slots=True)
class Completed:
    finish_reason: str
    usage: Usage


PipelineEvent = Started | ParseEvent | Completed


async def run_chat(job: ChatJob, route: Route) -> AsyncIterator[PipelineEvent]:
    upstream_model = route.upstream_for(job.model)
    template, tool_format = await route.template(upstream_model)
    prompt = build_prompt(job.conversation, tool_format, template, extra_stop=route.stop + job.stop)
    conversation = job.conversation
    decoding = plan_decoding(
        conversation, tool_format, route.backend.constraints, route.constrain, job.response_schema
    )
    request = GenerationRequest(
        prompt=prompt.prompt + decoding.prefill,
        upstream_model=upstream_model,
        sampling=route.sampling(job.sampling),
        stop=prompt.stop,
        preserved_tokens=prompt.preserved_tokens,
        bos_token=prompt.bos_token,
        eos_token=template.eos_token,
        context_size=route.context_size,
        keep_alive=route.keep_alive,
        constraint=decoding.constraint,
    )
    pieces = route.backend.generate(request)
    try:
        first = await anext(pieces)
    except BackendRejected as error:
        if decoding.constraint is None:
            raise
        # Some backends or schemas cannot take a constraint: never fail the request for it.
        log.warning("constraint_rejected", model=job.model, backend=route.backend.name, error=error.message)
        decoding = plan_decoding(conversation, tool_format, route.backend.constraints, "off")
        request = replace(request, prompt=prompt.prompt + decoding.prefill, constraint=None)
        pieces = route.backend.generate(request)
        first = await anext(pieces)
    yield Started()
    parser = tool_format.new_parser(prompt.prompt, parse_calls=conversation.offers_tools, tools=conversation.tools)
    checker = CallChecker(conversation.tools, constrained=decoding.constraint is not None, one_call=decoding.one_call)
    # The prefill is text the model "wrote": it opens the call the model goes on with.
    for event in checker.check(parser.feed(decoding.prefill)):
        yield event
    finish: Finish | None = None
    async for piece in _chain(first, pieces):
        if isinstance(piece, TextPiece):
            for event in checker.check(parser.feed(piece.text)):
                yield event
        else:
            finish = piece
    assert finish is not None, "backends end every generation with a Finish"
    for event in checker.check(parser.close()):
        yield event
    reason: str = finish.reason
    if reason == "stop" and checker.calls:
        reason = "tool_calls"
    yield Completed(reason, finish.usage)


async def _chain(first: BackendEvent, rest: AsyncIterator[BackendEvent]) -> AsyncIterator[BackendEvent]:
    yield first
    async for item in rest:
        yield item
