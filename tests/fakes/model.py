"""A deterministic model for the fakes: its answer depends only on the conversation, and a prompt
that already holds the start of that answer (a prefill) is continued from where it leaves off.

This is what a real model does with a prefill at temperature 0, and what the gateway relies on
when it resumes a stream on another backend, or forces a call by prefilling its opening.
"""

from __future__ import annotations

import re
from collections.abc import Callable

QWEN_OPENING = "<|im_start|>assistant\n"
_LAST_USER = re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.DOTALL)


class ContinuingModel:
    """A fake's reply: called with the prompt text, returns the text the model writes."""

    def __init__(self, answer: Callable[[str], str], opening: str = QWEN_OPENING) -> None:
        self.answer = answer
        self.opening = opening  # where the assistant's turn starts in a rendered prompt

    def __call__(self, prompt: str) -> str:
        conversation, found, prefilled = prompt.rpartition(self.opening)
        if not found:
            return self.answer(prompt)
        whole = self.answer(conversation)
        # A prefill the model would not have written itself: it answers after it all the same.
        return whole.removeprefix(prefilled)


def weather_or_echo(conversation: str) -> str:
    """The answer to the last user message of a Qwen-rendered conversation: `weather in CITY` is a
    hermes call to get_weather; `echo WORDS` is a sentence that repeats them; anything else a greeting."""
    users = _LAST_USER.findall(conversation)
    last = users[-1].strip() if users else ""
    if last.startswith("weather in "):
        city = last.removeprefix("weather in ")
        return f'<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}\n</tool_call>'
    if last.startswith("echo "):
        return echo_text(last.removeprefix("echo "))
    return "Hello! Ask me for the weather somewhere, or to echo something."


def echo_text(words: str) -> str:
    """What `weather_or_echo` answers to `echo WORDS` (long enough to be cut in the middle)."""
    return f"You asked me to echo: {words}. Once more, slowly: {words}. And a last time: {words}."
