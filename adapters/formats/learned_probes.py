"""The probes a learned format is read from: a template rendered with known calls, a known answer and
known reasoning, and the part of a render that the template wrote for the calls."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from .learned_tokens import TAG, split_tokens, whole_tokens_to

# (messages, tools, add_generation_prompt) -> the prompt. Raises if the template fails.
Render = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None, bool], str]

NAMES = ("tw_probe_fn", "tw_other_fn")
# Two arguments for the first call (to see what stands between arguments), one for the second.
ARGUMENTS = ({"tw_alpha": "TWVALUEONE", "tw_beta": "TWVALUETWO"}, {"tw_gamma": "TWVALUETHREE"})
ANSWER = "ZQANSWERNEEDLE"
REASONING = "ZQREASONINGNEEDLE"
USER = {"role": "user", "content": "Hi"}
# Mistral templates want 9-alphanumeric ids; Kimi K2's write only the id, which carries the name.
ID_STYLES = (("call12345", "call67890"), (f"functions.{NAMES[0]}:0", f"functions.{NAMES[1]}:1"))
CONTENTS: tuple[dict[str, Any], ...] = ({"content": ""}, {"content": None}, {})
PLAIN_TAG = re.compile(r"<[A-Za-z][\w:-]*>")  # `<think>`, `<seed:think>`: one whose close is `</...>`


class Unlearnable(Exception):
    """Why a template teaches no format (the learning's summary)."""


def probe_tools() -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {
            "name": name, "description": "A probe tool.",
            "parameters": {"type": "object", "required": list(arguments),
                           "properties": {key: {"type": "string", "description": "A probe argument."} for key in arguments}}}}
        for name, arguments in zip(NAMES, ARGUMENTS, strict=True)
    ]  # fmt: skip


def try_render(render: Render, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str | None:
    try:
        return render(messages, probe_tools(), add_generation_prompt)
    except Exception:  # noqa: BLE001 -- a template is foreign code; a probe it fails on teaches nothing
        return None


def call_message(ids: tuple[str, ...], content: dict[str, Any], as_text: bool, count: int) -> dict[str, Any]:
    calls = [
        {"id": ids[n], "type": "function",
         "function": {"name": NAMES[n], "arguments": json.dumps(ARGUMENTS[n]) if as_text else dict(ARGUMENTS[n])}}
        for n in range(count)
    ]  # fmt: skip
    return {"role": "assistant", **content, "tool_calls": calls}


def calls_region(render: Render, generation_prompt: str) -> tuple[str, int]:
    """The text the template writes for the calls of one turn, and how many calls it holds (two, or
    one for templates that draw a single call per turn)."""
    answer = try_render(render, [USER, {"role": "assistant", "content": ANSWER}])
    if answer is None or ANSWER not in answer:
        raise Unlearnable("the template renders no assistant answer")
    for count in (2, 1):
        for ids in ID_STYLES:
            for content in CONTENTS:
                for as_text in (False, True):
                    calls = try_render(render, [USER, call_message(ids, content, as_text, count)])
                    if calls is None:
                        continue
                    region = _region(calls, answer)
                    # The turn's header is the generation prompt, where a template writes it anew for calls.
                    if generation_prompt.strip() and region.lstrip().startswith(generation_prompt.strip()):
                        region = region.lstrip()[len(generation_prompt.strip()) :]
                    if not all(name in region for name in NAMES[:count]) or "TWVALUEONE" not in region:
                        continue
                    if not as_text and "{'tw_alpha'" in region:
                        continue  # a dict printed as Python: the template wants the JSON text
                    return region, count
    raise Unlearnable("the template writes no call from a history that holds one")


def _region(calls: str, answer: str) -> str:
    """What the template wrote for the calls: where the render with calls parts from the one with an
    answer, up to where they meet again; cut at token edges (`<...>`)."""
    start = len(os.path.commonprefix([calls, answer]))
    opened = calls.rfind("<", 0, start)
    if opened > calls.rfind(">", 0, start):  # the renders part inside a token: take all of it
        start = opened
    after_answer = answer[answer.index(ANSWER) + len(ANSWER) :]
    region = calls[start:]
    # What closes an answer (Kimi K3's `<|close|>response<|sep|>`) may stand before the calls too.
    region = region[len(whole_tokens_to(os.path.commonprefix([region, after_answer]))) :]
    ending = len(os.path.commonprefix([region[::-1], after_answer[::-1]]))
    end = len(region) - ending
    if region.rfind("<", 0, end) > region.rfind(">", 0, end):  # they meet again inside a token
        closed = region.find(">", end)
        end = closed + 1 if closed >= 0 else len(region)
    region = region[:end]
    # The turn's end marker, as written after an answer, does not belong to the calls.
    turn_end = split_tokens(after_answer)
    if turn_end and region.rstrip().endswith(turn_end[0]):
        region = region.rstrip()[: -len(turn_end[0])]
    return region




def learn_reasoning(render: Render, generation_prompt: str) -> tuple[str, str] | None:
    # Templates show reasoning on an answer, or only on a turn with calls (Gemma 4, Kimi K2 Thinking).
    for message in (
        {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING},
        {**call_message(ID_STYLES[0], {"content": ANSWER}, False, 1), "reasoning_content": REASONING},
        {**call_message(ID_STYLES[1], {"content": ANSWER}, False, 1), "reasoning_content": REASONING},
    ):
        out = try_render(render, [USER, message])
        if out is None or REASONING not in out:
            continue
        before, after = out.split(REASONING, 1)
        at = before.rfind("<")
        opening = before[at:].strip() if at >= 0 else ""
        close = after.find(">")
        closing = after[: close + 1].strip() if close >= 0 else ""
        if opening and closing and ANSWER in after and not closing.startswith(ANSWER):
            return opening, closing
    # A generation prompt that opens reasoning, closes an empty block, or closes it unopened (DeepSeek V3.1).
    tags = TAG.findall(generation_prompt)
    ends = generation_prompt.rstrip().endswith(tags[-1]) if tags else False
    if ends and len(tags) > 1 and tags[-1].startswith("</") and tags[-2] == "<" + tags[-1][2:]:
        return tags[-2], tags[-1]
    if ends and PLAIN_TAG.fullmatch(tags[-1]):
        return tags[-1], "</" + tags[-1][1:]
    if ends and PLAIN_TAG.fullmatch("<" + tags[-1][2:]) and tags[-1].startswith("</"):
        return "<" + tags[-1][2:], tags[-1]
    return None
