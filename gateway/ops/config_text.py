"""From the config file's text to data and back to words: `${VAR}` interpolation, and pydantic's
errors as `<file>: <key path>: <problem>` lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the problem."""


# $$ | ${NAME} | ${NAME:-default} | any other "${" (malformed, reported rather than kept literally)
_PLACEHOLDER = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(\{))")


def interpolate(value: Any, key: str, environ: Mapping[str, str], source: str) -> Any:
    """Substitute `${VAR}` in every string value of the parsed YAML (never in keys)."""
    if isinstance(value, dict):
        return {k: interpolate(v, _join(key, k), environ, source) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{key}[{i}]", environ, source) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        dollar, name, default, malformed = match.groups()
        if dollar:
            return "$"
        if malformed:
            raise ConfigError(f"{source}: {key}: malformed placeholder; write ${{VAR}}, ${{VAR:-default}} or $$")
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{source}: {key}: environment variable {name!r} is not set and has no default")

    return _PLACEHOLDER.sub(substitute, value)


def _join(key: str, part: Any) -> str:
    return f"{key}[{part}]" if isinstance(part, int) else f"{key}.{part}" if key else str(part)


# pydantic's wording for these speaks Python ("tuple", "instance of ModelRoute"); the user wrote YAML.
_MESSAGES = MappingProxyType(
    {
        "missing": "required key is missing",
        "tuple_type": "Input should be a list",
        "model_type": "Input should be a mapping",
    }
)


def format_errors(error: ValidationError, source: str, root: type[BaseModel]) -> str:
    """One line a problem; `root` is the model the whole file is validated into."""
    lines = []
    for item in error.errors(include_url=False):
        key = ""
        for part in item["loc"]:
            key = _join(key, part)
        message = _MESSAGES.get(item["type"]) or item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown key{_allowed_keys(root, item['loc'][:-1])}"
        # Cross-reference problems come from the top-level validator and carry their own key paths.
        lines += [f"{source}: {key}: {line}" if key else f"{source}: {line}" for line in message.splitlines()]
    return "\n".join(lines)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """` (allowed: a, b)` for the section at `loc`, to point a typo at its intended spelling."""
    model: Any = root
    for part in (p for p in loc if not isinstance(p, int)):
        field = model.model_fields.get(part)
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())] if field else []
        model = next((t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if model is None:
            return ""
    return f" (allowed: {', '.join(model.model_fields)})"
