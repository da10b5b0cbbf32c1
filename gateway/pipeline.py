"""One chat request through the chain: prompt -> backend stream -> parser -> events.

Streaming and non-streaming responses both consume `run_chat`; they differ only in encoding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from adapters.backends import Finish, GenerationRequest, TextPiece, Usage
from adapters.formats.events import ParseEvent

from .chat_api import ChatJob
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
    plan = build_prompt(job.conversation, tool_format, template, extra_stop=route.stop + job.stop)
    request = GenerationRequest(
        prompt=plan.prompt,
        upstream_model=upstream_model,
        sampling=route.sampling(job.sampling),
        stop=plan.stop,
        preserved_tokens=plan.preserved_tokens,
        bos_token=plan.bos_token,
        eos_token=template.eos_token,
        context_size=route.context_size,
        keep_alive=route.keep_alive,
    )
    conversation = job.conversation
    parser = tool_format.new_parser(plan.prompt, parse_calls=conversation.offers_tools, tools=conversation.tools)
    finish: Finish | None = None
    started = False
    async for piece in route.backend.generate(request):
        if not started:
            started = True
            yield Started()
        if isinstance(piece, TextPiece):
            for event in parser.feed(piece.text):
                yield event
        else:
            finish = piece
    assert finish is not None, "backends end every generation with a Finish"
    for event in parser.close():
        yield event
    reason: str = finish.reason
    if reason == "stop" and parser.completed_calls:
        reason = "tool_calls"
    yield Completed(reason, finish.usage)
