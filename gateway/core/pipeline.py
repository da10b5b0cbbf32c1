"""One chat request through the chain: prompt -> backend stream -> parser -> events.

Streaming and non-streaming responses both consume `run_chat`; they differ only in encoding.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace

import structlog

from adapters.backends import BackendEvent, Finish, GenerationRequest, TextPiece, Usage
from adapters.backends.errors import BackendRejected
from adapters.formats.events import ParseEvent, ReasoningDelta, TextDelta

from .call_checks import CallChecker
from .call_continuation import CallContinuation
from .decoding import plan_decoding
from .job import ChatJob
from .logprob_alignment import LogprobAligner
from .prompt import marks_content, render_prompt
from .repair import CallRepair
from .resume import open_generation
from .routing import Route
from .trace import RequestTrace

log = structlog.get_logger("toolwire.pipeline")


@dataclass(frozen=True, slots=True)
class Started:
    """The backend accepted the request and began to answer: safe to send response headers."""


@dataclass(frozen=True, slots=True)
class Completed:
    finish_reason: str
    usage: Usage
    # The stop string that ended the generation, when the backend names it.
    stop_word: str | None = None


# Parser events come in lists: all the events of one backend read, so the edge can write them at once.
PipelineEvent = Started | list[ParseEvent] | Completed


async def run_chat(
    job: ChatJob, route: Route, trace: RequestTrace | None = None
) -> AsyncGenerator[PipelineEvent, None]:
    trace = trace or RequestTrace("", "chat")
    upstream_model = route.upstream_for(job.model)
    template, tool_format = await route.template(upstream_model)
    trace.tool_format = tool_format.name
    prompt = await render_prompt(
        job.conversation, tool_format, template, extra_stop=route.stop + job.stop, mark_content=marks_content(route)
    )
    conversation = job.conversation
    decoding = plan_decoding(
        conversation, tool_format, route.constraints, route.constrain, job.response_schema
    )
    request = GenerationRequest(
        prompt=prompt.prompt + job.continues + decoding.prefill,
        upstream_model=upstream_model,
        sampling=route.sampling(job.sampling),
        stop=prompt.stop,
        preserved_tokens=prompt.preserved_tokens,
        bos_token=prompt.bos_token,
        eos_token=template.eos_token,
        context_size=route.context_size,
        keep_alive=route.keep_alive,
        constraint=decoding.constraint,
        plain_spans=job.plain_spans(prompt.prompt, prompt.content_spans),
    )
    if trace.debug:
        log.info("prompt_rendered", request_id=trace.request_id, prompt=request.prompt, stop=request.stop)
    backend = _TimedStream(open_generation(route, request, job.affinity, trace), trace)
    try:
        try:
            first = await backend.next()
        except BackendRejected as error:
            if decoding.constraint is None:
                raise
            # Some backends or schemas cannot take a constraint: never fail the request for it.
            log.warning("constraint_rejected", model=job.model, backend=route.backend.name, error=error.message)
            decoding = plan_decoding(conversation, tool_format, route.constraints, "off")
            request = replace(request, prompt=prompt.prompt + job.continues + decoding.prefill, constraint=None)
            await backend.close()
            backend = _TimedStream(open_generation(route, request, job.affinity, trace), trace)
            first = await backend.next()
        yield Started()
        parser = tool_format.new_parser(
            prompt.prompt, parse_calls=conversation.offers_tools, tools=conversation.tools, repairing=route.repair
        )
        repair = CallRepair(enabled=route.repair, format_name=tool_format.name, request_id=trace.request_id)
        mender = CallContinuation(
            parser=parser,
            new_parser=lambda: tool_format.new_parser(
                prompt.prompt, parse_calls=conversation.offers_tools, tools=conversation.tools, repairing=True
            ),
            repair=repair,
            request=request,
            generate=lambda attempt: open_generation(route, attempt, job.affinity, trace),
            abandon=backend.close,
            enabled=route.repair and "grammar" in route.constraints,
            trace=trace,
        )
        checker = CallChecker(
            conversation.tools, route.validators, constrained=decoding.constraint is not None, one_call=decoding.one_call
        )
        aligner = LogprobAligner() if job.sampling.logprobs is not None else None
        # The client's prefill is parsed (it may open reasoning or a call) but its text is not sent back.
        if job.continues and (events := _not_text(await mender.feed(job.continues, prefill=True))):
            yield await checker.check(events)
        # The gateway's prefill is text the model "wrote": it opens the call the model goes on with.
        if events := await checker.check(await mender.feed(decoding.prefill, prefill=True)):
            yield events
        raw: list[str] = []
        piece: BackendEvent | None = first
        while isinstance(piece, TextPiece):
            trace.mark_first_token()
            if trace.debug:
                raw.append(piece.text)
            events = await checker.check(await mender.feed(piece.text))
            if aligner is not None:
                aligner.place(piece.logprobs, events)
            if events or piece is first:  # the first, even empty: the stream's opening goes out now
                yield events
            # A broken call continued by the backend ends the generation; the rest was given up.
            piece = mender.finish or await backend.next()
        assert isinstance(piece, Finish), "backends end every generation with a Finish"
        if mender.finish is None and (events := await checker.check(await mender.close(piece))):
            if aligner is not None:
                aligner.place((), events)
            yield events
        piece = mender.finish or piece
    finally:
        await backend.close()
    trace.usage, trace.tool_calls, trace.malformed_calls = piece.usage, checker.calls, parser.failed_calls
    trace.repaired_calls, trace.continued_calls = repair.repaired, mender.continued
    if trace.debug:
        log.info("model_output", request_id=trace.request_id, output=decoding.prefill + "".join(raw))
    reason: str = piece.reason
    if reason == "stop" and checker.calls:
        reason = "tool_calls"
    yield Completed(reason, piece.usage, piece.stop_word)


def _not_text(events: list[ParseEvent]) -> list[ParseEvent]:
    return [event for event in events if not isinstance(event, TextDelta | ReasoningDelta)]


class _TimedStream:
    """The backend's stream, timing every wait on it: the rest of a request is our overhead."""

    def __init__(self, pieces: AsyncIterator[BackendEvent], trace: RequestTrace) -> None:
        self._pieces = pieces
        self._trace = trace

    async def next(self) -> BackendEvent:
        started = time.perf_counter()
        try:
            return await anext(self._pieces)
        finally:
            self._trace.backend_wait += time.perf_counter() - started

    async def close(self) -> None:
        # Closing the generator closes its HTTP request, so the backend stops generating.
        await self._pieces.aclose()  # type: ignore[attr-defined]
