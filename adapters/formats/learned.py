"""Formats learned from the chat template itself, for families no named format knows (day-0 support).

The template is rendered with a history that holds two known calls (known names, known arguments)
and with one that holds a known answer instead. Where the two renders part, the template wrote the
calls; the needles in that text give away the shape:

- a JSON object holding the name and the arguments (Hermes-like, in a list or not);
- the name, a header, then the arguments as a JSON object (Mistral v11, Kimi, DeepSeek);
- the name, then one tagged value per argument (Qwen3-Coder, GLM, MiniMax, DSML), including
  attributes after a key (`string="true"`);
- Gemma's call literal (`call:NAME{key:<quote>value<quote>}`);
- a Python list of calls (pythonic).

The text before the first name and between the two calls gives the per-call opening (what both
end with) and the block's own prefix; the text after each call gives the closing. Reasoning markers
come from a render of an answer with known reasoning, or from a generation prompt that opens one.
What comes out is a format description on the shared engine, like every named one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import ToolFormat
from .learned_probes import Render, Unlearnable, calls_region, learn_reasoning
from .learned_shapes import learn_calls
from .learned_tokens import TAG
from .syntax import CallSyntax

__all__ = ["LearnedFormat", "Learning", "Render", "learn_format"]


@dataclass(frozen=True, slots=True)
class Learning:
    """What a template taught: a format, or why none could be learned; `facts` says what was found."""

    format: ToolFormat | None
    summary: str
    facts: dict[str, str] = field(default_factory=dict)


class LearnedFormat(ToolFormat):
    """A format built from a template's own renders. Only for templates that write calls themselves,
    so the writers for templates that cannot are never needed."""

    name = "learned"
    syntax = CallSyntax(open_markers=())
    # What was learned, in words (for `toolwire check` and the log).
    summary: ClassVar[str] = ""
    # Every token the template's calls are written with (`<arg_key>`, `<|"|>`): a backend must print them.
    call_tokens: ClassVar[tuple[str, ...]] = ()

    @property
    def preserved_tokens(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.syntax.markers, *self.call_tokens)))


def learn_format(render: Render, generation_prompt: str = "") -> Learning:
    """The format a template teaches, learned from its renders (see the module doc)."""
    try:
        region, count = calls_region(render, generation_prompt)
        facts: dict[str, str] = {}
        syntax, opening = learn_calls(region, count, generation_prompt, facts)
        if opening.strip() and generation_prompt.rstrip().endswith(opening.strip()):
            raise Unlearnable(f"the generation prompt opens the first call ({opening.strip()!r}): its calls have no marker of their own")
        reasoning = learn_reasoning(render, generation_prompt)
    except Unlearnable as reason:
        return Learning(None, str(reason))
    if reasoning and any(marker in region for marker in reasoning):
        facts["reasoning"] = f"not learned: its markers {reasoning!r} are part of the call syntax"
        reasoning = None
    reasoning = reasoning or syntax.reasoning
    if reasoning:
        syntax = _with(syntax, reasoning=reasoning)
        facts["reasoning"] = f"{reasoning[0]!r} ... {reasoning[1]!r}"
    facts["opening"] = repr(opening)
    summary = ", ".join(f"{key} {value}" for key, value in facts.items())
    attributes = {"syntax": syntax, "call_opening": opening, "summary": summary,
                  "call_tokens": tuple(dict.fromkeys(TAG.findall(region)))}  # fmt: skip
    learned = type("LearnedFormat", (LearnedFormat,), attributes)()
    return Learning(learned, summary, facts)


def _with(syntax: CallSyntax, **changes: Any) -> CallSyntax:
    values = {name: getattr(syntax, name) for name in syntax.__dataclass_fields__}
    return CallSyntax(**{**values, **changes})
