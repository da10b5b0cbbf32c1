"""Argument values written as plain text (XML-style tags, Gemma's bare values): their JSON type comes
from the tool's parameter schema, or from the format's own type attribute."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from .python_literals import json_chars
from .pythonic_calls import python_literal_json


def schema_types(schema: Any) -> frozenset[str]:
    """The JSON types a parameter schema allows (from `type`, `anyOf`, `oneOf`); empty if unknown."""
    if not isinstance(schema, dict):
        return frozenset()
    kind = schema.get("type")
    found = {kind} if isinstance(kind, str) else {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        for option in options if isinstance(options, list) else ():
            found |= schema_types(option)
    return frozenset(found)


def property_types(parameters: dict[str, Any] | None) -> dict[str, frozenset[str]]:
    """Each declared argument's JSON types, from a tool's parameter schema."""
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {name: schema_types(schema) for name, schema in properties.items()}


def is_text(types: frozenset[str]) -> bool:
    """A value of these types is taken as written: the schema allows a string, or says nothing."""
    return not types or "string" in types


def typed_json(raw: str, types: frozenset[str]) -> str:
    """A non-string value as JSON: JSON first, then a Python literal (`True`, `{'a': 1}`), else the
    text itself as a string, so the arguments stay valid whatever the model wrote."""
    text = raw.strip()
    try:
        # The standard library keeps big integers exact; NaN and Infinity are not JSON.
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except ValueError:
        pass
    else:
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # beyond 64 bits, or a lone surrogate: ASCII escapes are safe
            return json.dumps(value)
    lowered = text.lower()
    if "boolean" in types and lowered in ("true", "false"):
        return lowered
    if "null" in types and lowered in ("null", "none"):
        return "null"
    literal = python_literal_json(text)
    return literal if literal is not None else '"' + json_chars(raw) + '"'


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # `1e999` would be written as null
        raise ValueError(f"{text} is out of range")
    return value
