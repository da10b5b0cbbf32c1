"""Hypothesis strategies for request bodies, drawn from the JSON schemas in OpenAI's OpenAPI
document: mostly valid bodies, some with a value replaced by any JSON at all."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .openapi import spec

# Values that confuse types: what a careless client sends for a flag, a count or a list.
CONFUSING = st.sampled_from([True, False, "yes", "10", "", 0, -1, 1e300, [], {}, [None], {"type": None}])
JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, width=32) | st.text(max_size=12)
ANY_JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                        max_leaves=8)


def _component(ref: str) -> dict[str, Any]:
    return spec()["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _merged(schema: dict[str, Any]) -> dict[str, Any]:
    """allOf flattened into one object schema (properties and required of every part)."""
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf", []):
        part = _merged(_component(part["$ref"]) if "$ref" in part else part)
        merged.setdefault("properties", {}).update(part.get("properties", {}))
        merged["required"] = [*merged.get("required", []), *part.get("required", [])]
        for key in ("type", "additionalProperties"):
            if key in part:
                merged.setdefault(key, part[key])
    return merged


def from_schema(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the schema's shape (its types, enums, bounds and required keys), to a bounded depth."""
    if depth > 6 or not isinstance(schema, dict):
        return JSON_LEAF
    if "$ref" in schema:
        return from_schema(_component(schema["$ref"]), depth + 1)
    if "allOf" in schema:
        return from_schema(_merged(schema), depth + 1)
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([from_schema(branch, depth + 1) for branch in schema.get("anyOf", schema.get("oneOf"))])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": one}, depth) for one in kind])
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = [key for key in schema.get("required", []) if key in properties]
        optional = [key for key in properties if key not in required][:12]
        return st.fixed_dictionaries(
            {key: from_schema(properties[key], depth + 1) for key in required},
            optional={key: from_schema(properties[key], depth + 1) for key in optional},
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), depth + 1), max_size=3)
    if kind == "string":
        return st.text(max_size=24)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "number":
        return st.floats(schema.get("minimum", -1e6), schema.get("maximum", 1e6), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON_LEAF


def request_bodies(component: str, model: str, required: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Bodies of the named request schema on `model`; half have one of the schema's fields (present
    or not) set to a type-confusing value or any JSON."""
    fields = sorted(_merged(_component(f"#/components/schemas/{component}")).get("properties", {}))
    valid = from_schema({"$ref": f"#/components/schemas/{component}"}).flatmap(
        lambda body: st.fixed_dictionaries({key: value for key, value in required.items()}).map(
            lambda fields: {**(body if isinstance(body, dict) else {}), "model": model, **fields}))

    def set_field(body: dict[str, Any]) -> st.SearchStrategy[Any]:
        return st.tuples(st.sampled_from(fields), CONFUSING | ANY_JSON).map(lambda kv: {**body, kv[0]: kv[1]})

    def set_inside(body: dict[str, Any]) -> st.SearchStrategy[Any]:
        paths = list(_paths(body))
        return st.tuples(st.sampled_from(paths), CONFUSING | ANY_JSON).map(lambda pv: _replaced(body, *pv))

    return st.one_of(valid, valid.flatmap(set_field), valid.flatmap(set_inside))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Any:
    """Every path to a value inside `value` (keys and indexes), the root's own fields included."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield (*prefix, key)
        yield from _paths(inner, (*prefix, key))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy
