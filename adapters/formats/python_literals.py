"""Python literal tokens as JSON text, for the scanners that read Python-ish values (pythonic
calls, Qwen3-Coder's typed parameters). Parsed, never evaluated."""

from __future__ import annotations

import math

import orjson

_CONSTANTS = {"True": "true", "False": "false", "None": "null", "true": "true", "false": "false", "null": "null"}


class Malformed(Exception):
    """The text is not the Python literal (or call) it should be."""


def number_json(token: str) -> str:
    try:
        return str(int(token, 0))
    except ValueError:
        pass
    try:
        value = float(token)
    except ValueError:
        raise Malformed(f"{token!r} is not a number") from None
    if not math.isfinite(value):
        raise Malformed(f"{token!r} is not a finite number")
    return repr(value)


def word_json(word: str) -> str:
    # A bare word that is no constant can only mean its own text: there are no variables, and
    # Llama 3.2's template renders string arguments unquoted in history, so the model may too.
    return _CONSTANTS.get(word) or orjson.dumps(word).decode()


def json_chars(text: str) -> str:
    """`text` escaped for the inside of a JSON string. Escaping is per character, so pieces escaped
    one by one join into the escape of the whole."""
    return orjson.dumps(text).decode()[1:-1]
