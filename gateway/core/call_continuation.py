"""Repair a broken call by continuation: the backend finishes it under a grammar.

When a call breaks after its name was sent, the model had written a valid start of it. Rather
than closing that start ourselves (`repair.CallRepair`), the generation is stopped and the backend
is asked to go on from exactly that text (the prompt plus what the model wrote, up to the end of
the valid prefix, as a prefill) under a GBNF grammar that admits only the rest of this JSON: the
rest of an open string, scalar or member (any JSON value where one is due), then each open
container closed (no new members: with them a small model rambles on, see `completion_grammar`). Its output is
parsed as if the model had written it, by a parser replayed up to the same point. The turn then
ends with the repaired call (the grammar ends where the JSON does; the parser needs no close
marker at the end of the output).

Only where that is sound: a JSON-object call format (the arguments are the model's own JSON
text), a backend that takes a grammar (llama.cpp, vLLM; not Ollama), arguments cut inside a value
(an open string or literal, a key without its value; when only brackets are missing, closing is
exact and keeps the text after the call), and token budget left (a length cut is never repaired). Otherwise, or when the continuation fails
too (rejected, cut, broken again), the call is closed as before. The continuation is bounded by
`MAX_CONTINUATION_TOKENS` (or what is left of `max_tokens`) and by the request's deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace

import structlog

from adapters.backends import BackendEvent, Finish, GenerationRequest, TextPiece
from adapters.backends.base import Constraint
from adapters.backends.errors import BackendError
from adapters.formats.engine import StreamParser
from adapters.formats.events import ParseEvent, ToolCallArgs, ToolCallEnd, ToolCallFailed, ToolCallStart
from adapters.formats.grammar import GbnfRules, literal

from .repair import CallRepair, JsonPrefix, json_completion, scan_json_prefix
from .resume import carried_usage, continuation
from .trace import RequestTrace

log = structlog.get_logger("toolwire.repair")

MAX_CONTINUATION_TOKENS = 256

Generate = Callable[[GenerationRequest], AsyncIterator[BackendEvent]]


def completion_grammar(prefix: str) -> str | None:
    """A GBNF grammar admitting exactly the texts that make `prefix` (the start of a JSON object)
    one complete object; None when `prefix` is not such a start or is complete already."""
    state = scan_json_prefix(prefix)
    if state is None or state.complete or not prefix.strip():
        return None
    rules = GbnfRules()
    ws, member, value = rules.use("ws"), rules.use("json-member"), rules.use("json-value")
    char, hex_ = rules.use("json-char"), rules.use("hex")
    # The value being written is finished, then every container is closed: no new members. A
    # grammar that allows more (`("," member)*`) let the real 270M model ramble on with invented
    # keys until the token bound cut it (and the repair fell back to closing).
    closers = {"{": '"}"', "[": '"]"'}
    parts: list[str] = []
    innermost = closers[state.stack[-1]] if state.stack else ""
    expect = state.expect
    if state.in_string:
        if state.escape == 1:
            parts.append(f'( ["\\\\/bfnrt] | "u" {hex_} {hex_} {hex_} {hex_} )')
        elif state.escape > 1:
            parts += [hex_] * (state.escape - 1)
        parts.append(f'{char}* "\\""')
        expect = "colon" if state.is_key else "comma"
    elif state.scalar:
        parts.append(_scalar_rest(state))
        expect = "comma"
    if expect == "colon":
        parts.append(f'{ws} ":" {ws} {value} {ws}')
    elif expect == "value":
        parts.append(f"{ws} {value} {ws}")
    elif expect == "key":
        parts.append(f"{ws} {member}")
    elif expect == "key_or_close":
        innermost = f'{ws} {member}? "}}"'
    elif expect == "value_or_close":
        innermost = f'{ws} ( {value} {ws} )? "]"'
    else:  # after a complete value
        parts.append(ws)
    parts.append(innermost)
    parts += [f"{ws} {closers[opened]}" for opened in reversed(state.stack[:-1])]
    return rules.render(" ".join(part for part in parts if part))


_NUMBER_STEPS = (
    (re.compile(r"-?"), '( "0" | [1-9] [0-9]* ) {frac}? {exp}?'),
    (re.compile(r"-?0"), "{frac}? {exp}?"),
    (re.compile(r"-?[1-9][0-9]*"), "[0-9]* {frac}? {exp}?"),
    (re.compile(r"-?(0|[1-9][0-9]*)\."), "[0-9]+ {exp}?"),
    (re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]+"), "[0-9]* {exp}?"),
    (re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?[eE]"), "[-+]? [0-9]+"),
    (re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?[eE][-+]"), "[0-9]+"),
    (re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?[eE][-+]?[0-9]+"), "[0-9]*"),
)


def _scalar_rest(state: JsonPrefix) -> str:
    """The rest of a literal or number cut short (`tru`, `-1.`, `2e`)."""
    for word in ("true", "false", "null"):
        if word.startswith(state.scalar):
            return literal(word[len(state.scalar) :]) if word != state.scalar else ""
    for pattern, rest in _NUMBER_STEPS:
        if pattern.fullmatch(state.scalar):
            return rest.format(frac='( "." [0-9]+ )', exp="( [eE] [-+]? [0-9]+ )")
    return '"\\x00"'  # not the start of a JSON value: nothing can complete it (never matches text)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a continuation starts from: the model's text up to the end of the valid prefix."""

    written: str  # everything the parser was fed, up to the end of the call's valid arguments
    grammar: str
    index: int


class CallContinuation:
    """Sits between the parser and the call repair: a broken call that can be continued is
    finished by the backend; every other event goes to `CallRepair` as before.

    `feed` and `close` stand for the parser's; `finish`, once set, is the generation's end: the
    original stream was given up for the continuation and must not be read further."""

    def __init__(
        self,
        *,
        parser: StreamParser,
        new_parser: Callable[[], StreamParser],
        repair: CallRepair,
        request: GenerationRequest,
        generate: Generate,
        abandon: Callable[[], Awaitable[None]],
        enabled: bool,
        trace: RequestTrace,
    ) -> None:
        self._parser = parser
        self._new_parser = new_parser
        self._repair = repair
        self._request = request  # the generation as sent: its prompt ends with the prefill
        self._generate = generate
        self._abandon = abandon
        self._enabled = enabled
        self._trace = trace
        self._fed: list[str] = []
        self._prefill = ""  # the call opening the gateway prefilled: in the request's prompt already
        self._pieces = 0
        self._arguments: dict[int, list[str]] = {}
        self.finish: Finish | None = None
        self.continued = 0

    async def feed(self, text: str, *, prefill: bool = False) -> list[ParseEvent]:
        if self._enabled:  # what was written is kept only to continue from it
            self._fed.append(text)
        if prefill:
            self._prefill += text
        else:
            self._pieces += 1
        return await self._settle(self._parser.feed(text), None)

    async def close(self, finish: Finish) -> list[ParseEvent]:
        return await self._settle(self._parser.close(cut=finish.reason == "length"), finish)

    async def _settle(self, events: list[ParseEvent], finish: Finish | None) -> list[ParseEvent]:
        if not self._enabled:  # no continuation possible: nothing to track on the streaming path
            return self._repair.check(events)
        for position, event in enumerate(events):
            if isinstance(event, ToolCallStart):
                self._arguments[event.index] = []
            elif isinstance(event, ToolCallArgs) and event.index in self._arguments:
                self._arguments[event.index].append(event.text)
            elif isinstance(event, ToolCallFailed) and (plan := self._plan(event)) is not None:
                before = self._repair.check(events[:position])
                if finish is None:
                    await self._abandon()  # the rest of the broken output is not read
                continued = await self._continue(plan)
                if continued is None:
                    # Closed as before; the output after the fault is given up (with `finish`, it ended).
                    self.finish = finish or Finish("stop", carried_usage(None, self._pieces))
                    return [*before, *self._repair.check([event])]
                self.continued += 1
                return [*before, *self._repair.check(continued)]
        return self._repair.check(events)

    def _plan(self, failed: ToolCallFailed) -> _Plan | None:
        if not self._enabled or failed.json_from < 0 or failed.at < 0:
            return None
        if (
            self._request.sampling.max_tokens is not None
            and self._request.sampling.max_tokens <= self._pieces
        ):
            return None  # the budget is spent
        arguments = "".join(self._arguments.get(failed.index, ()))
        completion = json_completion(arguments) if arguments else None
        if completion is None or not completion.strip("}] "):
            # Nothing written to go on from, or only brackets missing: closing is what the grammar
            # would leave the model anyway, without a second generation, and keeps what follows.
            return None
        head = "".join(self._fed)[: failed.at]
        end = head.rfind(arguments, failed.json_from)
        if end < 0:
            return None  # the arguments sent are not the model's text verbatim (escaped characters)
        end += len(arguments)
        grammar = completion_grammar(head[failed.json_from : end])
        if grammar is None:
            return None
        return _Plan(head[:end], grammar, failed.index)

    async def _continue(self, plan: _Plan) -> list[ParseEvent] | None:
        """The call's end as the backend writes it under the grammar, or None if that fails."""
        if not plan.written.startswith(self._prefill):
            return None  # broken inside the prefill: not the model's text
        written = plan.written[len(self._prefill) :]
        request = continuation(self._request, written, tokens_written=self._pieces)
        budget = MAX_CONTINUATION_TOKENS
        if request.sampling.max_tokens is not None:
            budget = min(budget, request.sampling.max_tokens)
        request = replace(
            request,
            sampling=replace(request.sampling, max_tokens=budget),
            constraint=Constraint(grammar=plan.grammar),
        )
        parser = self._new_parser()
        parser.feed(plan.written)  # the same state the broken call's parser had, before the fault
        events: list[ParseEvent] = []
        output: list[str] = []
        started = time.perf_counter()
        end: Finish | None = None
        try:
            async with aclosing(self._generate(request)) as pieces:  # type: ignore[type-var]
                async for piece in pieces:
                    if isinstance(piece, TextPiece):
                        output.append(piece.text)
                        events += parser.feed(piece.text)
                    else:
                        end = piece
                        break
        except BackendError as error:
            log.warning(
                "tool_call_continuation_failed", request_id=self._trace.request_id, error=error.message
            )
            return None
        finally:
            self._trace.backend_wait += time.perf_counter() - started
        if end is None or end.reason == "length":
            log.warning(
                "tool_call_continuation_cut", request_id=self._trace.request_id, output="".join(output)
            )
            return None
        events += parser.close()
        ended = [
            e for e in events if isinstance(e, ToolCallEnd) and e.index == plan.index and not e.truncated
        ]
        if not ended or any(isinstance(e, ToolCallFailed) for e in events):
            log.warning(
                "tool_call_continuation_broken", request_id=self._trace.request_id, output="".join(output)
            )
            return None
        log.warning(
            "tool_call_repaired",
            request_id=self._trace.request_id,
            how="continued",
            continuation="".join(output),
            seconds=round(time.perf_counter() - started, 3),
        )
        self.finish = replace(end, usage=carried_usage(end.usage, self._pieces))
        # Only what the continuation completed: events of the replayed prefix were sent already.
        return [
            replace(e, repaired=True) if isinstance(e, ToolCallEnd) and e.index == plan.index else e
            for e in events
        ]
