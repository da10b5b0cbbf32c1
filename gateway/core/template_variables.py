"""Variables some chat templates read beyond what transformers passes (messages, tools, the special
tokens, add_generation_prompt), set the way the inference engines that serve those models set them.

transformers and vLLM pass only what the caller gives; llama.cpp fills these in for the families that
need them, so a template written for it renders here too:
- `functions` and `datetime`: FireFunction v2 takes its tool list as a JSON text and today's time, and
  fails without them (`'functions' is undefined`);
- `date_string` and `tools_in_user_message`: the Llama 3.x templates print today's date (their own
  fallback is a fixed day in 2024) and, with `tools_in_user_message` false, list the tools in the system
  turn, as llama.cpp renders them.

Not set: `builtin_tools`. With it, Llama 3.1 learns to call `brave_search` and friends as
`<|python_tag|>name.call(...)`, a syntax the `llama3_json` format does not parse; such tools stay
ordinary functions, which the model calls in JSON.

Only variables a template reads are set, and a caller's own value (e.g. a request's `date_string`) wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

ENGINE_VARIABLES = frozenset({"functions", "datetime", "date_string", "tools_in_user_message"})

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def engine_variables(reads: frozenset[str], tools: list[dict[str, Any]] | None,
                     clock: Clock = _now) -> dict[str, Any]:
    """The engine-provided variables among `reads` (the names a template uses without defining them)."""
    wanted = reads & ENGINE_VARIABLES
    if not wanted:
        return {}
    now = clock()
    values: dict[str, Any] = {
        # llama.cpp: the tool list as sent, indented by 2; an empty text without tools.
        "functions": json.dumps(tools, indent=2, ensure_ascii=False) if tools else "",
        "datetime": now.strftime("%b %d %Y %H:%M:%S GMT"),
        "date_string": now.strftime("%d %b %Y"),
        "tools_in_user_message": False,
    }
    return {name: values[name] for name in wanted}
