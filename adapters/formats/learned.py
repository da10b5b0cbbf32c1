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

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import ToolFormat
from .literal_calls import LiteralSyntax
from .name_args import NameArgsSyntax
from .pythonic_calls import pythonic_scanner
from .syntax import CallSyntax
from .tagged_calls import TagSyntax

# (messages, tools, add_generation_prompt) -> the prompt. Raises if the template fails.
Render = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None, bool], str]

_NAMES = ("tw_probe_fn", "tw_other_fn")
# Two arguments for the first call (to see what stands between arguments), one for the second.
_ARGUMENTS = ({"tw_alpha": "TWVALUEONE", "tw_beta": "TWVALUETWO"}, {"tw_gamma": "TWVALUETHREE"})
_ANSWER = "ZQANSWERNEEDLE"
_REASONING = "ZQREASONINGNEEDLE"
_USER = {"role": "user", "content": "Hi"}
# Mistral templates want 9-alphanumeric ids; Kimi K2's write only the id, which carries the name.
_ID_STYLES = (("call12345", "call67890"), (f"functions.{_NAMES[0]}:0", f"functions.{_NAMES[1]}:1"))
_CONTENTS: tuple[dict[str, Any], ...] = ({"content": ""}, {"content": None}, {})
_TAG = re.compile(r"<[^<>]*>")
_EMPTY_PAIR = re.compile(r"(<[^<>/]+>)\s*(<[^<>]+>)")
_PLAIN_TAG = re.compile(r"<[A-Za-z][\w:-]*>")  # `<think>`, `<seed:think>`: one whose close is `</...>`
_ATTRIBUTES = re.compile(r'^(?P<end>.*?)(?P<attributes>(?:\s+[\w-]+="[^"]*")+)(?P<close>[^"\s]*)$', re.DOTALL)


def _tools() -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {
            "name": name, "description": "A probe tool.",
            "parameters": {"type": "object", "required": list(arguments),
                           "properties": {key: {"type": "string", "description": "A probe argument."} for key in arguments}}}}
        for name, arguments in zip(_NAMES, _ARGUMENTS, strict=True)
    ]  # fmt: skip


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


class _Unlearnable(Exception):
    pass


def learn_format(render: Render, generation_prompt: str = "") -> Learning:
    """The format a template teaches, learned from its renders (see the module doc)."""
    try:
        region, count = _calls_region(render, generation_prompt)
        facts: dict[str, str] = {}
        syntax, opening = _learn_calls(region, count, generation_prompt, facts)
        if opening.strip() and generation_prompt.rstrip().endswith(opening.strip()):
            raise _Unlearnable(f"the generation prompt opens the first call ({opening.strip()!r}): its calls have no marker of their own")
        reasoning = _learn_reasoning(render, generation_prompt)
    except _Unlearnable as reason:
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
                  "call_tokens": tuple(dict.fromkeys(_TAG.findall(region)))}  # fmt: skip
    learned = type("LearnedFormat", (LearnedFormat,), attributes)()
    return Learning(learned, summary, facts)


def _with(syntax: CallSyntax, **changes: Any) -> CallSyntax:
    values = {name: getattr(syntax, name) for name in syntax.__dataclass_fields__}
    return CallSyntax(**{**values, **changes})


# -- rendering ----------------------------------------------------------------------------------


def _try(render: Render, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str | None:
    try:
        return render(messages, _tools(), add_generation_prompt)
    except Exception:  # noqa: BLE001 -- a template is foreign code; a probe it fails on teaches nothing
        return None


def _call_message(ids: tuple[str, ...], content: dict[str, Any], as_text: bool, count: int) -> dict[str, Any]:
    calls = [
        {"id": ids[n], "type": "function",
         "function": {"name": _NAMES[n], "arguments": json.dumps(_ARGUMENTS[n]) if as_text else dict(_ARGUMENTS[n])}}
        for n in range(count)
    ]  # fmt: skip
    return {"role": "assistant", **content, "tool_calls": calls}


def _calls_region(render: Render, generation_prompt: str) -> tuple[str, int]:
    """The text the template writes for the calls of one turn, and how many calls it holds (two, or
    one for templates that draw a single call per turn)."""
    answer = _try(render, [_USER, {"role": "assistant", "content": _ANSWER}])
    if answer is None or _ANSWER not in answer:
        raise _Unlearnable("the template renders no assistant answer")
    for count in (2, 1):
        for ids in _ID_STYLES:
            for content in _CONTENTS:
                for as_text in (False, True):
                    calls = _try(render, [_USER, _call_message(ids, content, as_text, count)])
                    if calls is None:
                        continue
                    region = _region(calls, answer)
                    # The turn's header is the generation prompt, where a template writes it anew for calls.
                    if generation_prompt.strip() and region.lstrip().startswith(generation_prompt.strip()):
                        region = region.lstrip()[len(generation_prompt.strip()) :]
                    if not all(name in region for name in _NAMES[:count]) or "TWVALUEONE" not in region:
                        continue
                    if not as_text and "{'tw_alpha'" in region:
                        continue  # a dict printed as Python: the template wants the JSON text
                    return region, count
    raise _Unlearnable("the template writes no call from a history that holds one")


def _region(calls: str, answer: str) -> str:
    """What the template wrote for the calls: where the render with calls parts from the one with an
    answer, up to where they meet again; cut at token edges (`<...>`)."""
    start = len(os.path.commonprefix([calls, answer]))
    opened = calls.rfind("<", 0, start)
    if opened > calls.rfind(">", 0, start):  # the renders part inside a token: take all of it
        start = opened
    after_answer = answer[answer.index(_ANSWER) + len(_ANSWER) :]
    region = calls[start:]
    # What closes an answer (Kimi K3's `<|close|>response<|sep|>`) may stand before the calls too.
    region = region[len(_whole_tokens_to(os.path.commonprefix([region, after_answer]))) :]
    ending = len(os.path.commonprefix([region[::-1], after_answer[::-1]]))
    end = len(region) - ending
    if region.rfind("<", 0, end) > region.rfind(">", 0, end):  # they meet again inside a token
        closed = region.find(">", end)
        end = closed + 1 if closed >= 0 else len(region)
    region = region[:end]
    # The turn's end marker, as written after an answer, does not belong to the calls.
    turn_end = _tokens(after_answer)
    if turn_end and region.rstrip().endswith(turn_end[0]):
        region = region.rstrip()[: -len(turn_end[0])]
    return region


# -- the call shape -----------------------------------------------------------------------------


def _learn_calls(region: str, count: int, generation_prompt: str, facts: dict[str, str]) -> tuple[CallSyntax, str]:
    first = region.index(_NAMES[0])
    second = region.index(_NAMES[1]) if count == 2 else None
    if count == 1:
        facts["calls per turn"] = "one (the template draws no second call)"
    if region[first + len(_NAMES[0]) :].startswith("{") and "tw_alpha:" in region:
        return _learn_literal(region, first, second, facts)
    objects = _json_calls(region, count)
    if objects is not None:
        return _learn_json(region, objects, generation_prompt, facts)
    after = region[first + len(_NAMES[0]) :].lstrip()
    if after.startswith("(") and "tw_alpha=" in region:
        return _learn_pythonic(region, first, facts)
    arguments = _json_arguments(region, (first, second) if second is not None else (first,))
    if arguments is not None:
        return _learn_name_json(region, first, second, arguments, facts)
    return _learn_tags(region, first, second, facts)


def _opening_closing(head: str, middle: str | None, tail: str) -> tuple[str, str, str, str]:
    """From the text before the first call, between the calls and after the last: (block prefix,
    per-call opening, per-call closing, block suffix), cut at token edges."""
    if middle is None:  # one call: no way to tell a block's own markers from the call's
        return "", head, tail, ""
    opening = _whole_tokens_from(_common_suffix(head, middle))
    closing = _whole_tokens_to(os.path.commonprefix([middle, tail]))
    if len(opening) + len(closing) > len(middle):  # they overlap inside the middle: give the closing its own
        opening = middle[len(closing) :]
    return head[: len(head) - len(opening)], opening, closing, tail[len(closing) :]


def _whole_tokens_from(text: str) -> str:
    """A common suffix that begins inside a token (`>\n<b>`) starts after it (`\n<b>`)."""
    close, open_ = text.find(">"), text.find("<")
    return text[close + 1 :] if 0 <= close < open_ else text


def _whole_tokens_to(text: str) -> str:
    """A common prefix that ends inside a token (`</a>\n<`) ends before it (`</a>\n`)."""
    open_, close = text.rfind("<"), text.rfind(">")
    return text[:open_] if open_ > close else text


def _common_suffix(a: str, b: str) -> str:
    length = len(os.path.commonprefix([a[::-1], b[::-1]]))
    return a[len(a) - length :] if length else ""


def _markers(*texts: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(text.strip() for text in texts if text.strip()))


def _learn_json(
    region: str, objects: list[tuple[int, int, dict[str, Any]]], generation_prompt: str, facts: dict[str, str]
) -> tuple[CallSyntax, str]:
    start_a, end_a, call_a = objects[0]
    start_b, end_b, _ = objects[-1]
    name_key = next(key for key, value in call_a.items() if value == _NAMES[0])
    arguments_key = next(key for key, value in call_a.items() if _same_arguments(value, _ARGUMENTS[0]))
    empty_block: list[tuple[str, str]] = []
    head, tail = _undecorated(region[:start_a], generation_prompt, empty_block), region[end_b:]
    middle = region[end_a:start_b] if len(objects) == 2 else None
    if (middle is None or middle.strip() == ",") and head.rstrip().endswith("[") and tail.lstrip().startswith("]"):
        # One JSON list holds the calls (Granite, Mistral v3, xLAM, Nemotron...).
        prefix, suffix = head.rstrip()[:-1], tail.lstrip()[1:]
        open_marker, close = prefix.strip(), suffix.strip()
        opening = prefix.lstrip()
        layout = "a JSON list of call objects"
        separator = ""
    else:
        prefix, opening, closing, suffix = _opening_closing(head, middle, tail)
        open_marker, close = opening.strip(), closing.strip()
        separator = middle[len(closing) : len(middle) - len(opening)].strip() if middle is not None else ""
        opening = opening.lstrip()
        layout = "one JSON call object per block" if open_marker else "bare JSON call objects"
        if prefix.strip() or suffix.strip():
            raise _Unlearnable(f"JSON calls inside an outer block ({prefix.strip()!r} ... {suffix.strip()!r})")
    facts.update(shape=f"{layout} with {name_key!r} and {arguments_key!r}")
    if open_marker:
        facts["markers"] = f"{open_marker!r} ... {close!r}" if close else repr(open_marker)
    if separator:
        facts["separator"] = repr(separator)
    syntax = CallSyntax(
        open_markers=(open_marker,) if open_marker else (),
        close_marker=close or None,
        name_keys=(name_key,),
        argument_keys=(arguments_key,),
        call_separator=separator,
        start_bodies=() if open_marker else ("[", "{"),
        reasoning=empty_block[0] if empty_block else None,
    )
    return syntax, opening


def _undecorated(head: str, generation_prompt: str, reasoning: list[tuple[str, str]]) -> str:
    """The head of the calls without what the template writes around any turn: the start of its
    generation prompt (written anew for calls), and an empty reasoning block (`<think></think>`,
    `<|START_THINKING|><|END_THINKING|>`), kept as the reasoning markers."""
    shared = _whole_tokens_to(os.path.commonprefix([head, generation_prompt]))
    if shared.strip():
        head = head[len(shared) :]
    pair = _EMPTY_PAIR.match(head.lstrip())
    if pair and _closes(pair.group(1), pair.group(2)):
        reasoning.append((pair.group(1), pair.group(2)))
        head = head.lstrip()[pair.end() :]
    return head


def _closes(opening: str, closing: str) -> bool:
    return closing == "</" + opening[1:] or closing == opening.replace("START", "END")


def _same_arguments(value: Any, expected: dict[str, str]) -> bool:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return False
    return value == expected


def _json_calls(region: str, count: int) -> list[tuple[int, int, dict[str, Any]]] | None:
    """The call objects (start, end, object) if the calls are JSON objects that hold their name."""
    decoder = json.JSONDecoder()
    found = []
    for name in _NAMES[:count]:
        position = region.index(name)
        for start in (i for i in range(position - 1, -1, -1) if region[i] == "{"):
            try:
                value, end = decoder.raw_decode(region, start)
            except ValueError:
                continue
            if isinstance(value, dict) and name in value.values() and end > position:
                found.append((start, end, value))
                break
        else:
            return None
    if not any(_same_arguments(value, _ARGUMENTS[0]) for value in found[0][2].values()):
        raise _Unlearnable("the calls are JSON objects, but the arguments are not a value of the call object")
    return found


def _json_arguments(region: str, names: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """Where each call's arguments object lies, if the name is followed by them as JSON."""
    decoder = json.JSONDecoder()
    spans = []
    for n, start in enumerate(names):
        brace = region.find("{", start)
        if brace < 0:
            return None
        try:
            value, end = decoder.raw_decode(region, brace)
        except ValueError:
            return None
        if not _same_arguments(value, _ARGUMENTS[n]):
            return None
        spans.append((brace, end))
    return spans


def _learn_name_json(
    region: str, first: int, second: int | None, arguments: list[tuple[int, int]], facts: dict[str, str]
) -> tuple[CallSyntax, str]:
    (brace_a, end_a), end_b = arguments[0], arguments[-1][1]
    head, tail = region[:first], region[end_b:]
    middle = region[end_a:second] if second is not None else None
    prefix, opening, closing, suffix = _opening_closing(head, middle, tail)
    header = region[first + len(_NAMES[0]) : brace_a].strip()
    # The header may hold the call's own id (`[CALL_ID]x[ARGS]`, `:0<|...|>`): its last token is the marker.
    cut = max(header.rfind("<"), header.rfind("["))
    marker = header[cut:] if cut > 0 else header
    if not opening.strip():
        raise _Unlearnable("nothing marks where a call begins (the generation prompt opens it)")
    facts.update(shape="a name, then its arguments as a JSON object", markers=f"{opening.strip()!r} ... {closing.strip()!r}",
                 header=repr(marker))  # fmt: skip
    close = closing.strip()
    fence = None
    if marker.startswith("```") and close.startswith("```"):  # arguments in a code fence (DeepSeek V3)
        fence, close = (marker, "```"), close[3:].strip()
    body = NameArgsSyntax(args_markers=(marker,) if marker else (), bare_args=not marker, fence=fence)
    syntax = CallSyntax(
        open_markers=(opening.strip(),),
        close_marker=close or None,
        scanner=body.scanner,
        drop_markers=_markers(prefix, suffix),
    )
    return syntax, prefix.lstrip() + opening


def _learn_pythonic(region: str, first: int, facts: dict[str, str]) -> tuple[CallSyntax, str]:
    head = region[:first].rstrip()
    end = region.rindex(")") + 1
    tail = region[end:].lstrip()
    bracket = head.endswith("[")
    open_marker = (head[:-1] if bracket else head).strip()
    close = (tail.removeprefix("]")).strip()
    facts.update(shape="a Python list of calls", markers=f"{open_marker!r} ... {close!r}" if open_marker else "none")
    syntax = CallSyntax(
        open_markers=(open_marker,) if open_marker else (),
        close_marker=close or None,
        start_bodies=() if open_marker else ("[",),
        scanner=pythonic_scanner,
    )
    return syntax, head


def _learn_literal(region: str, first: int, second: int | None, facts: dict[str, str]) -> tuple[CallSyntax, str]:
    value = region.index("TWVALUEONE")
    key_end = region.index("tw_alpha:") + len("tw_alpha:")
    quote = region[key_end:value]
    if not quote or not region[value + len("TWVALUEONE") :].startswith(quote):
        raise _Unlearnable("a call literal whose strings are not quoted")
    end_a = region.index("}", region.index("TWVALUETWO")) + 1
    end_b = region.index("}", region.index("TWVALUETHREE")) + 1 if second is not None else end_a
    head, tail = region[:first], region[end_b:]
    middle = region[end_a:second] if second is not None else None
    _, opening, closing, _ = _opening_closing(head, middle, tail)
    cut = opening.rfind(">") + 1  # Gemma's `call:` comes after the marker token
    open_marker, prefix = opening[:cut].strip(), opening[cut:]
    facts.update(shape=f"a call literal {prefix}NAME{{key:value}} with strings in {quote!r}",
                 markers=f"{open_marker!r} ... {closing.strip()!r}")  # fmt: skip
    syntax = CallSyntax(
        open_markers=(open_marker,),
        close_marker=closing.strip() or None,
        scanner=LiteralSyntax(quote=quote, prefix=prefix).scanner,
    )
    return syntax, opening.lstrip()


def _learn_tags(region: str, first: int, second: int | None, facts: dict[str, str]) -> tuple[CallSyntax, str]:
    needles = ("tw_alpha", "TWVALUEONE", "tw_beta", "TWVALUETWO", "TWVALUETHREE")[: 5 if second is not None else 4]
    positions = [region.find(needle) for needle in needles]
    if min(positions) < 0 or positions != sorted(positions) or not first < positions[0] or (second and positions[3] > second):
        raise _Unlearnable("the arguments are neither JSON, nor tagged values, nor a literal toolwire reads")
    key_a, value_a, key_b, value_b = positions[:4]
    after_name = region[first + len(_NAMES[0]) : key_a]  # G1
    between = region[key_a + len("tw_alpha") : value_a]  # G2
    after_value = region[value_a + len("TWVALUEONE") : key_b]  # G3
    after_last = region[value_b + len("TWVALUETWO") : second]  # G4: to the next call, or the end
    tail = region[positions[4] + len("TWVALUETHREE") :] if second is not None else after_last
    key_open = _from_first_tag(_common_suffix(after_name, after_value))
    value_close_raw = _to_last_tag(os.path.commonprefix([after_value, after_last]))
    if not key_open or not value_close_raw.strip():
        raise _Unlearnable("no tag around an argument's name or after its value")
    value_close = value_close_raw.strip()
    padded = between.endswith("\n") and value_close_raw.startswith("\n")
    key_end, value_open, attributes_end = _split_key_end(between.strip())
    if attributes_end and key_open.startswith(attributes_end):  # that ended the name's attributes
        key_open = key_open[len(attributes_end) :].lstrip()
    name_end = after_name[: len(after_name) - len(_common_suffix(after_name, key_open))].strip()
    if attributes_end and name_end.endswith(attributes_end):
        name_end = name_end[: -len(attributes_end)]
    # Between the calls and after the last: the closing of a call, then what opens the next.
    head = region[:first]
    rest = tail[tail.index(value_close) + len(value_close) :] if value_close in tail else tail
    middle = after_last[after_last.index(value_close) + len(value_close) :] if second is not None else None
    prefix, opening, closing, suffix = _opening_closing(head, middle, rest)
    tokens = _tokens(opening)
    if prefix.strip():
        open_marker, call_open = prefix.strip(), opening.strip()
    elif len(tokens) > 1:
        open_marker, call_open = tokens[0], "".join(tokens[1:])
    elif tokens:
        open_marker, call_open = tokens[0], ""
    else:
        raise _Unlearnable("nothing marks where a call begins")
    closing_tokens = _tokens(closing)
    suffix_text = suffix.strip()
    if suffix_text:  # the calls of a turn share one block, closed once
        call_close, block_close, close_marker = closing.strip(), suffix_text, suffix_text
    elif len(closing_tokens) > 1:
        call_close, block_close, close_marker = closing_tokens[0], "", "".join(closing_tokens[1:])
    elif not call_open and closing_tokens:  # the name follows the block's marker: the block's close ends the call
        call_close, block_close, close_marker = "", closing_tokens[0], closing_tokens[0]
    else:
        call_close, block_close, close_marker = (closing_tokens[0] if closing_tokens else ""), "", ""
    if not call_close and not block_close:
        raise _Unlearnable("nothing marks where a call ends")
    body = TagSyntax(call_open=call_open, name_end=name_end, key_open=key_open, key_end=key_end, value_close=value_close,
                     call_close=call_close, value_open=value_open, attributes_end=attributes_end, block_close=block_close,
                     padded_values=padded)  # fmt: skip
    facts.update(
        shape="a name, then one tagged value per argument",
        markers=f"{open_marker!r} ... {close_marker!r}",
        call=f"{call_open}NAME{name_end}{attributes_end} ... {call_close}",
        argument=f"{key_open}KEY{key_end}{attributes_end}{value_open}VALUE{value_close}" + (" (padded)" if padded else ""),
    )
    syntax = CallSyntax(open_markers=(open_marker,), close_marker=close_marker or None, scanner=body.scanner)
    return syntax, head.lstrip()


def _tokens(text: str) -> list[str]:
    """Tag-like tokens and the words between them, without whitespace: `<a>\\n<b=` -> [`<a>`, `<b=`]."""
    out: list[str] = []
    position = 0
    for match in _TAG.finditer(text):
        out.extend(part for part in text[position : match.start()].split() if part)
        out.append(match.group())
        position = match.end()
    out.extend(part for part in text[position:].split() if part)
    return out


def _from_first_tag(text: str) -> str:
    """`text` from its first `<` on (a common suffix may begin inside the tag before it)."""
    at = text.find("<")
    return (text[at:] if at >= 0 else text).strip()


def _to_last_tag(text: str) -> str:
    """`text` up to its last `>` (a common prefix may end inside the tag after it)."""
    at = text.rfind(">")
    return text[: at + 1] if at >= 0 else text


def _split_key_end(between: str) -> tuple[str, str, str]:
    """What stands between a key and its value: (key_end, value_open, attributes_end)."""
    attributes = _ATTRIBUTES.match(between)
    if attributes:
        return attributes.group("end"), "", attributes.group("close")
    tags = _TAG.findall(between)
    if len(tags) > 1 and between.endswith(tags[-1]):
        return between[: -len(tags[-1])].strip(), tags[-1], ""
    return between, "", ""


# -- reasoning ----------------------------------------------------------------------------------


def _learn_reasoning(render: Render, generation_prompt: str) -> tuple[str, str] | None:
    # Templates show reasoning on an answer, or only on a turn with calls (Gemma 4, Kimi K2 Thinking).
    for message in (
        {"role": "assistant", "content": _ANSWER, "reasoning_content": _REASONING},
        {**_call_message(_ID_STYLES[0], {"content": _ANSWER}, False, 1), "reasoning_content": _REASONING},
        {**_call_message(_ID_STYLES[1], {"content": _ANSWER}, False, 1), "reasoning_content": _REASONING},
    ):
        out = _try(render, [_USER, message])
        if out is None or _REASONING not in out:
            continue
        before, after = out.split(_REASONING, 1)
        at = before.rfind("<")
        opening = before[at:].strip() if at >= 0 else ""
        close = after.find(">")
        closing = after[: close + 1].strip() if close >= 0 else ""
        if opening and closing and _ANSWER in after and not closing.startswith(_ANSWER):
            return opening, closing
    # A generation prompt that opens reasoning, closes an empty block, or closes it unopened (DeepSeek V3.1).
    tags = _TAG.findall(generation_prompt)
    ends = generation_prompt.rstrip().endswith(tags[-1]) if tags else False
    if ends and len(tags) > 1 and tags[-1].startswith("</") and tags[-2] == "<" + tags[-1][2:]:
        return tags[-2], tags[-1]
    if ends and _PLAIN_TAG.fullmatch(tags[-1]):
        return tags[-1], "</" + tags[-1][1:]
    if ends and _PLAIN_TAG.fullmatch("<" + tags[-1][2:]) and tags[-1].startswith("</"):
        return "<" + tags[-1][2:], tags[-1]
    return None
