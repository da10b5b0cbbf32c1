"""The call shapes a learned format can have, each read from the text a template wrote for two known
calls: JSON call objects, a name then JSON arguments, a Python list of calls, Gemma's call literal,
and one tagged value per argument."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from .learned_probes import ARGUMENTS, NAMES, Unlearnable
from .learned_tokens import (
    TAG,
    common_suffix,
    from_first_tag,
    split_tokens,
    to_last_tag,
    whole_tokens_from,
    whole_tokens_to,
)
from .literal_calls import LiteralSyntax
from .name_args import NameArgsSyntax
from .pythonic_calls import pythonic_scanner
from .syntax import CallSyntax
from .tagged_calls import TagSyntax

_EMPTY_PAIR = re.compile(r"(<[^<>/]+>)\s*(<[^<>]+>)")
_ATTRIBUTES = re.compile(r'^(?P<end>.*?)(?P<attributes>(?:\s+[\w-]+="[^"]*")+)(?P<close>[^"\s]*)$', re.DOTALL)


def learn_calls(region: str, count: int, generation_prompt: str, facts: dict[str, str]) -> tuple[CallSyntax, str]:
    """The syntax of the calls in `region` and the text that opens the first call, by their shape."""
    first = region.index(NAMES[0])
    second = region.index(NAMES[1]) if count == 2 else None
    if count == 1:
        facts["calls per turn"] = "one (the template draws no second call)"
    if region[first + len(NAMES[0]) :].startswith("{") and "tw_alpha:" in region:
        return _learn_literal(region, first, second, facts)
    objects = _json_calls(region, count)
    if objects is not None:
        return _learn_json(region, objects, generation_prompt, facts)
    after = region[first + len(NAMES[0]) :].lstrip()
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
    opening = whole_tokens_from(common_suffix(head, middle))
    closing = whole_tokens_to(os.path.commonprefix([middle, tail]))
    if len(opening) + len(closing) > len(middle):  # they overlap inside the middle: give the closing its own
        opening = middle[len(closing) :]
    return head[: len(head) - len(opening)], opening, closing, tail[len(closing) :]


def _markers(*texts: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(text.strip() for text in texts if text.strip()))


def _learn_json(
    region: str, objects: list[tuple[int, int, dict[str, Any]]], generation_prompt: str, facts: dict[str, str]
) -> tuple[CallSyntax, str]:
    start_a, end_a, call_a = objects[0]
    start_b, end_b, _ = objects[-1]
    name_key = next(key for key, value in call_a.items() if value == NAMES[0])
    arguments_key = next(key for key, value in call_a.items() if _same_arguments(value, ARGUMENTS[0]))
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
            raise Unlearnable(f"JSON calls inside an outer block ({prefix.strip()!r} ... {suffix.strip()!r})")
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
    shared = whole_tokens_to(os.path.commonprefix([head, generation_prompt]))
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
    for name in NAMES[:count]:
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
    if not any(_same_arguments(value, ARGUMENTS[0]) for value in found[0][2].values()):
        raise Unlearnable("the calls are JSON objects, but the arguments are not a value of the call object")
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
        if not _same_arguments(value, ARGUMENTS[n]):
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
    header = region[first + len(NAMES[0]) : brace_a].strip()
    # The header may hold the call's own id (`[CALL_ID]x[ARGS]`, `:0<|...|>`): its last token is the marker.
    cut = max(header.rfind("<"), header.rfind("["))
    marker = header[cut:] if cut > 0 else header
    if not opening.strip():
        raise Unlearnable("nothing marks where a call begins (the generation prompt opens it)")
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
        raise Unlearnable("a call literal whose strings are not quoted")
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
        raise Unlearnable("the arguments are neither JSON, nor tagged values, nor a literal toolwire reads")
    key_a, value_a, key_b, value_b = positions[:4]
    after_name = region[first + len(NAMES[0]) : key_a]  # G1
    between = region[key_a + len("tw_alpha") : value_a]  # G2
    after_value = region[value_a + len("TWVALUEONE") : key_b]  # G3
    after_last = region[value_b + len("TWVALUETWO") : second]  # G4: to the next call, or the end
    tail = region[positions[4] + len("TWVALUETHREE") :] if second is not None else after_last
    key_open = from_first_tag(common_suffix(after_name, after_value))
    value_close_raw = to_last_tag(os.path.commonprefix([after_value, after_last]))
    if not key_open or not value_close_raw.strip():
        raise Unlearnable("no tag around an argument's name or after its value")
    value_close = value_close_raw.strip()
    padded = between.endswith("\n") and value_close_raw.startswith("\n")
    key_end, value_open, attributes_end = _split_key_end(between.strip())
    if attributes_end and key_open.startswith(attributes_end):  # that ended the name's attributes
        key_open = key_open[len(attributes_end) :].lstrip()
    name_end = after_name[: len(after_name) - len(common_suffix(after_name, key_open))].strip()
    if attributes_end and name_end.endswith(attributes_end):
        name_end = name_end[: -len(attributes_end)]
    # Between the calls and after the last: the closing of a call, then what opens the next.
    head = region[:first]
    rest = tail[tail.index(value_close) + len(value_close) :] if value_close in tail else tail
    middle = after_last[after_last.index(value_close) + len(value_close) :] if second is not None else None
    prefix, opening, closing, suffix = _opening_closing(head, middle, rest)
    tokens = split_tokens(opening)
    if prefix.strip():
        open_marker, call_open = prefix.strip(), opening.strip()
    elif len(tokens) > 1:
        open_marker, call_open = tokens[0], "".join(tokens[1:])
    elif tokens:
        open_marker, call_open = tokens[0], ""
    else:
        raise Unlearnable("nothing marks where a call begins")
    closing_tokens = split_tokens(closing)
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
        raise Unlearnable("nothing marks where a call ends")
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


def _split_key_end(between: str) -> tuple[str, str, str]:
    """What stands between a key and its value: (key_end, value_open, attributes_end)."""
    attributes = _ATTRIBUTES.match(between)
    if attributes:
        return attributes.group("end"), "", attributes.group("close")
    tags = TAG.findall(between)
    if len(tags) > 1 and between.endswith(tags[-1]):
        return between[: -len(tags[-1])].strip(), tags[-1], ""
    return between, "", ""


# -- reasoning ----------------------------------------------------------------------------------
