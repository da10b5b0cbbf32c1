"""What a client's JSON schema must satisfy before anything uses it: its `$ref`s resolve inside
the schema, and none loops back to where it started without going into a property or an item
(`{"$ref": "#"}` would recurse forever in a validator and in grammar building)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from .faults import InvalidRequest

# Keywords whose subschemas apply to the same value as the schema that holds them.
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("not", "if", "then", "else")


class SchemaProblem(ValueError):
    pass


def check_schema_refs(schema: Any, param: str) -> None:
    """A 400 naming `param` for a `$ref` that does not resolve or loops in place."""
    try:
        _check(schema)
    except SchemaProblem as problem:
        raise InvalidRequest(f"Invalid schema for '{param}': {problem}", param=param, code="invalid_schema") from None


def _check(root: Any) -> None:
    for node in _nodes(root):
        if "$ref" in node:
            _resolve(root, node["$ref"])
    for node in _nodes(root):
        _no_loop(root, node)


def _nodes(root: Any) -> Iterator[dict[str, Any]]:
    """Every object in the schema (iteratively: depth is bounded where the request is parsed)."""
    stack = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            yield value
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _resolve(root: Any, ref: Any) -> Any:
    if not isinstance(ref, str):
        raise SchemaProblem(f"$ref must be a string, not {type(ref).__name__}")
    if ref == "#":
        return root
    if ref.startswith("#/"):
        target = root
        for token in ref[2:].split("/"):
            key = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and key in target:
                target = target[key]
            elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                target = target[int(key)]
            else:
                raise SchemaProblem(f"$ref {ref!r} does not resolve inside the schema")
        return target
    if ref.startswith("#"):
        anchor = ref[1:]
        for node in _nodes(root):
            if node.get("$anchor") == anchor:
                return node
        raise SchemaProblem(f"$ref {ref!r} names no $anchor in the schema")
    raise SchemaProblem(f"$ref {ref!r} points outside the schema; only references within it ('#...') are allowed")


def _in_place(root: Any, node: dict[str, Any]) -> Iterator[Any]:
    if "$ref" in node:
        yield _resolve(root, node["$ref"])
    for key in _IN_PLACE_LISTS:
        if isinstance(node.get(key), list):
            yield from node[key]
    for key in _IN_PLACE_ONE:
        if key in node:
            yield node[key]
    if isinstance(node.get("dependentSchemas"), dict):
        yield from node["dependentSchemas"].values()


def _no_loop(root: Any, start: dict[str, Any]) -> None:
    """Following only in-place subschemas from `start` never comes back to it."""
    seen: set[int] = set()
    stack = [child for child in _in_place(root, start)]
    while stack:
        node = stack.pop()
        if node is start:
            raise SchemaProblem("a $ref refers back to itself without going into a property or item")
        if isinstance(node, dict) and id(node) not in seen:
            seen.add(id(node))
            stack.extend(_in_place(root, node))
