"""Which asyncio event loop `toolwire serve` runs on: uvloop when it is installed (the `speed`
extra), else the standard one; `--loop` forces either."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal

LoopChoice = Literal["auto", "asyncio", "uvloop"]
LOOP_CHOICES: tuple[LoopChoice, ...] = ("auto", "asyncio", "uvloop")


class LoopUnavailable(Exception):
    """`--loop uvloop` was asked for and uvloop is not installed."""


def loop_factory(choice: LoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for the chosen loop; None means asyncio's default."""
    if choice == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:
        if choice == "uvloop":
            raise LoopUnavailable("--loop uvloop: uvloop is not installed (pip install 'toolwire[speed]')")
        return None
    import uvloop

    return uvloop.new_event_loop


def loop_name(choice: LoopChoice) -> str:
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, None], choice: LoopChoice) -> None:
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        runner.run(main)
